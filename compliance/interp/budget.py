"""Budgeted fidelity and activation drift (DESIGN §9): a seeded random row subsample, read in
random order until the row budget or the time budget ends, reduced to per-block sums from which
``compliance.checks.intervals`` builds 95 % confidence intervals.

Only SAEs and transcoders are evaluated under a budget (a CLT's pooled figures need per-layer
blocks; run it without a budget).
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import torch

from compliance.checks import intervals as I
from compliance.checks.intervals import Deadline
from compliance.errors import InputError, UsageError
from compliance.interp.fidelity import (DENSE_THRESHOLD, FORMULA_VERSION, NORM_EPS, _first_bad_row, batch_widths,
                                        pick_device)

_NP_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": np.uint16}


def require_budgetable(coder) -> None:
    if getattr(coder, "kind", None) not in ("sae", "transcoder"):
        raise UsageError(f"a budgeted check supports SAEs and transcoders, not a {getattr(coder, 'kind', '?')}: "
                         "run it without --budget/--budget-rows")


# ------------------------------------------------------------------ random rows of a safetensors file
class SafetensorsRows:
    """Row access by index to the 2-D tensors of a safetensors file (memory-mapped, no unpickling)."""

    def __init__(self, path: str | Path, widths: dict[str, int]):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            (hlen,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(hlen))
        self.maps, n = {}, None
        for name, w in widths.items():
            e = header.get(name)
            if e is None:
                raise InputError(f"{self.path.name}: missing tensor {name!r}")
            shape = e["shape"]
            if len(shape) != 2 or shape[1] != w:
                raise InputError(f"{self.path.name}: tensor {name!r} has shape {shape}, expected [N, {w}]")
            if e["dtype"] not in _NP_DTYPES:
                raise InputError(f"{self.path.name}: tensor {name!r} has dtype {e['dtype']}, expected a float")
            if n is not None and shape[0] != n:
                raise InputError(f"{self.path.name}: tensor {name!r} has {shape[0]} rows, other tensors have {n}")
            n = shape[0]
            start = 8 + hlen + int(e["data_offsets"][0])
            mm = np.memmap(self.path, dtype=_NP_DTYPES[e["dtype"]], mode="r", offset=start, shape=tuple(shape))
            self.maps[name] = (mm, e["dtype"])
        if not n:
            raise InputError(f"{self.path.name}: empty activations file (0 rows)")
        self.n_rows = int(n)

    def rows(self, idx: np.ndarray, dtype=torch.float32) -> dict[str, torch.Tensor]:
        out = {}
        srt = np.argsort(idx, kind="stable")  # read in file order, hand back in sample order
        inv = np.empty_like(srt)
        inv[srt] = np.arange(len(srt))
        for name, (mm, dt) in self.maps.items():
            a = np.ascontiguousarray(mm[idx[srt]])[inv]
            t = torch.from_numpy(a).view(torch.bfloat16) if dt == "BF16" else torch.from_numpy(a)
            t = t.to(dtype)
            bad = _first_bad_row(t)
            if bad is not None:
                raise InputError(f"{self.path.name}: tensor {name!r} row {int(idx[bad])} contains NaN or Inf")
            out[name] = t
        return out


# ------------------------------------------------------------------ block sums
class FidelityBlocks:
    """Per-block sums of the fidelity quantities of one SAE/transcoder over a random row order."""

    def __init__(self, n_planned: int, d: int, m: int, n_blocks: int = I.N_BLOCKS):
        self.size = max(1, -(-n_planned // n_blocks))
        k = -(-n_planned // self.size)
        z = lambda *s: torch.zeros(s, dtype=torch.float64)  # noqa: E731  (CPU, float64: index_add_ is fast)
        self._t = {name: z(k) for name in ("rows", "sse", "sumsq", "cos", "ratio", "l0", "l1", "kl")}
        self._t["sumx"] = z(k, d)
        self.n_kl = 0
        self.flips = 0
        self.feat = torch.zeros(m, dtype=torch.int64)
        self.n = 0

    def __getattr__(self, name):  # block arrays as numpy (rows, sse, sumsq, cos, ratio, l0, l1, kl, sumx)
        t = self.__dict__.get("_t", {})
        if name in t:
            return t[name].numpy()
        raise AttributeError(name)

    def _ids(self, b: int, start: int | None = None) -> torch.Tensor:
        s = self.n if start is None else start
        return torch.arange(s, s + b) // self.size

    def add(self, x: torch.Tensor, y: torch.Tensor, yh: torch.Tensor, f: torch.Tensor, nonnegative: bool) -> None:
        b = y.shape[0]
        ids = self._ids(b)
        cpu = lambda v: v.detach().to("cpu", torch.float64)  # noqa: E731
        yy, hh = (y * y).sum(1, dtype=torch.float64), (yh * yh).sum(1, dtype=torch.float64)
        dot = (y * yh).sum(1, dtype=torch.float64)
        ny, nh = yy.sqrt(), hh.sqrt()
        active = f != 0
        t = self._t
        for name, vals in (("sse", (y - yh).square().sum(1, dtype=torch.float64)), ("sumsq", yy),
                           ("cos", dot / (ny.clamp_min(NORM_EPS) * nh.clamp_min(NORM_EPS))),
                           ("ratio", nh / ny.clamp_min(NORM_EPS)), ("l0", active.sum(1, dtype=torch.float64)),
                           ("l1", (f if nonnegative else f.abs()).sum(1, dtype=torch.float64))):
            t[name].index_add_(0, ids, cpu(vals))
        t["rows"].index_add_(0, ids, torch.ones(b, dtype=torch.float64))
        t["sumx"].index_add_(0, ids, cpu(y))
        self.feat += active.sum(0).cpu()
        self.n += b

    def add_downstream(self, kl_rows: torch.Tensor, flip_rows: torch.Tensor) -> None:
        kl = kl_rows.detach().reshape(-1).to("cpu", torch.float64)
        self._t["kl"].index_add_(0, self._ids(len(kl), self.n_kl), kl)
        self.n_kl += len(kl)
        self.flips += int(flip_rows.reshape(-1).sum())

    def _cut(self):
        k = -(-self.n // self.size)
        return slice(0, k)

    def results(self, n_total: int) -> tuple[dict, dict[str, I.Interval]]:
        """Point metrics (as ``FidelityResult.metrics()`` names them) and their intervals."""
        if self.n == 0:
            raise InputError("fidelity: no activation rows within the budget")
        c = self._cut()
        rows = self.rows[c]
        ci = {"explained_variance": I.explained_variance_interval(self.sse[c], self.sumsq[c], self.sumx[c], rows,
                                                                  n_total)}
        for key, arr in (("mse", self.sse), ("cossim", self.cos), ("l2_ratio", self.ratio), ("l0", self.l0),
                         ("l1", self.l1)):
            ci[key] = I.mean_interval(arr[c], rows, n_total)
        feat = self.feat.numpy()
        ci["dead_fraction"] = I.dead_fraction_interval(feat, self.n, n_total)
        ci["dense_fraction"] = I.dense_fraction_interval(feat, self.n, n_total, DENSE_THRESHOLD)
        if self.n_kl:
            kc = slice(0, -(-self.n_kl // self.size))
            ci["kl"] = I.mean_interval(self.kl[kc], np.minimum(self.rows[kc], self.size), n_total)
            ci["decision_flip_rate"] = I.wilson_interval(self.flips, self.n_kl, n_total)
        n = self.n
        mu = self.sumx[c].sum(0) / n
        metrics = {k: iv.value for k, iv in ci.items()}
        metrics.update(n_rows=n, variance=float(self.sumsq[c].sum() / n - mu @ mu),
                       formula_version=FORMULA_VERSION)
        return metrics, ci

    @property
    def density(self) -> list[float]:
        return (self.feat.double() / max(self.n, 1)).tolist()


def _step(coder, blocks: FidelityBlocks, batch: dict, dev, bi: int) -> None:
    x = batch["activations"].to(dev, coder.dtype)
    y = x if coder.kind == "sae" else batch["targets"].to(dev, coder.dtype)
    with torch.no_grad():
        f = coder.encode(x)
        yh = coder.decode(f, x)
    blocks.add(x, y, yh, f, coder.nonnegative)


def budgeted_fidelity_file(coder, path: str | Path, budget: I.Budget, deadline: Deadline, *, batch_rows: int = 1024,
                           device=None) -> tuple[dict, dict, FidelityBlocks, int]:
    """Fidelity on a random subsample of an activations file (and the rows the file holds)."""
    require_budgetable(coder)
    dev = pick_device(device)
    coder.to(dev)
    src = SafetensorsRows(path, batch_widths(coder))
    order = I.sample_order(src.n_rows, budget)
    blocks = FidelityBlocks(len(order), coder.d_out, coder.n_features)
    for bi, s in enumerate(range(0, len(order), batch_rows)):
        if bi and deadline.passed():
            break
        _step(coder, blocks, src.rows(order[s:s + batch_rows]), dev, bi)
    metrics, ci = blocks.results(src.n_rows)
    return metrics, ci, blocks, src.n_rows


def budgeted_fidelity_model(coder, model, frame, budget: I.Budget, deadline: Deadline, *, batch_rows: int = 1024,
                            device=None, **hooks) -> tuple[dict, dict, FidelityBlocks]:
    """Fidelity and the downstream metrics on a random subsample of a data frame, through the model."""
    from compliance.interp.downstream import compute_downstream, model_activation_batches

    require_budgetable(coder)
    dev = pick_device(device)
    order = I.sample_order(len(frame), budget)
    blocks = FidelityBlocks(len(order), coder.d_out, coder.n_features)
    loss = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    has_loss = True
    for bi, s in enumerate(range(0, len(order), batch_rows)):
        if bi and deadline.passed():
            break
        part, clean = frame.iloc[order[s:s + batch_rows]], []
        for batch in model_activation_batches(coder, model, part, batch_rows=batch_rows, device=dev, clean=clean,
                                              **hooks):
            _step(coder, blocks, batch, dev, bi)
        d = compute_downstream(coder, model, part, batch_rows=batch_rows, device=dev,
                               row_sink=blocks.add_downstream, clean=clean, **hooks)
        if d.loss_clean is None:
            has_loss = False
        else:
            for k in loss:
                loss[k] += getattr(d, f"loss_{k}") * len(part)
    metrics, ci = blocks.results(len(frame))
    rec = None
    if has_loss and blocks.n:
        lc, ls, lz = (loss[k] / blocks.n for k in ("clean", "spliced", "zero"))
        rec = (lz - ls) / (lz - lc) if abs(lz - lc) > 1e-12 else None
    metrics["loss_recovered"] = rec
    return metrics, ci, blocks


# ------------------------------------------------------------------ activation drift
def _block_feature_counts(coder, model, frame, order: np.ndarray, deadline_at: float | None, dev, hooks,
                          n_blocks: int = 100, batch_rows: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    from compliance.interp.downstream import model_activation_batches

    size = max(1, -(-len(order) // n_blocks))
    k = -(-len(order) // size)
    counts = np.zeros((k, coder.n_features), np.int64)
    rows = np.zeros(k, np.int64)
    n = 0
    for s in range(0, len(order), batch_rows):
        if n and deadline_at is not None and time.perf_counter() >= deadline_at:
            break
        part = frame.iloc[order[s:s + batch_rows]]
        for batch in model_activation_batches(coder, model, part, batch_rows=batch_rows, device=dev, **hooks):
            x = batch["activations"].to(dev, coder.dtype)
            with torch.no_grad():
                active = (coder.encode(x) != 0).cpu().numpy()
            ids = (np.arange(n, n + len(active)) // size)
            np.add.at(counts, ids, active.astype(np.int64))
            np.add.at(rows, ids, 1)
            n += len(active)
    used = -(-n // size)
    return counts[:used], rows[:used]


def _density_stats(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """PSI, KS D, newly dead count, dead and dense shares of the current densities."""
    psi, ks = I.numeric_psi_ks(ref, cur)
    return np.array([psi, ks, float(np.sum((ref > 0) & (cur == 0))), float(np.mean(cur == 0)),
                     float(np.mean(cur > DENSE_THRESHOLD))])


def budgeted_activation_drift(coder, model, ref_frame, cur_frame, budget: I.Budget, deadline: Deadline, *,
                              device=None, n_boot: int = I.N_BOOT, **hooks):
    """Activation drift on random subsamples of both windows; bootstrap (over row blocks) intervals."""
    from compliance.interp.activation_drift import compare_densities

    require_budgetable(coder)
    dev = pick_device(device)
    coder.to(dev)
    model.module.to(dev)
    ref_order = I.sample_order(len(ref_frame), budget)
    cur_order = I.sample_order(len(cur_frame), I.Budget(rows=budget.rows, seed=budget.seed + 1))
    rc, rr = _block_feature_counts(coder, model, ref_frame, ref_order, deadline.split(0.45), dev, hooks)
    cc, cr = _block_feature_counts(coder, model, cur_frame, cur_order, deadline.split(0.9), dev, hooks)
    n_ref, n_cur = int(rr.sum()), int(cr.sum())
    ref_d, cur_d = rc.sum(0) / n_ref, cc.sum(0) / n_cur
    res = compare_densities(ref_d, cur_d, n_ref, n_cur)
    theta = _density_stats(ref_d, cur_d)
    rng = np.random.default_rng(budget.seed + 2)
    reps = []
    for _ in range(n_boot):
        if len(reps) >= 50 and deadline.passed():
            break
        wr = rng.multinomial(len(rr), np.full(len(rr), 1 / len(rr)))
        wc = rng.multinomial(len(cr), np.full(len(cr), 1 / len(cr)))
        reps.append(_density_stats((wr @ rc) / max(wr @ rr, 1), (wc @ cc) / max(wc @ cr, 1)))
    reps = np.asarray(reps)
    f = max(I.fpc(n_ref, len(ref_frame)), I.fpc(n_cur, len(cur_frame)))
    names = ("psi", "ks_statistic", "n_newly_dead", "dead_fraction_current", "dense_fraction_current")
    ci = {k: I._scaled(I.basic_bootstrap(float(theta[j]), reps[:, j]), f) for j, k in enumerate(names)}
    for k in ("dead_fraction_current", "dense_fraction_current", "psi", "ks_statistic"):
        iv = ci[k]
        lo_cap = 0.0
        ci[k] = I.Interval(iv.value, max(lo_cap, iv.lo), min(1.0, iv.hi) if "fraction" in k else iv.hi, iv.method)
    ci["n_newly_dead"] = I.Interval(theta[2], max(0.0, ci["n_newly_dead"].lo), ci["n_newly_dead"].hi,
                                    ci["n_newly_dead"].method)
    return res, ci, len(ref_frame), len(cur_frame)

