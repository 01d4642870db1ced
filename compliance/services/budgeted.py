"""Budgeted checks (DESIGN §9): the service half. ``checks.run_fidelity``, ``run_activation_drift``
and ``run_drift`` hand over here when they are given a :class:`~compliance.checks.intervals.Budget`.

Every metric is recorded with its 95 % interval (``metrics["ci"]``); the status is decided by the
intervals (``compliance.checks.intervals.decide``) and is ``inconclusive`` when an interval
straddles a threshold that matters, with ``metrics["rows_to_decide"]`` and a reason naming the
rows that would likely decide it. The parameters record the budget, the seed, the rows used and
the rows available. Flags (failure modes) are raised only by decided checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from compliance.checks import intervals as I
from compliance.errors import UsageError
from compliance.hashing import sha256_file

BUDGETABLE = ("sae", "transcoder")


def require_budget_kind(kind: str, check: str) -> None:
    if kind not in BUDGETABLE:
        raise UsageError(f"a budgeted {check} check supports sae and transcoder artifacts, not {kind}: "
                         "run it without --budget/--budget-rows")


def _budget_params(params: dict, budget: I.Budget, n_used: int, n_total: int, method: str) -> dict:
    return dict(params, budget=budget.to_dict(), seed=budget.seed, rows_used=int(n_used),
                rows_available=int(n_total), ci_level=0.95, ci_method=method)


def budgeted_fidelity(session: Session, st, a, v, coder, policy: dict, hashes: dict, params: dict,
                      budget: I.Budget, *, activations=None, data=None, batch_rows: int = 1024, device=None) -> dict:
    from compliance.interp.budget import Deadline, budgeted_fidelity_file, budgeted_fidelity_model
    from compliance.interp.status import fidelity_rules
    from compliance.services import checks as C

    deadline = Deadline(budget, budget.t0)
    if activations is not None:
        p = Path(activations)
        hashes["activations"] = sha256_file(p)
        metrics, ci, blocks, n_total = budgeted_fidelity_file(coder, p, budget, deadline, batch_rows=batch_rows,
                                                              device=device)
    else:
        model = C.version_model(session, v)
        hashes["weights"] = v.weights_sha256
        ref = C.data_for(session, a.model_id, st.started_at, data)
        path, hashes["data"], st.window = ref.path, ref.sha256, ref.window
        params["data"] = path.name
        frame = C._frame(path, None)
        n_total = len(frame)
        metrics, ci, blocks = budgeted_fidelity_model(coder, model, frame, budget, deadline, batch_rows=batch_rows,
                                                      device=device, **C._hooks_for(a))
    metrics.pop("formula_version", None)
    base = C.baseline_ev(session, a, st.started_at)
    metrics["baseline_explained_variance"] = base
    metrics["density_histogram"] = C.density_histogram(blocks.density)
    n = metrics["n_rows"]
    status, reasons, need = I.decide(fidelity_rules(ci, base, policy), n, n_total)
    metrics["ci"] = I.ci_dict(ci)
    metrics["rows_to_decide"] = need
    params = _budget_params(params, budget, n, n_total, "delta method over row blocks (EV, means); Wilson (rates)")
    flags = C.fidelity_flags(metrics, base, policy) if status != I.INCONCLUSIVE else []
    from compliance.interp.fidelity import FORMULA_VERSION

    c = C._finish(session, st, status=status, metrics=metrics, reasons=reasons, flags=flags, input_hashes=hashes,
                  parameters=params, explained_variance=metrics.get("explained_variance"),
                  formula_version=FORMULA_VERSION)
    return C.check_view(session, c)


def budgeted_activation_drift(session: Session, st, a, v, coder, model, ref_path: Path, cur_path: Path,
                              policy: dict, hashes: dict, params: dict, budget: I.Budget) -> dict:
    from compliance.interp.budget import Deadline
    from compliance.interp.budget import budgeted_activation_drift as compute
    from compliance.interp.status import activation_drift_rules
    from compliance.services import checks as C

    deadline = Deadline(budget, budget.t0)
    res, ci, n_ref_total, n_cur_total = compute(coder, model, C._frame(ref_path, None), C._frame(cur_path, None),
                                                budget, deadline, **C._hooks_for(a))
    metrics = res.metrics()
    n_used = min(res.n_rows_reference, res.n_rows_current)
    status, reasons, need = I.decide(activation_drift_rules(ci, res.n_features, policy), n_used,
                                     min(n_ref_total, n_cur_total))
    metrics["ci"] = I.ci_dict(ci)
    metrics["rows_to_decide"] = need
    params = _budget_params(params, budget, n_used, min(n_ref_total, n_cur_total),
                            "basic bootstrap over row blocks of both windows")
    params.update(rows_used_reference=res.n_rows_reference, rows_used_current=res.n_rows_current,
                  rows_available_reference=n_ref_total, rows_available_current=n_cur_total)
    flags = ["FM-DEAD"] if status != I.INCONCLUSIVE and any("dead" in r or "dense" in r for r in reasons
                                                             if not r.startswith("inconclusive")) else []
    c = C._finish(session, st, status=status, metrics=metrics, reasons=reasons, flags=flags, input_hashes=hashes,
                  parameters=params)
    return C.check_view(session, c)


# ------------------------------------------------------------------ data drift
def budgeted_drift_result(ref: Path, cur: Path, *, features, categorical, policy, budget: I.Budget,
                          default_rows: int = 10_000) -> tuple[Any, dict, dict]:
    """Drift statistics on seeded random subsamples of both files, with bootstrap intervals for
    PSI and KS per feature, per-feature and dataset statuses decided by interval.

    Returns the ``DriftResult`` (its statuses replaced by the interval decisions), the intervals
    per feature and the budget parameters."""
    import time

    from compliance.checks.drift import (STATUS_ORDER, _numeric_values, compute_drift, read_frame, status_for)
    t_end = I.Deadline(budget).end
    cols = list(features) if features is not None else None
    rf, cf = read_frame(ref, cols), read_frame(cur, cols)
    n_ref_total, n_cur_total = len(rf), len(cf)
    rows = budget.rows if budget.rows is not None else default_rows
    rs = rf.iloc[I.sample_order(n_ref_total, I.Budget(rows=min(rows, n_ref_total), seed=budget.seed))]
    cs = cf.iloc[I.sample_order(n_cur_total, I.Budget(rows=min(rows, n_cur_total), seed=budget.seed + 1))]
    res = compute_drift(rs, cs, features=features, categorical=categorical, policy=policy)
    rng = np.random.default_rng(budget.seed + 2)
    cis: dict[str, dict] = {}
    lo_levels, hi_levels, need = [], [], []
    for f in res.features:
        if f.status == "error" or f.psi is None:
            lo_levels.append("error")
            hi_levels.append("error")
            continue
        per_deadline = None if t_end is None else time.perf_counter() + max(0.0, t_end - time.perf_counter()) / max(
            1, len(res.features) - len(cis))
        if f.kind == "numeric":
            r = _numeric_values(rs[f.feature])[0]
            c = _numeric_values(cs[f.feature])[0]
            ivs = I.bootstrap_numeric_drift(r, c, rng, n_total=(n_ref_total, n_cur_total), deadline=per_deadline,
                                            hard_deadline=t_end)
        else:
            ivs = {"psi": _categorical_interval(rs[f.feature], cs[f.feature], rng, (n_ref_total, n_cur_total))}
        # both statistics are >= 0; the basic interval may lie below a small-sample PSI (which is
        # biased upwards): it is an interval for the full-data value, not around the sample's
        ivs = {k: I.Interval(iv.value, max(0.0, iv.lo), max(0.0, iv.hi), iv.method) for k, iv in ivs.items()}
        psi = ivs["psi"]
        cis[f.feature] = I.ci_dict(ivs)
        a, b = status_for(psi.lo, policy), status_for(psi.hi, policy)
        if a == b:
            f.status = a
        else:
            f.status = I.INCONCLUSIVE
            need.append(I.rows_to_decide(psi, (policy.psi_warn, policy.psi_fail), min(len(rs), len(cs)),
                                         min(n_ref_total, n_cur_total)))
        lo_levels.append(a)
        hi_levels.append(b)
    lo, hi = _dataset_level(lo_levels, policy, STATUS_ORDER), _dataset_level(hi_levels, policy, STATUS_ORDER)
    res.status = lo if lo == hi else I.INCONCLUSIVE
    params = {"budget": budget.to_dict(), "seed": budget.seed, "rows_used": min(len(rs), len(cs)),
              "rows_used_reference": len(rs), "rows_used_current": len(cs),
              "rows_available_reference": n_ref_total, "rows_available_current": n_cur_total,
              "ci_level": 0.95, "ci_method": "basic bootstrap over rows (PSI, KS)",
              "rows_to_decide": max(need) if (need and res.status == I.INCONCLUSIVE) else None}
    return res, cis, params


def _categorical_interval(rser, cser, rng, n_total) -> I.Interval:
    import pandas as pd

    r, c = rser.dropna().astype(str), cser.dropna().astype(str)
    labels = sorted(set(r.unique()) | set(c.unique()))
    rc = pd.Series(r).value_counts().reindex(labels, fill_value=0).to_numpy()
    cc = pd.Series(c).value_counts().reindex(labels, fill_value=0).to_numpy()
    return I.bootstrap_categorical_psi(rc, cc, rng, n_total=n_total)


def _dataset_level(levels: list[str], policy, order: dict) -> str:
    """The dataset verdict of ``compliance.checks.drift.finish`` from per-feature statuses."""
    evaluated = [s for s in levels if s != "error"]
    if not evaluated:
        return "error"
    if sum(s == "fail" for s in evaluated) / len(evaluated) >= policy.drift_share:
        return "fail"
    return "pass" if max(order[s] for s in levels) == 0 else "warn"


def drift_interval_reasons(per_feature: list[dict], cis: dict, bparams: dict) -> list[str]:
    """Reasons of a budgeted drift check: decided warn/fail features and undecided ones, with intervals."""
    out = []
    for f in per_feature:
        ci = cis.get(f["feature"], {}).get("psi")
        if f["status"] in ("warn", "fail", I.INCONCLUSIVE) and ci is not None and f["psi"] is not None:
            out.append(f"{f['status']}: {f['feature']} PSI {f['psi']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
    if bparams.get("rows_to_decide"):
        out.append(f"inconclusive: about {bparams['rows_to_decide']:,} rows per window would likely decide it")
    return out
