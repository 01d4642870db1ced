"""Fidelity metrics against an independent numpy float64 reference written from DESIGN §3."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compliance.errors import InputError
from compliance.interp import synthetic as syn
from compliance.interp.fidelity import compute_fidelity, iter_safetensors_batches
from compliance.interp.headers import detect_format
from compliance.interp.loaders import load_artifact

RTOL = 1e-6


@pytest.fixture(params=["dense", "sparse"])
def decoder(request, monkeypatch):
    """Run a test with the dense decoder and with the embedding_bag one (forced)."""
    import compliance.interp.fidelity as fid

    monkeypatch.setattr(fid, "SPARSE_MAX_DENSITY", 0.0 if request.param == "dense" else 1.0)
    return request.param


# ----------------------------------------------------------------- numpy reference
def relu(z):
    return np.maximum(z, 0.0)


def ref_encode(fmt, t, x, *, arch="standard", k=None, apply_b_dec=True, transcode=False):
    t = {n: v.astype(np.float64) for n, v in t.items()}
    if fmt == "saelens":
        xin = x - t["b_dec"] if apply_b_dec else x
        pre = xin @ t["W_enc"] + t["b_enc"]
        if arch == "standard":
            return relu(pre)
        if arch == "jumprelu":
            return relu(pre) * (pre > t["threshold"])
        out = np.zeros_like(pre)  # topk: k largest pre-activations, then ReLU
        idx = np.argsort(-pre, axis=1)[:, :k]
        np.put_along_axis(out, idx, relu(np.take_along_axis(pre, idx, axis=1)), axis=1)
        return out
    if fmt == "ct":
        pre = x @ t["W_enc"].T + t["b_enc"]
        return pre * (pre > t["threshold"]) if "threshold" in t else relu(pre)
    if fmt == "sparsify":
        xin = x if transcode else x - t["b_dec"]
        pre = relu(xin @ t["encoder.weight"].T + t["encoder.bias"])
        out = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=1)[:, :k]
        np.put_along_axis(out, idx, np.take_along_axis(pre, idx, axis=1), axis=1)
        return out
    raise AssertionError(fmt)


def ref_decode(t, f, x):
    y = f @ t["W_dec"].astype(np.float64) + t["b_dec"].astype(np.float64)
    if "W_skip" in t:
        y = y + x @ t["W_skip"].astype(np.float64).T
    return y


def ref_metrics(y, yh, f):
    n = y.shape[0]
    mse = np.sum((y - yh) ** 2) / n
    var = np.sum(y**2) / n - np.sum((y.sum(0) / n) ** 2)
    ev = 1 - mse / var
    ny, nh = np.linalg.norm(y, axis=1), np.linalg.norm(yh, axis=1)
    dens = (f != 0).sum(0) / n
    return {
        "mse": mse, "explained_variance": ev, "variance": var,
        "cossim": np.mean(np.sum(y * yh, 1) / (ny * nh)), "l2_ratio": np.mean(nh / ny),
        "l0": np.mean((f != 0).sum(1)), "l1": np.mean(np.abs(f).sum(1)),
        "dead_fraction": np.mean(dens == 0), "dense_fraction": np.mean(dens > 0.1),
        "density": dens,
    }


def assert_matches(res, ref, keys=None):
    for key in keys or ref:
        got = getattr(res, key) if not isinstance(res, dict) else res[key]
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref[key],
                                   rtol=RTOL, atol=1e-12, err_msg=key)


def batches_of(arrays: dict, rows: int):
    n = next(iter(arrays.values())).shape[0]
    for s in range(0, n, rows):
        yield {k: torch.from_numpy(v[s:s + rows]) for k, v in arrays.items()}


# ----------------------------------------------------------------- cases
SAE_CASES = [
    ("saelens", dict(architecture="standard", apply_b_dec_to_input=True)),
    ("saelens", dict(architecture="standard", apply_b_dec_to_input=False)),
    ("saelens", dict(architecture="jumprelu", apply_b_dec_to_input=False)),
    ("saelens", dict(architecture="jumprelu", apply_b_dec_to_input=True)),
    ("saelens", dict(architecture="topk", k=5, apply_b_dec_to_input=True)),
    ("sparsify", dict(k=6)),
]


@pytest.mark.parametrize("fmt,kw", SAE_CASES, ids=lambda v: str(v))
def test_sae_metrics_match_reference(tmp_path, fmt, kw, decoder):
    rng = np.random.default_rng(0)
    d, m, n = 12, 48, 300
    if fmt == "saelens":
        t = syn.write_saelens(tmp_path / "a", rng, d, m, **kw)
        rkw = dict(arch=kw["architecture"], k=kw.get("k"), apply_b_dec=kw["apply_b_dec_to_input"])
    else:
        t = syn.write_sparsify(tmp_path / "a", rng, d, k=kw["k"], expansion_factor=4)
        rkw = dict(k=kw["k"])
    x = rng.standard_normal((n, d)).astype(np.float32) + 0.3
    xd = x.astype(np.float64)
    f = ref_encode(fmt, t, xd, **rkw)
    ref = ref_metrics(xd, ref_decode(t, f, xd), f)
    coder = load_artifact(tmp_path / "a", dtype=torch.float64)
    res = compute_fidelity(coder, batches_of({"activations": x}, 64), device="cpu")
    assert res.kind == "sae" and res.formula_version == "saelens-6.54"
    assert_matches(res, ref)
    assert 0 < res.l0 < m and (fmt == "saelens" and kw["architecture"] != "topk" or res.l0 <= kw["k"])


TC_CASES = [
    ("saelens", dict(architecture="standard", skip=True)),
    ("saelens", dict(architecture="jumprelu", skip=False)),
    ("ct", dict(jumprelu=True, skip=True)),
    ("ct", dict(jumprelu=False, skip=False)),
    ("sparsify", dict(k=7)),
]


@pytest.mark.parametrize("fmt,kw", TC_CASES, ids=lambda v: str(v))
def test_transcoder_metrics_match_reference(tmp_path, fmt, kw, decoder):
    rng = np.random.default_rng(1)
    d, d_out, m, n = 10, 14, 40, 257
    if fmt == "saelens":
        t = syn.write_saelens(tmp_path / "a", rng, d, m, d_out=d_out,
                              apply_b_dec_to_input=False, **kw)
        rkw = dict(arch=kw["architecture"], apply_b_dec=False)
        path = tmp_path / "a"
    elif fmt == "ct":
        path = tmp_path / "tc.safetensors"
        t = syn.write_circuit_tracer_transcoder(path, rng, d, m, d_out=d_out, **kw)
        rkw = {}
    else:
        t = syn.write_sparsify(tmp_path / "a", rng, d, k=kw["k"], num_latents=m,
                               transcode=True, d_out=d_out)
        rkw = dict(k=kw["k"], transcode=True)
        path = tmp_path / "a"
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (np.tanh(x @ rng.standard_normal((d, d_out))) + 0.5).astype(np.float32)
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    f = ref_encode(fmt, t, xd, **rkw)
    ref = ref_metrics(yd, ref_decode(t, f, xd), f)
    coder = load_artifact(path, dtype=torch.float64)
    assert coder.kind == "transcoder"
    res = compute_fidelity(coder, batches_of({"activations": x, "targets": y}, 50), device="cpu")
    assert_matches(res, ref)
    if fmt == "ct" and kw["jumprelu"]:
        assert not coder.nonnegative  # signed thresholds give negative activations: l1 uses |f|


def test_bf16_circuit_tracer_computes_in_float32(tmp_path):
    from safetensors.torch import save_file as save_pt

    rng = np.random.default_rng(2)
    t = syn.write_circuit_tracer_transcoder(tmp_path / "f32.safetensors", rng, 8, 16)
    bf = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in t.items()}
    save_pt(bf, str(tmp_path / "tc.safetensors"))
    assert detect_format(tmp_path / "tc.safetensors").extra["dtype"] == "BF16"
    coder = load_artifact(tmp_path / "tc.safetensors")
    assert coder.dtype == torch.float32
    torch.testing.assert_close(coder.W_enc_t, bf["W_enc"].float().T, rtol=0, atol=0)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    y = rng.standard_normal((50, 8)).astype(np.float32)
    tb = {k: v.float().double().numpy() for k, v in bf.items()}
    f = ref_encode("ct", tb, x.astype(np.float64))
    ref = ref_metrics(y.astype(np.float64), ref_decode(tb, f, x.astype(np.float64)), f)
    res = compute_fidelity(coder, [{"activations": torch.from_numpy(x), "targets": torch.from_numpy(y)}],
                           device="cpu")
    for key in ("mse", "explained_variance", "cossim", "l0"):
        assert getattr(res, key) == pytest.approx(ref[key], rel=1e-5), key


def test_topk_l0_can_be_below_k(tmp_path):
    rng = np.random.default_rng(9)
    t = syn.write_saelens(tmp_path / "a", rng, 10, 40, architecture="topk", k=12)
    t["b_enc"][:] = -1.5  # most pre-activations negative: ReLU after top-k zeroes them
    from safetensors.numpy import save_file

    save_file(t, str(tmp_path / "a" / "sae_weights.safetensors"))
    x = rng.standard_normal((200, 10))
    f = ref_encode("saelens", t, x, arch="topk", k=12)
    ref = ref_metrics(x, ref_decode(t, f, x), f)
    res = compute_fidelity(load_artifact(tmp_path / "a", dtype=torch.float64),
                           [{"activations": torch.from_numpy(x)}], device="cpu")
    assert res.l0 < 12 and res.l0 == pytest.approx(ref["l0"])
    assert_matches(res, ref)


@pytest.mark.parametrize("jumprelu", [False, True])
def test_clt_metrics_match_reference(tmp_path, jumprelu):
    rng = np.random.default_rng(3)
    L, d, m, n = 4, 9, 20, 150
    t = syn.write_clt(tmp_path / "clt", rng, L, d, m, jumprelu=jumprelu)
    T = {k: v.astype(np.float64) for k, v in t.items()}
    xs = [rng.standard_normal((n, d)).astype(np.float32) for _ in range(L)]
    ys = [(rng.standard_normal((n, d)) * 0.5 + x).astype(np.float32) for x in xs]
    acts = []
    for i in range(L):
        pre = xs[i].astype(np.float64) @ T[f"W_enc_{i}"].T + T[f"b_enc_{i}"]
        acts.append(pre * (pre > T[f"threshold_{i}"]) if jumprelu else relu(pre))
    per = []
    for l in range(L):
        yh = T[f"b_dec_{l}"] + sum(acts[i] @ T[f"W_dec_{i}"][:, l - i, :] for i in range(l + 1))
        per.append(ref_metrics(ys[l].astype(np.float64), yh, acts[l]))
    coder = load_artifact(tmp_path / "clt", dtype=torch.float64)
    assert coder.kind == "clt" and coder.n_layers == L
    arrays = {f"inputs_{l}": xs[l] for l in range(L)} | {f"targets_{l}": ys[l] for l in range(L)}
    res = compute_fidelity(coder, batches_of(arrays, 40), device="cpu")
    for l in range(L):
        assert_matches(res.per_layer[l], {k: v for k, v in per[l].items() if k != "density"})
    dens = np.concatenate([p["density"] for p in per])
    pooled = {
        "mse": np.mean([p["mse"] for p in per]),
        "explained_variance": 1 - sum(p["mse"] for p in per) / sum(p["variance"] for p in per),
        "l0": np.mean([p["l0"] for p in per]),
        "l0_total": np.sum([p["l0"] for p in per]),
        "cossim": np.mean([p["cossim"] for p in per]),
        "dead_fraction": np.mean(dens == 0), "dense_fraction": np.mean(dens > 0.1),
        "density": dens,
    }
    assert_matches(res, pooled)
    assert res.n_features == L * m


def test_ev_denominator_guard(tmp_path):
    rng = np.random.default_rng(4)
    syn.write_saelens(tmp_path / "a", rng, 6, 12)
    coder = load_artifact(tmp_path / "a", dtype=torch.float64)
    x = np.tile(rng.standard_normal((1, 6)), (20, 1))  # constant rows: variance 0
    res = compute_fidelity(coder, batches_of({"activations": x}, 7), device="cpu")
    assert res.variance < 1e-10 and res.explained_variance == 0.0


def test_streaming_independent_of_batch_size(tmp_path, decoder):
    rng = np.random.default_rng(5)
    syn.write_saelens(tmp_path / "a", rng, 16, 64, architecture="topk", k=8)
    x = rng.standard_normal((1000, 16)).astype(np.float32)
    syn.write_activations(tmp_path / "acts.safetensors", {"activations": x})
    coder = load_artifact(tmp_path / "a")  # float32 compute
    results = [
        compute_fidelity(coder, iter_safetensors_batches(tmp_path / "acts.safetensors", b,
                                                         coder=coder),
                         device="cpu", max_batch_rows=mb).metrics()
        for b, mb in ((1000, 1024), (1, 1024), (97, 1024), (1000, 33))
    ]
    from compliance.interp.fidelity import fidelity_from_files

    results.append(fidelity_from_files(tmp_path / "a", tmp_path / "acts.safetensors",
                                       batch_rows=200, device="cpu").metrics())
    for r in results[1:]:
        for key, v in results[0].items():
            if isinstance(v, float):
                assert r[key] == pytest.approx(v, rel=1e-5, abs=1e-9), key
            else:
                assert r[key] == v, key


def test_to_dict_json_safe(tmp_path):
    import json

    rng = np.random.default_rng(6)
    syn.write_saelens(tmp_path / "a", rng, 4, 8)
    coder = load_artifact(tmp_path / "a")
    res = compute_fidelity(coder, batches_of({"activations": rng.standard_normal((10, 4))}, 4),
                           device="cpu")
    res.cossim = float("nan")
    d = res.to_dict()
    assert d["cossim"] is None and len(d["density"]) == 8
    json.dumps(d, allow_nan=False)


# ----------------------------------------------------------------- bad input
def test_bad_activation_files(tmp_path):
    rng = np.random.default_rng(7)
    syn.write_saelens(tmp_path / "a", rng, 6, 12)
    coder = load_artifact(tmp_path / "a")
    p = tmp_path / "x.safetensors"

    def run(arrays, **kw):
        syn.write_activations(p, arrays)
        return compute_fidelity(coder, iter_safetensors_batches(p, 4, coder=coder, **kw))

    with pytest.raises(InputError, match="width 5, expected 6"):
        run({"activations": np.zeros((10, 5), np.float32)})
    bad = rng.standard_normal((10, 6)).astype(np.float32)
    bad[7, 2] = np.nan
    with pytest.raises(InputError, match="row 7 contains NaN"):
        run({"activations": bad})
    bad[7, 2] = np.inf
    with pytest.raises(InputError, match="row 7 contains NaN or Inf"):
        run({"activations": bad})
    with pytest.raises(InputError, match="empty activations file"):
        run({"activations": np.zeros((0, 6), np.float32)})
    with pytest.raises(InputError, match="missing tensor 'activations'"):
        run({"acts": np.zeros((3, 6), np.float32)})
    p.write_bytes(b"")
    with pytest.raises(InputError, match="corrupted safetensors header"):
        list(iter_safetensors_batches(p, 4, coder=coder))
    p.write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(InputError, match="corrupted safetensors header"):
        list(iter_safetensors_batches(p, 4, coder=coder))
    # in-memory batches are validated too
    with pytest.raises(InputError, match=r"expected \[N, 6\]"):
        compute_fidelity(coder, [{"activations": torch.zeros(3, 7)}])
    x = torch.zeros(3, 6)
    x[1, 0] = float("nan")
    with pytest.raises(InputError, match="row 1 contains NaN"):
        compute_fidelity(coder, [{"activations": x}])


def test_transcoder_needs_targets(tmp_path):
    rng = np.random.default_rng(8)
    syn.write_circuit_tracer_transcoder(tmp_path / "t.safetensors", rng, 5, 10)
    coder = load_artifact(tmp_path / "t.safetensors")
    with pytest.raises(InputError, match="missing tensor 'targets'"):
        compute_fidelity(coder, [{"activations": torch.zeros(3, 5)}])
