"""Pass/warn/fail of interpretability checks under a policy (DESIGN §5). Pure, torch-free.

Policy lookup: each threshold is read from ``policy[section][key]``, then ``policy[key]``,
then the default below, so both a flat dict and one nested by check kind work::

    {"fidelity": {"ev_warn": 0.8, ...}, "overhead": {"overhead_budget": 0.1}, ...}

Keys and defaults (DESIGN §5 where it names a value; the others are this module's choice):

fidelity          ev_warn 0.8, ev_fail 0.6 (explained variance below → warn/fail);
                  decay_warn 0.1, decay_fail 0.2 (baseline EV − current EV above → warn/fail);
                  dead_fraction_warn 0.2; dense_fraction_warn 0.9 (share of features with
                  density > 0.1 above → warn); flip_warn 0.01, flip_fail 0.05
                  (decision_flip_rate above → warn/fail)
overhead          overhead_budget 0.10: latency overhead ratio above the budget → fail,
                  above overhead_warn_share (0.8) of the budget → warn
alignment         min_survival 0.5: feature-survival share below → warn (FM-LABELS), below
                  survival_fail (None: never) → fail; min_cka 0.5: CKA below → warn
activation_drift  psi_warn 0.1 / psi_fail 0.25 on the density distribution;
                  newly_dead_warn 0.05 (share of features newly dead above → warn);
                  dead_fraction_warn / dense_fraction_warn as for fidelity on the current sample

A metric that is missing or not finite where the check needs it gives ``error``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

PASS, WARN, FAIL, ERROR = "pass", "warn", "fail", "error"
_RANK = {PASS: 0, WARN: 1, FAIL: 2, ERROR: 3}

DEFAULTS: dict[str, dict[str, float | None]] = {
    "fidelity": {"ev_warn": 0.8, "ev_fail": 0.6, "decay_warn": 0.1, "decay_fail": 0.2,
                 "dead_fraction_warn": 0.2, "dense_fraction_warn": 0.9,
                 "flip_warn": 0.01, "flip_fail": 0.05},
    "overhead": {"overhead_budget": 0.10, "overhead_warn_share": 0.8},
    "alignment": {"min_survival": 0.5, "survival_fail": None, "min_cka": 0.5},
    "activation_drift": {"psi_warn": 0.1, "psi_fail": 0.25, "newly_dead_warn": 0.05,
                         "dead_fraction_warn": 0.2, "dense_fraction_warn": 0.9},
}


def _p(policy: Mapping | None, section: str, key: str):
    policy = policy or {}
    sub = policy.get(section)
    if isinstance(sub, Mapping) and key in sub:
        return sub[key]
    if key in policy:
        return policy[key]
    return DEFAULTS[section][key]


def _num(metrics: Mapping, key: str) -> float | None:
    v = metrics.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


class _Verdict:
    def __init__(self):
        self.status, self.reasons = PASS, []

    def add(self, status: str, reason: str):
        if _RANK[status] > _RANK[self.status]:
            self.status = status
        self.reasons.append(f"{status}: {reason}")

    def result(self) -> tuple[str, list[str]]:
        return self.status, self.reasons


def fidelity_status(metrics: Mapping, baseline_ev: float | None,
                    policy: Mapping | None = None) -> tuple[str, list[str]]:
    """Status of a fidelity check; ``metrics`` as ``FidelityResult.metrics()`` (plus optional
    ``decision_flip_rate`` from the downstream check)."""
    v = _Verdict()
    s = "fidelity"
    ev = _ev_dead_dense(v, metrics, policy, "")
    if ev is None:
        return v.result()
    if baseline_ev is not None and math.isfinite(baseline_ev):
        decay = baseline_ev - ev
        d_fail, d_warn = _p(policy, s, "decay_fail"), _p(policy, s, "decay_warn")
        if decay > d_fail:
            v.add(FAIL, f"explained variance decayed {decay:.4f} from baseline {baseline_ev:.4f} (> {d_fail})")
        elif decay > d_warn:
            v.add(WARN, f"explained variance decayed {decay:.4f} from baseline {baseline_ev:.4f} (> {d_warn})")
    _judge_layers(v, metrics, policy)
    flip = _num(metrics, "decision_flip_rate")
    if flip is not None:
        f_fail, f_warn = _p(policy, s, "flip_fail"), _p(policy, s, "flip_warn")
        if flip > f_fail:
            v.add(FAIL, f"decision flip rate {flip:.4f} > {f_fail}")
        elif flip > f_warn:
            v.add(WARN, f"decision flip rate {flip:.4f} > {f_warn}")
    return v.result()


def _ev_dead_dense(v: _Verdict, metrics: Mapping, policy: Mapping | None, prefix: str) -> float | None:
    """Explained variance against its floors, dead and dense fractions (the thresholds an
    artifact and each CLT layer share); returns the EV, None (an error added) when missing."""
    s = "fidelity"
    ev = _num(metrics, "explained_variance")
    if ev is None:
        v.add(ERROR, f"{prefix}explained_variance missing or not finite")
        return None
    ev_fail, ev_warn = _p(policy, s, "ev_fail"), _p(policy, s, "ev_warn")
    if ev < ev_fail:
        v.add(FAIL, f"{prefix}explained variance {ev:.4f} < {ev_fail}")
    elif ev < ev_warn:
        v.add(WARN, f"{prefix}explained variance {ev:.4f} < {ev_warn}")
    for key, what in (("dead_fraction", "dead"), ("dense_fraction", "dense")):
        x, limit = _num(metrics, key), _p(policy, s, f"{key}_warn")
        if x is not None and x > limit:
            v.add(WARN, f"{prefix}{what} features {x:.4f} > {limit}")
    return ev


def layer_status(layer: Mapping, policy: Mapping | None = None) -> tuple[str, list[str]]:
    """One output layer of a CLT against the same thresholds as a whole artifact (EV, dead, dense)."""
    v = _Verdict()
    _ev_dead_dense(v, layer, policy, f"layer {layer.get('layer')}: ")
    return v.result()


def _judge_layers(v: _Verdict, metrics: Mapping, policy: Mapping | None) -> None:
    """A CLT is judged per output layer: its status is the worst of its layers' statuses; the
    pooled figures (judged above) are shown beside them, never instead (DESIGN §3)."""
    layers = metrics.get("per_layer")
    if not isinstance(layers, list):
        return
    for layer in layers:
        if isinstance(layer, Mapping):
            for r in layer_status(layer, policy)[1]:
                _add_raw(v, r)


def _add_raw(v: _Verdict, reason: str) -> None:
    status, _, text = reason.partition(": ")
    v.add(status, text)


def probe_status(auc: float, policy: Mapping | None = None, *, protected: bool = False) -> tuple[str, list[str]]:
    """A probe of an ordinary concept is faithful while it still separates its target (AUC below
    ``probe.auc_warn``/``auc_fail`` warns/fails). A probe whose target is a protected attribute is
    judged the other way: the attribute being linearly decodable is the finding (AUC above
    ``probe.protected_auc_warn`` warns, above ``protected_auc_fail`` fails; FM-PROTECTED)."""
    v = _Verdict()
    pp = (policy or {}).get("probe") or {}
    if not math.isfinite(auc):
        v.add(ERROR, "probe AUC not finite")
        return v.result()
    if protected:
        warn_at, fail_at = float(pp.get("protected_auc_warn", 0.7)), float(pp.get("protected_auc_fail", 0.8))
        if auc > fail_at:
            v.add(FAIL, f"protected attribute decodable: probe AUC {auc:.3f} > {fail_at}")
        elif auc > warn_at:
            v.add(WARN, f"protected attribute decodable: probe AUC {auc:.3f} > {warn_at}")
        return v.result()
    warn_at, fail_at = float(pp.get("auc_warn", 0.7)), float(pp.get("auc_fail", 0.6))
    if auc < fail_at:
        v.add(FAIL, f"probe AUC {auc:.3f} < {fail_at}")
    elif auc < warn_at:
        v.add(WARN, f"probe AUC {auc:.3f} < {warn_at}")
    return v.result()


def overhead_status(metrics: Mapping, policy: Mapping | None = None) -> tuple[str, list[str]]:
    """``metrics['overhead_ratio']`` = (latency with artifact − without) / without."""
    v = _Verdict()
    r = _num(metrics, "overhead_ratio")
    if r is None:
        v.add(ERROR, "overhead_ratio missing or not finite")
        return v.result()
    budget = _p(policy, "overhead", "overhead_budget")
    warn_at = budget * _p(policy, "overhead", "overhead_warn_share")
    if r > budget:
        v.add(FAIL, f"latency overhead {r:.1%} > budget {budget:.0%}")
    elif r > warn_at:
        v.add(WARN, f"latency overhead {r:.1%} > {warn_at:.1%} (near budget {budget:.0%})")
    return v.result()


def alignment_status(metrics: Mapping, policy: Mapping | None = None) -> tuple[str, list[str]]:
    """``metrics``: ``survival_share`` (feature survival) and/or ``cka``."""
    v = _Verdict()
    surv, cka = _num(metrics, "survival_share"), _num(metrics, "cka")
    if surv is None and cka is None:
        v.add(ERROR, "neither survival_share nor cka present")
        return v.result()
    if surv is not None:
        s_fail, s_warn = _p(policy, "alignment", "survival_fail"), _p(policy, "alignment", "min_survival")
        if s_fail is not None and surv < s_fail:
            v.add(FAIL, f"feature survival {surv:.4f} < {s_fail}")
        elif surv < s_warn:
            v.add(WARN, f"feature survival {surv:.4f} < {s_warn}: labels lost")
    if cka is not None and cka < _p(policy, "alignment", "min_cka"):
        v.add(WARN, f"linear CKA {cka:.4f} < {_p(policy, 'alignment', 'min_cka')}")
    return v.result()


def activation_drift_status(metrics: Mapping, policy: Mapping | None = None) -> tuple[str, list[str]]:
    """``metrics`` as ``ActivationDriftResult.metrics()``."""
    v = _Verdict()
    s = "activation_drift"
    psi = _num(metrics, "psi")
    n = _num(metrics, "n_features")
    if psi is None or not n:
        v.add(ERROR, "psi or n_features missing")
        return v.result()
    if psi >= _p(policy, s, "psi_fail"):
        v.add(FAIL, f"PSI of feature densities {psi:.4f} >= {_p(policy, s, 'psi_fail')}")
    elif psi >= _p(policy, s, "psi_warn"):
        v.add(WARN, f"PSI of feature densities {psi:.4f} >= {_p(policy, s, 'psi_warn')}")
    nd = (_num(metrics, "n_newly_dead") or 0) / n
    if nd > _p(policy, s, "newly_dead_warn"):
        v.add(WARN, f"{nd:.2%} of features newly dead > {_p(policy, s, 'newly_dead_warn'):.2%}")
    dead = _num(metrics, "dead_fraction_current")
    if dead is not None and dead > _p(policy, s, "dead_fraction_warn"):
        v.add(WARN, f"dead features {dead:.4f} > {_p(policy, s, 'dead_fraction_warn')}")
    dense = _num(metrics, "dense_fraction_current")
    if dense is not None and dense > _p(policy, s, "dense_fraction_warn"):
        v.add(WARN, f"dense features {dense:.4f} > {_p(policy, s, 'dense_fraction_warn')}")
    return v.result()


# ------------------------------------------------------------------ budgeted checks (DESIGN §9)
def _below(fail, warn):
    """Level of a metric that is bad when low (explained variance)."""
    return lambda x: FAIL if fail is not None and x < fail else WARN if warn is not None and x < warn else PASS


def _above(fail, warn, strict=True):
    """Level of a metric that is bad when high (flip rate, decay, dead/dense shares; PSI uses >=)."""
    if strict:
        return lambda x: FAIL if fail is not None and x > fail else WARN if warn is not None and x > warn else PASS
    return lambda x: FAIL if fail is not None and x >= fail else WARN if warn is not None and x >= warn else PASS


def fidelity_rules(ci: Mapping, baseline_ev: float | None, policy: Mapping | None = None) -> list:
    """The fidelity thresholds of :func:`fidelity_status` as interval rules (``ci``: metric → Interval)."""
    from compliance.checks.intervals import Interval, Rule

    s = "fidelity"
    rules = []
    ev = ci.get("explained_variance")
    if ev is not None:
        ev_fail, ev_warn = _p(policy, s, "ev_fail"), _p(policy, s, "ev_warn")
        rules.append(Rule("explained_variance", "explained variance", ev, _below(ev_fail, ev_warn), (ev_fail, ev_warn)))
        if baseline_ev is not None and math.isfinite(baseline_ev):
            decay = Interval(baseline_ev - ev.value, baseline_ev - ev.hi, baseline_ev - ev.lo, ev.method)
            d_fail, d_warn = _p(policy, s, "decay_fail"), _p(policy, s, "decay_warn")
            rules.append(Rule("decay", f"decay from baseline {baseline_ev:.4f}", decay, _above(d_fail, d_warn),
                              (d_fail, d_warn)))
    for key, label in (("dead_fraction", "dead features"), ("dense_fraction", "dense features")):
        if ci.get(key) is not None:
            w = _p(policy, s, f"{key}_warn")
            rules.append(Rule(key, label, ci[key], _above(None, w), (w,)))
    if ci.get("decision_flip_rate") is not None:
        f_fail, f_warn = _p(policy, s, "flip_fail"), _p(policy, s, "flip_warn")
        rules.append(Rule("decision_flip_rate", "decision flip rate", ci["decision_flip_rate"],
                          _above(f_fail, f_warn), (f_fail, f_warn)))
    return rules


def activation_drift_rules(ci: Mapping, n_features: int, policy: Mapping | None = None) -> list:
    """The thresholds of :func:`activation_drift_status` as interval rules."""
    from compliance.checks.intervals import Interval, Rule

    s = "activation_drift"
    rules = []
    if ci.get("psi") is not None:
        pf, pw = _p(policy, s, "psi_fail"), _p(policy, s, "psi_warn")
        rules.append(Rule("psi", "PSI of feature densities", ci["psi"], _above(pf, pw, strict=False), (pf, pw)))
    nd = ci.get("n_newly_dead")
    if nd is not None and n_features:
        share = Interval(nd.value / n_features, nd.lo / n_features, nd.hi / n_features, nd.method)
        w = _p(policy, s, "newly_dead_warn")
        rules.append(Rule("newly_dead_share", "share of features newly dead", share, _above(None, w), (w,)))
    for key, label, pk in (("dead_fraction_current", "dead features", "dead_fraction_warn"),
                           ("dense_fraction_current", "dense features", "dense_fraction_warn")):
        if ci.get(key) is not None:
            w = _p(policy, s, pk)
            rules.append(Rule(key, label, ci[key], _above(None, w), (w,)))
    return rules
