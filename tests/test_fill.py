"""The day grid's interval count (``coverage._fill``) against a plain loop: every cell of every
block, with intervals that start before the window, end after it, are empty or reversed."""

from __future__ import annotations

import numpy as np
import pytest

from compliance.analysis import coverage


def naive(rows, lo, hi, nrows, nd):
    out = np.zeros((nrows, nd), np.int32)
    for r, a, b in zip(rows.tolist(), lo.tolist(), hi.tolist()):
        for d in range(max(a, 0), min(b, nd - 1) + 1):
            out[r, d] += 1
    return out


@pytest.mark.parametrize("cells", [1 << 22, 64, 7])  # one block; several; one row a block
def test_fill_counts_every_interval_in_every_block(monkeypatch, cells):
    monkeypatch.setattr(coverage, "_FILL_CELLS", cells)
    rng = np.random.default_rng(7)
    nrows, nd = 23, 31
    n = 600
    rows = rng.integers(0, nrows, n)
    lo = rng.integers(-10, nd + 5, n)
    hi = lo + rng.integers(-3, 20, n)  # some reversed (empty), some past the window
    want = naive(rows, lo, hi, nrows, nd)
    got = coverage._fill(rows, lo, hi, nrows, nd)
    assert got.dtype == np.int32 and np.array_equal(got, want)
    assert want.max() > 1  # overlapping intervals were counted, not just marked
    covered = coverage._fill(rows, lo, hi, nrows, nd, covered=True)
    assert covered.dtype == bool and np.array_equal(covered, want > 0)


def test_fill_of_nothing():
    e = np.array([], np.int64)
    assert coverage._fill(e, e, e, 3, 4).shape == (3, 4)
    assert not coverage._fill(e, e, e, 3, 4, covered=True).any()
    assert coverage._fill(e, e, e, 0, 4).shape == (0, 4)


def _order(pair, fin, cid):
    o = coverage._pair_time_order(pair, fin, cid)
    return np.arange(len(pair)) if o is None else o  # None: the rows already are in order


# rows as written (pairs interleaved); grouped by pair in pair order (a SQLite index read); grouped, pairs in any order
@pytest.mark.parametrize("grouped", [False, True, "blocks"])
@pytest.mark.parametrize("shuffle", [0.0, 0.001, 0.02, 0.5])  # in order; a few out of order; many
def test_pair_time_order_equals_lexsort(shuffle, grouped):
    """The checks' order (pair, finished, check id) — for rows grouped by pair, a sort by pair (none
    when the pairs come in order) and a repair of the pairs whose rows came out of time order, or
    one full sort when most did; for rows in any other order one sort of a combined key — equals
    numpy's lexsort, ties in time broken by check id."""
    rng = np.random.default_rng(11)
    n = 5000
    pair = rng.integers(0, 400, n)  # rows arrive in time order, pairs interleaved (as a store returns them)
    fin = np.sort(rng.integers(0, 60, n)) * 10**9  # many equal times: ties decided by check id
    cid = np.arange(n, dtype=np.int64)
    k = int(shuffle * n)
    if k:
        idx = rng.choice(n, k, replace=False)
        fin[idx] = rng.permutation(fin[idx])
        cid[idx] = rng.permutation(cid[idx])
    if grouped:
        g = np.argsort(pair, kind="stable")
        if grouped == "blocks":  # the same groups, the pairs in another order
            g = np.argsort(rng.permutation(400)[pair], kind="stable")
        pair, fin, cid = pair[g], fin[g], cid[g]
    want = np.lexsort((cid, fin, pair))
    np.testing.assert_array_equal(_order(pair, fin, cid), want)
    if grouped is True and not shuffle:
        assert coverage._pair_time_order(pair, fin, cid) is None  # nothing to sort, nothing gathered
    np.testing.assert_array_equal(_order(pair[:1], fin[:1], cid[:1]), [0])
    assert len(_order(pair[:0], fin[:0], cid[:0])) == 0


def test_pair_key_ranks_versions_as_a_sort_would():
    """The (artifact, version) key from a table of the version ids present equals the one from
    sorting them (dense ids, a store's) — and sparse ids take the sort."""
    rng = np.random.default_rng(5)
    acode = rng.integers(0, 300, 4000)
    for vid in (rng.integers(1000, 3000, 4000), rng.integers(0, 2**40, 4000), np.full(4000, 7)):
        vs = np.unique(vid)
        np.testing.assert_array_equal(coverage._pair_key(acode, vid),
                                      acode * (len(vs) + 1) + np.searchsorted(vs, vid))
    assert len(coverage._pair_key(acode[:0], acode[:0])) == 0


def test_lex_order_falls_back_when_the_key_does_not_fit():
    rng = np.random.default_rng(3)
    n = 1000
    fin = rng.integers(0, 5, n) * 10**9
    cid = rng.permutation(n).astype(np.int64)
    for pair in (rng.integers(0, 50, n), rng.integers(2**60, 2**62, n) // 2**55 * 2**55):  # fits; too large
        np.testing.assert_array_equal(coverage._lex_order(pair, fin, cid), np.lexsort((cid, fin, pair)))


def test_positions_and_values_by_id_equal_a_hash_look_up():
    """The id look-ups of the load and the input's validation (a table over dense ids, a hash for
    sparse ones) answer as pandas' index does: positions, -1 for an id not there, values by id."""
    import pandas as pd

    from compliance.analysis.frames import positions
    from compliance.services.analysis import _by_id

    rng = np.random.default_rng(7)
    for keys in (rng.permutation(np.arange(100, 400)), rng.choice(2**40, 300, replace=False)):
        ids = np.r_[rng.choice(keys, 2000), [-5, 2**41, int(keys.max()) + 1]]
        np.testing.assert_array_equal(positions(keys, ids), pd.Index(keys).get_indexer(ids))
        values = {int(k): float(i) / 7 for i, k in enumerate(keys[:50])}
        want = pd.Series(ids).map(pd.Series(values)).to_numpy(np.float64)
        np.testing.assert_array_equal(_by_id(ids, values, np.float64, np.nan), want)
    assert len(positions(np.array([], np.int64), np.array([1, 2]))) == 2
    assert np.isnan(_by_id(np.array([1, 2]), {}, np.float64, np.nan)).all()


def test_categorical_input_is_recoded_and_names_the_first_unknown_row():
    import pandas as pd

    from compliance.analysis.frames import _categorical
    from compliance.errors import InputError

    s = pd.Series(pd.Categorical(["warn", None, "pass", "warn"], categories=["zzz", "warn", "pass"]))
    out = _categorical("checks", s, ("pass", "warn", "fail"), "status")  # an unused unknown category is fine
    assert list(out.categories) == ["pass", "warn", "fail"] and out.tolist()[::2] == ["warn", "pass"]
    assert pd.isna(out[1])
    bad = pd.Series(pd.Categorical(["pass", "oops", "nope"], categories=["nope", "oops", "pass"]))
    with pytest.raises(InputError, match="unknown status 'oops'"):  # the first row's, as a factorisation names it
        _categorical("checks", bad, ("pass",), "status")
