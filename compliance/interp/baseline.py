"""Fidelity of an attribution baseline on a model version.

An attribution baseline (the reference input of integrated gradients) explains a decision as
``f(x) − f(b) = Σ_i attr_i``. It stays faithful on a version when that completeness holds on
current data with the Riemann approximation used in production, and when the baseline is still
a neutral reference for the population (its score close to the population's mean score).

Metrics (choice of this project; DESIGN §3 is silent on baselines):

- ``explained_variance`` = 1 − Σ_n (Δf_n − Σ_i attr_{n,i})² / Σ_n (Δf_n − mean Δf)², where
  Δf_n = f(x_n) − f(b) in logits: the share of the output differences that the attributions
  account for. Judged by the same policy thresholds as other artifacts' explained variance.
- ``completeness_mae`` = mean_n |Δf_n − Σ_i attr_{n,i}| (logits).
- ``baseline_gap`` = |σ(f(b)) − mean_n σ(f(x_n))|: how far the baseline's score sits from the
  population's mean score on the current data (drift makes a once-neutral baseline biased).
- ``input_attribution`` = per raw input column, mean_n Σ_{i of the column} |attr_{n,i}| (an encoded
  input ``region=North`` counts for column ``region``), when the model or the baseline names its
  encoded inputs (``feature_names``): the model's key drivers for drift are its top inputs here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compliance import FORMULA_VERSION
from compliance.errors import InputError
from compliance.interp.adapter import LoadedModel
from compliance.interp.serial import ToDict

IG_STEPS = 32


@dataclass
class BaselineFidelity(ToDict):
    n_rows: int
    steps: int
    explained_variance: float
    completeness_mae: float
    baseline_gap: float
    baseline_score: float
    mean_score: float
    input_attribution: dict | None = None
    formula_version: str = FORMULA_VERSION + "+ig-completeness"


def _logit(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    z = model.module(x)
    return z[:, 0] if z.ndim == 2 else z


def integrated_gradients(model: LoadedModel, x: torch.Tensor, b: torch.Tensor, steps: int = IG_STEPS) -> torch.Tensor:
    """Midpoint-Riemann integrated gradients of the logit, [N, n_inputs], float64."""
    x, b = x.double(), b.double()
    module = model.module.double()
    total = torch.zeros_like(x)
    try:
        for k in range(steps):
            alpha = (k + 0.5) / steps
            p = (b + alpha * (x - b)).requires_grad_(True)
            (g,) = torch.autograd.grad(_logit(model, p).sum(), p)
            total += g
    finally:
        module.float()
    return (x - b) * total / steps


def baseline_fidelity(baseline, model: LoadedModel, frame, steps: int = IG_STEPS) -> BaselineFidelity:
    b = getattr(baseline, "baseline", None)
    if b is None:
        raise InputError("baseline fidelity needs an attribution_baseline artifact")
    if b.ndim == 2 and b.shape[0] == 1:
        b = b[0]
    if b.ndim != 1:
        raise InputError(f"baseline of shape {list(b.shape)}: only a single reference input [n_inputs] is supported")
    x = model.encode_inputs(frame)
    if x.ndim != 2 or x.shape[1] != b.shape[-1]:
        raise InputError(f"baseline has width {b.shape[-1]}, the model's inputs have width {x.shape[-1]}")
    if not torch.isfinite(x).all():
        raise InputError("model inputs contain NaN or Inf")
    model.module.eval()
    attr = integrated_gradients(model, x, b.reshape(1, -1), steps)
    with torch.no_grad():
        m = model.module.double()
        fx = _logit(model, x.double())
        fb = _logit(model, b.reshape(1, -1).double())[0]
        m.float()
    df = fx - fb
    resid = df - attr.sum(dim=1)
    denom = float(((df - df.mean()) ** 2).sum())
    ev = 1.0 - float((resid ** 2).sum()) / denom if denom > 1e-12 else (1.0 if float((resid ** 2).sum()) < 1e-12 else 0.0)
    score_b, scores = float(torch.sigmoid(fb)), torch.sigmoid(fx)
    return BaselineFidelity(n_rows=x.shape[0], steps=steps, explained_variance=ev,
                            completeness_mae=float(resid.abs().mean()), baseline_gap=abs(score_b - float(scores.mean())),
                            baseline_score=score_b, mean_score=float(scores.mean()),
                            input_attribution=_by_column(attr, _feature_names(baseline, model, attr.shape[1])))


def _feature_names(baseline, model: LoadedModel, width: int) -> list[str] | None:
    for names in ((model.metadata or {}).get("feature_names"),
                  (getattr(getattr(baseline, "info", None), "extra", None) or {}).get("feature_names")):
        if isinstance(names, list) and len(names) == width and all(isinstance(n, str) for n in names):
            return names
    return None


def _by_column(attr: torch.Tensor, names: list[str] | None) -> dict | None:
    """Mean |attribution| per raw column (one-hot inputs ``col=value`` summed into ``col``)."""
    if names is None:
        return None
    per_input = attr.abs().mean(dim=0)
    out: dict[str, float] = {}
    for name, a in zip(names, per_input.tolist()):
        col = name.split("=", 1)[0]
        out[col] = out.get(col, 0.0) + float(a)
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))
