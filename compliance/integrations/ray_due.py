"""Due checks fanned out over a Ray cluster (`compliance check run --due --ray`).

Each due check — a fidelity pair or a monitoring-plan task — is one Ray task. The task runs on a
worker: it opens its own session on the shared store (PostgreSQL in production; every worker must
reach it and the artifact and data paths the store records), loads the artifact and the data
there (on CUDA when the worker has a GPU), computes, and writes its result through the normal
ledger path in a short transaction of its own.

* **Identity.** Workers connect with the submitting command's URL and environment (the login
  role, or the OS user on SQLite), so every entry names the person who submitted the run; a
  replay's actor is passed along.
* **Never twice.** A task carries an idempotency key (what it checks, the version, the due day,
  :func:`compliance.services.due.due_key`) recorded with the check. The check service looks for
  the key after its append, while holding the store's write lock, and rolls back if it is already
  on record (:class:`compliance.errors.AlreadyRecorded`): a task retried after its worker died —
  even one that died after committing — returns the check already recorded.
* **Retries.** A task whose worker dies is retried by Ray (``max_retries``); a bad input (a
  missing file, a hash mismatch) is not retried and is reported under ``not_run`` as in the
  sequential run.
* After all tasks, failure modes are detected and verdict alerts sent in one transaction, on
  the driver, exactly as :func:`compliance.services.due.run_due_each` does.
"""

from __future__ import annotations

import getpass
import os
from datetime import datetime
from typing import Callable

IDENTITY_ENV = ("LOGNAME", "USER", "LNAME", "USERNAME", "PGUSER", "PGPASSWORD", "PGHOST", "PGPORT", "PGDATABASE",
                "COMPLIANCE_DB_URL")


def _task(url: str, item: dict, at_iso: str, key: str, max_rows: int | None, actor: str | None, replay: bool,
          planned: bool) -> dict:
    """One due check on a worker (module-level so that Ray can ship it by reference)."""
    from compliance.errors import AlreadyRecorded, ComplianceError
    from compliance.services.checks import run_fidelity
    from compliance.services.due import run_plan_task
    from compliance.store.engine import session_scope
    from compliance.timeutil import parse_datetime

    at = parse_datetime(at_iso, what="at")
    device = None
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - the checks need torch; a worker without it fails below
        pass
    try:
        with session_scope(url, actor=actor, replay=replay, short_writes=True) as s:
            s.info["idempotency_key"] = key
            if planned:
                out = run_plan_task(s, item, at)
            else:
                c = run_fidelity(s, item["artifact_id"], item["version"], adapter=True, max_rows=max_rows, device=device)
                out = _ran(item, c)
        return {"ok": True, "result": out, "pid": os.getpid(), "device": device or "cpu"}
    except AlreadyRecorded as e:
        from compliance.services.checks import show_check

        with session_scope(url, readonly=True) as s:
            c = show_check(s, e.check_id)
        return {"ok": True, "result": _ran(item, c), "pid": os.getpid(), "device": device or "cpu",
                "already_recorded": True}
    except ComplianceError as e:
        return {"ok": False, "why": str(e), "item": item}


def _ran(item: dict, c: dict) -> dict:
    """A ran-check line as the sequential run reports it."""
    return {**item, "check_id": c["id"], "status": c["status"], "explained_variance": c.get("explained_variance")}


def _absolute(url: str | None) -> str:
    """The store URL as a worker must see it: resolved, and a SQLite path made absolute (workers
    run in other folders)."""
    from sqlalchemy.engine import make_url

    from compliance.store.engine import resolve_url

    url = resolve_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:" and not os.path.isabs(u.database):
        return u.set(database=os.path.abspath(u.database)).render_as_string(hide_password=False)
    return url


def run_due_ray(url: str | None, at: datetime, *, address: str | None = None, actor: str | None = None,
                replay: bool = False, max_rows: int | None = 20_000, max_retries: int = 3, num_cpus: int | None = None,
                progress: Callable[[int, int, dict], None] | None = None, dry_run: bool = False) -> dict:
    """Run every due check as a Ray task (see the module docstring); returns what
    :func:`compliance.services.due.run_due_each` returns, plus ``ray`` (cluster, retries, workers)."""
    from compliance.errors import InputError
    from compliance.services.due import due_finish, due_key, due_plan
    from compliance.store.engine import session_scope

    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray: pip install 'compliance[ray]'") from None
    url = _absolute(url)

    def opener(**kw):
        return session_scope(url, actor=actor, replay=replay, **kw)

    pairs, tasks, not_run, before = due_plan(opener, at, dry_run=dry_run)
    if dry_run:
        return {"at": at, "due": pairs, "planned": tasks, "not_run": not_run, "ran": [], "failure_modes_opened": []}
    env = {k: os.environ[k] for k in IDENTITY_ENV if k in os.environ}
    env.setdefault("LOGNAME", getpass.getuser())
    started_here = not ray.is_initialized()
    try:
        if started_here:
            ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                     log_to_driver=False, runtime_env={"env_vars": env})
    except Exception as e:  # ConnectionError, RuntimeError: an unreachable or refused cluster
        raise InputError(f"cannot reach the Ray cluster {address or '(local)'}: {str(e).splitlines()[0]}") from None
    try:
        remote = ray.remote(max_retries=max_retries, retry_exceptions=False)(_task)
        items = [(p, False) for p in pairs] + [(t, True) for t in tasks]
        refs = {remote.remote(url, it, at.isoformat(), due_key(it, at), max_rows, actor, replay, planned): it
                for it, planned in items}
        ran, pids, again, done = [], set(), 0, 0
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                it = refs[ref]
                try:
                    r = ray.get(ref)
                except Exception as e:  # the task's worker died more than max_retries times
                    not_run.append({**it, "why": f"worker failed: {str(e).splitlines()[0]}"})
                    continue
                finally:
                    done += 1
                    if progress:
                        progress(done, len(refs), it)
                if r["ok"]:
                    ran.append(r["result"])
                    pids.add(r["pid"])
                    again += bool(r.get("already_recorded"))
                else:
                    not_run.append({**r["item"], "why": r["why"]})
        order = {due_key(it, at): i for i, (it, _) in enumerate(items)}
        ran.sort(key=lambda r: order.get(due_key(r, at), len(order)))
        out = due_finish(opener, at, pairs, tasks, ran, not_run, before)
        out["ray"] = {"address": address or "local", "tasks": len(refs), "worker_processes": len(pids),
                      "already_recorded": again, "max_retries": max_retries}
        return out
    finally:
        if started_here:
            ray.shutdown()
