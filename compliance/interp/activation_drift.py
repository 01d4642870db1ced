"""Activation drift: how an artifact's feature densities move between a reference sample and
a current one (DESIGN §3 Drift). The drift statistics of §3 (PSI on 10 quantile bins of the
reference with empty shares replaced by 1e-4, two-sided KS, Wasserstein / reference std with
floor 0.001, Jensen–Shannon distance in nats on the same bins) are applied to the vector of
per-feature densities; newly dead and newly dense features are listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats
from scipy.spatial.distance import jensenshannon

from compliance.errors import InputError
from compliance.interp.fidelity import DENSE_THRESHOLD, _check_batch, _first_bad_row, batch_widths, pick_device
from compliance.interp.loaders import CrossLayerTranscoder, require_coder
from compliance.interp.serial import ToDict

EMPTY_SHARE = 1e-4
N_BINS = 10


def feature_densities(coder, batches: Iterable[dict], device=None) -> tuple[np.ndarray, int]:
    """Per-feature density (share of rows with f ≠ 0) over ``batches``; CLT: all layers, layer-major.

    Only the encoder inputs are needed (``activations`` / ``inputs_{l}``)."""
    require_coder(coder, check="activation drift")
    dev = pick_device(device)
    coder.to(dev)
    widths = {k: v for k, v in batch_widths(coder).items() if not k.startswith("targets")}
    clt = isinstance(coder, CrossLayerTranscoder)
    L = coder.n_layers if clt else 1
    counts = torch.zeros(L * coder.n_features, dtype=torch.int64, device=dev)
    n = 0
    for bi, batch in enumerate(batches):
        b = _check_batch(batch, widths, f"batch {bi}")
        parts = []
        for l, name in enumerate(widths):
            x = batch[name].to(dev, coder.dtype)
            bad = _first_bad_row(x)
            if bad is not None:
                raise InputError(f"batch {bi}: {name} row {bad} contains NaN or Inf")
            f = coder.encode_layer(l, x) if clt else coder.encode(x)
            parts.append((f != 0).sum(0))
        counts += torch.cat(parts)
        n += b
    if n == 0:
        raise InputError("activation drift: no activation rows")
    return (counts.double() / n).cpu().numpy(), n


def density_drift_statistics(ref: np.ndarray, cur: np.ndarray) -> dict:
    """PSI, KS, normalised Wasserstein and JS distance between two density vectors."""
    ref, cur = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    r, c = np.where(r == 0, EMPTY_SHARE, r), np.where(c == 0, EMPTY_SHARE, c)
    ks = stats.ks_2samp(ref, cur)
    wd = stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
    return {"psi": float(np.sum((c - r) * np.log(c / r))), "ks_statistic": float(ks.statistic),
            "ks_pvalue": float(ks.pvalue), "wasserstein_norm": float(wd),
            "js_distance": float(jensenshannon(r, c))}


@dataclass
class ActivationDriftResult(ToDict):
    n_features: int
    n_rows_reference: int
    n_rows_current: int
    psi: float
    ks_statistic: float
    ks_pvalue: float
    wasserstein_norm: float
    js_distance: float
    mean_abs_density_change: float
    dead_fraction_reference: float
    dead_fraction_current: float
    dense_fraction_reference: float
    dense_fraction_current: float
    n_newly_dead: int
    n_newly_dense: int
    newly_dead: list[int] = field(default_factory=list)  # density > 0 before, 0 now
    newly_dense: list[int] = field(default_factory=list)  # ≤ 0.1 before, > 0.1 now
    top_changes: list[dict] = field(default_factory=list)  # largest |Δ density|
    reference_density: list[float] = field(repr=False, default_factory=list)
    current_density: list[float] = field(repr=False, default_factory=list)

    def metrics(self) -> dict:
        d = self.to_dict()
        d.pop("reference_density")
        d.pop("current_density")
        return d


def compare_densities(ref: np.ndarray, cur: np.ndarray, n_ref: int, n_cur: int,
                      top: int = 20) -> ActivationDriftResult:
    ref, cur = np.asarray(ref, np.float64), np.asarray(cur, np.float64)
    if ref.shape != cur.shape or ref.ndim != 1 or len(ref) == 0:
        raise InputError(f"density vectors differ in shape: {ref.shape} vs {cur.shape}")
    dead = np.flatnonzero((ref > 0) & (cur == 0))
    dense = np.flatnonzero((ref <= DENSE_THRESHOLD) & (cur > DENSE_THRESHOLD))
    delta = cur - ref
    order = np.argsort(-np.abs(delta), kind="stable")[:top]
    return ActivationDriftResult(
        n_features=len(ref), n_rows_reference=n_ref, n_rows_current=n_cur,
        **density_drift_statistics(ref, cur),
        mean_abs_density_change=float(np.abs(delta).mean()),
        dead_fraction_reference=float(np.mean(ref == 0)), dead_fraction_current=float(np.mean(cur == 0)),
        dense_fraction_reference=float(np.mean(ref > DENSE_THRESHOLD)),
        dense_fraction_current=float(np.mean(cur > DENSE_THRESHOLD)),
        n_newly_dead=len(dead), n_newly_dense=len(dense),
        newly_dead=dead.tolist(), newly_dense=dense.tolist(),
        top_changes=[{"feature": int(i), "reference": float(ref[i]), "current": float(cur[i])}
                     for i in order if delta[i] != 0],
        reference_density=ref.tolist(), current_density=cur.tolist(),
    )


def activation_drift(coder, reference_batches: Iterable[dict], current_batches: Iterable[dict],
                     device=None) -> ActivationDriftResult:
    """Feature densities of ``coder`` on a reference and a current sample, compared."""
    ref, n_ref = feature_densities(coder, reference_batches, device)
    cur, n_cur = feature_densities(coder, current_batches, device)
    return compare_densities(ref, cur, n_ref, n_cur)
