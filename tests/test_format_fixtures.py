"""Golden fixtures written by the producers' own code (scripts/make_format_fixtures.py).

Every fixture registers with the right kind and architecture, and its metrics match the
producer's own encode/decode at 1e-5 relative (per member for sets, per layer for CLTs).
No producer is imported here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compliance.interp.fidelity import compute_fidelity, fidelity_from_files, iter_safetensors_batches
from compliance.interp.headers import detect_format, detect_set
from compliance.interp.loaders import load_artifact

ROOT = Path(__file__).resolve().parent / "fixtures" / "formats"
FIXTURES = sorted(p.name for p in ROOT.iterdir() if (p / "reference.json").is_file())
KEYS = ("mse", "explained_variance", "cossim", "l2_ratio", "l0", "l1", "dead_fraction", "dense_fraction")
ARCH = {  # what the registry records as the architecture, by fixture
    "saelens_standard": "standard", "saelens_standard_no_bdec": "standard", "saelens_jumprelu": "jumprelu",
    "saelens_topk": "topk", "saelens_topk_rescale": "topk", "saelens_abstopk": "abstopk",
    "saelens_gated": "gated", "saelens_batchtopk": "jumprelu", "saelens_matryoshka": "jumprelu",
    "saelens_norm_constant": "standard", "saelens_norm_layer": "standard",
    "saelens_transcoder": "standard", "saelens_skip_transcoder": "standard",
    "saelens_transcoder_norm_constant": "standard",
    "saelens_jumprelu_transcoder": "jumprelu", "saelens_jumprelu_skip_transcoder": "jumprelu",
    "saelens_release": "jumprelu", "circuit_tracer_set_jumprelu_skip": "jumprelu",
    "circuit_tracer_set_relu": "standard", "circuit_tracer_clt": "jumprelu", "sparsify_topk": "topk",
    "sparsify_groupmax": "groupmax", "sparsify_skip_sae": "topk", "sparsify_multi": "topk",
    "gemma_scope": "jumprelu", "dictionary_learning_AutoEncoder": "standard",
    "dictionary_learning_AutoEncoderNew": "standard", "dictionary_learning_GatedAutoEncoder": "gated",
    "dictionary_learning_JumpReluAutoEncoder": "jumprelu",
}


def _ref(name: str) -> dict:
    return json.loads((ROOT / name / "reference.json").read_text())


def _close(got: dict, want: dict, where: str) -> None:
    for k in KEYS:
        assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-9), f"{where}: {k} {got[k]} != {want[k]}"
    assert got["n_rows"] == want["n_rows"]


def test_every_fixture_has_an_architecture_and_the_fixtures_are_small():
    assert set(FIXTURES) == set(ARCH)
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert total < 1_000_000


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_matches_the_producer(name):
    ref, art = _ref(name), ROOT / name / "artifact"
    acts = ROOT / name / "activations.safetensors"
    aset = detect_set(art)
    if "members" in ref:
        assert aset is not None and aset.format == ref["format"] and aset.kind_hint == ref["kind"]
        assert [m for m, _, _ in aset.members] == sorted(ref["members"], key=[m for m, _, _ in aset.members].index)
        assert len(aset.members) == len(ref["members"])
        for i, (member, path, info) in enumerate(aset.members):
            assert info.architecture == ARCH[name]
            coder = load_artifact(path, dtype=torch.float64)
            rename = {"activations": f"inputs_{i}", "targets": f"targets_{i}"}
            res = compute_fidelity(coder, iter_safetensors_batches(acts, 50, coder=coder, dtype=torch.float64,
                                                                   rename=rename), device="cpu")
            _close(res.metrics(), ref["members"][member], f"{name}/{member}")
        return
    assert aset is None
    info = detect_format(art)
    assert (info.format, info.kind_hint, info.architecture) == (ref["format"], ref["kind"], ARCH[name])
    res = fidelity_from_files(art, acts, dtype=torch.float64, batch_rows=50, device="cpu")
    if "per_layer" in ref:
        for layer, want in enumerate(ref["per_layer"]):
            _close(res.per_layer[layer], want, f"{name} layer {layer}")
        return
    _close(res.metrics(), ref["metrics"], name)


def test_fixtures_register_with_their_kind_and_architecture(cli, tmp_path):
    (tmp_path / "w.bin").write_bytes(b"weights")
    assert cli("model", "add", "m", "--name", "M", "--owner", "o", "--tier", "2", "--use", "u")[0] == 0
    assert cli("version", "add", "m", "v1", "--weights", tmp_path / "w.bin")[0] == 0
    for name in FIXTURES:
        ref = _ref(name)
        code, out, err = cli("artifact", "add", "m", "--kind", ref["kind"], "--bound-version", "v1",
                             "--path", ROOT / name / "artifact", "--id", name.replace("_", "-").lower(), "--json")
        assert code == 0, (name, err)
        d = json.loads(out)
        assert (d["kind"], d["format"], d["architecture"]) == (ref["kind"], ref["format"], ARCH[name]), name
        if "members" in ref:
            assert d["is_set"] and [m["set_member"] for m in d["member_artifacts"]] == list(d["members"])
            assert {m["set_id"] for m in d["member_artifacts"]} == {d["id"]}
    # a set's fidelity: one check per member, each with the producer's numbers
    sid = "circuit-tracer-set-jumprelu-skip"
    code, out, err = cli("check", "fidelity", sid, "--activations",
                         ROOT / "circuit_tracer_set_jumprelu_skip" / "activations.safetensors", "--json")
    assert code == 0, err
    r = json.loads(out)
    ref = _ref("circuit_tracer_set_jumprelu_skip")["members"]
    assert [c["artifact_id"] for c in r["checks"]] == [f"{sid}/layer_{i}" for i in range(3)]
    for i, c in enumerate(r["checks"]):
        assert c["metrics"]["l0"] == pytest.approx(ref[f"layer_{i}"]["l0"], rel=1e-5)
        assert c["metrics"]["explained_variance"] == pytest.approx(ref[f"layer_{i}"]["explained_variance"], rel=1e-4)
    # one member alone, from the same per-layer file
    code, out, err = cli("check", "fidelity", f"{sid}/layer_1", "--activations",
                         ROOT / "circuit_tracer_set_jumprelu_skip" / "activations.safetensors", "--json")
    assert code == 0, err
    assert json.loads(out)["metrics"]["l0"] == pytest.approx(ref["layer_1"]["l0"], rel=1e-5)
    code, out, _ = cli("check", "list", "--json")
    assert len(json.loads(out)) == 4
