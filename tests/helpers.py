"""Small, real test inputs built with numpy (no torch): weights files, SAELens folders, manifests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from safetensors.numpy import save_file


def weights_file(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": rng.standard_normal((8, 8)).astype(np.float32)}, str(path))
    return path


def saelens_folder(path: Path, d_in: int = 8, d_sae: int = 16, seed: int = 0, architecture: str = "standard") -> Path:
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {
        "W_enc": rng.standard_normal((d_in, d_sae)).astype(np.float32),
        "b_enc": np.zeros(d_sae, np.float32),
        "W_dec": rng.standard_normal((d_sae, d_in)).astype(np.float32),
        "b_dec": np.zeros(d_in, np.float32),
    }
    if architecture == "jumprelu":
        tensors["threshold"] = np.full(d_sae, 0.1, np.float32)
    save_file(tensors, str(path / "sae_weights.safetensors"))
    cfg = {"architecture": architecture, "d_in": d_in, "d_sae": d_sae, "apply_b_dec_to_input": True,
           "hook_name": "blocks.1.hook_resid_pre", "dtype": "float32", "model_name": "test"}
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


def small_manifest(root: Path) -> Path:
    """A two-model inventory with versions, deployments, an SAE and a dataset."""
    weights_file(root / "models" / "pd-v1.safetensors", 1)
    weights_file(root / "models" / "pd-v2.safetensors", 2)
    weights_file(root / "models" / "fr-v1.safetensors", 3)
    saelens_folder(root / "artifacts" / "pd-sae")
    (root / "artifacts" / "pd-sae" / "labels.json").write_text(json.dumps({"0": "high utilisation", "3": "recent delinquency"}))
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "q1.csv").write_text("income,region\n1.0,north\n2.0,south\n")
    doc = {
        "format": "compliance-manifest/1",
        "models": [
            {"id": "retail-pd", "name": "Retail PD", "owner": "alice", "tier": 1, "use": "PD for retail loans", "tags": ["sr11-7"]},
            {"id": "card-fraud", "name": "Card fraud", "owner": "bob", "tier": 2, "use": "Fraud scoring"},
        ],
        "versions": [
            {"model": "retail-pd", "version": "v1", "weights": "models/pd-v1.safetensors", "trained_at": "2025-09-01T00:00:00Z",
             "data_window": "2025-01-01..2025-06-30"},
            {"model": "retail-pd", "version": "v2", "weights": "models/pd-v2.safetensors", "parent": "v1"},
            {"model": "card-fraud", "version": "v1", "weights": "models/fr-v1.safetensors"},
        ],
        "deployments": [
            {"model": "retail-pd", "version": "v1", "action": "deploy", "at": "2025-10-01T00:00:00Z"},
            {"model": "retail-pd", "version": "v2", "action": "deploy", "at": "2026-01-01T00:00:00Z"},
            {"model": "retail-pd", "version": "v1", "action": "retire", "at": "2026-01-01T00:00:00Z"},
            {"model": "card-fraud", "version": "v1", "action": "deploy", "at": "2025-10-01T00:00:00Z"},
        ],
        "artifacts": [
            {"id": "pd-sae-v1", "model": "retail-pd", "kind": "sae", "bound_version": "v1", "path": "artifacts/pd-sae",
             "labels": "artifacts/pd-sae/labels.json"},
        ],
        "datasets": [{"model": "retail-pd", "path": "data/q1.csv", "window": "2026-01-01..2026-03-31"}],
    }
    m = root / "manifest.yaml"
    m.write_text(yaml.safe_dump(doc, sort_keys=False))
    return m


def old_release(url: str, write) -> None:
    """Write records as release 0.2 could: schema 0002 (no door checks), the door switched off,
    then upgrade to the head."""
    from compliance.store import ledger, migrate
    from compliance.store.engine import session_scope

    migrate.downgrade(url, "0002_methodology_v2")
    saved = ledger.check_row
    ledger.check_row = lambda obj, now: None
    try:
        with session_scope(url, actor="release-0.2", replay=True, check=False) as s:
            write(s)
    finally:
        ledger.check_row = saved
    migrate.upgrade(url)
