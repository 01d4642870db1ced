"""`check run --due --ray`: due checks as tasks on a local Ray cluster of 2 worker processes
writing to a real PostgreSQL store. The Ray run records the same checks as the sequential run
(modulo wall time and the task's idempotency key), survives a worker killed mid-run, and never
records a check twice — also when a retried task finds its check already committed (that part on
both backends)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from compliance.api import Store
from compliance.store.engine import make_engine, session_scope
from compliance.store.models import Check

ray = pytest.importorskip("ray", reason="ray is part of the test extra; install .[test]")

HOOK = "blocks.1.hook_resid_pre"


def _pg_store():
    """A new migrated store in its own database on the test PostgreSQL (and how to drop it)."""
    import uuid

    from compliance.store import migrate
    from tests.conftest import PG_BASE, _admin_engine

    name = f"ct_ray_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_BASE.rsplit("/", 1)[0] + "/" + name

    def drop():
        make_engine(url).dispose()
        make_engine.cache_clear()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    migrate.upgrade(url)
    return url, drop


def _bank_store(url: str, bank: Path) -> Store:
    """retail-pd with its adapter, v1 and v4 (deployed), three SAEs bound to v1: three due checks on v4."""
    s = Store(url)
    s.add_model("retail-pd", name="Retail PD", owner="alice", tier=1, use="PD", adapter="sample_data.adapter:load")
    for v in ("v1", "v4"):
        s.add_version("retail-pd", v, weights=bank / f"models/retail-pd/{v}.safetensors")
    for k in ("a", "b", "c"):
        s.add_artifact("retail-pd", kind="sae", bound_version="v1", path=bank / "artifacts/retail-pd/sae-l1-v1",
                       artifact_id=f"pd-sae-{k}", hook=HOOK)
    s.add_dataset("retail-pd", path=bank / "data/loans_2026Q2.parquet", window="2026-04-01..2026-06-30")
    s.deploy("retail-pd", "v4", at="2026-07-01T00:00:00Z")
    return s


def _records(url: str) -> tuple[list[tuple], list[str]]:
    with session_scope(url, readonly=True) as s:
        rows = s.scalars(select(Check).where(Check.kind == "fidelity").order_by(Check.artifact_id)).all()
        recs = [(c.artifact_id, c.version_id, c.status, round(c.explained_variance or 0, 9),
                 json.dumps({k: v for k, v in (c.metrics or {}).items() if "second" not in k}, sort_keys=True))
                for c in rows]
        return recs, [(c.parameters or {}).get("idempotency_key") for c in rows]


def _kill_a_busy_worker(deadline: float) -> int | None:
    """SIGKILL one Ray worker process while it runs a due task (its title is `ray::_task`)."""
    while time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::_task"):
                os.kill(int(pid), signal.SIGKILL)
                return int(pid)
        time.sleep(0.05)
    return None


@pytest.mark.slow
def test_ray_run_equals_the_sequential_run_and_survives_a_killed_worker(bank):
    """On two PostgreSQL stores (the shared store of a cluster): one run sequentially, one on Ray."""
    from compliance.integrations.ray_due import run_due_ray

    db_url, drop_a = _pg_store()
    url_b, drop_b = _pg_store()
    try:
        seq = _bank_store(db_url, bank)
        _bank_store(url_b, bank)
        at = datetime.now(timezone.utc)  # after both stores are recorded: what is due is due now
        out_seq = seq.run_due(at=at)
        assert len(out_seq["ran"]) == 3
        done: dict = {}
        runner = threading.Thread(target=lambda: done.setdefault("out", run_due_ray(url_b, at, num_cpus=2)))
        runner.start()
        killed = _kill_a_busy_worker(time.monotonic() + 120)
        runner.join(600)
        out = done["out"]
        assert killed is not None, "no worker was seen running a task"
        assert out["not_run"] == [] and len(out["ran"]) == 3, out
        assert out["ray"]["tasks"] == 3
        a, _ = _records(db_url)
        b, keys = _records(url_b)
        assert a == b  # the same checks, figures and statuses as the sequential run
        assert len(keys) == len(set(keys)) == 3 and all(k.startswith("due:sae:pd-sae-") for k in keys)
        with session_scope(url_b, readonly=True) as s:
            from compliance.store.ledger import verify

            assert verify(s).ok
            actors = set(s.scalars(select(Check.actor)))
        with session_scope(db_url, readonly=True) as s:
            assert actors == set(s.scalars(select(Check.actor)))  # the submitter's identity, as sequentially
    finally:
        drop_a()
        drop_b()


@pytest.mark.slow
def test_a_retried_task_finds_its_check_already_recorded(db_url, bank, tmp_path):
    """A worker that died after committing: the retry writes nothing and returns the check on record."""
    from compliance.integrations.ray_due import _task
    from compliance.services.due import due_key, due_pairs

    s = _bank_store(db_url, bank)
    at = datetime.now(timezone.utc)
    with s.session(readonly=True) as ss:
        p = due_pairs(ss, at)[0]
    key = due_key(p, at)
    first = _task(db_url, p, at.isoformat(), key, 2000, None, False, False)
    with session_scope(db_url, readonly=True) as ss:
        from compliance.store.ledger import head

        h = head(ss)
    again = _task(db_url, p, at.isoformat(), key, 2000, None, False, False)
    assert first["ok"] and again["ok"] and again.get("already_recorded")
    assert again["result"]["check_id"] == first["result"]["check_id"]
    with session_scope(db_url, readonly=True) as ss:
        assert head(ss) == h  # nothing written by the retry
