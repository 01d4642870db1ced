"""`compliance demo`: replay the sample bank's year through the real checks, then render the packs.

The bank (``sample_data``) is built from seeds, imported into a fresh SQLite store, and its
``story.yaml`` is replayed event by event at each event's historical time: deployments,
retrains, artifact registrations, validations, drift checks, due-check sweeps, findings. Every
number comes from running the checks on the bank's real models and data. The store's clock is
the story's clock during the replay (so ``recorded_at`` is historical); this is the only place
the clock is simulated, and the demo store says so in its README.

A rerun reuses the store when it is complete (a marker file records the bank's manifest hash),
so it takes seconds; its packs, rendered as of the same time, show the sign-off the first run
recorded (the runs are recorded at the ledger's head, never before it), and every later rerun
renders the same bytes; ``--fresh`` replays from scratch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path


from compliance.safeyaml import load_yaml_file
from compliance.api import Store
from compliance.errors import InputError
from compliance.hashing import sha256_file
from compliance.timeutil import parse_datetime, parse_window

DEMO_QUARTER = "2026Q3"
DEMO_AS_OF = datetime(2026, 10, 5, 0, 0, tzinfo=timezone.utc)  # after the quarter-close checks
VALIDATOR = "carol.validator"
Say = Callable[[str], None]


class SimClock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def at(self, t: datetime) -> None:
        self.t = max(self.t, t)  # the ledger's time never runs backwards


@dataclass
class DemoResult:
    dir: Path
    db_url: str
    pack: Path
    review: Path
    export: Path
    headline: dict
    replayed: bool


def run_demo(out_dir: str | Path = "compliance-demo", *, fresh: bool = False, say: Say = print) -> DemoResult:
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    bank = out / "bank"
    say(f"[1/4] sample bank in {bank} (built from seeds on first use)")
    from sample_data.build import build

    manifest = Path(build(bank, progress=lambda msg: say(f"      {msg}")))
    db = out / "compliance.db"
    url = f"sqlite:///{db}"
    marker = out / ".replayed"
    stamp = sha256_file(manifest) + "/" + sha256_file(manifest.parent / "story.yaml")  # a new story replays again
    replayed = False
    if fresh or not (db.exists() and marker.exists() and marker.read_text().strip() == stamp):
        say(f"[2/4] fresh store {db}; replaying the year 2025Q4 → 2026Q3")
        for p in (db, out / "compliance.db-wal", out / "compliance.db-shm", marker):
            p.unlink(missing_ok=True)
        replay(url, manifest, say=say)
        marker.write_text(stamp + "\n")
        replayed = True
    else:
        say(f"[2/4] reusing the replayed store {db} (use --fresh to replay again)")
    say(f"[3/4] rendering the {DEMO_QUARTER} packs as of {DEMO_AS_OF.isoformat()}")
    from compliance.services.report import render_demo_outputs

    outputs = render_demo_outputs(url, out, DEMO_QUARTER, DEMO_AS_OF, say=say)
    if replayed:
        store = Store(url, actor=VALIDATOR, clock=SimClock(DEMO_AS_OF + timedelta(days=1)), replay=True)
        store.signoff(outputs["pack_report_id"], decision="approve_with_conditions",
                      comment="Approved on condition that the stale and broken explanations are re-validated "
                              "or retrained before 2026-12-31 (findings raised).")
    say("[4/4] done")
    status = Store(url).status(quarter=DEMO_QUARTER, as_of=DEMO_AS_OF)
    (out / "README.txt").write_text(
        "This folder was made by `compliance demo`.\n"
        "compliance.db is a replay of the sample bank's year: its recorded_at times are the story's\n"
        "simulated clock, not the time the demo ran. Explore it with, e.g.:\n"
        f"  compliance --db {url} status --quarter {DEMO_QUARTER} --as-of {DEMO_AS_OF.isoformat()}\n"
        f"  compliance --db {url} verify\n", encoding="utf-8")
    return DemoResult(out, url, outputs["pack"], outputs["review"], outputs["export"], status["portfolio"], replayed)


# ---------------------------------------------------------------------------- replay
def _load(manifest: Path) -> tuple[dict, list[dict]]:
    doc = load_yaml_file(manifest)
    story_path = manifest.parent / "story.yaml"
    if not story_path.is_file():
        raise InputError(f"{story_path} not found: the sample bank is incomplete (rebuild it)")
    story = load_yaml_file(story_path) or {}
    events = story.get("events") or []
    for i, e in enumerate(events):
        if "at" not in e or "do" not in e:
            raise InputError(f"story.yaml: events[{i}] needs 'at' and 'do'")
        e["_at"] = parse_datetime(e["at"], what=f"story events[{i}].at")
    events.sort(key=lambda e: e["_at"])  # stable: same-time events keep their written order
    return doc, events


def replay(url: str, manifest: Path, *, say: Say = print, adapted_dir: Path | None = None) -> None:
    """Replay the story into a fresh store at ``url``. Adapted artifacts are written under
    ``adapted_dir`` (default: ``adapted/`` beside a SQLite store, else beside the manifest), which
    the replay empties first: it is the replay's own output, never the bank's."""
    import shutil

    doc, events = _load(manifest)
    base = manifest.parent
    if adapted_dir is None:
        db = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
        adapted_dir = (Path(db).resolve().parent if db else manifest.parent.parent) / "adapted"
    shutil.rmtree(adapted_dir, ignore_errors=True)
    start = min([e["_at"] for e in events] or [DEMO_AS_OF]) - timedelta(days=1)
    clock = SimClock(start)
    store = Store(url, actor="ml-platform", clock=clock, replay=True)
    store.init()  # ml-platform initialises the store: its first admin (DESIGN §7)
    store.add_person(VALIDATOR, name="Carol (model validation, 2nd line)")
    store.grant_role(VALIDATOR, "validator")
    rel = lambda p: base / p  # noqa: E731
    versions = {(v["model"], str(v["version"])): v for v in doc.get("versions") or []}
    artifacts = {a["id"]: a for a in doc.get("artifacts") or []}
    registered_versions: set[tuple[str, str]] = set()
    registered_artifacts: set[str] = set()

    for m in doc.get("models") or []:
        store.add_model(str(m["id"]), name=m["name"], owner=m["owner"], tier=int(m["tier"]), use=m["use"],
                        tags=m.get("tags") or [], adapter=m.get("adapter"))

    def ensure_version(model: str, label: str, at: datetime) -> None:
        key = (model, label)
        if key in registered_versions:
            return
        v = versions.get(key)
        if v is None:
            raise InputError(f"story names {model} {label}, which the manifest does not list")
        if v.get("parent"):
            ensure_version(model, str(v["parent"]), at)
        clock.at(at)
        store.add_version(model, label, weights=rel(v["weights"]), trained_at=v.get("trained_at"),
                          data_window=v.get("data_window"), parent=str(v["parent"]) if v.get("parent") else None)
        registered_versions.add(key)
        for d in development.get(key, []):  # the version's development data comes with it
            store.add_dataset(d["model"], path=rel(d["path"]), role=d.get("role") or "train", window=d.get("window"),
                              columns=d.get("columns"), version=label)

    def ensure_artifact(aid: str, at: datetime) -> None:
        if aid in registered_artifacts:
            return
        a = artifacts.get(aid)
        if a is None:
            raise InputError(f"story names artifact {aid}, which the manifest does not list")
        ensure_version(a["model"], str(a["bound_version"]), at)
        if a.get("replaces"):
            ensure_artifact(a["replaces"], at)
        clock.at(at)
        store.add_artifact(a["model"], kind=a["kind"], bound_version=str(a["bound_version"]), path=rel(a["path"]),
                           hook=a.get("hook"), hook_out=a.get("hook_out"),
                           labels=rel(a["labels"]) if a.get("labels") else None, artifact_id=aid,
                           replaces=a.get("replaces"))
        registered_artifacts.add(aid)

    # Production data arrives as a feed: each window is registered when it opens (its checks may
    # use it only once it has closed: no look-ahead). Development data is registered with its version.
    development: dict[tuple[str, str], list[dict]] = {}
    for d in doc.get("datasets") or []:
        if d.get("version") is not None:
            development.setdefault((d["model"], str(d["version"])), []).append(d)
    datasets = sorted((d for d in doc.get("datasets") or [] if d.get("version") is None),
                      key=lambda d: str(d.get("window") or ""))
    pending_data = [(parse_window(d.get("window"))[0], d) for d in datasets]

    def feed_data(until: datetime) -> None:
        while pending_data and (pending_data[0][0] is None or pending_data[0][0] <= until.date()):
            _, d = pending_data.pop(0)
            w0 = parse_window(d.get("window"))[0]
            if w0 is not None:
                clock.at(datetime(w0.year, w0.month, w0.day, tzinfo=timezone.utc))
            store.add_dataset(d["model"], path=rel(d["path"]), role=d.get("role") or "production", window=d.get("window"),
                              columns=d.get("columns"))

    n = len(events)
    for i, e in enumerate(events, 1):
        at = e["_at"]
        feed_data(at)
        clock.at(at)
        do = e["do"]
        label = f"{at.date()} {do} " + " ".join(str(e[k]) for k in ("model", "artifact", "version", "old", "new") if e.get(k))
        result = _apply(store, e, do, ensure_version, ensure_artifact, rel, at, adapted_dir)
        say(f"      [{i:>3}/{n}] {label}{(' → ' + result) if result else ''}")
    feed_data(DEMO_AS_OF)


def _apply(store: Store, e: dict, do: str, ensure_version, ensure_artifact, rel, at: datetime,
           adapted_dir: Path) -> str:
    if do == "register_version":
        ensure_version(e["model"], str(e["version"]), at)
        return ""
    if do in ("deploy", "retire"):
        ensure_version(e["model"], str(e["version"]), at)
        getattr(store, do)(e["model"], str(e["version"]), at=at)
        return ""
    if do == "register_artifact":
        ensure_artifact(e["artifact"], at)
        return ""
    if do == "validate":
        ensure_artifact(e["artifact"], at)
        c = store.check_fidelity(e["artifact"], str(e["version"]) if e.get("version") else None, adapter=True,
                                 data=rel(e["data"]) if e.get("data") else None)
        return _brief(c)
    if do == "drift":
        c = store.check_drift(e["model"], str(e["version"]), reference=rel(e["reference"]) if e.get("reference") else None,
                              current=rel(e["current"]) if e.get("current") else None, window=e.get("window"))
        m = c["metrics"]
        label = f"; label shift {m['label_shift_status']}" if m.get("label_shift_status") not in (None, "pass") else ""
        return f"{c['status']} ({m['n_drifted']}/{m['n_features']} inputs drifted{label})"
    if do == "overhead":
        ensure_artifact(e["artifact"], at)
        c = store.check_overhead(e["artifact"], str(e["version"]) if e.get("version") else None,
                                 data=rel(e["data"]) if e.get("data") else None)
        return f"{c['status']} (overhead {100 * (c['metrics'].get('overhead_ratio') or 0):.0f}%)"
    if do == "adapt":  # warm start + a small step budget on CPU: deterministic, seconds
        ensure_artifact(e["artifact"], at)
        new_id = f"{e['artifact']}-adapted-{e['version']}"
        r = store.adapt(e["artifact"], str(e["version"]), adapter=True, data=rel(e["data"]), steps=int(e["steps"]),
                        seed=int(e["seed"]), new_id=new_id, out=adapted_dir / new_id, device="cpu")
        m = r["metrics"]
        return (f"{r['status']} (held-out EV {m['explained_variance_before']:.3f} → {m['explained_variance_after']:.3f}, "
                f"survival {m['survival']['survival_share']:.0%}, {m['steps']} steps)")
    if do == "alignment":
        ensure_artifact(e["old"], at)
        ensure_artifact(e["new"], at)
        c = store.check_alignment(old=e["old"], new=e["new"])
        return f"{c['status']} (survival {c['metrics'].get('survival_share', 0):.0%})"
    if do == "activation_drift":
        ensure_artifact(e["artifact"], at)
        c = store.check_activation_drift(e["artifact"], str(e["version"]) if e.get("version") else None,
                                         reference=rel(e["reference"]), current=rel(e["current"]) if e.get("current") else None)
        return _brief(c)
    if do in ("performance", "fairness"):
        opts = {k: e[k] for k in ("target", "timestamp", "maturity_days") if e.get(k) is not None}
        if do == "performance":
            c = store.check_performance(e["model"], str(e["version"]), data=rel(e["data"]),
                                        reference=rel(e["reference"]) if e.get("reference") else None, **opts)
            m = c["metrics"]
            return (f"{c['status']} (AUC {m['auc']:.3f}; {m['n_matured']} of {m['n_rows_file']} rows matured)")
        c = store.check_fairness(e["model"], str(e["version"]), data=rel(e["data"]), protected=e.get("protected"), **opts)
        worst = min((g["air"] for a in c["metrics"]["attributes"] for g in a["groups"] if g.get("air") is not None),
                    default=None)
        return f"{c['status']}" + (f" (lowest adverse impact ratio {worst:.2f})" if worst is not None else "")
    if do == "accept":
        from compliance.services.checks import list_checks

        with store.session(readonly=True) as s:
            rows = [c for c in list_checks(s, artifact_id=e["artifact"], kind="fidelity") if c["version"] == str(e["version"])]
        if not rows:
            raise InputError(f"story.yaml: no fidelity check of {e['artifact']} on {e['version']} to accept")
        a = store.accept_check(rows[0]["id"], rationale=e["rationale"], actor=e.get("actor", VALIDATOR))
        return f"check {rows[0]['id']} accepted by {a['actor']}"
    if do == "finding":
        f = store.add_finding(model_id=e["model"], severity=e["severity"], title=e["title"], owner=e["owner"],
                              due=str(e["due"]), description=e.get("description"), actor=e.get("actor", VALIDATOR))
        return f"finding {f['id']}"
    if do == "due_checks":
        out = store.run_due(at=at)
        return f"{len(out['ran'])} due checks, {len(out['failure_modes_opened'])} failure modes opened"
    if do == "detect":
        return f"{len(store.detect_failure_modes(at=at))} failure modes opened"
    if do == "plan":
        from compliance.services.plans import set_plan

        with store.session() as s:
            p = set_plan(s, e["model"], e["plan"], source="story.yaml")
        return f"monitoring plan v{p['version']}"
    if do == "volume":
        return f"{store.add_volumes([(e['model'], str(e['version']), d, v) for d, v in (e.get('days') or {}).items()])} volumes"
    raise InputError(f"story.yaml: unknown event {do!r}")


def _brief(c: dict) -> str:
    ev = c.get("explained_variance")
    return f"{c['status']}" + (f" (EV {ev:.3f})" if isinstance(ev, float) else "") + \
        (f" — {c['reasons'][0]}" if c["status"] == "error" and c.get("reasons") else "")


def headline_text(r: DemoResult) -> str:
    h = r.headline
    pct = (lambda x: "—" if x is None else f"{100 * x:.1f}%")
    return (f"portfolio explanation coverage {pct(h.get('coverage'))} (previous quarter {pct(h.get('coverage_prev'))}); "
            f"interpretability debt {h.get('debt')} slot-days (weighted {h.get('weighted_debt')})")


__all__ = ["run_demo", "replay", "DemoResult"]
