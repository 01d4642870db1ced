"""Splicing, capture and overhead on a tiny residual-MLP model, against a hand-written forward."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from compliance.errors import InputError
from compliance.interp import synthetic as syn
from compliance.interp.adapter import LoadedModel
from compliance.interp.downstream import (
    capture_activations,
    compute_downstream,
    model_activation_batches,
)
from compliance.interp.fidelity import compute_fidelity
from compliance.interp.loaders import load_artifact
from compliance.interp.overhead import measure_overhead, model_flops_per_row

N_IN, D, H, L = 5, 8, 16, 3


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.hook_resid_pre, self.hook_mlp_out = nn.Identity(), nn.Identity()
        self.fc1, self.fc2 = nn.Linear(D, H), nn.Linear(H, D)

    def forward(self, r):
        r = self.hook_resid_pre(r)
        return r + self.hook_mlp_out(self.fc2(torch.relu(self.fc1(r))))


class TinyResMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(N_IN, D)
        self.blocks = nn.ModuleList(Block() for _ in range(L))
        self.hook_resid_final = nn.Identity()
        self.head = nn.Linear(D, 1)

    def forward(self, x):
        r = self.embed(x)
        for b in self.blocks:
            r = b(r)
        return self.head(self.hook_resid_final(r))[:, 0]


def manual_forward(net: TinyResMLP, x, resid_pre=None, mlp_out=None):
    """Reference forward; ``resid_pre[i](r)`` / ``mlp_out[i](resid_in, out)`` replace activations."""
    resid_pre, mlp_out = resid_pre or {}, mlp_out or {}
    r = x @ net.embed.weight.T + net.embed.bias
    for i, b in enumerate(net.blocks):
        if i in resid_pre:
            r = resid_pre[i](r)
        m = torch.relu(r @ b.fc1.weight.T + b.fc1.bias) @ b.fc2.weight.T + b.fc2.bias
        if i in mlp_out:
            m = mlp_out[i](r, m)
        r = r + m
    return (r @ net.head.weight.T + net.head.bias)[:, 0]


@pytest.fixture()
def model_and_frame():
    torch.manual_seed(0)
    net = TinyResMLP().double().eval()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((333, N_IN)), columns=[f"c{i}" for i in range(N_IN)])
    with torch.no_grad():
        z = net(torch.tensor(frame.to_numpy()))
    frame["y"] = (torch.sigmoid(z).numpy() > rng.uniform(size=len(frame))).astype(int)
    hooks = {n: m for n, m in net.named_modules() if n.split(".")[-1].startswith("hook_")}
    lm = LoadedModel(module=net, hook_points=hooks,
                     encode_inputs=lambda f: torch.tensor(f[[f"c{i}" for i in range(N_IN)]].to_numpy()),
                     decision_threshold=0.5, label_column="y")
    return net, lm, frame


def ref_downstream(net, x, y, spliced_kwargs, zero_kwargs, thr=0.5):
    with torch.no_grad():
        zc = manual_forward(net, x)
        zs = manual_forward(net, x, **spliced_kwargs)
        zz = manual_forward(net, x, **zero_kwargs)
    pc, ps = torch.sigmoid(zc).numpy(), torch.sigmoid(zs).numpy()
    kl = np.mean(pc * np.log(pc / ps) + (1 - pc) * np.log((1 - pc) / (1 - ps)))
    flips = np.mean((pc >= thr) != (ps >= thr))

    def bce(z):
        p = torch.sigmoid(z).numpy()
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    lc, ls, lz = bce(zc), bce(zs), bce(zz)
    return kl, flips, (lz - ls) / (lz - lc)


def check(res, ref):
    kl, flips, rec = ref
    assert res.kl == pytest.approx(kl, rel=1e-6, abs=1e-12)
    assert res.decision_flip_rate == pytest.approx(flips)
    assert res.loss_recovered == pytest.approx(rec, rel=1e-6)


def test_capture_matches_manual(model_and_frame):
    net, lm, frame = model_and_frame
    got = capture_activations(lm, frame, ["blocks.1.hook_resid_pre", "blocks.2.hook_mlp_out"],
                              batch_rows=50, device="cpu")
    seen = {}
    x = lm.encode_inputs(frame)
    with torch.no_grad():
        manual_forward(net, x, resid_pre={1: lambda r: seen.setdefault("r", r)},
                       mlp_out={2: lambda r, m: seen.setdefault("m", m)})
    torch.testing.assert_close(got["blocks.1.hook_resid_pre"], seen["r"])
    torch.testing.assert_close(got["blocks.2.hook_mlp_out"], seen["m"])


def test_sae_splice_matches_manual(model_and_frame, tmp_path):
    net, lm, frame = model_and_frame
    rng = np.random.default_rng(1)
    syn.write_saelens(tmp_path / "sae", rng, D, 32, hook_name="blocks.1.hook_resid_pre")
    coder = load_artifact(tmp_path / "sae", dtype=torch.float64)
    res = compute_downstream(coder, lm, frame, batch_rows=100, device="cpu")
    x, y = lm.encode_inputs(frame), frame["y"].to_numpy()
    ref = ref_downstream(net, x, y, {"resid_pre": {1: coder.reconstruct}},
                         {"resid_pre": {1: torch.zeros_like}})
    check(res, ref)
    assert res.hooks_in == res.hooks_out == ["blocks.1.hook_resid_pre"]
    assert res.kl > 0


def test_perfect_sae_recovers_everything(model_and_frame, tmp_path):
    from safetensors.numpy import save_file
    import json

    net, lm, frame = model_and_frame
    eye = np.eye(D, dtype=np.float32)  # relu(x) − relu(−x) = x
    (tmp_path / "p").mkdir()
    save_file({"W_enc": np.hstack([eye, -eye]), "b_enc": np.zeros(2 * D, np.float32),
               "W_dec": np.vstack([eye, -eye]), "b_dec": np.zeros(D, np.float32)},
              str(tmp_path / "p" / "sae_weights.safetensors"))
    (tmp_path / "p" / "cfg.json").write_text(json.dumps(
        {"architecture": "standard", "d_in": D, "d_sae": 2 * D,
         "hook_name": "blocks.2.hook_resid_pre"}))
    res = compute_downstream(load_artifact(tmp_path / "p", dtype=torch.float64), lm, frame,
                             device="cpu")
    assert res.kl == pytest.approx(0, abs=1e-12)
    assert res.decision_flip_rate == 0
    assert res.loss_recovered == pytest.approx(1.0, abs=1e-9)


def test_transcoder_splice_matches_manual(model_and_frame, tmp_path):
    net, lm, frame = model_and_frame
    rng = np.random.default_rng(2)
    syn.write_circuit_tracer_transcoder(tmp_path / "tc.safetensors", rng, D, 24, skip=True)
    coder = load_artifact(tmp_path / "tc.safetensors", dtype=torch.float64)
    with pytest.raises(InputError, match="transcoder hook points unknown"):
        compute_downstream(coder, lm, frame)
    res = compute_downstream(coder, lm, frame, input_hooks=["blocks.0.hook_resid_pre"],
                             device="cpu")
    assert res.hooks_out == ["blocks.0.hook_mlp_out"]
    x, y = lm.encode_inputs(frame), frame["y"].to_numpy()
    ref = ref_downstream(net, x, y, {"mlp_out": {0: lambda r, m: coder.reconstruct(r)}},
                         {"mlp_out": {0: lambda r, m: torch.zeros_like(m)}})
    check(res, ref)


def test_clt_splice_matches_manual(model_and_frame, tmp_path):
    net, lm, frame = model_and_frame
    rng = np.random.default_rng(3)
    t = syn.write_clt(tmp_path / "clt", rng, L, D, 12, jumprelu=True)
    T = {k: torch.tensor(v, dtype=torch.float64) for k, v in t.items()}
    coder = load_artifact(tmp_path / "clt", dtype=torch.float64)
    res = compute_downstream(coder, lm, frame, batch_rows=64, device="cpu")
    acts = {}

    def read(i):
        def fn(r):
            pre = r @ T[f"W_enc_{i}"].T + T[f"b_enc_{i}"]
            acts[i] = pre * (pre > T[f"threshold_{i}"])
            return r
        return fn

    def write(l):
        return lambda r, m: T[f"b_dec_{l}"] + sum(acts[i] @ T[f"W_dec_{i}"][:, l - i, :]
                                                  for i in range(l + 1))

    x, y = lm.encode_inputs(frame), frame["y"].to_numpy()
    spliced = {"resid_pre": {i: read(i) for i in range(L)}, "mlp_out": {l: write(l) for l in range(L)}}
    zero = {"mlp_out": {l: (lambda r, m: torch.zeros_like(m)) for l in range(L)}}
    check(res, ref_downstream(net, x, y, spliced, zero))


def test_model_batches_feed_fidelity(model_and_frame, tmp_path):
    net, lm, frame = model_and_frame
    rng = np.random.default_rng(4)
    syn.write_saelens(tmp_path / "sae", rng, D, 32, hook_name="blocks.1.hook_resid_pre")
    coder = load_artifact(tmp_path / "sae", dtype=torch.float64)
    a = compute_fidelity(coder, model_activation_batches(coder, lm, frame, batch_rows=70,
                                                         device="cpu"), device="cpu")
    acts = capture_activations(lm, frame, ["blocks.1.hook_resid_pre"], device="cpu")
    b = compute_fidelity(coder, [{"activations": acts["blocks.1.hook_resid_pre"]}], device="cpu")
    assert a.explained_variance == pytest.approx(b.explained_variance, rel=1e-9)
    assert a.n_rows == len(frame)


def test_the_fidelity_pass_clean_run_is_reused_bit_for_bit(model_and_frame, tmp_path):
    """The downstream metrics from the clean run the activations were captured in are the ones a
    second clean run gives, exactly; a clean run of part of the frame is not used."""
    net, lm, frame = model_and_frame
    syn.write_saelens(tmp_path / "sae", np.random.default_rng(5), D, 32, hook_name="blocks.1.hook_resid_pre")
    coder = load_artifact(tmp_path / "sae", dtype=torch.float64)
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    clean = []
    for _ in model_activation_batches(coder, lm, frame, batch_rows=70, device="cpu", clean=clean):
        pass
    assert sum(len(r[0]) for r in clean) == len(frame) and len(calls) == 5
    calls.clear()
    reused = compute_downstream(coder, lm, frame, batch_rows=70, device="cpu", clean=clean)
    assert len(calls) == 2 * 5  # spliced and zero-ablated only
    calls.clear()
    again = compute_downstream(coder, lm, frame, batch_rows=70, device="cpu")
    assert len(calls) == 3 * 5
    assert reused.to_dict() == again.to_dict()
    calls.clear()
    partial = compute_downstream(coder, lm, frame, batch_rows=70, device="cpu", clean=clean[:2])
    assert len(calls) == 3 * 5 and partial.to_dict() == again.to_dict()


def test_overhead(model_and_frame, tmp_path):
    net, lm, frame = model_and_frame
    rng = np.random.default_rng(5)
    syn.write_saelens(tmp_path / "sae", rng, D, 64, hook_name="blocks.0.hook_resid_pre")
    coder = load_artifact(tmp_path / "sae")
    net.float()
    lm.encode_inputs = lambda f: torch.tensor(f[[f"c{i}" for i in range(N_IN)]].to_numpy(),
                                              dtype=torch.float32)
    res = measure_overhead(coder, lm, frame, repeats=5, warmup=1, device="cpu")
    assert res.model_flops_per_row == model_flops_per_row(net) == 2 * (N_IN * D + L * 2 * D * H + D)
    assert res.artifact_flops_per_row == 4 * D * 64
    assert res.latency_attached_s > 0 and res.latency_base_s > 0
    assert len(res.base_runs_s) == 5 and np.isfinite(res.overhead_ratio)
    assert res.to_dict()["device"] == "cpu"


def test_bad_hooks_and_kinds(model_and_frame, tmp_path):
    net, lm, frame = model_and_frame
    rng = np.random.default_rng(6)
    syn.write_saelens(tmp_path / "sae", rng, D, 16, hook_name="blocks.9.hook_resid_pre")
    coder = load_artifact(tmp_path / "sae")
    with pytest.raises(InputError, match=r"hook point\(s\) \['blocks.9.hook_resid_pre'\] not in the model"):
        compute_downstream(coder, lm, frame)
    from safetensors.numpy import save_file

    save_file({"weight": np.ones((1, D), np.float32)}, str(tmp_path / "probe.safetensors"))
    probe = load_artifact(tmp_path / "probe.safetensors")
    with pytest.raises(InputError, match="splicing does not apply to a probe artifact"):
        compute_downstream(probe, lm, frame)
    with pytest.raises(InputError, match="fidelity does not apply to a probe"):
        compute_fidelity(probe, [])
    with pytest.raises(InputError, match="empty data frame"):
        compute_downstream(coder, lm, frame.iloc[:0], hook_name="blocks.0.hook_resid_pre")
