"""Fidelity of a linear probe on a model version: does the concept it reads still live where it
was found? (DESIGN §3 names probes as artifacts but gives no metric; this is the project's choice.)

The probe's ``cfg.json`` names the hook it reads and a machine-readable target::

    {"hook_name": "blocks.2.hook_resid_pre", "target_column": "age", "target_op": ">=", "target_value": 60}

On current data, activations are captured at the hook, the probe scores them, and the target is
computed from the data column. Metrics: ``auc`` (Mann–Whitney, ties counted half), ``accuracy`` at
the 0.5 threshold, ``positive_rate`` of the target. Status by policy ``probe.auc_warn`` (0.7) and
``probe.auc_fail`` (0.6).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

from compliance.errors import InputError
from compliance.interp.adapter import LoadedModel
from compliance.interp.downstream import capture_activations
from compliance.interp.serial import ToDict

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


@dataclass
class ProbeFidelity(ToDict):
    n_rows: int
    auc: float
    accuracy: float
    positive_rate: float
    hook: str
    target: str
    formula_version: str = "probe-auc-1"


def probe_target(frame, cfg: dict) -> np.ndarray:
    col, op, value = cfg.get("target_column"), cfg.get("target_op"), cfg.get("target_value")
    if col is None or op not in OPS:
        raise InputError("probe cfg.json needs a machine-readable target: target_column, target_op (>=, >, <=, <, ==), target_value")
    if col not in frame.columns:
        raise InputError(f"probe target column {col!r} is not in the data")
    return np.asarray(OPS[op](frame[col].to_numpy(), value), dtype=bool)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, n = int(labels.sum()), len(labels)
    if pos == 0 or pos == n:
        raise InputError("probe target has a single class in this data: AUC undefined")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * (n - pos)))


def probe_fidelity(probe, model: LoadedModel, frame, cfg: dict, hook: str | None = None) -> ProbeFidelity:
    hook = hook or cfg.get("hook_name")
    if not hook:
        raise InputError("probe has no hook name (cfg.json hook_name)")
    y = probe_target(frame, cfg)
    acts = capture_activations(model, frame, [hook])[hook]
    if acts.shape[1] != probe.weight.shape[1]:
        raise InputError(f"probe reads width {probe.weight.shape[1]}, hook {hook} has width {acts.shape[1]}")
    with torch.no_grad():
        z = probe.logits(acts.to(probe.weight.dtype))[:, 0].double().numpy()
    return ProbeFidelity(n_rows=len(y), auc=auc(z, y), accuracy=float(((z >= 0) == y).mean()),
                         positive_rate=float(y.mean()), hook=hook,
                         target=f"{cfg['target_column']} {cfg['target_op']} {cfg['target_value']}")
