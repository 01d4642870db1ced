"""Comparing versions: representation shift (linear CKA, row cosine) and feature survival.

CKA is accumulated from Gram sums in float64, so two activation streams of any length can be
compared in bounded memory. Feature survival matches an old artifact's features to its
replacement's by Hungarian assignment on 1 − cosine of unit-norm decoder directions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from compliance.errors import InputError
from compliance.interp.loaders import CrossLayerTranscoder, require_coder
from compliance.interp.serial import ToDict

SURVIVAL_COSINE = 0.7
# Hungarian assignment: measured 0.3 s at m = 1,024, 1–5.5 s at 4,096 (2-core VM, under load),
# ≈ m^2.5; 16,384 features per layer is minutes and a 2 GiB cost matrix — the cap.
MAX_ASSIGNMENT_FEATURES = 16_384


# ------------------------------------------------------------------ representation shift
class CKAAccumulator:
    """Streaming linear CKA and mean row cosine between paired rows of X [N, p] and Y [N, q]."""

    def __init__(self):
        self.n = 0
        self.xx = self.yy = self.yx = self.sx = self.sy = None
        self.cos_sum = 0.0
        self.cos_ok = True

    def update(self, x, y) -> None:
        x = torch.as_tensor(x).to(torch.float64)
        y = torch.as_tensor(y).to(torch.float64)
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise InputError(f"CKA needs paired 2-D matrices, got {list(x.shape)} and {list(y.shape)}")
        if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
            raise InputError("CKA: activations contain NaN or Inf")
        if self.xx is None:
            p, q = x.shape[1], y.shape[1]
            self.xx, self.yy = torch.zeros(p, p, dtype=torch.float64), torch.zeros(q, q, dtype=torch.float64)
            self.yx = torch.zeros(q, p, dtype=torch.float64)
            self.sx, self.sy = torch.zeros(p, dtype=torch.float64), torch.zeros(q, dtype=torch.float64)
            self.cos_ok = p == q
        elif x.shape[1] != self.xx.shape[0] or y.shape[1] != self.yy.shape[0]:
            raise InputError("CKA: width changed between batches")
        self.n += x.shape[0]
        self.xx += x.T @ x
        self.yy += y.T @ y
        self.yx += y.T @ x
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        if self.cos_ok:
            num = (x * y).sum(1)
            den = x.norm(dim=1).clamp_min(1e-12) * y.norm(dim=1).clamp_min(1e-12)
            self.cos_sum += float((num / den).sum())

    def result(self) -> "RepresentationShift":
        if self.n < 2:
            raise InputError("CKA needs at least 2 rows")
        n, mx, my = self.n, self.sx / self.n, self.sy / self.n
        cxx = self.xx - n * torch.outer(mx, mx)
        cyy = self.yy - n * torch.outer(my, my)
        cyx = self.yx - n * torch.outer(my, mx)
        den = float(torch.linalg.matrix_norm(cxx) * torch.linalg.matrix_norm(cyy))
        cka = float(torch.linalg.matrix_norm(cyx) ** 2) / den if den > 0 else float("nan")
        return RepresentationShift(cka=cka, mean_row_cosine=self.cos_sum / n if self.cos_ok else None,
                                   n_rows=n)


@dataclass
class RepresentationShift(ToDict):
    cka: float
    mean_row_cosine: float | None  # None when the widths differ
    n_rows: int


def linear_cka(x, y) -> float:
    """‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on column-centred X [N, p], Y [N, q], in float64."""
    acc = CKAAccumulator()
    acc.update(x, y)
    return acc.result().cka


def representation_shift(pairs: Iterable[tuple]) -> RepresentationShift:
    """CKA and mean row cosine over a stream of ``(x_batch, y_batch)`` pairs."""
    acc = CKAAccumulator()
    for x, y in pairs:
        acc.update(x, y)
    return acc.result()


# ------------------------------------------------------------------ feature survival
def _unit(m: torch.Tensor) -> np.ndarray:
    m = m.detach().to("cpu", torch.float64)
    return (m / m.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()


def match_features(old_dec: np.ndarray, new_dec: np.ndarray):
    """Hungarian assignment on 1 − cosine of unit rows.

    Returns (rows, cols, matched cosines, max cosine per old row). The cost matrix is built
    in place of the cosine matrix (one m_old × m_new float64 buffer)."""
    cost = old_dec @ new_dec.T
    max_cos = cost.max(axis=1)
    np.subtract(1.0, cost, out=cost)
    rows, cols = linear_sum_assignment(cost)
    return rows, cols, 1.0 - cost[rows, cols], max_cos


@dataclass
class FeatureSurvival(ToDict):
    n_old: int
    n_new: int
    n_matched: int
    n_survived: int
    survival_share: float  # survivors / old features
    mmcs: float  # mean over old features of the max decoder cosine with any new feature
    mean_matched_decoder_cosine: float
    threshold: float
    survivors: list[dict] = field(repr=False, default_factory=list)  # {old, new, dec_cos, enc_cos}
    carried_labels: dict[str, str] = field(default_factory=dict)  # new index → label
    lost_labels: dict[str, str] = field(default_factory=dict)  # old index → label (not carried)

    def metrics(self) -> dict:
        d = self.to_dict()
        d.pop("survivors")
        d.pop("carried_labels")
        d["n_carried_labels"] = len(self.carried_labels)
        d["n_lost_labels"] = len(self.lost_labels)
        return d


def _directions(coder) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(coder, CrossLayerTranscoder):
        return [(coder.decoder_directions(i), coder.encoder_directions(i))
                for i in range(coder.n_layers)]
    return [(coder.decoder_directions(), coder.encoder_directions())]


def feature_survival(old, new, old_labels: dict | None = None,
                     threshold: float = SURVIVAL_COSINE) -> FeatureSurvival:
    """Match ``old`` features to ``new`` (same kind and widths) and carry labels of survivors.

    A feature survives when its matched decoder cosine and its encoder cosine both exceed
    ``threshold``. CLT features are matched layer by layer and numbered globally
    ``layer * d_tc + index`` (label keys use the same numbering).
    """
    require_coder(old, check="feature survival")
    require_coder(new, check="feature survival")
    if old.kind != new.kind:
        raise InputError(f"feature survival: cannot compare a {old.kind} with a {new.kind}")
    od, nd = _directions(old), _directions(new)
    if len(od) != len(nd):
        raise InputError(f"feature survival: {len(od)} layers vs {len(nd)} layers")
    labels = {str(k): v for k, v in (old_labels or {}).items()}
    survivors, n_old, n_new, n_matched = [], 0, 0, 0
    max_cos_sum = matched_cos_sum = 0.0
    for (odec, oenc), (ndec, nenc) in zip(od, nd):
        if odec.shape[1] != ndec.shape[1] or oenc.shape[1] != nenc.shape[1]:
            raise InputError(
                f"feature survival: decoder/encoder widths differ "
                f"({odec.shape[1]}/{oenc.shape[1]} vs {ndec.shape[1]}/{nenc.shape[1]})"
            )
        if max(odec.shape[0], ndec.shape[0]) > MAX_ASSIGNMENT_FEATURES:
            raise InputError(f"feature survival: more than {MAX_ASSIGNMENT_FEATURES} features per layer")
        rows, cols, dec_cos, max_cos = match_features(_unit(odec), _unit(ndec))
        enc_cos = np.sum(_unit(oenc)[rows] * _unit(nenc)[cols], axis=1)
        max_cos_sum += float(max_cos.sum())
        matched_cos_sum += float(dec_cos.sum())
        for r, c, dc, ec in zip(rows, cols, dec_cos, enc_cos):
            if dc > threshold and ec > threshold:
                survivors.append({"old": n_old + int(r), "new": n_new + int(c),
                                  "dec_cos": float(dc), "enc_cos": float(ec)})
        n_old += odec.shape[0]
        n_new += ndec.shape[0]
        n_matched += len(rows)
    carried = {}
    for s in survivors:
        if str(s["old"]) in labels:
            carried[str(s["new"])] = labels[str(s["old"])]
    carried_old = {str(s["old"]) for s in survivors}
    lost = {k: v for k, v in labels.items() if k not in carried_old}
    return FeatureSurvival(
        n_old=n_old, n_new=n_new, n_matched=n_matched, n_survived=len(survivors),
        survival_share=len(survivors) / n_old, mmcs=max_cos_sum / n_old,
        mean_matched_decoder_cosine=matched_cos_sum / max(n_matched, 1), threshold=threshold,
        survivors=survivors, carried_labels=carried, lost_labels=lost,
    )
