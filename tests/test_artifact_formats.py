"""No tensor is ignored, and settings that change the maths are read or refused by name (issue 11).

The producers' own files (tests/fixtures/formats) are copied and altered the ways a silently
wrong read would happen: one extra unknown tensor, a renamed threshold, an unsupported
normalisation. Registration refuses each, naming it, and leaves the store exactly as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from compliance.errors import InputError
from compliance.interp.formats import FORMATS, markdown_table
from compliance.interp.headers import detect_format, detect_set
from tests.test_registry import snapshot

FIX = Path(__file__).resolve().parent / "fixtures" / "formats"


def _copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(FIX / name / "artifact", dst)
    return dst


def _edit(path: Path, fn) -> None:
    t = load_file(str(path))
    fn(t)
    save_file(t, str(path))


def _setup(cli, tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"weights")
    assert cli("model", "add", "m", "--name", "M", "--owner", "o", "--tier", "2", "--use", "u")[0] == 0
    assert cli("version", "add", "m", "v1", "--weights", tmp_path / "w.bin")[0] == 0


def _refused(cli, kind: str, path: Path, *needles: str) -> None:
    before = snapshot(cli.url)
    code, out, err = cli("artifact", "add", "m", "--kind", kind, "--bound-version", "v1", "--path", path)
    assert code != 0 and "Traceback" not in err, (out, err)
    line = err.strip()
    assert "\n" not in line, line
    for n in needles:
        assert n in line, (n, line)
    assert snapshot(cli.url) == before


# ------------------------------------------------------------------ the acceptance
def test_extra_unknown_tensor_is_refused_by_name(cli, tmp_path):
    _setup(cli, tmp_path)
    sae = _copy("saelens_jumprelu", tmp_path)
    _edit(sae / "sae_weights.safetensors", lambda t: t.update(log_feature_sparsity=np.zeros(64, np.float32)))
    _refused(cli, "sae", sae, "'log_feature_sparsity'", "unknown tensor")
    # the same in one layer of a circuit-tracer set: the whole set is refused, nothing registered
    ct = _copy("circuit_tracer_set_jumprelu_skip", tmp_path)
    _edit(ct / "layer_2.safetensors", lambda t: t.update(W_extra=np.zeros((2, 2), np.float32)))
    _refused(cli, "transcoder", ct, "layer_2.safetensors", "'W_extra'")
    sp = _copy("sparsify_multi", tmp_path)
    _edit(sp / "layers.1.mlp" / "sae.safetensors", lambda t: t.update(W_skip=np.zeros((8, 8), np.float32)))
    _refused(cli, "transcoder", sp, "'W_skip'", "skip_connection false")
    clt = _copy("circuit_tracer_clt", tmp_path)
    _edit(clt / "W_dec_1.safetensors", lambda t: t.update(W_dec=t["W_dec_1"]))
    _refused(cli, "clt", clt, "W_dec_1.safetensors", "'W_dec'")


def test_renamed_threshold_is_refused_by_name(cli, tmp_path):
    """circuit-tracer's threshold under another name would read as ReLU: refused instead."""
    _setup(cli, tmp_path)
    ct = _copy("circuit_tracer_set_jumprelu_skip", tmp_path)
    for layer in (ct / "layer_0.safetensors", ct / "layer_1.safetensors", ct / "layer_2.safetensors"):
        _edit(layer, lambda t: t.update(thresholds=t.pop("activation_function.threshold")))
    _refused(cli, "transcoder", ct, "'thresholds'")
    _refused(cli, "transcoder", ct / "layer_0.safetensors", "'thresholds'")
    sae = _copy("saelens_jumprelu", tmp_path)
    _edit(sae / "sae_weights.safetensors", lambda t: t.update(log_threshold=np.log(t.pop("threshold"))))
    _refused(cli, "sae", sae, "'log_threshold'")
    # a circuit-tracer training checkpoint's log_thresholds: refused with circuit-tracer's reason
    one = tmp_path / "lt.safetensors"
    shutil.copy(FIX / "circuit_tracer_set_relu" / "artifact" / "layer_0.safetensors", one)
    _edit(one, lambda t: t.update(log_thresholds=np.zeros(64, np.float32)))
    _refused(cli, "transcoder", one, "log_thresholds", "refused")


@pytest.mark.parametrize("norm", ["expected_average_only_in", "covariance_whitening", "batch_norm"])
def test_unsupported_normalisation_is_refused_by_name(cli, tmp_path, norm):
    _setup(cli, tmp_path)
    sae = _copy("saelens_standard", tmp_path)
    cfg = json.loads((sae / "cfg.json").read_text())
    cfg["normalize_activations"] = norm
    (sae / "cfg.json").write_text(json.dumps(cfg))
    _refused(cli, "sae", sae, f"normalize_activations={norm!r}")


def test_refused_architectures_and_options(tmp_path):
    sae = _copy("saelens_standard", tmp_path)
    cfg = json.loads((sae / "cfg.json").read_text())
    for arch, needle in (("batchtopk", "save_inference_model"), ("temporal", "'temporal'")):
        (sae / "cfg.json").write_text(json.dumps(dict(cfg, architecture=arch)))
        with pytest.raises(InputError, match=needle):
            detect_format(sae)
    (sae / "cfg.json").write_text(json.dumps(dict(cfg, reshape_activations="hook_q")))
    with pytest.raises(InputError, match="reshape_activations='hook_q'"):
        detect_format(sae)
    sp = _copy("sparsify_topk", tmp_path)
    scfg = json.loads((sp / "cfg.json").read_text())
    (sp / "cfg.json").write_text(json.dumps(dict(scfg, activation="batchtopk")))
    with pytest.raises(InputError, match="activation 'batchtopk'"):
        detect_format(sp)
    (sp / "cfg.json").write_text(json.dumps(dict(scfg, signed=True)))
    with pytest.raises(InputError, match="unknown sparsify setting 'signed'"):
        detect_format(sp)
    dl = _copy("dictionary_learning_AutoEncoder", tmp_path)
    dcfg = json.loads((dl / "config.json").read_text())
    dcfg["trainer"]["dict_class"] = "AutoEncoderTopK"
    (dl / "config.json").write_text(json.dumps(dcfg))
    with pytest.raises(InputError, match="dict_class 'AutoEncoderTopK' is refused"):
        detect_format(dl)


def test_dictionary_learning_state_dict_read_without_unpickling(tmp_path):
    import subprocess
    import sys

    import torch

    from compliance.interp.loaders import load_artifact
    from compliance.interp.torch_zip import read_state_dict_header

    dl = _copy("dictionary_learning_AutoEncoder", tmp_path)
    assert read_state_dict_header(dl / "ae.pt")["encoder.weight"] == ("F32", (64, 8))
    code = ("import sys; from compliance.interp.headers import detect_format; "
            f"i = detect_format({str(dl)!r}); assert i.format == 'dictionary_learning'; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    sd = torch.load(dl / "ae.pt", weights_only=True)
    sd["decoder.bias"] = torch.zeros(8)
    torch.save(sd, dl / "ae.pt")
    with pytest.raises(InputError, match="unknown tensor 'decoder.bias'"):
        detect_format(dl)
    with pytest.raises(InputError, match="unknown tensor 'decoder.bias'"):
        load_artifact(dl)
    sd.pop("decoder.bias")
    sd["bias"] = torch.zeros(5)
    torch.save(sd, dl / "ae.pt")
    with pytest.raises(InputError, match=r"'bias' has shape \[5\]"):
        detect_format(dl)
    # anything that is not a plain state dict of tensors is refused, never executed
    torch.save({"w": torch.zeros(2), "cfg": {"lr": 1}}, dl / "ae.pt")
    with pytest.raises(InputError, match="refused|not a tensor|unexpected"):
        read_state_dict_header(dl / "ae.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"w": Evil()}, dl / "ae.pt")
    with pytest.raises(InputError, match="print: not a plain state dict"):
        read_state_dict_header(dl / "ae.pt")


def test_gemma_scope_npz_extra_array_and_pickled_objects(tmp_path):
    src = FIX / "gemma_scope" / "artifact" / "params.npz"
    with np.load(src, allow_pickle=False) as z:
        params = {k: z[k] for k in z.files}
    np.savez(tmp_path / "extra.npz", **params, scaling_factor=np.ones(1, np.float32))
    with pytest.raises(InputError, match="unknown tensor 'scaling_factor'"):
        detect_format(tmp_path / "extra.npz")
    np.savez(tmp_path / "obj.npz", **params | {"threshold": np.array([object()] * 64, dtype=object)})
    with pytest.raises(InputError, match="holds Python objects"):
        detect_format(tmp_path / "obj.npz")
    assert detect_format(src).extra["kinds"] == ["sae", "transcoder"]


def test_single_circuit_tracer_layer_reads_its_jumprelu_threshold(tmp_path):
    """The issue's bug: the layer file alone was read as ReLU (threshold key unknown)."""
    info = detect_format(FIX / "circuit_tracer_set_jumprelu_skip" / "artifact" / "layer_1.safetensors")
    assert (info.architecture, info.extra["threshold_key"], info.extra["skip"], info.extra["layer"]) == \
        ("jumprelu", "activation_function.threshold", True, 1)


def test_set_folders_are_not_single_artifacts(tmp_path):
    with pytest.raises(InputError, match="an artifact set"):
        detect_format(FIX / "circuit_tracer_set_relu" / "artifact")
    s = detect_set(FIX / "circuit_tracer_set_jumprelu_skip" / "artifact")
    assert [m for m, _, _ in s.members] == ["layer_0", "layer_1", "layer_2"]
    assert [i.hook_name for _, _, i in s.members][1] == "blocks.1.hook_resid_mid"
    ct = _copy("circuit_tracer_set_relu", tmp_path)
    (ct / "layer_0.safetensors").rename(ct / "layer_5.safetensors")
    with pytest.raises(InputError, match="not numbered"):
        detect_set(ct)
    assert detect_set(FIX / "saelens_standard" / "artifact") is None


# ------------------------------------------------------------------ the format registry
def test_every_refusal_in_the_code_names_a_registry_row():
    import re

    src = "".join(p.read_text() for p in (Path(__file__).parents[1] / "compliance" / "interp").glob("*.py"))
    options = {(e.format, e.option) for e in FORMATS if e.status == "refused"}
    used = set(re.findall(r'refuse\([^,]+,\s*"([^"]+)",\s*"([^"]+)"', src))
    assert used <= options and used, used - options
    assert markdown_table().count("\n") == len(FORMATS) + 2


def test_add_set_groups_single_artifacts(cli, tmp_path):
    _setup(cli, tmp_path)
    a, b = _copy("saelens_standard", tmp_path / "l0"), _copy("saelens_jumprelu", tmp_path / "l1")
    code, out, err = cli("artifact", "add-set", "m", "--kind", "sae", "--bound-version", "v1",
                         "--member", f"layer_0={a}", "--member", f"layer_1={b}", "--id", "grp", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert (d["id"], d["format"], d["members"]) == ("grp", "saelens_set", ["layer_0", "layer_1"])
    assert [m["architecture"] for m in d["member_artifacts"]] == ["standard", "jumprelu"]
    assert set(d["files"]) == {"l0/saelens_standard/cfg.json", "l0/saelens_standard/sae_weights.safetensors",
                               "l1/saelens_jumprelu/cfg.json", "l1/saelens_jumprelu/sae_weights.safetensors"}
    assert d["member_artifacts"][1]["files"] == {
        "cfg.json": d["files"]["l1/saelens_jumprelu/cfg.json"],
        "sae_weights.safetensors": d["files"]["l1/saelens_jumprelu/sae_weights.safetensors"]}
    acts = tmp_path / "acts.safetensors"
    x = load_file(str(FIX / "saelens_standard" / "activations.safetensors"))["activations"]
    save_file({"inputs_0": x, "inputs_1": x}, str(acts))
    code, out, err = cli("check", "fidelity", "grp", "--activations", acts, "--json")
    assert code == 0, err
    r = json.loads(out)
    want = json.loads((FIX / "saelens_standard" / "reference.json").read_text())["metrics"]
    assert r["checks"][0]["metrics"]["l0"] == pytest.approx(want["l0"], rel=1e-5)
    assert r["checks"][0]["metrics"]["mse"] == pytest.approx(want["mse"], rel=1e-4)
    # refusals: store unchanged
    before = snapshot(cli.url)
    gs = FIX / "gemma_scope" / "artifact" / "params.npz"
    for args, needle in ((["--member", f"a={a}", "--member", f"b={gs}"], "mix formats"),
                         (["--member", f"a={a}", "--member", f"a={b}"], "unique"),
                         (["--member", f"a={FIX / 'circuit_tracer_set_relu' / 'artifact'}"], "itself an artifact set"),
                         (["--member", "nopath"], "NAME=PATH"),
                         (["--member", f"a={a}", "--id", "grp"], "already exists")):
        code, out, err = cli("artifact", "add-set", "m", "--kind", "sae", "--bound-version", "v1", *args)
        assert code != 0 and needle in err, (args, err)
    assert snapshot(cli.url) == before
    code, out, _ = cli("verify", "--json")  # the set and its members are in the hash chain
    assert code == 0 and json.loads(out)["ok"]


def test_clt_cache_folder_with_config_yaml(tmp_path):
    clt = _copy("circuit_tracer_clt", tmp_path)
    (clt / "config.yaml").write_text("model_kind: cross_layer_transcoder\nfeature_input_hook: hook_resid_mid\n"
                                     "feature_output_hook: hook_mlp_out\nscan: x\n")
    i = detect_format(clt)
    assert (i.format, i.n_layers, i.hook_name, i.extra["hook_name_out"]) == \
        ("circuit_tracer_clt", 3, "blocks.{layer}.hook_resid_mid", "blocks.{layer}.hook_mlp_out")
    assert i.files[0].name == "config.yaml"
    (clt / "config.yaml").write_text("model_kind: something_else\n")
    with pytest.raises(InputError, match="model_kind 'something_else'"):
        detect_format(clt)
    s = detect_set(FIX / "sparsify_multi" / "artifact")
    assert [(m, i.hook_name, i.extra["skip"]) for m, _, i in s.members] == \
        [("layers.0.mlp", "layers.0.mlp", True), ("layers.1.mlp", "layers.1.mlp", False)]
