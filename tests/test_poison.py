"""No record can poison the store (issue 21).

1. Each ordinary mistake an operations team makes is refused at the door with one clear line, and
   the store is exactly as before.
2. Records an older release accepted (written here through the ledger with the door switched off,
   on the schema before migration 0003, then upgraded) make the analyses report a data-quality
   finding naming them; `status`, `report` and `export` still work.
3. A correction (void, supersede) is honoured as of its time.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from compliance.api import Store
from compliance.errors import InputError, UsageError
from compliance.store.engine import make_engine, session_scope
from compliance.store.ledger import head, record
from compliance.store.models import EVIDENCE_MODELS, DecisionVolume, DeploymentEvent, LedgerEntry, Model, Policy
from tests.helpers import old_release, small_manifest

UTC = timezone.utc


def snapshot(url: str):
    with session_scope(url, readonly=True) as s:
        counts = {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in EVIDENCE_MODELS}
        return head(s), counts


@pytest.fixture
def bank(cli, tmp_path: Path):
    assert cli("import", small_manifest(tmp_path / "bank"))[0] == 0
    return cli


def _refused(cli, *args, expect: str, code: int | None = None):
    before = snapshot(cli.url)
    rc, out, err = cli(*args)
    assert rc != 0 and (code is None or rc == code), (rc, out, err)
    assert any(e in err for e in expect.split("|")), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert snapshot(cli.url) == before
    return err


# ---------------------------------------------------------------- 1. the door
def test_volume_reimport_written_once_and_conflicts_refused(bank, tmp_path):
    csv = tmp_path / "vol.csv"
    csv.write_text("model,version,day,volume\nretail-pd,v2,2026-01-02,1200\nretail-pd,v2,2026-01-03,900\n")
    rc, out, _ = bank("volume", "import", csv, "--json")
    assert rc == 0 and json.loads(out) == {"recorded": 2, "already_recorded": 0}
    before = snapshot(bank.url)
    rc, out, _ = bank("volume", "import", csv, "--json")  # the same file again: recognised
    assert rc == 0 and json.loads(out) == {"recorded": 0, "already_recorded": 2}
    assert snapshot(bank.url) == before
    other = tmp_path / "other.csv"
    other.write_text("model,version,day,volume\nretail-pd,v2,2026-01-04,5\nretail-pd,v2,2026-01-03,901\n")
    _refused(bank, "volume", "import", other, expect="already recorded")
    twice = tmp_path / "twice.csv"
    twice.write_text("model,version,day,volume\nretail-pd,v2,2026-01-05,5\nretail-pd,v2,2026-01-05,6\n")
    _refused(bank, "volume", "import", twice, expect="already appears on row 1")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e308", "-1", "lots"])
def test_volume_not_a_finite_non_negative_number_refused(bank, tmp_path, value):
    csv = tmp_path / "vol.csv"
    csv.write_text(f"model,version,day,volume\nretail-pd,v2,2026-01-02,{value}\n")
    _refused(bank, "volume", "import", csv, expect="volume")


@pytest.mark.parametrize("day", ["0001-01-01", "1969-12-31", "9999-12-31"])
def test_volume_day_outside_window_refused(bank, tmp_path, day):
    csv = tmp_path / "vol.csv"
    csv.write_text(f"model,version,day,volume\nretail-pd,v2,{day},3\n")
    _refused(bank, "volume", "import", csv, expect="outside the accepted window|is out of range")


@pytest.mark.parametrize("at", ["0001-01-01", "9999-12-31T00:00:00Z", "1900-06-01"])
def test_deploy_and_retire_dated_outside_window_refused(bank, at):
    _refused(bank, "deploy", "card-fraud", "v1", "--at", at, expect="outside the accepted window|is out of range")
    _refused(bank, "retire", "card-fraud", "v1", "--at", at, expect="outside the accepted window|is out of range")


def test_version_trained_in_year_one_refused(bank, tmp_path):
    from tests.helpers import weights_file

    w = weights_file(tmp_path / "v9.safetensors", 9)
    _refused(bank, "version", "add", "retail-pd", "v9", "--weights", w, "--trained-at", "0001-01-01",
             expect="outside the accepted window|is out of range")


@pytest.mark.parametrize("doc, expect", [
    ("validity_days: 1.0e+308\n", "validity_days must lie in [1, 3650]"),
    ("validity_days: 30.5\n", "validity_days must be a whole number"),
    ("fidelity: {ev_warn: .nan}\n", "fidelity.ev_warn must be a finite number"),
    ("fidelity: {ev_fail: null}\n", "fidelity.ev_fail must be a number"),
    ("drift: {psi_fail: .inf}\n", "drift.psi_fail must be a finite number"),
    ("tier_weights: {'1': -2}\n", "tier_weights.1 must lie in"),
    ("tiers: {'1': {fidelity: {flip_fail: .nan}}}\n", "tiers.1.fidelity.flip_fail must be a finite number"),
    ("warn_needs_acceptance: 3\n", "warn_needs_acceptance must be true or false"),
])
def test_policy_values_outside_documented_ranges_refused(bank, tmp_path, doc, expect):
    p = tmp_path / "policy.yaml"
    p.write_text(doc)
    _refused(bank, "policy", "set", "--file", p, expect=expect)


def test_policy_tier_override_accepted(bank, tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text("tiers: {'1': {fidelity: {flip_fail: 0.02}}}\nwarn_needs_acceptance: false\n")
    assert bank("policy", "set", "--file", p)[0] == 0


@pytest.mark.parametrize("tier", [1.5, 0, 4, True, "1"])
def test_tier_must_be_an_integer_1_to_3_everywhere(db_url, tmp_path, tier):
    store = Store(db_url)
    before = snapshot(db_url)
    with pytest.raises((UsageError, InputError)):
        store.add_model("m1", name="M", owner="o", tier=tier, use="u")
    assert snapshot(db_url) == before


def test_manifest_tier_one_and_a_half_refused(cli, tmp_path):
    import yaml

    m = small_manifest(tmp_path / "bank")
    doc = yaml.safe_load(m.read_text())
    doc["models"][1]["tier"] = 1.5
    m.write_text(yaml.safe_dump(doc))
    _refused(cli, "import", m, expect="'tier' must be an integer")


@pytest.mark.parametrize("table, column, value", [
    ("model", "tier", 1.5), ("model", "tier", 7), ("decision_volume", "volume", float("inf")),
    ("decision_volume", "volume", -1.0), ("decision_volume", "day", "0001-01-01"),
    ("deployment_event", "effective_at", "9999-12-31 00:00:00"), ("deployment_event", "action", "promote"),
])
def test_database_refuses_the_same_values_written_behind_the_door(bank, tmp_path, table, column, value):
    """Migration 0003: CHECK constraints (PostgreSQL) / BEFORE INSERT triggers (SQLite)."""
    from sqlalchemy.exc import DBAPIError

    csv = tmp_path / "vol.csv"
    csv.write_text("model,version,day,volume\nretail-pd,v2,2026-01-02,1200\n")
    assert bank("volume", "import", csv)[0] == 0
    eng = make_engine(bank.url)
    with eng.connect() as c:
        row = dict(c.execute(text(f"SELECT * FROM {table} ORDER BY 1 LIMIT 1")).mappings().first())
    if table == "model":
        row["id"] = "forged"
    else:
        row.pop("id")
    if bank.url.startswith("postgresql") and value == 1.5:
        value = "1.5"  # a float parameter would be rounded by PostgreSQL's cast; as written, integer refuses it
    cols = ", ".join(row)
    params = ", ".join(f":{k}" for k in row)
    with eng.begin() as c:  # the row as it is goes in (the control) ...
        c.execute(text(f"INSERT INTO {table} ({cols}) VALUES ({params})"), row)
    if table == "model":
        row["id"] = "forged-2"
    row[column] = value  # ... with the bad value it does not
    with pytest.raises(DBAPIError):
        with eng.begin() as c:
            c.execute(text(f"INSERT INTO {table} ({cols}) VALUES ({params})"), row)


def test_api_clock_only_for_replays(db_url):
    t = datetime.now(UTC) + timedelta(minutes=5)  # a replay appends after the head, never behind it
    with pytest.raises(UsageError, match="replay"):
        Store(db_url, clock=lambda: t)
    with pytest.raises(UsageError, match="replay"):
        with session_scope(db_url, clock=lambda: t):
            pass
    store = Store(db_url, actor="history", clock=lambda: t, replay=True)
    store.add_model("m1", name="M", owner="o", tier=2, use="u")
    Store(db_url).add_model("m2", name="M2", owner="o", tier=2, use="u")
    with session_scope(db_url, readonly=True) as s:
        acts = {e.entity_id: (e.action, e.recorded_at) for e in s.scalars(select(LedgerEntry).where(LedgerEntry.entity_type == "model"))}
    assert acts["m1"] == ("replay", t)  # marked in the chain (the hash covers the action)
    assert acts["m2"][0] == "insert"
    assert Store(db_url).verify()["ok"]


# ---------------------------------------------------------------- 2. records from an older release
def _ids(url: str, model, **where) -> list[int]:
    with session_scope(url, readonly=True) as s:
        return list(s.scalars(select(model.id).filter_by(**where).order_by(model.id)))


def _dq(cli, *extra) -> dict:
    rc, out, err = cli("status", "--quarter", "2026Q1", "--json", *extra)
    assert rc == 0, err
    return json.loads(out)


def test_old_release_records_become_findings_not_failures(bank, tmp_path):
    from compliance.services.registry import get_version

    csv = tmp_path / "vol.csv"
    csv.write_text("model,version,day,volume\nretail-pd,v2,2026-01-02,1200\ncard-fraud,v1,2026-01-02,50\n")
    assert bank("volume", "import", csv)[0] == 0
    sqlite = bank.url.startswith("sqlite")

    def write(s):
        v2 = get_version(s, "retail-pd", "v2")
        fr = get_version(s, "card-fraud", "v1")
        record(s, DecisionVolume(version_id=v2.id, day=date(2026, 1, 2), volume=1200.0))  # imported twice
        record(s, DecisionVolume(version_id=fr.id, day=date(2026, 1, 3), volume=float("inf")))
        record(s, DeploymentEvent(version_id=fr.id, action="retire", effective_at=datetime(1, 1, 1, tzinfo=UTC)))
        record(s, DeploymentEvent(version_id=fr.id, action="retire", effective_at=datetime(9999, 12, 31, tzinfo=UTC)))
        if sqlite:  # PostgreSQL's integer column cannot hold 1.5
            record(s, Model(id="odd-tier", name="Odd", owner="o", tier=1.5, business_use="u", tags=[], adapter=None))
        doc = dict(s.scalars(select(Policy.document).order_by(Policy.version.desc())).first(), validity_days=1e308)
        n = s.scalar(select(func.max(Policy.version)))
        record(s, Policy(version=n + 1, document=doc, comment="older release"))

    old_release(bank.url, write)
    d = _dq(bank)
    recs = {f["record"]: f for f in d["data_quality"]["findings"]}
    dup = _ids(bank.url, DecisionVolume)[2]
    assert f"decision_volume {dup}" in recs and "second volume" in recs[f"decision_volume {dup}"]["problem"]
    inf_id = _ids(bank.url, DecisionVolume)[3]
    assert "volume" in recs[f"decision_volume {inf_id}"]["problem"]
    ev_ids = _ids(bank.url, DeploymentEvent)[-2:]
    for eid in ev_ids:
        assert recs[f"deployment_event {eid}"]["handling"] == "excluded"
    assert any(r.startswith("policy ") and "validity_days" in f["problem"] for r, f in recs.items())
    if sqlite:
        assert "risk tier 1.5" in recs["model odd-tier"]["problem"]
    # the rest is computed: the dashboard has both models and their coverage
    assert {m["model_id"] for m in d["by_model"]} >= {"retail-pd", "card-fraud"}
    rc, out, err = bank("status")
    assert rc == 0 and "Data quality" in out, err
    rc, out, err = bank("report", "--quarter", "2026Q1", "--out", tmp_path / "pack.pdf")
    assert rc == 0, err
    rc, out, err = bank("export", "--quarter", "2026Q1", "--out", tmp_path / "x.zip")
    assert rc == 0, err


def test_old_release_check_times_outside_the_window_are_named(bank, tmp_path):
    """A check an older release dated in year 1 or in 2250 is left out by name; the rest of the
    checks (read in compact batches) are analysed as before."""
    from compliance.store.models import Artifact, Check

    rc, out, err = bank("status", "--quarter", "2026Q1", "--json")
    before = json.loads(out)

    def write(s):
        a = s.scalars(select(Artifact).order_by(Artifact.id)).first()
        for when in (datetime(1, 1, 1, tzinfo=UTC), datetime(2250, 1, 1, tzinfo=UTC)):
            record(s, Check(kind="fidelity", model_id=a.model_id, version_id=a.bound_version_id, artifact_id=a.id,
                            input_hashes={}, parameters={}, metrics={}, status="pass", reasons=[], flags=[],
                            explained_variance=0.9, started_at=when, finished_at=when, tool_version="0.2"))

    old_release(bank.url, write)
    bad = _ids(bank.url, Check)[-2:]
    d = _dq(bank)
    recs = {f["record"]: f for f in d["data_quality"]["findings"]}
    for cid in bad:
        assert recs[f"check_run {cid}"]["handling"] == "excluded"
        assert "outside 1970..2200" in recs[f"check_run {cid}"]["problem"]
    assert "0001-01-01" in recs[f"check_run {bad[0]}"]["problem"]
    assert d["portfolio"] == before["portfolio"] and d["by_model"] == before["by_model"]
    rc, out, err = bank("report", "--quarter", "2026Q1", "--out", tmp_path / "pack.pdf")
    assert rc == 0, err


# ---------------------------------------------------------------- 3. corrections
def test_void_restores_status_and_is_honoured_as_of_its_time(bank, tmp_path):
    from compliance.services.registry import get_version

    csv = tmp_path / "vol.csv"
    csv.write_text("model,version,day,volume\nretail-pd,v2,2026-01-02,1200\n")
    assert bank("volume", "import", csv)[0] == 0

    def write(s):
        v2 = get_version(s, "retail-pd", "v2")
        record(s, DecisionVolume(version_id=v2.id, day=date(2026, 1, 2), volume=1200.0))

    old_release(bank.url, write)
    dup = _ids(bank.url, DecisionVolume)[-1]
    before_void = datetime.now(UTC)
    assert [f["record"] for f in _dq(bank)["data_quality"]["findings"]] == [f"decision_volume {dup}"]
    _refused(bank, "void", "volume", str(dup), "--reason", " ", expect="a reason is required")
    _refused(bank, "void", "volume", "999999", "--reason", "x", expect="unknown volume")
    _refused(bank, "void", "ledger", "1", "--reason", "x", expect="cannot correct")
    rc, out, err = bank("void", "volume", str(dup), "--reason", "imported twice", "--json")
    assert rc == 0, err
    assert json.loads(out)["action"] == "void"
    _refused(bank, "void", "volume", str(dup), "--reason", "again", expect="already voided")
    d = _dq(bank)
    assert d["data_quality"]["findings"] == []
    assert d["data_quality"]["corrections_applied"] == [{"entity_type": "decision_volume", "entity_id": str(dup)}]
    # as of a time before the void, the store is seen as it was
    rc, out, _ = bank("status", "--quarter", "2026Q1", "--as-of", before_void.isoformat(), "--json")
    old = json.loads(out)["data_quality"]
    assert [f["record"] for f in old["findings"]] == [f"decision_volume {dup}"] and old["corrections_applied"] == []
    # the voided row stays in the store and the ledger still verifies
    assert dup in _ids(bank.url, DecisionVolume)
    rc, out, _ = bank("verify")
    assert rc == 0, out
    rc, out, _ = bank("corrections", "--json")
    assert [c["entity_id"] for c in json.loads(out)] == [str(dup)]


def test_void_a_wrong_deployment_and_deploy_again(bank):
    """A deployment recorded wrongly is voided: the state machine ignores it from then on, so the
    right one can be recorded; supersede refuses voided, self and voided replacements."""
    _refused(bank, "deploy", "card-fraud", "v1", "--at", "2025-11-01T00:00:00Z", expect="already deployed")
    rc, out, _ = bank("model", "show", "card-fraud", "--json")
    fr_deploy = json.loads(out)["deployments"][0]["id"]  # card-fraud v1 deployed 2025-10-01
    assert bank("void", "deployment", str(fr_deploy), "--reason", "wrong date")[0] == 0
    rc, out, err = bank("deploy", "card-fraud", "v1", "--at", "2025-11-01T00:00:00Z", "--json")
    assert rc == 0, err
    new = json.loads(out)["id"]
    _refused(bank, "supersede", "deployment", str(fr_deploy), "--by", str(new), "--reason", "x", expect="already voided")
    _refused(bank, "supersede", "deployment", str(new), "--by", str(new), "--reason", "x", expect="cannot supersede itself")
    _refused(bank, "supersede", "deployment", str(new), "--by", str(fr_deploy), "--reason", "x",
             expect="is itself voided or superseded")


def test_report_before_a_void_is_byte_identical_and_after_shows_it(bank, tmp_path):
    from compliance.services.registry import get_version

    csv = tmp_path / "vol.csv"
    csv.write_text("model,version,day,volume\nretail-pd,v2,2026-01-02,1200\n")
    assert bank("volume", "import", csv)[0] == 0

    def write(s):
        record(s, DecisionVolume(version_id=get_version(s, "retail-pd", "v2").id, day=date(2026, 1, 2), volume=1200.0))

    old_release(bank.url, write)
    dup = _ids(bank.url, DecisionVolume)[-1]
    t = datetime.now(UTC).isoformat()

    def pack(name: str, as_of: str | None) -> bytes:
        out = tmp_path / name
        rc, _, err = bank("report", "--quarter", "2026Q1", *(["--as-of", as_of] if as_of else []), "--out", out)
        assert rc == 0, err
        return out.read_bytes()

    before = pack("before.pdf", t)
    assert bank("void", "volume", str(dup), "--reason", "imported twice")[0] == 0
    assert pack("again.pdf", t) == before  # the same report as of the same time, byte for byte
    from compliance.services.report import build_context

    with session_scope(bank.url, readonly=True) as s:
        old = build_context(s, "2026Q1", datetime.fromisoformat(t))
        new = build_context(s, "2026Q1", datetime.now(UTC))
    assert [r.record for r in old.appendix.data_quality] == [f"decision_volume {dup}"]
    assert old.appendix.data_quality[0].handling == "excluded"
    assert [r.record for r in new.appendix.data_quality] == [f"decision_volume {dup}"]
    assert new.appendix.data_quality[0].problem == "imported twice"
    assert new.appendix.data_quality[0].handling.startswith("voided on ")
    assert pack("after.pdf", None) != before


def test_supersede_a_volume(bank, tmp_path):
    csv = tmp_path / "vol.csv"
    csv.write_text("model,version,day,volume\nretail-pd,v2,2026-01-02,1200\nretail-pd,v2,2026-01-03,900\n")
    assert bank("volume", "import", csv)[0] == 0
    a, b = _ids(bank.url, DecisionVolume)
    _refused(bank, "supersede", "volume", str(a), "--by", "99999", "--reason", "x", expect="unknown volume")
    rc, out, err = bank("supersede", "volume", str(a), "--by", str(b), "--reason", "day 2 was day 3", "--json")
    assert rc == 0 and json.loads(out)["replacement_id"] == str(b), err
    assert _dq(bank)["data_quality"]["corrections_applied"] == [{"entity_type": "decision_volume", "entity_id": str(a)}]


# ---------------------------------------------------------------- the screen itself (pure)
def _raw_frames():
    import pandas as pd

    def f(**cols):
        return pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in cols.items()})

    t = "2026-01-01 00:00:00.000000"
    return dict(
        models=f(model_id=["a", "b"], tier=[1, 2], owner=["o", "o"], recorded_at=[t, t]),
        versions=f(version_id=[1, 2], model_id=["a", "b"], label=["v1", "v1"], trained_at=[None, "0001-01-01 00:00:00"],
                   recorded_at=[t, t]),
        deployments=f(version_id=[1, 2], model_id=["a", "b"], action=["deploy", "deploy"], effective_at=[t, t],
                      recorded_at=[t, t], event_id=[10, 11]),
        artifacts=f(artifact_id=["sa"], model_id=["a"], kind=["sae"], bound_version_id=[1], recorded_at=[t], replaces=[None]),
        checks=f(check_id=[5, 6], version_id=[1, 1], artifact_id=["sa", "sa"], status=["pass", "pass"], finished_at=[t, t],
                 explained_variance=[0.9, float("inf")], kind=["fidelity", "fidelity"], other_artifact_id=[None, None],
                 model_id=["a", "a"]),
        volumes=f(version_id=[1, 1, 2], day=["2026-01-02", "2026-01-02", "2026-01-02"], volume=[5.0, 5.0, 1.0],
                  recorded_at=[t, t, t], volume_id=[100, 101, 102]),
    )


def test_screen_names_each_unusable_record_and_cascades_corrections():
    import pandas as pd

    from compliance.analysis.frames import AnalysisInput
    from compliance.analysis.quality import screen

    frames, findings, applied = screen(_raw_frames(), pd.DataFrame({"entity_type": ["model"], "entity_id": ["b"]}))
    got = {(f.record, f.handling) for f in findings}
    assert got == {("check_run 6", "excluded"), ("decision_volume 101", "excluded")}
    assert applied == [{"entity_type": "model", "entity_id": "b"}]
    # the voided model took its version, deployment and volume with it
    assert list(frames["models"]["model_id"]) == ["a"] and list(frames["versions"]["version_id"]) == [1]
    assert list(frames["volumes"]["volume_id"]) == [100] and list(frames["deployments"]["event_id"]) == [10]
    AnalysisInput(**{k: v for k, v in frames.items()})  # what is left is valid analysis input
    # without the correction, model b's version keeps only its trained_at ignored
    frames, findings, _ = screen(_raw_frames())
    assert ("model_version 2", "ignored trained_at") in {(f.record, f.handling) for f in findings}
    AnalysisInput(**frames)


def test_screen_policy_defaults_unusable_numbers():
    from compliance.analysis.quality import screen_policy
    from compliance.policy_defaults import DEFAULT_POLICY, RANGES, SHARE

    doc = dict(DEFAULT_POLICY, validity_days=1e308, fidelity=dict(DEFAULT_POLICY["fidelity"], ev_warn=float("nan")),
               tiers={"1": {"validity_days": -4}})
    out, findings = screen_policy(doc, DEFAULT_POLICY, RANGES, SHARE, version=7)
    assert out["validity_days"] == 90 and out["fidelity"]["ev_warn"] == 0.8 and out["tiers"]["1"]["validity_days"] == 90
    assert sorted(f.problem.split(" = ")[0] for f in findings) == ["fidelity.ev_warn", "tiers.1.validity_days", "validity_days"]
    assert all(f.entity_type == "policy" and f.entity_id == "7" for f in findings)
    assert screen_policy(DEFAULT_POLICY, DEFAULT_POLICY, RANGES, SHARE)[1] == []
