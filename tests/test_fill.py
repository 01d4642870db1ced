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
