"""Residual-MLP scoring models, their input encoding, training and safetensors I/O.

Architecture (as a transformer's residual stream, minus attention)::

    h = embed(x)                               # Linear(n_inputs, d_model)
    for each block i:
        h = blocks.i.hook_resid_pre(h)
        h = h + blocks.i.hook_mlp_out(MLP(LayerNorm(h)))    # MLP: Linear -> GELU -> Linear
    h = hook_resid_final(h)
    logit = head(LayerNorm(h))

Everything needed to rebuild the module and encode raw data frames is written into the
safetensors ``__metadata__`` (JSON strings), so :func:`load_module` needs nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save as _st_save
from torch import nn

from compliance.errors import InputError

FORMAT = "sample-bank-residual-mlp/1"
OTHER = "__other__"


class Block(nn.Module):
    def __init__(self, d_model: int, d_mlp: int):
        super().__init__()
        self.hook_resid_pre = nn.Identity()
        self.ln = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_mlp), nn.GELU(), nn.Linear(d_mlp, d_model))
        self.hook_mlp_out = nn.Identity()

    def forward(self, h):
        h = self.hook_resid_pre(h)
        return h + self.hook_mlp_out(self.mlp(self.ln(h)))


class ResidualMLP(nn.Module):
    def __init__(self, n_inputs: int, d_model: int, d_mlp: int, n_blocks: int):
        super().__init__()
        self.embed = nn.Linear(n_inputs, d_model)
        self.blocks = nn.ModuleList([Block(d_model, d_mlp) for _ in range(n_blocks)])
        self.hook_resid_final = nn.Identity()
        self.ln_final = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1)

    def forward(self, x):
        h = self.embed(x)
        for b in self.blocks:
            h = b(h)
        return self.head(self.ln_final(self.hook_resid_final(h))).squeeze(-1)

    def hook_points(self) -> dict[str, nn.Module]:
        out = {}
        for i, b in enumerate(self.blocks):
            out[f"blocks.{i}.hook_resid_pre"] = b.hook_resid_pre
            out[f"blocks.{i}.hook_mlp_out"] = b.hook_mlp_out
        out["hook_resid_final"] = self.hook_resid_final
        return out


# ---------------------------------------------------------------- input encoding
@dataclass
class Encoding:
    """Standardised numerics (optionally log1p first) + one-hot categoricals with an 'other' slot."""

    numeric: list[dict]  # {"name", "log", "mean", "std"}
    categorical: list[dict]  # {"name", "vocab": [...] (last entry is OTHER)}

    @classmethod
    def fit(cls, frame: pd.DataFrame, numeric: list[tuple[str, bool]], categorical: list[str]) -> "Encoding":
        num = []
        for name, log in numeric:
            v = frame[name].to_numpy(np.float64)
            v = np.log1p(np.maximum(v, 0)) if log else v
            num.append({"name": name, "log": bool(log), "mean": round(float(v.mean()), 6),
                        "std": round(max(float(v.std()), 1e-6), 6)})
        cat = [{"name": c, "vocab": sorted(map(str, frame[c].unique())) + [OTHER]} for c in categorical]
        return cls(num, cat)

    @property
    def feature_names(self) -> list[str]:
        return [n["name"] for n in self.numeric] + [f"{c['name']}={v}" for c in self.categorical for v in c["vocab"]]

    @property
    def n_inputs(self) -> int:
        return len(self.numeric) + sum(len(c["vocab"]) for c in self.categorical)

    def encode_numpy(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [n["name"] for n in self.numeric if n["name"] not in frame] + \
                  [c["name"] for c in self.categorical if c["name"] not in frame]
        if missing:
            raise InputError(f"data frame lacks model input columns: {', '.join(missing)}")
        cols = []
        for n in self.numeric:
            v = frame[n["name"]].to_numpy(np.float64)
            if np.isnan(v).any():
                raise InputError(f"column {n['name']!r} contains NaN")
            v = np.log1p(np.maximum(v, 0)) if n["log"] else v
            cols.append(((v - n["mean"]) / n["std"])[:, None])
        for c in self.categorical:
            vocab = c["vocab"]
            index = {v: i for i, v in enumerate(vocab)}
            idx = np.array([index.get(str(v), len(vocab) - 1) for v in frame[c["name"]]], dtype=np.int64)
            cols.append(np.eye(len(vocab))[idx])
        return np.concatenate(cols, axis=1).astype(np.float32)

    def encode(self, frame: pd.DataFrame) -> torch.Tensor:
        return torch.from_numpy(self.encode_numpy(frame))

    def to_json(self) -> str:
        return json.dumps({"numeric": self.numeric, "categorical": self.categorical}, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "Encoding":
        d = json.loads(s)
        return cls(d["numeric"], d["categorical"])


# ---------------------------------------------------------------- training
def train(model: ResidualMLP, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, seed: int,
          batch_size: int = 512, weight_decay: float = 1e-4) -> ResidualMLP:
    """Mini-batch AdamW on BCE-with-logits, deterministic given ``seed`` and the thread count."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    pos = float(y.mean())
    pos_weight = torch.tensor(min(10.0, (1 - pos) / max(pos, 1e-3)) ** 0.5)  # mild rebalancing
    lossf = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    n = x.shape[0]
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


# ---------------------------------------------------------------- safetensors I/O
def save_canonical(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file whose bytes depend only on its content.

    safetensors serialises ``__metadata__`` from a hash map, so key order (and the file's SHA-256)
    can change from process to process; the header is rewritten here as sorted, compact JSON
    (tensor offsets are relative to the data section, so they stay valid), padded to 8 bytes.
    """
    raw = _st_save({k: v.detach().to(torch.float32).contiguous().clone() for k, v in tensors.items()},
                   metadata=dict(metadata) if metadata else None)
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + n:])


def save_model(model: ResidualMLP, path: Path, *, arch: dict, encoding: Encoding, label_column: str,
               decision_threshold: float, extra: dict[str, str]) -> None:
    meta = {
        "format": FORMAT,
        "architecture": json.dumps(arch, sort_keys=True),
        "encoding": encoding.to_json(),
        "feature_names": json.dumps(encoding.feature_names),
        "label_column": label_column,
        "decision_threshold": repr(float(decision_threshold)),
        **extra,
    }
    save_canonical(dict(model.state_dict()), path, meta)


def read_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_module(path: Path) -> tuple[ResidualMLP, Encoding, dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise InputError(f"cannot read safetensors file {path}: {exc}") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: not a sample-bank model (format {meta.get('format')!r}, expected {FORMAT!r})")
    arch = json.loads(meta["architecture"])
    model = ResidualMLP(arch["n_inputs"], arch["d_model"], arch["d_mlp"], arch["n_blocks"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not match the architecture in its metadata: {exc}") from None
    model.eval()
    return model, Encoding.from_json(meta["encoding"]), meta
