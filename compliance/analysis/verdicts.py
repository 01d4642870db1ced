"""Per-model verdicts at a reference day (DESIGN §4, methodology v2), with their reasons.

* ``not required`` — the model's tier requires no artifact group (it is outside coverage scope).
* ``not deployed`` — in scope, but no version of it is deployed on the reference day (nothing is
  explained to anyone; the verdict says so instead of judging nothing as fit).
* ``not fit`` — a required slot of a deployed version is broken, stale, missing or **pending**
  (a warn that no validator accepted proves nothing yet), or a critical/high failure-mode
  occurrence is open on a deployed version of the model (or on the model as a whole).
* ``fit with conditions`` — every required slot fresh, some only through warns (accepted), or
  only medium/low occurrences open.
* ``fit`` — every required slot fresh through passes, no open occurrence.

Every verdict lists its reasons (one short line each); the analysis never returns a verdict
without one, except ``fit``, whose reason states what was checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .coverage import STATE_NAMES, DayGrid

FIT, CONDITIONS, NOT_FIT, NOT_REQUIRED, NOT_DEPLOYED = (
    "fit", "fit with conditions", "not fit", "not required", "not deployed")
VERDICT_ORDER = (NOT_FIT, CONDITIONS, FIT, NOT_DEPLOYED, NOT_REQUIRED)  # worst first
SERIOUS = ("critical", "high")


def model_verdicts(grid: DayGrid, ref_col: int, version_labels: Mapping[int, str],
                   open_occurrences: Iterable[Mapping]) -> dict[str, dict]:
    """``{model_id: {"verdict": str, "reasons": [str, ...]}}`` for every model of the grid.

    ``open_occurrences``: occurrences open at the reference time, each with model_id,
    version_id (or None), code and severity; only those on a version deployed on the reference
    day (or with no version) count.
    """
    nm = len(grid.model_ids)
    in_grid = 0 <= ref_col < grid.nd
    dep_now = grid.deployed[:, ref_col] if in_grid and len(grid.ver_ids) else np.zeros(len(grid.ver_ids), bool)
    deployed_versions = {int(v) for v in grid.ver_ids[dep_now]}
    reasons: dict[int, list[str]] = {i: [] for i in range(nm)}
    bad = np.zeros(nm, bool)
    cond = np.zeros(nm, bool)
    if in_grid and len(grid.slot_ver):
        st = grid.slot_state[:, ref_col]
        conditional = grid.slot_conditional[:, ref_col]
        for s in np.flatnonzero(st != 0):
            v = int(grid.ver_ids[grid.slot_ver[s]])
            m = int(grid.ver_model[grid.slot_ver[s]])
            label = version_labels.get(v, str(v))
            group = grid.slot_group_name[s]
            state = STATE_NAMES[int(st[s])]
            if state == "fresh":
                if conditional[s]:
                    cond[m] = True
                    reasons[m].append(f"{label} {group}: fresh through an accepted warn")
                continue
            bad[m] = True
            why = {"pending": "pending (a warn no validator has accepted)",
                   "broken": "broken (the latest check failed or errored)",
                   "stale": "stale (no valid check on this version)",
                   "missing": "missing (no artifact of the group registered)"}[state]
            reasons[m].append(f"{label} {group}: {why}")
    index = {mid: i for i, mid in enumerate(grid.model_ids.tolist())}
    for o in open_occurrences:
        m = index.get(o.get("model_id"))
        if m is None:
            continue
        v = o.get("version_id")
        if v is not None and int(v) not in deployed_versions:
            continue
        where = f" on {version_labels.get(int(v), v)}" if v is not None else ""
        sev = str(o.get("severity") or "").lower()
        line = f"{o.get('code')} ({sev or 'unrated'}) open{where}"
        if sev in SERIOUS:
            bad[m] = True
        else:
            cond[m] = True
        reasons[m].append(line)
    model_deployed = np.zeros(nm, bool)
    if len(grid.ver_ids):
        np.logical_or.at(model_deployed, grid.ver_model, dep_now)
    out: dict[str, dict] = {}
    for i, mid in enumerate(grid.model_ids.tolist()):
        if not grid.model_required[i]:
            out[mid] = {"verdict": NOT_REQUIRED, "reasons": ["its tier requires no interpretability artifact"]}
        elif not model_deployed[i]:
            out[mid] = {"verdict": NOT_DEPLOYED, "reasons": ["no version deployed on the reference day"]}
        elif bad[i]:
            out[mid] = {"verdict": NOT_FIT, "reasons": reasons[i]}
        elif cond[i]:
            out[mid] = {"verdict": CONDITIONS, "reasons": reasons[i]}
        else:
            out[mid] = {"verdict": FIT, "reasons": ["every required slot fresh through passing checks; "
                                                    "no open failure mode"]}
    return out
