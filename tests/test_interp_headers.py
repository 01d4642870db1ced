"""Torch-free format detection, header validation, hash verification and policy status."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from compliance.errors import InputError
from compliance.interp import synthetic as syn
from compliance.interp.headers import detect_format, file_hashes, read_safetensors_header
from compliance.interp.status import (
    activation_drift_status,
    alignment_status,
    fidelity_status,
    overhead_status,
)

ROOT = Path(__file__).resolve().parents[1]


def test_header_modules_import_without_torch():
    code = ("import sys; import compliance.interp.headers, compliance.interp.status, "
            "compliance.interp.synthetic, compliance.interp.serial; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_detect_every_format(tmp_path):
    rng = np.random.default_rng(0)
    syn.write_saelens(tmp_path / "relu", rng, 6, 24, hook_name="blocks.1.hook_resid_pre")
    i = detect_format(tmp_path / "relu")
    assert (i.format, i.kind_hint, i.architecture, i.d_in, i.d_sae, i.d_out) == \
        ("saelens", "sae", "standard", 6, 24, 6)
    assert i.hook_name == "blocks.1.hook_resid_pre" and len(i.files) == 2
    syn.write_saelens(tmp_path / "topk", rng, 6, 24, architecture="topk", k=3)
    assert detect_format(tmp_path / "topk").extra["k"] == 3
    syn.write_saelens(tmp_path / "jr", rng, 6, 24, architecture="jumprelu")
    assert detect_format(tmp_path / "jr").architecture == "jumprelu"
    syn.write_saelens(tmp_path / "tc", rng, 6, 24, d_out=5, skip=True, apply_b_dec_to_input=False)
    i = detect_format(tmp_path / "tc")
    assert (i.kind_hint, i.d_out, i.extra["skip"], i.extra["hook_name_out"]) == \
        ("transcoder", 5, True, "blocks.0.hook_mlp_out")
    syn.write_circuit_tracer_transcoder(tmp_path / "ct.safetensors", rng, 6, 30, jumprelu=True)
    i = detect_format(tmp_path / "ct.safetensors")
    assert (i.format, i.kind_hint, i.architecture, i.d_in, i.d_sae) == \
        ("circuit_tracer_transcoder", "transcoder", "jumprelu", 6, 30)
    syn.write_clt(tmp_path / "clt", rng, 3, 6, 10)
    i = detect_format(tmp_path / "clt")
    assert (i.format, i.kind_hint, i.n_layers, i.d_in, i.d_sae, len(i.files)) == \
        ("circuit_tracer_clt", "clt", 3, 6, 10, 6)
    syn.write_sparsify(tmp_path / "sp", rng, 6, k=4, expansion_factor=3)
    i = detect_format(tmp_path / "sp")
    assert (i.format, i.kind_hint, i.d_sae, i.extra["k"]) == ("sparsify", "sae", 18, 4)
    save_file({"weight": np.zeros((3, 6), np.float32), "bias": np.zeros(3, np.float32)},
              str(tmp_path / "probe.safetensors"))
    i = detect_format(tmp_path / "probe.safetensors")
    assert (i.kind_hint, i.d_in, i.d_sae) == ("probe", 6, 3)
    (tmp_path / "bl").mkdir()
    save_file({"baseline": np.zeros(6, np.float32)}, str(tmp_path / "bl" / "baseline.safetensors"))
    assert detect_format(tmp_path / "bl").kind_hint == "attribution_baseline"
    (tmp_path / "labels.json").write_text(json.dumps({"0": "fraud ring", "7": "night-time"}))
    i = detect_format(tmp_path / "labels.json")
    assert (i.kind_hint, i.extra["n_labels"]) == ("feature_labels", 2)
    json.dumps(i.to_dict())


def test_shape_inconsistencies_name_the_tensor(tmp_path):
    rng = np.random.default_rng(1)
    t = syn.write_saelens(tmp_path / "a", rng, 6, 24)
    t["W_dec"] = t["W_dec"][:20]
    save_file(t, str(tmp_path / "a" / "sae_weights.safetensors"))
    with pytest.raises(InputError, match="W_dec has 20 rows but W_enc has 24"):
        detect_format(tmp_path / "a")
    syn.write_saelens(tmp_path / "b", rng, 6, 24)
    cfg = json.loads((tmp_path / "b" / "cfg.json").read_text())
    cfg["d_sae"] = 32
    (tmp_path / "b" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="d_sae=32 but the weights say 24"):
        detect_format(tmp_path / "b")
    syn.write_clt(tmp_path / "clt", rng, 3, 6, 10)
    save_file({"W_dec_1": np.zeros((10, 3, 6), np.float32)}, str(tmp_path / "clt" / "W_dec_1.safetensors"))
    with pytest.raises(InputError, match=r"W_dec_1.safetensors: tensor 'W_dec_1' has shape \[10, 3, 6\], expected \[10, 2, 6\]"):
        detect_format(tmp_path / "clt")
    syn.write_clt(tmp_path / "clt2", rng, 3, 6, 10)
    save_file({"W_enc_2": np.zeros((11, 6), np.float32), "b_enc_2": np.zeros(11, np.float32),
               "b_dec_2": np.zeros(6, np.float32)}, str(tmp_path / "clt2" / "W_enc_2.safetensors"))
    with pytest.raises(InputError, match="W_enc_2.safetensors: tensor 'W_enc_2' has shape"):
        detect_format(tmp_path / "clt2")
    (tmp_path / "clt2" / "W_dec_1.safetensors").unlink()
    with pytest.raises(InputError, match="missing W_dec_1.safetensors"):
        detect_format(tmp_path / "clt2")
    syn.write_sparsify(tmp_path / "sp", rng, 6, k=4, expansion_factor=3)
    cfg = json.loads((tmp_path / "sp" / "cfg.json").read_text())
    cfg["expansion_factor"] = 4
    (tmp_path / "sp" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="give 24 latents, encoder.weight has 18"):
        detect_format(tmp_path / "sp")
    syn.write_saelens(tmp_path / "tk", rng, 6, 24, architecture="topk", k=None)
    with pytest.raises(InputError, match="TopK SAE needs"):
        detect_format(tmp_path / "tk")
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match="not a recognised artifact folder"):
        detect_format(tmp_path / "x")
    (tmp_path / "bad.json").write_text(json.dumps({"a": "b"}))
    with pytest.raises(InputError, match="not '<feature index>'"):
        detect_format(tmp_path / "bad.json")


def test_corrupted_headers(tmp_path):
    p = tmp_path / "t.safetensors"
    save_file({"W_enc": np.zeros((4, 6), np.float32)}, str(p))
    good = p.read_bytes()
    assert read_safetensors_header(p).tensors["W_enc"].shape == (4, 6)
    p.write_bytes(good[:50])  # truncated data
    with pytest.raises(InputError, match="corrupted safetensors header: t.safetensors"):
        read_safetensors_header(p)
    p.write_bytes(struct.pack("<Q", 10**12) + good[8:])
    with pytest.raises(InputError, match="header length"):
        read_safetensors_header(p)
    hdr = json.dumps({"W_enc": {"dtype": "F32", "shape": [4, 6], "data_offsets": [0, 999]}}).encode()
    p.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 96)
    with pytest.raises(InputError, match="data offsets"):
        read_safetensors_header(p)
    hdr = json.dumps({"W_enc": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}).encode()
    p.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 4)
    with pytest.raises(InputError, match="dtype"):
        read_safetensors_header(p)


def test_hash_verification(tmp_path):
    torch = pytest.importorskip("torch")
    from compliance.interp.loaders import load_artifact

    rng = np.random.default_rng(2)
    syn.write_saelens(tmp_path / "a", rng, 6, 24)
    hashes = file_hashes(tmp_path / "a")
    assert set(hashes) == {"cfg.json", "sae_weights.safetensors"}
    assert load_artifact(tmp_path / "a", hashes).n_features == 24
    w = tmp_path / "a" / "sae_weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF  # flip a bit in the weights, header untouched
    w.write_bytes(bytes(data))
    with pytest.raises(InputError, match="hash mismatch: sae_weights.safetensors"):
        load_artifact(tmp_path / "a", hashes)
    with pytest.raises(InputError, match="no expected SHA-256 given for cfg.json"):
        load_artifact(tmp_path / "a", {"sae_weights.safetensors": hashes["sae_weights.safetensors"]})
    # NaN weights are rejected at load
    t = syn.write_saelens(tmp_path / "n", rng, 6, 24)
    t["b_enc"][3] = np.nan
    save_file(t, str(tmp_path / "n" / "sae_weights.safetensors"))
    with pytest.raises(InputError, match="'b_enc' contains NaN"):
        load_artifact(tmp_path / "n")
    assert torch is not None


# ----------------------------------------------------------------- status
def test_fidelity_status_thresholds():
    assert fidelity_status({"explained_variance": 0.9}, None, {}) == ("pass", [])
    s, r = fidelity_status({"explained_variance": 0.75}, None, {})
    assert s == "warn" and "0.8" in r[0]
    assert fidelity_status({"explained_variance": 0.59}, None, {})[0] == "fail"
    assert fidelity_status({"explained_variance": 0.85}, 0.97, {})[0] == "warn"  # decay 0.12
    assert fidelity_status({"explained_variance": 0.85}, 1.06, {})[0] == "fail"  # decay 0.21
    assert fidelity_status({"explained_variance": 0.9, "dead_fraction": 0.3}, None, {})[0] == "warn"
    assert fidelity_status({"explained_variance": 0.9, "decision_flip_rate": 0.02}, None, {})[0] == "warn"
    assert fidelity_status({"explained_variance": 0.9, "decision_flip_rate": 0.06}, None, {})[0] == "fail"
    assert fidelity_status({"explained_variance": None}, None, {})[0] == "error"
    assert fidelity_status({"explained_variance": float("nan")}, None, {})[0] == "error"
    # policy overrides, nested or flat
    assert fidelity_status({"explained_variance": 0.75}, None, {"fidelity": {"ev_warn": 0.7}})[0] == "pass"
    assert fidelity_status({"explained_variance": 0.75}, None, {"ev_fail": 0.76})[0] == "fail"


def test_other_statuses():
    assert overhead_status({"overhead_ratio": 0.05}) == ("pass", [])
    assert overhead_status({"overhead_ratio": 0.09})[0] == "warn"
    assert overhead_status({"overhead_ratio": 0.2})[0] == "fail"
    assert overhead_status({"overhead_ratio": 0.2}, {"overhead": {"overhead_budget": 0.5}})[0] == "pass"
    assert alignment_status({"survival_share": 0.4})[0] == "warn"
    assert alignment_status({"survival_share": 0.4}, {"survival_fail": 0.45})[0] == "fail"
    assert alignment_status({"survival_share": 0.9, "cka": 0.95})[0] == "pass"
    assert alignment_status({})[0] == "error"
    m = {"psi": 0.05, "n_features": 100, "n_newly_dead": 1, "dead_fraction_current": 0.01,
         "dense_fraction_current": 0.0}
    assert activation_drift_status(m)[0] == "pass"
    assert activation_drift_status(m | {"psi": 0.3})[0] == "fail"
    assert activation_drift_status(m | {"n_newly_dead": 10})[0] == "warn"


def test_circuit_tracer_metadata_hooks_and_probe_folder(tmp_path):
    rng = np.random.default_rng(3)
    t = syn.write_circuit_tracer_transcoder(tmp_path / "l.safetensors", rng, 6, 12)
    save_file(t, str(tmp_path / "layer_1.safetensors"),
              metadata={"feature_input_hook": "blocks.1.hook_resid_pre",
                        "feature_output_hook": "blocks.1.hook_mlp_out", "layer": "1"})
    i = detect_format(tmp_path / "layer_1.safetensors")
    assert (i.hook_name, i.extra["hook_name_out"], i.extra["layer"]) == \
        ("blocks.1.hook_resid_pre", "blocks.1.hook_mlp_out", 1)
    (tmp_path / "probe").mkdir()
    save_file({"weight": np.ones((1, 6), np.float32), "bias": np.zeros(1, np.float32)},
              str(tmp_path / "probe" / "probe.safetensors"))
    (tmp_path / "probe" / "cfg.json").write_text(json.dumps({"hook_name": "hook_resid_final"}))
    i = detect_format(tmp_path / "probe")
    assert i.kind_hint == "probe" and i.hook_name == "hook_resid_final"
    assert [f.name for f in i.files] == ["cfg.json", "probe.safetensors"]
    assert set(file_hashes(tmp_path / "probe")) == {"cfg.json", "probe.safetensors"}
    pytest.importorskip("torch")
    from compliance.interp.loaders import load_artifact

    probe = load_artifact(tmp_path / "probe", file_hashes(tmp_path / "probe"))
    assert probe.logits(__import__("torch").ones(2, 6)).tolist() == [[6.0], [6.0]]
