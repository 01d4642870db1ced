"""Regenerate the whole sample bank from seeds: ``python -m sample_data.build [--out DIR]``.

Writes, under ``out``: ``data/*.parquet`` (one file per population and quarter), ``models/<id>/<v>.safetensors``,
``artifacts/<model>/<artifact>/...`` (ecosystem formats), ``manifest.yaml`` (importable book),
``story.yaml`` (the year's events, replayed by the demo through the real checks) and ``BUILD.json``
(generator version, seed, SHA-256 of every file; written last, so its presence means "complete").
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from . import artifacts as A
from .book import ARTIFACT_BY_ID, ARTIFACTS, DEV_FILE, MODELS, MONTH_FILES, QUARTER_FILES, artifact_entry, outcome_snapshots, story_events
from .data import MONTH_EXTRACTS, QUARTER_END, QUARTER_START, QUARTERS, SCHEMA, column_roles, generate, month_rows
from .outcomes import outcome_frame
from .models import Encoding, ResidualMLP, load_module, save_model, train

GENERATOR_VERSION = "sample-bank/4"  # 3: development data per version, July extracts, column roles; 4: outcome snapshots
DEFAULT_SEED = 20251001
ROWS_PER_QUARTER = 20_000
BUILD_THREADS = 1  # small matmuls gain little from threads; one thread is robust on a busy machine
DEFAULT_OUT = Path(__file__).resolve().parent / "generated"
_OUTPUT_DIRS = ("data", "outcomes", "models", "artifacts")
_OUTPUT_FILES = ("manifest.yaml", "story.yaml", "BUILD.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _complete(out: Path, seed: int) -> bool:
    marker = out / "BUILD.json"
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return False
    if info.get("generator") != GENERATOR_VERSION or info.get("seed") != seed:
        return False
    return all((out / rel).is_file() and (rel == "story.yaml" or (out / rel).stat().st_size == size)
               for rel, size in info["sizes"].items())


def _story_text() -> str:
    return yaml.safe_dump({"events": story_events()}, sort_keys=False, width=120)


def _refresh_story(out: Path) -> None:
    """The story is declarative (book.py), nothing in it is trained: a complete bank whose story.yaml
    differs from the current story gets it rewritten in place (and BUILD.json updated), not rebuilt."""
    text = _story_text()
    p = out / "story.yaml"
    if p.is_file() and p.read_text() == text:
        return
    p.write_text(text)
    marker = out / "BUILD.json"
    info = json.loads(marker.read_text())
    info["sha256"]["story.yaml"] = _sha256(p)
    info["sizes"]["story.yaml"] = p.stat().st_size
    marker.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


class _Determinism:
    """Fixed threads, deterministic kernels, no denormals; restored on exit."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        self.det = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(BUILD_THREADS)
        torch.use_deterministic_algorithms(True)
        torch.set_flush_denormal(True)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.det)
        torch.set_flush_denormal(False)


def capture(model: ResidualMLP, x: torch.Tensor, hooks: list[str]) -> dict[str, torch.Tensor]:
    """Run the model once and return the activations at the named hook points."""
    got: dict[str, torch.Tensor] = {}
    points = model.hook_points()
    handles = [points[h].register_forward_hook(lambda m, i, o, h=h: got.__setitem__(h, o.detach().clone()))
               for h in hooks]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hd in handles:
            hd.remove()
    return got


def train_version(spec, vspec, frames: dict[str, pd.DataFrame], parent: ResidualMLP | None, seed: int):
    sc = SCHEMA[spec.domain]
    tr = _training_frame(vspec, frames)
    enc = Encoding.fit(tr, sc["numeric"], sc["categorical"])
    x = enc.encode(tr)
    y = torch.tensor(tr[sc["label"]].to_numpy(), dtype=torch.float32)
    torch.manual_seed(seed)
    if parent is None:
        model = ResidualMLP(enc.n_inputs, spec.d_model, spec.d_mlp, spec.n_blocks)
        if model.embed.in_features != enc.n_inputs:
            raise AssertionError("encoding width")
        train(model, x, y, epochs=spec.epochs, lr=spec.lr, seed=seed, batch_size=1024)
    else:  # warm start from the parent; the encoding is refitted on the new window
        model = copy.deepcopy(parent)
        train(model, x, y, epochs=spec.ft_epochs, lr=vspec.ft_lr or spec.ft_lr, seed=seed, batch_size=1024)
    return model, enc, tr


def _version_seed(seed: int, model_id: str, version: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{model_id}/{version}".encode()).digest()[:4], "big")


def build(out: Path = DEFAULT_OUT, *, force: bool = False, progress: Callable[[str], None] | None = None,
          seed: int = DEFAULT_SEED) -> Path:
    """Build the sample bank into ``out`` and return the manifest path (at once if already built)."""
    out = Path(out)
    say = progress or (lambda msg: None)
    if not force and _complete(out, seed):
        _refresh_story(out)
        say(f"sample bank already built in {out}")
        return out / "manifest.yaml"
    out.mkdir(parents=True, exist_ok=True)
    for d in _OUTPUT_DIRS:
        shutil.rmtree(out / d, ignore_errors=True)
    for f in _OUTPUT_FILES:
        (out / f).unlink(missing_ok=True)
    t0 = time.perf_counter()
    with _Determinism():
        # ---- data
        frames: dict[str, dict[str, pd.DataFrame]] = {}
        for domain in SCHEMA:
            frames[domain] = {q: generate(domain, q, ROWS_PER_QUARTER, seed) for q in QUARTERS}
            for q, fr in frames[domain].items():
                p = out / QUARTER_FILES[domain].format(q=q)
                p.parent.mkdir(parents=True, exist_ok=True)
                fr.to_parquet(p, index=False, compression="zstd")
            for month, q in MONTH_EXTRACTS.items():  # a month's extract, usable before its quarter closes
                p = out / MONTH_FILES[domain].format(m=month)
                month_rows(domain, frames[domain][q], month).to_parquet(p, index=False, compression="zstd")
        for spec in MODELS:  # development data: what each version was trained on (the drift reference)
            for vspec in spec.versions:
                p = out / DEV_FILE.format(domain=spec.domain, q0=vspec.train_quarters[0], q1=vspec.train_quarters[-1])
                if not p.exists():
                    pd.concat([frames[spec.domain][q] for q in vspec.train_quarters], ignore_index=True) \
                        .to_parquet(p, index=False, compression="zstd")
        for path, population, period, known in outcome_snapshots(story_events()):
            src = frames[population].get(period)
            if src is None:  # a month's extract
                src = month_rows(population, frames[population][MONTH_EXTRACTS[period]], period)
            p = out / path
            p.parent.mkdir(parents=True, exist_ok=True)
            outcome_frame(src, population, date.fromisoformat(known)).to_parquet(p, index=False, compression="zstd")
        say(f"data written ({time.perf_counter() - t0:.1f}s)")
    # ---- models and their artifacts, as a graph run on a small process pool (see _run_graph)
    _run_graph(frames, out, seed, lambda msg: say(f"{msg} ({time.perf_counter() - t0:.1f}s)"))
    # ---- manifest + story
    manifest = _manifest(out)
    (out / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False, width=120))
    (out / "story.yaml").write_text(_story_text())
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "BUILD.json"
                   and p.relative_to(out).parts[0] in _OUTPUT_DIRS + _OUTPUT_FILES)
    info = {"generator": GENERATOR_VERSION, "seed": seed, "rows_per_quarter": ROWS_PER_QUARTER,
            "torch": torch.__version__, "threads": BUILD_THREADS,
            "build_seconds": round(time.perf_counter() - t0, 2),
            "sha256": {str(p.relative_to(out)): _sha256(p) for p in files},
            "sizes": {str(p.relative_to(out)): p.stat().st_size for p in files}}
    (out / "BUILD.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    say(f"sample bank built in {out} ({info['build_seconds']}s)")
    return out / "manifest.yaml"


# Models and their artifacts form a graph: a version is warm-started from its parent, an artifact is
# trained on its bound version. Each node reads what it needs back from the weights files its
# dependencies wrote (bit-exact float32) and runs single-threaded and seeded, so the bytes do not depend
# on where or in which order the nodes run: a serial build and a pool build are identical (BUILD.json).
# NODE_COST: seconds of each node on one core (measured serially, 2026-11-30); the pool starts the
# ready node with the longest remaining path first, so the critical path (sme-limit v1 -> v2 -> the
# wide SAE) starts at once and the rest fills the other worker.
NODE_COST = {
    ("version", "retail-pd", "v1"): 10, ("version", "retail-pd", "v2"): 5, ("version", "retail-pd", "v3"): 3.5,
    ("version", "retail-pd", "v4"): 2, ("version", "card-fraud", "v1"): 12.5, ("version", "card-fraud", "v2"): 12.5,
    ("version", "card-fraud", "v3"): 6, ("version", "sme-limit", "v1"): 10, ("version", "sme-limit", "v2"): 11,
    ("version", "sme-limit", "v3"): 11.5, ("version", "collections-priority", "v1"): 1.5,
    ("version", "collections-priority", "v2"): 1,
    ("artifact", "retail-pd-sae-l1-v1"): 5, ("artifact", "retail-pd-sae-l1-v3"): 4.5,
    ("artifact", "retail-pd-probe-age-v1"): 0.5, ("artifact", "card-fraud-sae-l2-v3"): 5.5,
    ("artifact", "sme-limit-tc-l0-v1"): 5.5, ("artifact", "sme-limit-tc-l1-v1"): 6, ("artifact", "sme-limit-tc-l2-v1"): 6.5,
    ("artifact", "sme-limit-clt-v2"): 12.5, ("artifact", "sme-limit-sae-wide-v2"): 22.5,
}
Node = tuple


def build_graph() -> dict[Node, list[Node]]:
    """Every node with the nodes it needs, in the book's order."""
    deps: dict[Node, list[Node]] = {}
    for spec in MODELS:
        prev = None
        for v in spec.versions:
            deps[("version", spec.id, v.version)] = [("version", spec.id, prev)] if prev else []
            prev = v.version
    for a in ARTIFACTS:
        deps[("artifact", a.id)] = [("version", a.model, a.bound_version)]
    return deps


def critical_paths(deps: dict[Node, list[Node]]) -> dict[Node, float]:
    """Each node's cost plus the longest chain of nodes that wait on it (its scheduling priority)."""
    users: dict[Node, list[Node]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in ds:
            users[d].append(n)
    memo: dict[Node, float] = {}

    def path(n: Node) -> float:
        if n not in memo:
            memo[n] = NODE_COST.get(n, 1.0) + max((path(u) for u in users[n]), default=0.0)
        return memo[n]

    return {n: path(n) for n in deps}


def build_workers(nodes: int) -> int:
    """Processes for the model graph: ``COMPLIANCE_BUILD_WORKERS``, else 2 where there are 2 cores."""
    import os

    want = os.environ.get("COMPLIANCE_BUILD_WORKERS")
    n = int(want) if want and want.isdigit() else min(2, os.cpu_count() or 1)
    return max(1, min(n, nodes))


def _run_graph(frames: dict[str, dict[str, pd.DataFrame]], out: Path, seed: int, say: Callable[[str], None]) -> None:
    deps = build_graph()
    workers = build_workers(len(deps))
    prio = critical_paths(deps)
    domain = {spec.id: spec.domain for spec in MODELS}
    model_of = lambda n: n[1] if n[0] == "version" else ARTIFACT_BY_ID[n[1]].model  # noqa: E731
    done: set[Node] = set()
    pending = set(deps)

    def ready() -> list[Node]:
        return sorted((n for n in pending if all(d in done for d in deps[n])), key=lambda n: -prio[n])

    if workers <= 1:
        while pending:
            n = ready()[0]
            pending.discard(n)
            say(_build_node(n, frames[domain[model_of(n)]], out, seed))
            done.add(n)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        running: dict = {}
        while pending or running:
            for n in ready()[:workers - len(running)]:
                pending.discard(n)
                running[pool.submit(_build_node, n, frames[domain[model_of(n)]], out, seed)] = n
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                say(f.result())
                done.add(running.pop(f))


def _training_frame(vspec, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([frames[q] for q in vspec.train_quarters], ignore_index=True)


def _build_node(node: Node, frames: dict[str, pd.DataFrame], out: Path, seed: int) -> str:
    """Train one version (warm-started from its parent's weights file) or one artifact (on its bound
    version's weights file); returns the progress line. Runs in a pool worker or here."""
    with _Determinism():
        if node[0] == "version":
            _, model_id, version = node
            spec = next(m for m in MODELS if m.id == model_id)
            i = next(i for i, v in enumerate(spec.versions) if v.version == version)
            vspec = spec.versions[i]
            parent = load_module(out / spec.versions[i - 1].weights)[0] if i else None
            s = _version_seed(seed, spec.id, vspec.version)
            model, enc, _ = train_version(spec, vspec, frames, parent, s)
            save_model(model, out / vspec.weights, arch=dict(n_inputs=enc.n_inputs, d_model=spec.d_model,
                                                             d_mlp=spec.d_mlp, n_blocks=spec.n_blocks),
                       encoding=enc, label_column=SCHEMA[spec.domain]["label"],
                       decision_threshold=spec.threshold,
                       extra={"model_id": spec.id, "version": vspec.version, "data_domain": spec.domain,
                              "train_window": vspec.data_window, "generator": GENERATOR_VERSION,
                              "seed": str(s)})
            return f"model {model_id} {version}"
        art = ARTIFACT_BY_ID[node[1]]
        spec = next(m for m in MODELS if m.id == art.model)
        vspec = next(v for v in spec.versions if v.version == art.bound_version)
        model, enc, _ = load_module(out / vspec.weights)
        _build_artifact(art, model, enc, _training_frame(vspec, frames), out, seed)
        return f"artifact {art.id}"


def _build_artifact(art, model: ResidualMLP, enc: Encoding, tr: pd.DataFrame, out: Path, seed: int) -> None:
    s = _version_seed(seed, art.id, "artifact")
    folder = out / art.path
    x = enc.encode(tr)
    model_name = f"{art.model}@{art.bound_version}"
    if art.kind == "sae":
        acts = capture(model, x, [art.hook])[art.hook]
        p = A.train_sae(acts, d_sae=art.d, arch=art.arch, k=art.k, seed=s, l1=art.l1, steps=art.steps,
                        apply_b_dec_to_input=art.apply_b_dec, refit=art.d <= 512, jump_quantile=art.jump_quantile)
        A.write_sae(folder, p, arch=art.arch, hook_name=art.hook, model_name=model_name, k=art.k,
                    apply_b_dec_to_input=art.apply_b_dec)
        if art.labels:
            feats = A.sae_encode(acts, p, art.arch, art.k, art.apply_b_dec).numpy()
            labels = A.label_features(feats, x.numpy(), enc.feature_names)
            A._write_json(labels, folder / "labels.json")
    elif art.kind == "transcoder":
        layer = art.layer
        got = capture(model, x, [f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_mlp_out"])
        p = A.train_transcoder(got[f"blocks.{layer}.hook_resid_pre"], got[f"blocks.{layer}.hook_mlp_out"],
                               d_tc=art.d, seed=s, l1=art.l1, steps=art.steps)
        A.write_transcoder(out / art.path, p, layer=layer, hook_in=art.hook, hook_out=art.hook_out)
    elif art.kind == "clt":
        L = len(model.blocks)
        names = [f"blocks.{i}.hook_resid_pre" for i in range(L)] + [f"blocks.{i}.hook_mlp_out" for i in range(L)]
        got = capture(model, x, names)
        p = A.train_clt([got[f"blocks.{i}.hook_resid_pre"] for i in range(L)],
                        [got[f"blocks.{i}.hook_mlp_out"] for i in range(L)], d_tc=art.d, seed=s, l1=art.l1,
                        steps=art.steps)
        A.write_clt(folder, p, L)
        A._write_json({"d_tc": art.d, "n_layers": L, "feature_input_hook": "blocks.{layer}.hook_resid_pre",
                       "feature_output_hook": "blocks.{layer}.hook_mlp_out", "model_name": model_name},
                      folder / "config.json")
    elif art.kind == "probe":
        acts = capture(model, x, [art.hook])[art.hook]
        col, op, value = art.probe_target
        ops = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less, "==": np.equal}
        target = torch.tensor(ops[op](tr[col].to_numpy(), value).astype(np.float32))
        p = A.train_probe(acts, target, seed=s)
        A.write_probe(folder, p, {"hook_name": art.hook, "target": art.probe_description,
                                  "target_column": col, "target_op": op, "target_value": value,
                                  "model_name": model_name, "d_in": int(acts.shape[1]),
                                  "positive_rate_train": round(float(target.mean()), 6)})
    elif art.kind == "attribution_baseline":
        A.write_baseline(folder, x.mean(0), {"method": "integrated_gradients", "n_inputs": int(x.shape[1]),
                                             "reference": "mean of the encoded training inputs",
                                             "feature_names": enc.feature_names, "model_name": model_name,
                                             "n_steps": 64})
    elif art.kind == "feature_labels":
        pass  # the labels file is written with its SAE
    else:  # pragma: no cover
        raise ValueError(art.kind)


MONTH_EXTRACTS_WINDOWS = {m: (f"{m}-01", str((pd.Period(m, "M").end_time).date())) for m in MONTH_EXTRACTS}


def _manifest(out: Path) -> dict:
    models, versions, deployments, datasets = [], [], [], []
    for spec in MODELS:
        models.append({"id": spec.id, "name": spec.name, "owner": spec.owner, "tier": spec.tier, "use": spec.use,
                       "tags": list(spec.tags), "adapter": "sample_data.adapter:load"})
        prev = None
        for v in spec.versions:
            versions.append({"model": spec.id, "version": v.version, "weights": v.weights,
                             "trained_at": v.trained_at, "data_window": v.data_window, "parent": prev})
            if prev is not None:
                deployments.append({"model": spec.id, "version": prev, "action": "retire", "at": v.deploy_at})
            deployments.append({"model": spec.id, "version": v.version, "action": "deploy", "at": v.deploy_at})
            prev = v.version
        roles = column_roles(spec.domain)
        for q in QUARTERS:
            role = "production" if q >= "2025Q4" else "train"
            datasets.append({"model": spec.id, "path": QUARTER_FILES[spec.domain].format(q=q),
                             "window": f"{QUARTER_START[q]}..{QUARTER_END[q]}", "role": role, "columns": roles})
        for month, (start, end) in MONTH_EXTRACTS_WINDOWS.items():
            datasets.append({"model": spec.id, "path": MONTH_FILES[spec.domain].format(m=month),
                             "window": f"{start}..{end}", "role": "production", "columns": roles})
        for v in spec.versions:
            datasets.append({"model": spec.id, "version": v.version, "role": "train", "window": v.data_window,
                             "path": DEV_FILE.format(domain=spec.domain, q0=v.train_quarters[0], q1=v.train_quarters[-1]),
                             "columns": roles})
    deployments.sort(key=lambda d: (d["at"], d["model"], d["action"] != "retire"))
    return {"format": "compliance-manifest/1", "models": models,
            "versions": versions, "deployments": deployments,
            "artifacts": [artifact_entry(a) for a in ARTIFACTS], "datasets": datasets}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sample_data.build", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: sample_data/generated)")
    ap.add_argument("--force", action="store_true", help="rebuild even if a complete build is there")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)
    path = build(args.out, force=args.force, seed=args.seed, progress=lambda m: print(m, file=sys.stderr))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
