"""The sample bank is real: it builds, its manifest is consistent, and its story holds numerically.

Everything here recomputes from the built files with plain numpy/scipy (not compliance.interp).
The bank is built once per session (about a minute on two cores); set SAMPLE_BANK_DIR to reuse
an existing build folder.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.numpy import load_file
from scipy.optimize import linear_sum_assignment

from sample_data import adapter
from sample_data.build import GENERATOR_VERSION, build

pytestmark = pytest.mark.slow

STORY_ACTIONS = {"register_version", "deploy", "retire", "register_artifact", "validate", "drift", "overhead",
                 "alignment", "activation_drift", "finding", "due_checks", "accept", "performance", "fairness",
                 "plan", "adapt"}
KINDS = {"sae", "transcoder", "clt", "probe", "attribution_baseline", "feature_labels"}


@pytest.fixture(scope="session")
def manifest(bank) -> dict:
    return yaml.safe_load((bank / "manifest.yaml").read_text())


# ---------------------------------------------------------------- numpy reference computations
def explained_variance(x: np.ndarray, xh: np.ndarray) -> float:
    x, xh = x.astype(np.float64), xh.astype(np.float64)
    mse = ((x - xh) ** 2).sum(1).mean()
    var = (x ** 2).sum(1).mean() - (x.mean(0) ** 2).sum()
    return float(1 - mse / var)


def sae_reconstruct(folder: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cfg = json.loads((folder / "cfg.json").read_text())
    w = load_file(str(folder / "sae_weights.safetensors"))
    xin = x - w["b_dec"] if cfg["apply_b_dec_to_input"] else x
    pre = xin @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "standard":
        f = np.maximum(pre, 0)
    elif cfg["architecture"] == "jumprelu":
        f = np.maximum(pre, 0) * (pre > w["threshold"])
    else:
        kth = np.sort(pre, axis=1)[:, -cfg["k"]][:, None]
        f = np.maximum(pre, 0) * (pre >= kth)
    return f @ w["W_dec"] + w["b_dec"], f


def activations(bank: Path, model: str, version: str, data: str, hooks: list[str]) -> dict[str, np.ndarray]:
    lm = adapter.load(bank / f"models/{model}/{version}.safetensors")
    got = {}
    handles = [lm.hook_points[h].register_forward_hook(lambda m, i, o, h=h: got.__setitem__(h, o.detach().numpy()))
               for h in hooks]
    with torch.no_grad():
        lm.module(lm.encode_inputs(pd.read_parquet(bank / data)))
    for hd in handles:
        hd.remove()
    return got


def auc(y: np.ndarray, s: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(s)
    n1 = int(y.sum())
    n0 = len(y) - n1
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    r, c = np.where(r == 0, 1e-4, r), np.where(c == 0, 1e-4, c)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_cat(ref: pd.Series, cur: pd.Series) -> float:
    cats = sorted(set(ref) | set(cur))
    r = ref.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
    c = cur.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
    r, c = np.where(r == 0, 1e-4, r), np.where(c == 0, 1e-4, c)
    return float(np.sum((c - r) * np.log(c / r)))


# ---------------------------------------------------------------- the manifest and the story
def test_manifest_is_complete_and_consistent(bank, manifest):
    assert manifest["format"] == "compliance-manifest/1"
    models = {m["id"]: m for m in manifest["models"]}
    assert {1, 2, 3} <= {m["tier"] for m in models.values()}
    versions = {(v["model"], v["version"]): v for v in manifest["versions"]}
    for (mid, _), v in versions.items():
        assert mid in models and (bank / v["weights"]).is_file()
        assert v["parent"] is None or (mid, v["parent"]) in versions
    assert max(sum(1 for k in versions if k[0] == m) for m in models) >= 4
    for d in manifest["deployments"]:
        assert (d["model"], d["version"]) in versions and d["action"] in {"deploy", "retire"}
    arts = {a["id"]: a for a in manifest["artifacts"]}
    for a in arts.values():
        assert a["kind"] in KINDS and (a["model"], a["bound_version"]) in versions
        assert (bank / a["path"]).exists(), a["path"]
        assert a["labels"] is None or (bank / a["labels"]).is_file()
        assert a["replaces"] is None or arts[a["replaces"]]["model"] == a["model"]
    with_artifacts = {a["model"] for a in arts.values()}
    assert [m for m in models if m not in with_artifacts] == ["collections-priority"]
    assert {"standard", "topk", "jumprelu"} <= {
        json.loads((bank / a["path"] / "cfg.json").read_text())["architecture"] for a in arts.values() if a["kind"] == "sae"}
    for d in manifest["datasets"]:
        assert (bank / d["path"]).is_file() and d["model"] in models


def test_story_is_ordered_and_refers_to_the_book(bank, manifest):
    events = yaml.safe_load((bank / "story.yaml").read_text())["events"]
    ats = [e["at"] for e in events]
    assert ats == sorted(ats)
    arts = {a["id"] for a in manifest["artifacts"]}
    versions = {(v["model"], v["version"]) for v in manifest["versions"]}
    art_model = {a["id"]: a["model"] for a in manifest["artifacts"]}
    for e in events:  # an adaptation registers its child under a known id, usable by later events
        if e["do"] == "adapt":
            child = f"{e['artifact']}-adapted-{e['version']}"
            arts.add(child)
            art_model[child] = art_model[e["artifact"]]
    for e in events:
        assert e["do"] in STORY_ACTIONS
        for key in ("artifact", "old", "new"):
            if key in e:
                assert e[key] in arts
        if "version" in e:
            model = e.get("model") or art_model[e.get("artifact") or e["new"]]
            assert (model, e["version"]) in versions
        for key in ("data", "reference", "current"):
            if key in e:
                assert (bank / e[key]).is_file()
    kinds = {e["do"] for e in events}
    assert STORY_ACTIONS <= kinds


def test_story_never_looks_ahead_and_registers_roles(bank, manifest):
    """Every file a story event names has a registered window that ended before the event's day,
    every dataset has column roles with its label as a target, and every version has development data."""
    windows = {d["path"]: d["window"] for d in manifest["datasets"]}
    events = yaml.safe_load((bank / "story.yaml").read_text())["events"]
    named = 0
    quarter_end = {Path(d["path"]).stem.split("_")[1]: d["window"].split("..")[1] for d in manifest["datasets"]
                   if not d.get("version")}
    snapshots = 0
    for e in events:
        for key in ("data", "reference", "current"):
            if key in e and e[key].startswith("outcomes/"):
                # an outcome snapshot: what the bank knew on the event's own day, of a period that had ended
                period, known = Path(e[key]).name.removesuffix(".parquet").split("_", 1)[1].split(".known-")
                assert known == e["at"][:10] and quarter_end[period] < known, (e, period)
                snapshots += 1
            elif key in e:
                end = windows[e[key]].split("..")[1]
                assert end < e["at"][:10], (e, end)
                named += 1
    assert named >= 20 and snapshots >= 8
    labels = {"loans": "default_12m", "cards": "is_fraud", "sme": "limit_breach_12m"}
    for d in manifest["datasets"]:
        domain = Path(d["path"]).name.split("_")[0]
        assert d["columns"]["target"] == [labels[domain]] and labels[domain] not in d["columns"]["input"]
        assert d["columns"]["id"] and d["columns"]["timestamp"]
    dev = {(d["model"], d["version"]) for d in manifest["datasets"] if d.get("version")}
    assert dev == {(v["model"], v["version"]) for v in manifest["versions"]}


def test_adapter_returns_runnable_module_with_hook_points(bank, manifest):
    for v in manifest["versions"]:
        lm = adapter.load(bank / v["weights"])
        n_blocks = lm.metadata["architecture"]["n_blocks"]
        expected = {f"blocks.{i}.hook_{k}" for i in range(n_blocks) for k in ("resid_pre", "mlp_out")}
        assert set(lm.hook_points) == expected | {"hook_resid_final"}
        assert all(isinstance(m, torch.nn.Identity) for m in lm.hook_points.values())
    lm = adapter.load(bank / "models/card-fraud/v3.safetensors")
    frame = pd.read_parquet(bank / "data/cards_2026Q3.parquet").head(50)
    x = lm.encode_inputs(frame)
    assert x.dtype == torch.float32 and x.shape == (50, lm.module.embed.in_features)
    crypto = frame["merchant_category"] == "crypto_exchange"
    assert crypto.any()  # unseen category goes to the "other" slot
    other = lm.metadata["feature_names"].index("merchant_category=__other__")
    assert (x[torch.from_numpy(crypto.to_numpy().copy()), other] == 1).all()
    assert lm.module(x).shape == (50,)
    assert lm.label_column == "is_fraud" and 0 < lm.decision_threshold < 1


# ---------------------------------------------------------------- the story is real
def test_models_are_useful_out_of_time(bank, manifest):
    label = {"retail-pd": ("loans", "default_12m"), "card-fraud": ("cards", "is_fraud"),
             "sme-limit": ("sme", "limit_breach_12m"), "collections-priority": ("loans", "default_12m")}
    for v in manifest["versions"]:
        dom, col = label[v["model"]]
        end = v["data_window"].split("..")[1]
        nxt = {"2025-09-30": "2025Q4", "2025-12-31": "2026Q1", "2026-03-31": "2026Q2", "2026-06-30": "2026Q3"}[end]
        frame = pd.read_parquet(bank / f"data/{dom}_{nxt}.parquet")  # never seen in training
        lm = adapter.load(bank / v["weights"])
        with torch.no_grad():
            s = lm.module(lm.encode_inputs(frame)).numpy()
        assert auc(frame[col].to_numpy(), s) > 0.75, (v["model"], v["version"])


def test_bound_sae_fits_its_version_and_decays_on_the_next(bank):
    hook = "blocks.1.hook_resid_pre"
    folder = bank / "artifacts/retail-pd/sae-l1-v1"
    data = "data/loans_2026Q1.parquet"
    own = activations(bank, "retail-pd", "v1", data, [hook])[hook]
    later = activations(bank, "retail-pd", "v2", data, [hook])[hook]
    ev_own = explained_variance(own, sae_reconstruct(folder, own)[0])
    ev_later = explained_variance(later, sae_reconstruct(folder, later)[0])
    assert ev_own >= 0.9
    assert ev_own - ev_later >= 0.05, (ev_own, ev_later)
    # the replacement, trained on v3, fits v3
    new = activations(bank, "retail-pd", "v3", "data/loans_2026Q2.parquet", [hook])[hook]
    assert explained_variance(new, sae_reconstruct(bank / "artifacts/retail-pd/sae-l1-v3", new)[0]) >= 0.9


def test_drifted_quarter_is_drifted(bank):
    ref, cur = (pd.read_parquet(bank / f"data/loans_{q}.parquet") for q in ("2025Q4", "2026Q3"))
    for col in ("interest_rate", "credit_utilisation", "debt_to_income"):
        assert psi(ref[col].to_numpy(), cur[col].to_numpy()) >= 0.25, col
    assert psi(ref["age"].to_numpy(), cur["age"].to_numpy()) < 0.1  # stable features stay stable
    cref, ccur = (pd.read_parquet(bank / f"data/cards_{q}.parquet") for q in ("2026Q2", "2026Q3"))
    assert "crypto_exchange" not in set(cref["merchant_category"])
    assert psi_cat(cref["merchant_category"], ccur["merchant_category"]) >= 0.25
    assert psi(cref["amount"].to_numpy(), ccur["amount"].to_numpy()) >= 0.1


def test_card_fraud_sae_degrades_under_2026q3_drift(bank):
    hook = "blocks.2.hook_resid_pre"
    folder = bank / "artifacts/card-fraud/sae-l2-v3"
    evs = {}
    for q in ("2026Q2", "2026Q3"):
        a = activations(bank, "card-fraud", "v3", f"data/cards_{q}.parquet", [hook])[hook]
        evs[q] = explained_variance(a, sae_reconstruct(folder, a)[0])
    assert evs["2026Q2"] >= 0.85
    assert evs["2026Q2"] - evs["2026Q3"] > 0.2, evs  # fails the decay policy (> 0.2)


def test_transcoders_and_clt_reconstruct_mlp_outputs(bank):
    hooks = [f"blocks.{i}.hook_{k}" for i in range(3) for k in ("resid_pre", "mlp_out")]
    a1 = activations(bank, "sme-limit", "v1", "data/sme_2025Q4.parquet", hooks)
    for i in range(3):
        w = load_file(str(bank / f"artifacts/sme-limit/tc-v1/layer_{i}.safetensors"))
        assert w["W_enc"].shape == w["W_dec"].shape == (64, 32)
        f = np.maximum(a1[f"blocks.{i}.hook_resid_pre"] @ w["W_enc"].T + w["b_enc"], 0)
        assert explained_variance(a1[f"blocks.{i}.hook_mlp_out"], f @ w["W_dec"] + w["b_dec"]) >= 0.85
    a2 = activations(bank, "sme-limit", "v2", "data/sme_2026Q2.parquet", hooks)
    clt = bank / "artifacts/sme-limit/clt-v2"
    enc = [load_file(str(clt / f"W_enc_{i}.safetensors")) for i in range(3)]
    dec = [load_file(str(clt / f"W_dec_{i}.safetensors"))[f"W_dec_{i}"] for i in range(3)]
    assert [d.shape[1] for d in dec] == [3, 2, 1]
    acts = [np.maximum(a2[f"blocks.{i}.hook_resid_pre"] @ enc[i][f"W_enc_{i}"].T + enc[i][f"b_enc_{i}"], 0)
            for i in range(3)]
    for layer in range(3):
        y = sum(acts[i] @ dec[i][:, layer - i, :] for i in range(layer + 1)) + enc[layer][f"b_dec_{layer}"]
        assert explained_variance(a2[f"blocks.{layer}.hook_mlp_out"], y) >= 0.85


def test_replacement_features_only_partly_survive(bank):
    def dirs(folder):
        w = load_file(str(bank / folder / "sae_weights.safetensors"))
        d, e = w["W_dec"], w["W_enc"].T
        return d / np.linalg.norm(d, axis=1, keepdims=True), e / np.linalg.norm(e, axis=1, keepdims=True)

    d_old, e_old = dirs("artifacts/retail-pd/sae-l1-v1")
    d_new, e_new = dirs("artifacts/retail-pd/sae-l1-v3")
    cos_d = d_old @ d_new.T
    rows, cols = linear_sum_assignment(1 - cos_d)
    cos_e = (e_old @ e_new.T)[rows, cols]
    survived = int(((cos_d[rows, cols] > 0.7) & (cos_e > 0.7)).sum())
    assert 0 < survived < 0.8 * len(rows), survived


def test_wide_sae_is_over_budget_and_others_are_not(bank, manifest):
    def model_flops(version_file):
        arch = adapter.load(bank / version_file).metadata["architecture"]
        return 2 * arch["n_inputs"] * arch["d_model"] + arch["n_blocks"] * 4 * arch["d_model"] * arch["d_mlp"]

    wide = json.loads((bank / "artifacts/sme-limit/sae-wide-v2/cfg.json").read_text())
    small = json.loads((bank / "artifacts/card-fraud/sae-l2-v3/cfg.json").read_text())
    assert 4 * wide["d_in"] * wide["d_sae"] > 1.0 * model_flops("models/sme-limit/v2.safetensors")
    assert 4 * small["d_in"] * small["d_sae"] < 0.1 * model_flops("models/card-fraud/v3.safetensors")
    for layer in range(3):  # a transcoder: encoder + decoder, 2·d·m each
        w = load_file(str(bank / f"artifacts/sme-limit/tc-v1/layer_{layer}.safetensors"))
        assert 4 * w["W_enc"].size < 0.1 * model_flops("models/sme-limit/v1.safetensors")


def test_feature_labels_name_real_inputs(bank):
    labels = json.loads((bank / "artifacts/retail-pd/sae-l1-v1/labels.json").read_text())
    cfg = json.loads((bank / "artifacts/retail-pd/sae-l1-v1/cfg.json").read_text())
    assert sorted(map(int, labels)) == list(range(cfg["d_sae"]))
    named = [v for v in labels.values() if v != "dead feature" and not v.startswith("mixed")]
    assert len(named) >= cfg["d_sae"] // 2
    assert any("utilisation" in v or "debt to income" in v or "delinquencies" in v for v in named)


def test_probe_reads_the_protected_attribute(bank):
    folder = bank / "artifacts/retail-pd/probe-age-v1"
    cfg = json.loads((folder / "cfg.json").read_text())
    assert (cfg["target_column"], cfg["target_op"], cfg["target_value"]) == ("age", ">=", 60)
    w = load_file(str(folder / "probe.safetensors"))
    frame = pd.read_parquet(bank / "data/loans_2026Q1.parquet")  # held out
    a = activations(bank, "retail-pd", "v1", "data/loans_2026Q1.parquet", [cfg["hook_name"]])[cfg["hook_name"]]
    logits = a @ w["weight"][0] + w["bias"][0]
    assert auc((frame["age"] >= 60).to_numpy(), logits) > 0.8


# ---------------------------------------------------------------- determinism and rerun
def test_retraining_gives_identical_weights(bank, tmp_path):
    from sample_data.book import MODELS
    from sample_data.build import DEFAULT_SEED, ROWS_PER_QUARTER, _Determinism, _version_seed, train_version
    from sample_data.data import generate
    from sample_data.models import save_model

    spec = next(m for m in MODELS if m.id == "retail-pd")
    v1 = spec.versions[0]
    frames = {q: generate("loans", q, ROWS_PER_QUARTER, DEFAULT_SEED) for q in v1.train_quarters}
    with _Determinism():
        model, enc, _ = train_version(spec, v1, frames, None, _version_seed(DEFAULT_SEED, spec.id, "v1"))
    from sample_data.build import GENERATOR_VERSION as G

    save_model(model, tmp_path / "v1.safetensors",
               arch=dict(n_inputs=enc.n_inputs, d_model=spec.d_model, d_mlp=spec.d_mlp, n_blocks=spec.n_blocks),
               encoding=enc, label_column="default_12m", decision_threshold=spec.threshold,
               extra={"model_id": spec.id, "version": "v1", "data_domain": "loans", "train_window": v1.data_window,
                      "generator": G, "seed": str(_version_seed(DEFAULT_SEED, spec.id, "v1"))})
    info = json.loads((bank / "BUILD.json").read_text())
    assert info["seed"] == DEFAULT_SEED, "SAMPLE_BANK_DIR holds a build made with another seed"
    got = hashlib.sha256((tmp_path / "v1.safetensors").read_bytes()).hexdigest()
    assert got == info["sha256"]["models/retail-pd/v1.safetensors"]


def test_a_node_rebuilt_alone_from_its_dependencies_files_gives_the_banks_bytes(bank, tmp_path):
    """The pool may run the build graph's nodes in any order and process: a version warm-started
    from its parent's weights file, and an artifact trained on its version's file, come out as the
    bank's own bytes."""
    import shutil

    from sample_data.book import MODELS
    from sample_data.build import DEFAULT_SEED, ROWS_PER_QUARTER, _build_node
    from sample_data.data import QUARTERS, generate

    info = json.loads((bank / "BUILD.json").read_text())
    assert info["seed"] == DEFAULT_SEED, "SAMPLE_BANK_DIR holds a build made with another seed"
    spec = next(m for m in MODELS if m.id == "retail-pd")
    frames = {q: generate("loans", q, ROWS_PER_QUARTER, DEFAULT_SEED) for q in QUARTERS}
    (tmp_path / "models/retail-pd").mkdir(parents=True)
    shutil.copy(bank / spec.versions[0].weights, tmp_path / spec.versions[0].weights)
    assert _build_node(("version", "retail-pd", "v2"), frames, tmp_path, DEFAULT_SEED) == "model retail-pd v2"
    assert _build_node(("artifact", "retail-pd-probe-age-v1"), frames, tmp_path, DEFAULT_SEED) \
        == "artifact retail-pd-probe-age-v1"
    built = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "v1.safetensors"]
    assert len(built) >= 2
    for p in built:
        rel = str(p.relative_to(tmp_path))
        assert hashlib.sha256(p.read_bytes()).hexdigest() == info["sha256"][rel], rel


def test_the_build_graph_starts_with_its_longest_path():
    from sample_data.book import ARTIFACTS, MODELS
    from sample_data.build import NODE_COST, build_graph, critical_paths

    deps = build_graph()
    assert len(deps) == sum(len(m.versions) for m in MODELS) + len(ARTIFACTS)
    assert set(NODE_COST) <= set(deps), "a measured cost for a node the book no longer has"
    assert deps[("version", "sme-limit", "v2")] == [("version", "sme-limit", "v1")]
    assert deps[("artifact", "sme-limit-clt-v2")] == [("version", "sme-limit", "v2")]
    prio = critical_paths(deps)
    first = max((n for n, d in deps.items() if not d), key=prio.get)
    assert first == ("version", "sme-limit", "v1")
    assert prio[first] == pytest.approx(NODE_COST[first] + NODE_COST[("version", "sme-limit", "v2")]
                                        + NODE_COST[("artifact", "sme-limit-sae-wide-v2")])


def test_rebuild_of_a_complete_build_is_immediate(bank):
    t = time.perf_counter()
    assert build(bank) == bank / "manifest.yaml"
    assert time.perf_counter() - t < 5
    assert json.loads((bank / "BUILD.json").read_text())["generator"] == GENERATOR_VERSION
