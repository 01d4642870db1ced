"""Linear CKA, feature survival (against scipy's Hungarian) and activation drift."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from scipy import stats
from scipy.optimize import linear_sum_assignment

from compliance.errors import InputError
from compliance.interp import synthetic as syn
from compliance.interp.activation_drift import activation_drift, density_drift_statistics
from compliance.interp.alignment import (
    CKAAccumulator,
    feature_survival,
    linear_cka,
    representation_shift,
)
from compliance.interp.loaders import load_artifact


def ref_cka(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_cka_matches_reference_and_invariances():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 10))
    y = x @ rng.standard_normal((10, 7)) + 0.5 * rng.standard_normal((400, 7))
    assert linear_cka(x, y) == pytest.approx(ref_cka(x, y), rel=1e-9)
    q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    assert linear_cka(x, 3.0 * x @ q + 2.0) == pytest.approx(1.0, rel=1e-9)
    assert linear_cka(x, rng.standard_normal((400, 10))) < 0.1
    # streaming equals one-shot
    res = representation_shift((x[s:s + 37], y[s:s + 37]) for s in range(0, 400, 37))
    assert res.cka == pytest.approx(ref_cka(x, y), rel=1e-9)
    assert res.mean_row_cosine is None and res.n_rows == 400
    z = x + 0.1 * rng.standard_normal(x.shape)
    cos = np.mean(np.sum(x * z, 1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(z, axis=1)))
    assert representation_shift([(x, z)]).mean_row_cosine == pytest.approx(cos, rel=1e-9)
    with pytest.raises(InputError, match="paired"):
        CKAAccumulator().update(x, y[:10])
    bad = x.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        linear_cka(bad, x)


def _write_sae(path, W_enc, W_dec):
    path.mkdir()
    d, m = W_enc.shape
    save_file({"W_enc": W_enc.astype(np.float32), "b_enc": np.zeros(m, np.float32),
               "W_dec": W_dec.astype(np.float32), "b_dec": np.zeros(d, np.float32)},
              str(path / "sae_weights.safetensors"))
    (path / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": d, "d_sae": m}))


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_feature_survival_matches_scipy_hungarian(tmp_path):
    rng = np.random.default_rng(1)
    d, m = 16, 40
    W_dec = rng.standard_normal((m, d))
    W_enc = rng.standard_normal((d, m))
    perm = rng.permutation(m)
    new_dec = W_dec[perm] * rng.uniform(0.5, 2, (m, 1)) + 0.2 * rng.standard_normal((m, d))
    new_enc = W_enc[:, perm] + 0.2 * rng.standard_normal((d, m))
    new_dec[:10] = rng.standard_normal((10, d))  # 10 replaced features: cannot survive
    new_enc[:, 5:15] = rng.standard_normal((d, 10))  # encoder moved for 5 more
    _write_sae(tmp_path / "old", W_enc, W_dec)
    _write_sae(tmp_path / "new", new_enc, new_dec)
    old, new = load_artifact(tmp_path / "old", dtype=torch.float64), load_artifact(tmp_path / "new", dtype=torch.float64)
    labels = {str(i): f"feature {i}" for i in range(0, m, 2)}
    res = feature_survival(old, new, labels)
    # independent reference
    cos = _unit(W_dec) @ _unit(new_dec).T
    rows, cols = linear_sum_assignment(1 - cos)
    enc = np.sum(_unit(W_enc.T)[rows] * _unit(new_enc.T)[cols], axis=1)
    surv = {int(r): int(c) for r, c, dc, ec in zip(rows, cols, cos[rows, cols], enc)
            if dc > 0.7 and ec > 0.7}
    assert {s["old"]: s["new"] for s in res.survivors} == surv
    assert res.n_survived == len(surv) and 20 <= len(surv) <= 30
    assert res.mmcs == pytest.approx(np.mean(cos.max(axis=1)), rel=1e-9)
    assert res.survival_share == pytest.approx(len(surv) / m)
    assert res.carried_labels == {str(surv[int(k)]): v for k, v in labels.items() if int(k) in surv}
    assert set(res.lost_labels) == {k for k in labels if int(k) not in surv}
    for s in res.survivors:  # survivors are the permutation's true partners
        assert perm[s["new"]] == s["old"]
    json.dumps(res.to_dict(), allow_nan=False)


def test_feature_survival_rectangular_and_mismatch(tmp_path):
    rng = np.random.default_rng(2)
    syn.write_saelens(tmp_path / "a", rng, 8, 20)
    syn.write_saelens(tmp_path / "b", rng, 8, 30)
    syn.write_saelens(tmp_path / "c", rng, 9, 20)
    a, b, c = (load_artifact(tmp_path / n) for n in "abc")
    res = feature_survival(a, b)
    assert res.n_matched == 20 and res.n_old == 20 and res.n_new == 30
    with pytest.raises(InputError, match="widths differ"):
        feature_survival(a, c)
    syn.write_circuit_tracer_transcoder(tmp_path / "t.safetensors", rng, 8, 20)
    with pytest.raises(InputError, match="cannot compare a sae with a transcoder"):
        feature_survival(a, load_artifact(tmp_path / "t.safetensors"))


def test_clt_survival_per_layer(tmp_path):
    rng = np.random.default_rng(3)
    syn.write_clt(tmp_path / "clt", rng, 3, 6, 10)
    clt = load_artifact(tmp_path / "clt")
    res = feature_survival(clt, clt, {"25": "x"})
    assert res.n_survived == 30 and res.carried_labels == {"25": "x"}
    assert res.mmcs == pytest.approx(1.0)


# ----------------------------------------------------------------- activation drift
def test_density_statistics_match_scipy():
    rng = np.random.default_rng(4)
    ref, cur = rng.beta(1, 20, 500), rng.beta(1, 12, 500)
    s = density_drift_statistics(ref, cur)
    ks = stats.ks_2samp(ref, cur)
    assert s["ks_statistic"] == pytest.approx(ks.statistic) and s["ks_pvalue"] == pytest.approx(ks.pvalue)
    assert s["wasserstein_norm"] == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref))
    edges = np.quantile(ref, np.arange(1, 10) / 10)
    r = np.histogram(ref, np.r_[-np.inf, edges, np.inf])[0] / 500
    c = np.histogram(cur, np.r_[-np.inf, edges, np.inf])[0] / 500
    c = np.where(c == 0, 1e-4, c)
    assert s["psi"] == pytest.approx(np.sum((c - r) * np.log(c / r)), rel=1e-6)
    same = density_drift_statistics(ref, ref)
    assert same["psi"] == 0 and same["ks_statistic"] == 0


def test_activation_drift_lists_newly_dead_and_dense(tmp_path):
    # features i < 4 read +x_i, features 4..7 read −x_{i-4}; threshold via bias
    d = 4
    W_enc = np.hstack([np.eye(d), -np.eye(d)])
    _write_sae(tmp_path / "s", W_enc, np.vstack([np.eye(d), -np.eye(d)]))
    coder = load_artifact(tmp_path / "s")
    rng = np.random.default_rng(5)
    ref = rng.standard_normal((2000, d))
    cur = ref.copy()
    cur[:, 0] = -np.abs(cur[:, 0])  # feature 0 dies, feature 4 becomes always-on
    cur[:, 1] = np.where(rng.uniform(size=2000) < 0.02, 1.0, -1.0)  # 1 rarely on, 5 dense
    res = activation_drift(coder, [{"activations": torch.tensor(ref)}],
                           [{"activations": torch.tensor(cur[:1000])}, {"activations": torch.tensor(cur[1000:])}],
                           device="cpu")
    assert res.newly_dead == [0]
    assert res.newly_dense == []  # 4 and 5 were already dense (≈ 0.5) in the reference
    assert res.current_density[4] == 1.0 and res.n_rows_current == 2000
    assert res.top_changes[0]["feature"] in (0, 4)
    assert res.psi >= 0 and "reference_density" not in res.metrics()
    # a feature going from rare to dense
    cur2 = ref.copy()
    cur2[:, 2] = np.abs(cur2[:, 2])
    ref2 = ref.copy()
    ref2[:, 2] = np.where(rng.uniform(size=2000) < 0.05, 1.0, -1.0)
    res2 = activation_drift(coder, [{"activations": torch.tensor(ref2)}], [{"activations": torch.tensor(cur2)}])
    assert res2.newly_dense == [2]
