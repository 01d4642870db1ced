"""Budgets, confidence intervals and decisions by interval for budgeted checks (DESIGN §9).

Torch-free (numpy only): the torch side (``compliance.interp.budget``) reduces a random row
subsample to per-block sums and hands them here.

Sampling. A budgeted check evaluates a simple random sample without replacement of the rows
(seeded; the seed is recorded), processed in random order, so any prefix of it — where a time
budget stops — is itself a simple random sample. Rows are grouped into ``k`` consecutive blocks
of that random order; blocks are therefore exchangeable, and every row-mean metric is a ratio of
block sums ``Σ a_b / Σ n_b``.

Intervals (95 %, two-sided, finite-population corrected by ``sqrt(1 − n/N)``):

* row means (mse, cossim, l2_ratio, l0, l1, kl) and **explained variance**: the delta method for
  a ratio of means over blocks — ``R = Σ a_b / Σ d_b``, ``Var R ≈ k/(k−1) Σ (a_b − R d_b)² /
  (Σ d_b)²`` — the classical ratio-estimator variance. EV = 1 − SSE/SSV with ``d_b`` = the
  block's Σ‖x − x̄‖² (x̄ estimated; its first-order effect on Σ‖x − x̄‖² is zero).
  Chosen over a bootstrap because it is exact to first order, costs one pass over k blocks, and
  is deterministic given the sample (a bootstrap adds its own Monte-Carlo noise to the bounds).
* proportions of rows (decision flip rate): Wilson score interval.
* dense_fraction: per feature a Wilson interval on its firing density; the lower bound counts
  the features whose whole interval is above 0.1, the upper those whose interval reaches above.
* dead_fraction: a feature silent on the sample may fire on rows not sampled, so the sample's
  dead share is an upper bound (exact: sampling cannot make a live feature fire); nothing below
  it can be proved without the full data, so the interval is ``[0, observed]`` unless every row
  was read.
* PSI and KS (data and activation drift): a bootstrap over rows (basic, i.e. reverse-percentile,
  interval ``[2θ̂ − q₉₇.₅, 2θ̂ − q₂.₅]``), because both statistics are biased upwards on small
  samples and the basic interval cancels an additive bias that the percentile interval doubles.

Decision. Each thresholded metric's status is monotone in the metric, so over an interval it
ranges between the statuses of the two end points; the check's status ranges between the worst
of the lower and the worst of the upper statuses. When the two agree it is decided (pass, warn or
fail); otherwise it is ``inconclusive`` and the reasons name, per undecided metric, about how many
rows would decide it: the half-width shrinks as 1/sqrt(n), so ``n' = n · (half-width / gap)²``
where ``gap`` is the distance from the estimate to the straddled threshold (capped at the rows
available — with all rows read every interval has width 0 and decides).
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from compliance.errors import UsageError

Z95 = 1.959963984540054
RANK = {"pass": 0, "warn": 1, "fail": 2}
LEVELS = ("pass", "warn", "fail")
INCONCLUSIVE = "inconclusive"
N_BLOCKS = 1000
N_BOOT = 200
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")
_UNIT = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}


# ------------------------------------------------------------------ budgets
@dataclass
class Budget:
    """A compute budget: wall seconds, rows, or both (whichever ends first); ``seed`` picks the rows."""

    seconds: float | None = None
    rows: int | None = None
    seed: int | None = None
    t0: float = field(default_factory=time.perf_counter, compare=False, repr=False)  # when the budget began

    def __post_init__(self):
        if self.seconds is None and self.rows is None:
            raise UsageError("a budget needs seconds or rows")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise UsageError(f"budget must be a positive duration, got {self.seconds}")
        if self.rows is not None and (isinstance(self.rows, bool) or int(self.rows) != self.rows or self.rows < 1):
            raise UsageError(f"budget rows must be a positive whole number, got {self.rows}")
        if self.seed is None:
            self.seed = secrets.randbits(63)
        if self.seed < 0:
            raise UsageError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "rows": self.rows, "seed": self.seed}

    def share(self, parts: int) -> Budget:
        """An equal share of this budget (for ``check run --due``)."""
        parts = max(1, parts)
        return Budget(seconds=None if self.seconds is None else self.seconds / parts,
                      rows=None if self.rows is None else max(1, self.rows // parts), seed=self.seed)


def process_start() -> float:
    """``time.perf_counter()`` at the start of this process (Linux: from /proc), else now. The CLI
    counts a time budget from there, so interpreter start-up and imports are inside it."""
    now = time.perf_counter()
    try:
        import os

        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        return now - age if 0 <= age < 3600 else now
    except (OSError, ValueError, IndexError):
        return now


class Deadline:
    """Wall-clock end of the processing part of a time budget, counted from ``Budget.t0`` (when the
    budget was made; the CLI sets it to the process start, so start-up and loading are inside the
    budget). 15 % of the budget plus half a second is kept back for the intervals, the record and
    the exit."""

    def __init__(self, budget: Budget, t0: float | None = None):
        self.t0 = budget.t0 if t0 is None else t0
        self.end = None if budget.seconds is None else self.t0 + 0.85 * budget.seconds - 0.5

    def passed(self) -> bool:
        return self.end is not None and time.perf_counter() >= self.end

    def split(self, share: float) -> float | None:
        """A point ``share`` of the way from now to the end (None without a time budget)."""
        if self.end is None:
            return None
        now = time.perf_counter()
        return now + share * max(0.0, self.end - now)


def parse_duration(text: str) -> float:
    """``30s``, ``2m``, ``1.5h``, ``500ms`` or plain seconds → seconds (> 0)."""
    m = _DURATION.match(str(text))
    if not m:
        raise UsageError(f"malformed duration {text!r}: use e.g. 30s, 2m, 1h")
    s = float(m.group(1)) * _UNIT[m.group(2)]
    if s <= 0:
        raise UsageError(f"budget must be a positive duration, got {text!r}")
    return s


def make_budget(budget: str | float | None = None, budget_rows: int | None = None,
                seed: int | None = None, t0: float | None = None) -> Budget | None:
    """The budget named by CLI/API arguments, or None when neither is given."""
    if budget is None and budget_rows is None:
        if seed is not None:
            raise UsageError("--seed applies to a budgeted check: give --budget or --budget-rows")
        return None
    seconds = None
    if budget is not None:
        seconds = parse_duration(budget) if isinstance(budget, str) else float(budget)
    return Budget(seconds=seconds, rows=budget_rows, seed=seed, **({"t0": t0} if t0 is not None else {}))


def sample_order(n_total: int, budget: Budget) -> np.ndarray:
    """The rows to read, in the order to read them: a seeded random permutation, truncated to the
    row budget. A time budget reads a prefix of it."""
    perm = np.random.default_rng(budget.seed).permutation(n_total)
    return perm[: budget.rows] if budget.rows is not None else perm


def block_ids(start: int, b: int, n_planned: int, n_blocks: int = N_BLOCKS) -> np.ndarray:
    """Block of each of rows start..start+b of the random order (``ceil(n_planned / n_blocks)``
    consecutive rows per block)."""
    size = max(1, -(-n_planned // n_blocks))
    return (np.arange(start, start + b) // size).astype(np.int64)


# ------------------------------------------------------------------ intervals
@dataclass
class Interval:
    value: float
    lo: float
    hi: float
    method: str

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    def pair(self) -> list[float]:
        return [float(self.lo), float(self.hi)]


def fpc(n: int, n_total: int | None) -> float:
    """Finite-population correction of a standard error (sampling without replacement)."""
    if not n_total:
        return 1.0
    return math.sqrt(max(0.0, 1.0 - n / n_total))


def ratio_interval(num: np.ndarray, den: np.ndarray, n_total: int | None = None, n: int | None = None,
                   method: str = "delta") -> Interval:
    """Σ num / Σ den over exchangeable blocks, with its delta-method 95 % interval."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    k = len(num)
    sd = float(den.sum())
    r = float(num.sum()) / sd
    if k < 2:
        return Interval(r, -math.inf, math.inf, method)
    z = num - r * den
    var = k / (k - 1) * float(np.dot(z, z)) / sd ** 2
    se = math.sqrt(var) * fpc(n if n is not None else int(sd), n_total)
    return Interval(r, r - Z95 * se, r + Z95 * se, method)


def mean_interval(sums: np.ndarray, counts: np.ndarray, n_total: int | None = None) -> Interval:
    """A row mean from per-block sums and row counts."""
    return ratio_interval(sums, counts, n_total, int(np.sum(counts)))


def explained_variance_interval(sse: np.ndarray, sumsq: np.ndarray, sumx: np.ndarray, counts: np.ndarray,
                                n_total: int | None = None, eps: float = 1e-10) -> Interval:
    """EV = 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² (DESIGN §3, pooled) with its delta-method interval.

    Per block: ``sse`` Σ‖x − x̂‖², ``sumsq`` Σ‖x‖², ``sumx`` Σx (``[k, d]``), ``counts`` rows."""
    sse, sumsq, sumx, counts = (np.asarray(a, np.float64) for a in (sse, sumsq, sumx, counts))
    n = float(counts.sum())
    mu = sumx.sum(0) / n
    ssv = sumsq - 2.0 * (sumx @ mu) + counts * float(mu @ mu)  # Σ_b ‖x − x̄‖²
    if float(ssv.sum()) / n < eps:
        v = 1.0 if float(sse.sum()) / n < eps else 0.0
        return Interval(v, v, v, "degenerate variance")
    r = ratio_interval(sse, ssv, n_total, int(n))
    return Interval(1.0 - r.value, 1.0 - r.hi, 1.0 - r.lo, "delta (ratio of means over row blocks)")


def wilson_interval(k: int, n: int, n_total: int | None = None) -> Interval:
    """Wilson score interval for a proportion k/n (effective n enlarged by the finite-population
    correction; exact when every row was read)."""
    p = k / n if n else float("nan")
    if n_total and n >= n_total:
        return Interval(p, p, p, "wilson (all rows)")
    f = fpc(n, n_total)
    ne = n / (f * f) if f > 0 else float("inf")
    z2 = Z95 ** 2
    centre = (p + z2 / (2 * ne)) / (1 + z2 / ne)
    half = Z95 * math.sqrt(p * (1 - p) / ne + z2 / (4 * ne * ne)) / (1 + z2 / ne)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), "wilson")


def wilson_bounds(k: np.ndarray, n: int, n_total: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Wilson bounds for per-feature counts ``k`` out of ``n`` rows."""
    k = np.asarray(k, np.float64)
    p = k / n
    if n_total and n >= n_total:
        return p, p
    f = fpc(n, n_total)
    ne = n / (f * f)
    z2 = Z95 ** 2
    centre = (p + z2 / (2 * ne)) / (1 + z2 / ne)
    half = Z95 * np.sqrt(p * (1 - p) / ne + z2 / (4 * ne * ne)) / (1 + z2 / ne)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def dense_fraction_interval(counts: np.ndarray, n: int, n_total: int | None = None,
                            threshold: float = 0.1) -> Interval:
    counts = np.asarray(counts, np.float64)
    lo, hi = wilson_bounds(counts, n, n_total)
    return Interval(float(np.mean(counts / n > threshold)), float(np.mean(lo > threshold)),
                    float(np.mean(hi > threshold)), "per-feature wilson")


def dead_fraction_interval(counts: np.ndarray, n: int, n_total: int | None = None) -> Interval:
    obs = float(np.mean(np.asarray(counts) == 0))
    exact = bool(n_total) and n >= n_total
    return Interval(obs, obs if exact else 0.0, obs, "exact (all rows)" if exact else "one-sided (sample upper bound)")


def basic_bootstrap(theta: float, reps: np.ndarray, n: int | None = None, n_total: int | None = None,
                    method: str = "bootstrap (basic)") -> Interval:
    """Basic (reverse-percentile) 95 % bootstrap interval, deviations scaled by the fpc."""
    reps = np.asarray(reps, np.float64)
    reps = reps[np.isfinite(reps)]
    if len(reps) < 10:
        return Interval(theta, -math.inf, math.inf, method)
    f = fpc(n, n_total) if n is not None else 1.0
    q_lo, q_hi = np.quantile(reps, [0.025, 0.975])
    return Interval(theta, theta - f * (q_hi - theta), theta - f * (q_lo - theta), method)


# ------------------------------------------------------------------ drift statistics, bootstrapped
def _psi_ks_sorted(r: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    from compliance.checks.drift import _ks_wasserstein_sorted, psi_from_counts, quantile_edges_from_order_stats

    n1, n2 = r.size, c.size
    edges = np.unique(quantile_edges_from_order_stats(lambda k: r[k], n1))
    rc = np.diff(np.concatenate([[0], np.searchsorted(r, edges, "right"), [n1]]))
    cc = np.diff(np.concatenate([[0], np.searchsorted(c, edges, "right"), [n2]]))
    d, _ = _ks_wasserstein_sorted(r, c)
    return psi_from_counts(rc, cc), d


def numeric_psi_ks(r: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """PSI and KS D of two samples, exactly as ``compliance.checks.drift`` computes them."""
    return _psi_ks_sorted(np.sort(np.asarray(r, np.float64)), np.sort(np.asarray(c, np.float64)))


def bootstrap_numeric_drift(r: np.ndarray, c: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT,
                            n_total: tuple[int | None, int | None] = (None, None),
                            deadline: float | None = None, hard_deadline: float | None = None) -> dict[str, Interval]:
    """PSI and KS of a numeric feature with basic-bootstrap intervals (both sides resampled).

    ``n_total``: rows available per side (finite-population correction: the smaller side's).
    ``deadline``: stop after at least 20 replicates once passed; ``hard_deadline``: after 10."""
    r, c = np.asarray(r, np.float64), np.asarray(c, np.float64)
    psi, ks = numeric_psi_ks(r, c)
    reps = []
    for _ in range(n_boot):
        now = time.perf_counter() if deadline is not None or hard_deadline is not None else 0.0
        if (deadline is not None and now > deadline and len(reps) >= 20) or \
                (hard_deadline is not None and now > hard_deadline and len(reps) >= 10):
            break
        rb = np.sort(r[rng.integers(0, r.size, r.size)])
        cb = np.sort(c[rng.integers(0, c.size, c.size)])
        reps.append(_psi_ks_sorted(rb, cb))
    reps = np.asarray(reps)
    f = _side_fpc(r.size, c.size, n_total)
    return {"psi": _scaled(basic_bootstrap(psi, reps[:, 0]), f), "ks_stat": _scaled(basic_bootstrap(ks, reps[:, 1]), f)}


def bootstrap_categorical_psi(rc: np.ndarray, cc: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT,
                              n_total: tuple[int | None, int | None] = (None, None)) -> Interval:
    """PSI over categories with a basic-bootstrap interval (multinomial resampling of each side)."""
    from compliance.checks.drift import psi_from_counts

    rc, cc = np.asarray(rc, np.int64), np.asarray(cc, np.int64)
    n1, n2 = int(rc.sum()), int(cc.sum())
    psi = psi_from_counts(rc, cc)
    rb = rng.multinomial(n1, rc / n1, size=n_boot)
    cb = rng.multinomial(n2, cc / n2, size=n_boot)
    reps = np.array([psi_from_counts(a, b) for a, b in zip(rb, cb)])
    return _scaled(basic_bootstrap(psi, reps), _side_fpc(n1, n2, n_total))


def _side_fpc(n1: int, n2: int, n_total) -> float:
    """A conservative single correction for two samples: the larger of the two sides' factors."""
    return max(fpc(n1, n_total[0]), fpc(n2, n_total[1]))


def _scaled(iv: Interval, f: float) -> Interval:
    if f >= 1.0 or not math.isfinite(iv.lo):
        return iv
    return Interval(iv.value, iv.value - f * (iv.value - iv.lo), iv.value + f * (iv.hi - iv.value), iv.method)


# ------------------------------------------------------------------ decisions by interval
@dataclass
class Rule:
    """A thresholded metric: ``level(x)`` is 'pass'/'warn'/'fail' and monotone in x."""

    metric: str
    label: str
    interval: Interval
    level: Callable[[float], str]
    thresholds: Sequence[float]
    fmt: str = "{:.4f}"

    def levels(self) -> tuple[str, str]:
        a, b = self.level(self.interval.lo), self.level(self.interval.hi)
        return (a, b) if RANK[a] <= RANK[b] else (b, a)


def rows_to_decide(iv: Interval, thresholds: Sequence[float], n: int, n_total: int | None) -> int:
    """About how many rows would make ``iv`` clear the thresholds it straddles (width ∝ 1/sqrt(n))."""
    inside = [t for t in thresholds if t is not None and iv.lo <= t <= iv.hi]
    gap = min((abs(iv.value - t) for t in inside), default=None)
    cap = n_total if n_total else None
    if gap is None:
        return n
    if gap <= 0 or not math.isfinite(iv.half) or iv.half <= 0:
        return cap or 4 * n
    need = int(math.ceil(n * (max(iv.half, iv.value - iv.lo, iv.hi - iv.value) / gap) ** 2))
    return min(need, cap) if cap else need


def decide(rules: Sequence[Rule], n: int, n_total: int | None) -> tuple[str, list[str], int | None]:
    """Status, reasons and rows that would likely decide it (None when decided)."""
    lo_worst = max((RANK[r.levels()[0]] for r in rules), default=0)
    hi_worst = max((RANK[r.levels()[1]] for r in rules), default=0)
    reasons, need = [], []
    for r in rules:
        a, b = r.levels()
        iv = r.interval
        shown = f"{r.label} {r.fmt.format(iv.value)} [{r.fmt.format(iv.lo)}, {r.fmt.format(iv.hi)}]"
        if a == b:
            if a != "pass":
                reasons.append(f"{a}: {shown}")
        elif RANK[b] > lo_worst:  # this metric's uncertainty matters for the verdict
            rows = rows_to_decide(iv, r.thresholds, n, n_total)
            need.append(rows)
            straddled = [t for t in r.thresholds if t is not None and iv.lo <= t <= iv.hi]
            reasons.append(f"inconclusive: {shown} straddles {', '.join(str(t) for t in straddled)}"
                           f" ({a} or {b}); about {rows:,} rows would likely decide it")
    if lo_worst == hi_worst:
        return LEVELS[lo_worst], reasons, None
    return INCONCLUSIVE, reasons, max(need) if need else None


def ci_dict(intervals: dict[str, Interval]) -> dict[str, list[float]]:
    return {k: iv.pair() for k, iv in intervals.items()}
