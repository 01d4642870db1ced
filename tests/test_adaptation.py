"""Adaptation (DESIGN §9, issue 15 part 2): warm-start, fine-tune, held-out check, lineage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from sqlalchemy import func, select

from compliance.interp.synthetic import write_activations
from compliance.store.engine import session_scope
from compliance.store.ledger import head
from compliance.store.models import Adaptation, Artifact
from tests.helpers import weights_file

D, M = 16, 32


def _dictionary(rng, shift: float = 0.0, base: np.ndarray | None = None) -> np.ndarray:
    d = rng.standard_normal((M, D)) if base is None else base + shift * rng.standard_normal((M, D))
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


def _rows(rng, dic: np.ndarray, n: int, offset: float = 0.0) -> np.ndarray:
    codes = np.zeros((n, M), np.float32)
    for i in range(n):
        idx = rng.choice(M, 3, replace=False)
        codes[i, idx] = rng.uniform(1.0, 3.0, 3)
    return (codes @ dic + offset).astype(np.float32)


def _parent(folder: Path, dic: np.ndarray) -> None:
    folder.mkdir(parents=True)
    save_file({"W_enc": np.ascontiguousarray(dic.T), "b_enc": np.full(M, -0.5, np.float32), "W_dec": dic,
               "b_dec": np.zeros(D, np.float32)}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({
        "architecture": "standard", "d_in": D, "d_sae": M, "apply_b_dec_to_input": True,
        "normalize_activations": "none", "dtype": "float32", "hook_name": "blocks.0.hook_resid_pre"}))
    (folder / "labels.json").write_text(json.dumps({str(i): f"feature {i}" for i in range(M)}))


@pytest.fixture
def world(cli, tmp_path: Path):
    rng = np.random.default_rng(11)
    dic = _dictionary(rng)
    _parent(tmp_path / "sae", dic)
    new = _dictionary(rng, 0.5, dic)
    acts = tmp_path / "v2.safetensors"
    write_activations(acts, {"activations": _rows(rng, new, 2000, offset=0.3)})
    wide = tmp_path / "wide.safetensors"
    write_activations(wide, {"activations": rng.standard_normal((200, D + 1)).astype(np.float32)})
    nan = tmp_path / "nan.safetensors"
    x = _rows(rng, new, 200)
    x[17, 3] = np.nan
    write_activations(nan, {"activations": x})
    probe = tmp_path / "probe"
    probe.mkdir()
    save_file({"weight": rng.standard_normal((1, D)).astype(np.float32), "bias": np.zeros(1, np.float32)},
              str(probe / "probe.safetensors"))
    assert cli("model", "add", "m", "--name", "M", "--owner", "alice", "--tier", "1", "--use", "credit")[0] == 0
    assert cli("version", "add", "m", "v1", "--weights", weights_file(tmp_path / "w1.safetensors"))[0] == 0
    assert cli("version", "add", "m", "v2", "--weights", weights_file(tmp_path / "w2.safetensors", seed=1),
               "--parent", "v1")[0] == 0
    code, _, err = cli("artifact", "add", "m", "--kind", "sae", "--bound-version", "v1", "--path", tmp_path / "sae",
                       "--id", "sae1", "--labels", tmp_path / "sae" / "labels.json")
    assert code == 0, err
    assert cli("artifact", "add", "m", "--kind", "probe", "--bound-version", "v1", "--path", probe, "--id", "p1")[0] == 0
    return {"root": tmp_path, "acts": acts, "wide": wide, "nan": nan}


def _state(url):
    with session_scope(url, readonly=True) as s:
        return (head(s), s.scalar(select(func.count()).select_from(Adaptation)),
                s.scalar(select(func.count()).select_from(Artifact)))


def test_adapt_registers_child_with_lineage_and_held_out_check(cli, world):
    code, out, err = cli("adapt", "sae1", "--to-version", "v2", "--activations", world["acts"], "--steps", "300",
                         "--seed", "5", "--lr", "3e-3", "--json")
    assert code == 0, err
    r = json.loads(out)
    m = r["metrics"]
    assert r["status"] == "succeeded" and r["child_artifact_id"] == "sae1-adapted-v2"
    assert r["parent_artifact_id"] == "sae1" and r["version"] == "v2" and r["parent_bound_version"] == "v1"
    assert m["explained_variance_after"] > m["explained_variance_before"] + 0.05
    assert m["explained_variance_after"] >= 0.8 and m["steps"] <= 300 and m["flops"] > 0
    assert r["parameters"]["seed"] == 5 and r["parameters"]["budget_steps"] == 300
    assert set(r["input_hashes"]) >= {"parent", "activations", "train_rows", "held_out_rows"}
    assert m["n_held_out_rows"] == 400 and m["n_train_rows"] == 1600
    assert m["survival"]["n_old"] == M and m["survival"]["n_carried_labels"] == m["survival"]["n_survived"]
    chk = r["check"]
    assert chk["artifact_id"] == "sae1-adapted-v2" and chk["version"] == "v2" and chk["kind"] == "fidelity"
    assert chk["metrics"]["n_rows"] == 400 and chk["explained_variance"] == m["explained_variance_after"]
    # saved in the parent's own format (a SAELens folder), beside the lineage manifest
    dest = world["root"] / "sae1-adapted-v2"
    assert {p.name for p in dest.iterdir()} >= {"cfg.json", "sae_weights.safetensors", "lineage.json"}
    assert (dest / "cfg.json").read_bytes() == (world["root"] / "sae" / "cfg.json").read_bytes()
    lineage = json.loads((dest / "lineage.json").read_text())
    assert lineage["parent_artifact"] == "sae1" and lineage["to_version"] == "v2" and lineage["status"] == "succeeded"
    code, out, _ = cli("artifact", "show", "sae1-adapted-v2", "--json")
    child = json.loads(out)
    assert child["bound_version"] == "v2" and child["format"] == "saelens" and child["d_sae"] == M
    assert child["labels_path"]  # the labels of surviving features travel with it
    code, out, _ = cli("adaptations", "--json")
    assert [a["status"] for a in json.loads(out)] == ["succeeded"]
    assert cli("verify")[0] == 0


def test_failed_adaptation_registers_nothing_but_is_recorded(cli, world):
    before = _state(cli.url)
    code, out, err = cli("adapt", "sae1", "--to-version", "v2", "--activations", world["acts"], "--steps", "1",
                         "--lr", "1e-6", "--seed", "1", "--json")
    assert code == 1 and "adaptation failed" in err and "Traceback" not in err
    r = json.loads(out)
    assert r["status"] == "failed" and r["child_artifact_id"] is None and r["check_id"] is None
    after = _state(cli.url)
    assert after[1] == before[1] + 1 and after[2] == before[2]  # recorded, nothing registered
    assert cli("verify")[0] == 0


@pytest.mark.parametrize("args,needle", [
    (("p1", "--to-version", "v2", "--activations", "{acts}", "--steps", "5"), "cannot be adapted"),
    (("sae1", "--to-version", "v2", "--activations", "{wide}", "--steps", "5"), "expected [n, 16]"),
    (("sae1", "--to-version", "v2", "--activations", "{nan}", "--steps", "5"), "nan"),
    (("sae1", "--to-version", "v2", "--activations", "{acts}", "--budget", "0s"), "positive"),
    (("sae1", "--to-version", "v2", "--activations", "{acts}", "--steps", "0"), "positive"),
    (("sae1", "--to-version", "v9", "--activations", "{acts}", "--steps", "5"), "unknown version"),
    (("sae1", "--to-version", "v2", "--activations", "{acts}", "--steps", "5", "--device", "tpu"), "cpu or cuda"),
])
def test_bad_input_one_line_nothing_registered(cli, world, args, needle):
    before = _state(cli.url)
    code, out, err = cli("adapt", *[a.format(**{k: str(v) for k, v in world.items()}) for a in args])
    assert code != 0
    assert needle in err.lower() and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert _state(cli.url) == before
    assert not (world["root"] / "sae1-adapted-v2").exists()


def test_same_seed_data_and_steps_give_the_same_weights(tmp_path):
    import torch

    from compliance.interp.adapt import AdaptData, AdaptSettings, adapted_coder, fine_tune
    from compliance.interp.loaders import load_artifact

    rng = np.random.default_rng(3)
    dic = _dictionary(rng)
    _parent(tmp_path / "sae", dic)
    x = torch.from_numpy(_rows(rng, _dictionary(rng, 0.5, dic), 600))
    parent = load_artifact(tmp_path / "sae")
    runs = [fine_tune(parent, AdaptData({"activations": x}), AdaptSettings(seed=9, max_steps=40, lr=3e-3), device="cpu")
            for _ in range(2)]
    assert runs[0].tensors.keys() == runs[1].tensors.keys()
    assert all(torch.equal(runs[0].tensors[k], runs[1].tensors[k]) for k in runs[0].tensors)
    other = fine_tune(parent, AdaptData({"activations": x}), AdaptSettings(seed=10, max_steps=40, lr=3e-3), device="cpu")
    assert not torch.equal(other.tensors["W_dec"], runs[0].tensors["W_dec"])
    # the parent is untouched and the child keeps its architecture and width
    child = adapted_coder(parent, runs[0])
    assert child.W_enc_t.shape == parent.W_enc_t.shape and child.activation == parent.activation


# ---------------------------------------------------------------- on the sample bank, through the adapter
HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture
def pd_store(cli, bank, tmp_path):
    import shutil

    sae = tmp_path / "sae-l1-v1"  # a copy: the adapted files are written beside the parent
    shutil.copytree(bank / "artifacts/retail-pd/sae-l1-v1", sae)
    assert cli("model", "add", "retail-pd", "--name", "Retail PD", "--owner", "alice", "--tier", "1", "--use", "PD",
               "--adapter", "sample_data.adapter:load")[0] == 0
    for v in ("v1", "v4"):
        rc, _, err = cli("version", "add", "retail-pd", v, "--weights", bank / f"models/retail-pd/{v}.safetensors")
        assert rc == 0, err
    rc, _, err = cli("artifact", "add", "retail-pd", "--kind", "sae", "--bound-version", "v1", "--labels",
                     sae / "labels.json", "--path", sae, "--id", "pd-sae", "--hook", HOOK)
    assert rc == 0, err
    rc, _, err = cli("data", "add", "retail-pd", "--path", bank / "data/loans_2026Q2.parquet",
                     "--window", "2026-04-01..2026-06-30")
    assert rc == 0, err
    assert cli("deploy", "retail-pd", "v4", "--at", "2026-07-01T00:00:00Z")[0] == 0
    return cli


@pytest.mark.slow
def test_due_adapt_adapts_the_stale_sae_then_validates(pd_store, tmp_path):
    cli = pd_store
    code, out, err = cli("check", "run", "--due", "--adapt", "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert [(p["artifact_id"], p["version"], p["state"]) for p in plan["adapt"]] == [("pd-sae", "v4", "stale")]
    code, out, err = cli("check", "run", "--due", "--adapt", "--budget", "60s", "--seed", "3", "--json")
    assert code == 0, err
    o = json.loads(out)
    assert len(o["adapted"]) == 1, [x["why"] for x in o["not_adapted"]]
    (a,) = o["adapted"]
    assert a["status"] == "succeeded" and a["child_artifact_id"] == "pd-sae-adapted-v4"
    assert a["explained_variance_before"] < 0.95 <= a["explained_variance_after"]
    # then validated: the parent's due check ran on v4 and is its own evidence; the child is not due
    assert [(r["artifact_id"], r["version"]) for r in o["ran"]] == [("pd-sae", "v4")]
    ad = json.loads(cli("adaptations", "--model", "retail-pd", "--json")[1])[0]
    assert ad["metrics"]["held_out"]["decision_flip_rate"] is not None  # spliced through the model
    assert ad["input_hashes"]["weights"] and ad["input_hashes"]["data"]
    # a second run finds nothing left to adapt
    assert json.loads(cli("check", "run", "--due", "--adapt", "--dry-run", "--json")[1])["adapt"] == []
    assert cli("verify")[0] == 0


@pytest.mark.slow
def test_due_adapt_respects_the_tier_policy(pd_store, tmp_path):
    cli = pd_store
    f = tmp_path / "p.yaml"
    f.write_text("tiers:\n  '1':\n    adaptation:\n      allowed: false\n")
    assert cli("policy", "set", "--file", f)[0] == 0
    code, out, err = cli("check", "run", "--due", "--adapt", "--json")
    assert code == 0, err
    o = json.loads(out)
    assert o["adapted"] == [] and "does not allow" in o["not_adapted"][0]["why"]
    code, _, err = cli("adapt", "pd-sae", "--to-version", "v4", "--steps", "5")
    assert code != 0 and "does not allow adaptation" in err


@pytest.mark.parametrize("fmt", ["saelens-topk", "saelens-jumprelu", "ct-transcoder", "ct-clt"])
def test_adapted_weights_are_saved_in_the_parents_own_format(tmp_path, fmt):
    """Every writable format round-trips: the files load as the parent's format with the trained
    tensors, thresholds and k kept, configs copied byte for byte."""
    import torch

    from compliance.interp.adapt import AdaptData, AdaptSettings, fine_tune, write_like_parent
    from compliance.interp.fidelity import batch_widths
    from compliance.interp.loaders import load_artifact
    from compliance.interp.synthetic import write_circuit_tracer_transcoder, write_clt, write_saelens

    rng = np.random.default_rng(5)
    src = tmp_path / "parent"
    if fmt == "saelens-topk":
        write_saelens(src, rng, 8, 16, architecture="topk", k=3)
    elif fmt == "saelens-jumprelu":
        write_saelens(src, rng, 8, 16, architecture="jumprelu")
    elif fmt == "ct-transcoder":
        src = tmp_path / "layer_0.safetensors"
        write_circuit_tracer_transcoder(src, rng, 8, 16)
    else:
        write_clt(src, rng, 3, 8, 16)
    parent = load_artifact(src)
    widths = batch_widths(parent)
    data = AdaptData({k: torch.from_numpy(rng.standard_normal((200, w)).astype(np.float32)) for k, w in widths.items()})
    res = fine_tune(parent, data, AdaptSettings(seed=2, max_steps=5, lr=1e-2), device="cpu")
    out = write_like_parent(parent, res, tmp_path / "child")
    child = load_artifact(out)
    assert child.info.format == parent.info.format and type(child) is type(parent)
    if fmt == "ct-clt":
        assert all(torch.allclose(child.W_enc_t[i], res.tensors[f"W_enc_t_{i}"]) for i in range(3))
        assert all(torch.allclose(child.W_dec[i], res.tensors[f"W_dec_{i}"]) for i in range(3))
        assert not torch.equal(child.W_dec[0], parent.W_dec[0])
    else:
        assert torch.allclose(child.W_enc_t, res.tensors["W_enc_t"]) and torch.allclose(child.W_dec, res.tensors["W_dec"])
        assert not torch.equal(child.W_dec, parent.W_dec)
        assert child.activation == parent.activation and child.k == parent.k
        if parent.threshold is not None:
            assert torch.equal(child.threshold, parent.threshold)  # JumpReLU thresholds are kept
    if src.is_dir():
        for f in src.iterdir():
            if f.suffix in (".json", ".yaml"):
                assert (out / f.name).read_bytes() == f.read_bytes()
