"""Group fairness on hand-worked fixtures (no store)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compliance.checks.fairness import MISSING_GROUP, FairnessPolicy, attribute_fairness, evaluate
from compliance.errors import InputError

Z = 1.959963984540054


def _rows(group: str, good_approved: int, good_flagged: int, bad_approved: int, bad_flagged: int):
    """(group, score, y) rows: approved rows score 0.1, flagged rows 0.9 (threshold 0.5)."""
    spec = [(0.1, 0, good_approved), (0.9, 0, good_flagged), (0.1, 1, bad_approved), (0.9, 1, bad_flagged)]
    return [(group, s, y) for s, y, n in spec for _ in range(n)]


def fixture():
    # A: 100 rows, 80 approved; of 70 good, 65 approved; of 30 bad, 15 approved.
    # B: 100 rows, 60 approved; of 60 good, 50 approved; of 40 bad, 10 approved.
    # C: 10 rows, all flagged: too small to judge (min 50).
    rows = _rows("A", 65, 5, 15, 15) + _rows("B", 50, 10, 10, 30) + _rows("C", 0, 5, 0, 5)
    g, s, y = zip(*rows)
    return np.array(g, dtype=object), np.array(s), np.array(y, dtype=float)


def test_four_fifths_rule_and_differences_by_hand():
    g, s, y = fixture()
    res = attribute_fairness("band", g, s, 0.5, y)
    by = {r.group: r for r in res.groups}
    a, b, c = by["A"], by["B"], by["C"]
    assert res.reference_group == "A" and a.reference and a.air == 1.0
    assert a.approval_rate == 0.8 and b.approval_rate == 0.6
    # four-fifths rule: 0.6 / 0.8 = 0.75 < 0.8 -> warn (not below 0.7 -> not fail)
    assert abs(b.air - 0.75) < 1e-12
    # equal opportunity: P(approved | good): B 50/60, A 65/70
    assert abs(b.eod - (50 / 60 - 65 / 70)) < 1e-12
    # average odds: ½[(P(appr | bad) B − A) + (P(appr | good) B − A)] = ½[(10/40 − 15/30) + (50/60 − 65/70)]
    assert abs(b.aod - 0.5 * ((10 / 40 - 15 / 30) + (50 / 60 - 65 / 70))) < 1e-12
    # calibration within groups: observed bad rate − mean score
    assert abs(a.calibration_gap - (0.30 - (0.8 * 0.1 + 0.2 * 0.9))) < 1e-12
    assert abs(b.calibration_gap - (0.40 - (0.6 * 0.1 + 0.4 * 0.9))) < 1e-12
    # AIR interval: delta method on log(AIR)
    sd = math.sqrt(0.4 / (100 * 0.6) + 0.2 / (100 * 0.8))
    assert abs(b.air_lower - 0.75 * math.exp(-Z * sd)) < 1e-9 and abs(b.air_upper - 0.75 * math.exp(Z * sd)) < 1e-9
    # EOD interval: two independent proportions
    v = (50 / 60) * (10 / 60) / 60 + (65 / 70) * (5 / 70) / 70
    assert abs(b.eod_upper - (b.eod + Z * math.sqrt(v))) < 1e-12
    # verdicts: B warns on the AIR (0.75) and the AOD (−0.173, beyond ±0.1); EOD −0.095 is within ±0.1
    assert b.status == "warn" and any("adverse impact ratio 0.750" in r for r in b.reasons)
    assert any("average-odds" in r for r in b.reasons) and not any("equal-opportunity" in r for r in b.reasons)
    # C is reported, not judged
    assert c.status == "too_small" and not c.judged and c.air is None and c.eod is None
    assert c.n == 10 and c.approval_rate == 0.0
    assert res.status == "warn"


def test_fail_below_air_fail_and_weights():
    g, s, y = fixture()
    pol = FairnessPolicy(air_warn=0.9, air_fail=0.76)
    res = attribute_fairness("band", g, s, 0.5, y, policy=pol)
    assert res.status == "fail"
    # uniform weights change no point figure
    w2 = attribute_fairness("band", g, s, 0.5, y, np.full(len(s), 3.0))
    assert [(r.group, r.air, r.eod, r.aod) for r in w2.groups] == [(r.group, r.air, r.eod, r.aod)
                                                                   for r in attribute_fairness("band", g, s, 0.5, y).groups]
    # a group weighted down to nothing is too small to judge
    w = np.where(g == "B", 0.0, 1.0)
    res = attribute_fairness("band", g, s, 0.5, y, w)
    assert {r.group: r.status for r in res.groups}["B"] == "too_small"


def test_unmatured_outcomes_count_for_approval_only():
    g, s, y = fixture()
    y2 = y.copy()
    y2[g == "B"] = np.nan  # B's outcomes are not known yet
    res = attribute_fairness("band", g, s, 0.5, y2)
    b = {r.group: r for r in res.groups}["B"]
    assert b.approval_rate == 0.6 and abs(b.air - 0.75) < 1e-12
    assert b.n_matured == 0 and not b.outcomes_judged and b.eod is None and b.aod is None and b.calibration_gap is None


def test_small_group_is_reported_not_judged_even_when_extreme():
    g = np.array(["big"] * 200 + ["tiny"] * 5, dtype=object)
    s = np.r_[np.full(200, 0.1), np.full(5, 0.9)]  # the tiny group is never approved
    res = attribute_fairness("sex", g, s, 0.5)
    tiny = {r.group: r for r in res.groups}["tiny"]
    assert tiny.status == "too_small" and tiny.air is None and "not judged" in tiny.reasons[0]
    assert res.status == "pass"


def test_missing_values_form_their_own_group_and_evaluate_combines():
    g = np.array(["F", "M", None, "F", "M", np.nan] * 30, dtype=object)
    rng = np.random.default_rng(1)
    s = rng.random(len(g))
    out = evaluate({"sex": g, "age_band": np.where(s > 0.3, "young", "old")}, s, 0.5, policy=FairnessPolicy(min_group_size=10))
    groups = {r.group for r in out.attributes[0].groups}
    assert groups == {"F", "M", MISSING_GROUP}
    assert out.to_dict()["attributes"][1]["attribute"] == "age_band"
    # age bands are defined by the score: the old band is always approved, the young mostly not -> fail
    assert out.status == "fail"


def test_bad_input():
    with pytest.raises(InputError, match="no protected"):
        evaluate({}, np.array([0.1]), 0.5)
    with pytest.raises(InputError, match="0/1"):
        attribute_fairness("a", np.array(["x", "y"]), np.array([0.1, 0.2]), 0.5, np.array([0, 2.0]))
    with pytest.raises(InputError, match="NaN"):
        attribute_fairness("a", np.array(["x", "y"]), np.array([0.1, np.nan]), 0.5)


def test_calibration_is_judged_against_the_reference_group():
    # A and B both over-predicted by 0.2 (scores 0.1 / 0.9 but outcomes far rarer): alike -> no fairness warning
    g, s, y = fixture()
    res = attribute_fairness("band", g, s, 0.5, y, policy=FairnessPolicy(calibration_gap_warn=0.01))
    b = {r.group: r for r in res.groups}["B"]
    # A: 0.30 − 0.26 = +0.04; B: 0.40 − 0.42 = −0.02 -> B differs from the reference A by −0.06
    assert abs(b.calibration_gap_diff - (-0.02 - 0.04)) < 1e-12
    assert any("calibrated differently" in r for r in b.reasons)
    res = attribute_fairness("band", g, s, 0.5, y, policy=FairnessPolicy(calibration_gap_warn=0.07))
    assert not any("calibrated" in r for grp in res.groups for r in grp.reasons)
