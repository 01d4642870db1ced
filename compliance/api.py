"""The Python API for pipelines: the same operations as the CLI, one transaction per call.

    from compliance import Store

    store = Store("postgresql+psycopg://mrm@db/compliance", actor="retrain-pipeline")
    store.add_version("retail-pd", "v7", weights="out/model.safetensors", parent="v6")
    store.add_artifact("retail-pd", kind="sae", bound_version="v7", path="out/sae", artifact_id="pd-sae-v7")
    check = store.check_fidelity("pd-sae-v7", version="v7", adapter=True)
    if store.status()["portfolio"]["coverage"] < 0.9:
        raise SystemExit("coverage would drop below 90 %: do not promote v7")

Every method returns plain dicts (JSON-safe); errors are :mod:`compliance.errors` exceptions.
``clock`` (a callable returning an aware UTC datetime) replaces the system clock for every
``recorded_at``; it exists to replay history (the demo, a story, an import of historical
records) and is refused unless ``replay=True`` is passed too. Every ledger entry written under
it has the action ``replay`` instead of ``insert``, so a replayed entry is never mistaken for
one recorded when it says.

Identity (DESIGN §7): entries record who is authenticated -- the PostgreSQL role of the
connection, or the operating-system user on SQLite. ``actor`` may name someone else only with
``replay=True`` (a replay of history or an import of historical records).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from compliance.store.engine import resolve_url, session_scope
from compliance.timeutil import parse_date, parse_datetime, parse_window, utcnow


class Store:
    def __init__(self, url: str | None = None, *, actor: str | None = None,
                 clock: Callable[[], datetime] | None = None, replay: bool = False) -> None:
        if clock is not None and not replay:
            from compliance.errors import UsageError

            raise UsageError("Store(clock=...) is for replaying history only: pass replay=True "
                             "(every entry written under it is marked as replayed in the ledger)")
        self.url = resolve_url(url)
        self.actor = actor
        self.clock = clock
        self.replay = replay

    # -- plumbing
    def session(self, *, readonly: bool = False, actor: str | None = None, short_writes: bool = False):
        return session_scope(self.url, actor=actor or self.actor, readonly=readonly, clock=self.clock,
                             replay=self.replay, short_writes=short_writes)

    def now(self) -> datetime:
        return self.clock() if self.clock else utcnow()

    def init(self) -> str | None:
        from compliance.store import migrate

        return migrate.upgrade(self.url, clock=self.clock, admin=self.actor if self.replay else None)

    def verify(self) -> dict:
        from compliance.services.verification import verify_store

        with self.session(readonly=True) as s:
            return verify_store(s)

    # -- registry
    def add_model(self, model_id: str, *, name: str, owner: str, tier: int, use: str, tags: list[str] | None = None,
                  adapter: str | None = None) -> dict:
        from compliance.services import registry

        with self.session() as s:
            return registry.add_model(s, model_id, name=name, owner=owner, tier=tier, use=use, tags=tags, adapter=adapter)

    def add_version(self, model_id: str, version: str, *, weights: str | Path, trained_at: str | datetime | None = None,
                    data_window: str | None = None, parent: str | None = None) -> dict:
        from compliance.services import registry

        with self.session() as s:
            return registry.add_version(s, model_id, version, weights=weights,
                                        trained_at=parse_datetime(trained_at) if trained_at else None,
                                        data_window=parse_window(data_window), parent=parent)

    def deploy(self, model_id: str, version: str, *, at: str | datetime | None = None) -> dict:
        from compliance.services import registry

        with self.session() as s:
            return registry.deploy(s, model_id, version, at=parse_datetime(at) if at else self.now())

    def retire(self, model_id: str, version: str, *, at: str | datetime | None = None) -> dict:
        from compliance.services import registry

        with self.session() as s:
            return registry.retire(s, model_id, version, at=parse_datetime(at) if at else self.now())

    def add_artifact(self, model_id: str, *, kind: str, bound_version: str, path: str | Path, **kw: Any) -> dict:
        from compliance.services import registry

        with self.session() as s:
            return registry.add_artifact(s, model_id, kind=kind, bound_version=bound_version, path=path, **kw)

    def add_dataset(self, model_id: str, *, path: str | Path, role: str = "production", window: str | None = None,
                    columns: dict[str, list[str]] | None = None, version: str | None = None) -> dict:
        """``columns``: column roles {role: [column, ...]}; unlisted columns are inferred (see ``inferred``)."""
        from compliance.services import registry

        with self.session() as s:
            return registry.add_dataset(s, model_id, path=path, role=role, window=parse_window(window),
                                        columns=columns, version=version)

    def import_manifest(self, path: str | Path) -> dict:
        from compliance.services.manifest import import_manifest

        with self.session() as s:
            return import_manifest(s, path)

    # -- checks
    def check_fidelity(self, artifact_id: str, version: str | None = None, **kw: Any) -> dict:
        from compliance.services.checks import run_fidelity

        with self.session() as s:
            return run_fidelity(s, artifact_id, version, **_budget_kw(kw))

    def adapt(self, artifact_id: str, to_version: str, **kw: Any) -> dict:
        """Adapt a stale SAE/transcoder/CLT to ``to_version`` (see ``compliance adapt``)."""
        from compliance.services.adaptation import adapt

        with self.session() as s:
            return adapt(s, artifact_id, to_version, **kw)

    def adaptations(self, **kw: Any) -> list[dict]:
        from compliance.services.adaptation import list_adaptations

        with self.session(readonly=True) as s:
            return list_adaptations(s, **kw)

    def check_alignment(self, **kw: Any) -> dict:
        from compliance.services.checks import run_alignment

        with self.session() as s:
            return run_alignment(s, **kw)

    def check_activation_drift(self, artifact_id: str, version: str | None = None, **kw: Any) -> dict:
        from compliance.services.checks import run_activation_drift

        with self.session() as s:
            return run_activation_drift(s, artifact_id, version, **_budget_kw(kw))

    def check_overhead(self, artifact_id: str, version: str | None = None, **kw: Any) -> dict:
        from compliance.services.checks import run_overhead

        with self.session() as s:
            return run_overhead(s, artifact_id, version, **kw)

    def check_drift(self, model_id: str, version: str, *, reference: str | Path | None = None,
                    current: str | Path | None = None, window: str | None = None, **kw: Any) -> dict:
        """Input drift by column role; ``reference`` defaults to the version's development data."""
        from compliance.services.checks import run_drift

        with self.session() as s:
            return run_drift(s, model_id, version, reference=reference, current=current, window=parse_window(window), **_budget_kw(kw))

    def check_performance(self, model_id: str, version: str, *, data: str | Path, **kw: Any) -> dict:
        """Outcomes analysis of a version on labelled data (``target``, ``score``, ``weight``,
        ``timestamp``, ``threshold``, ``maturity_days``, ``reference``, ``calibration`` as on the CLI)."""
        from compliance.services.outcomes import run_performance

        with self.session() as s:
            return run_performance(s, model_id, version, data=data, **kw)

    def check_fairness(self, model_id: str, version: str, *, data: str | Path, protected: list[str] | None = None,
                       **kw: Any) -> dict:
        """Group fairness of a version's decisions (``protected`` attributes; other options as on the CLI)."""
        from compliance.services.outcomes import run_fairness

        with self.session() as s:
            return run_fairness(s, model_id, version, data=data, protected=protected, **kw)

    def run_due(self, *, at: str | datetime | None = None, dry_run: bool = False, progress=None,
                budget: str | float | None = None, budget_rows: int | None = None, seed: int | None = None) -> dict:
        """Run the due checks (each committed on its own); with ``budget`` (seconds or "5m") /
        ``budget_rows`` a total shared by all of them, highest tier-weighted outstanding debt first
        (DESIGN §9), in one transaction."""
        from compliance.services.due import run_due, run_due_each

        when = parse_datetime(at) if at else self.now()
        b = _budget_kw({"budget": budget, "budget_rows": budget_rows, "seed": seed})["budget"]
        if b is None:
            return run_due_each(self.session, when, dry_run=dry_run, progress=progress)
        with self.session() as s:
            return run_due(s, when, dry_run=dry_run, progress=progress, budget=b)

    # -- governance
    def detect_failure_modes(self, *, at: str | datetime | None = None) -> list[dict]:
        from compliance.services.governance import detect_failure_modes

        with self.session() as s:
            return detect_failure_modes(s, parse_datetime(at) if at else self.now())

    def accept_check(self, check_id: int, *, rationale: str, actor: str | None = None) -> dict:
        """Accept a warn fidelity check (refused for the model's owner or developers)."""
        from compliance.services.acceptance import accept_check

        with self.session(actor=actor) as s:
            return accept_check(s, check_id, rationale=rationale)

    def accept_failure_mode(self, occurrence_id: int, *, rationale: str, actor: str | None = None) -> dict:
        """Accept a failure-mode occurrence (refused for the model's owner or developers)."""
        from compliance.services.acceptance import accept_occurrence

        with self.session(actor=actor) as s:
            return accept_occurrence(s, occurrence_id, rationale=rationale)

    def add_finding(self, *, model_id: str, severity: str, title: str, owner: str, due: str, description: str | None = None,
                    actor: str | None = None) -> dict:
        from compliance.services.governance import add_finding

        with self.session(actor=actor) as s:
            return add_finding(s, model_id=model_id, severity=severity, title=title, owner=owner, due=parse_date(due),
                               description=description)

    def signoff(self, report_id: str, *, decision: str, role: str | None = None, comment: str | None = None,
                actor: str | None = None, key: str | Path | None = None, passphrase: str | None = None) -> dict:
        """Sign off a report run (validator or approver; segregation of duties); with ``key`` (a
        private key file from ``compliance key generate``) the attestation is signed."""
        from compliance.services.governance import signoff

        with self.session(actor=actor) as s:
            return signoff(s, report_id, decision=decision, role=role, comment=comment,
                           key=Path(key) if key else None, passphrase=passphrase)

    # -- people and roles (admin)
    def add_person(self, person_id: str, *, name: str | None = None) -> dict:
        from compliance.services.people import add_person

        with self.session() as s:
            return add_person(s, person_id, name=name)

    def grant_role(self, person_id: str, role: str, *, model_id: str | None = None) -> dict:
        from compliance.services.people import grant_role

        with self.session() as s:
            return grant_role(s, person_id, role, model_id=model_id)

    def revoke_role(self, person_id: str, role: str, *, model_id: str | None = None) -> dict:
        from compliance.services.people import revoke_role

        with self.session() as s:
            return revoke_role(s, person_id, role, model_id=model_id)

    def set_policy(self, document: dict, *, comment: str | None = None) -> dict:
        from compliance.services.policy import set_policy

        with self.session() as s:
            return set_policy(s, document, comment=comment)

    def add_volumes(self, rows: list[tuple[str, str, Any, float]]) -> int:
        from compliance.services import registry

        with self.session() as s:
            return registry.add_volumes(s, [(m, v, parse_date(d), x) for m, v, d, x in rows])

    # -- judgements
    def status(self, *, quarter: str | None = None, as_of: str | datetime | None = None) -> dict:
        from compliance.services.dashboard import dashboard

        with self.session(readonly=True) as s:
            return dashboard(s, quarter=quarter, as_of=parse_datetime(as_of) if as_of else (self.now() if self.clock else None))


def _budget_kw(kw: dict) -> dict:
    """``budget`` (a Budget, seconds, or a duration such as "30s"), ``budget_rows`` and ``seed``
    → ``budget=Budget | None`` (DESIGN §9: budgeted checks)."""
    from compliance.checks.intervals import Budget, make_budget

    kw = dict(kw)
    b, rows, seed = kw.pop("budget", None), kw.pop("budget_rows", None), kw.pop("seed", None)
    if not isinstance(b, Budget):
        b = make_budget(b, rows, seed)
    kw["budget"] = b
    return kw
