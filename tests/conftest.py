"""Test fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from COMPLIANCE_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
each test gets a fresh database created from it and dropped afterwards. PostgreSQL tests never
skip silently: if the server is unreachable they fail, unless COMPLIANCE_TEST_PG=off is set
explicitly (for a laptop without PostgreSQL; CI never sets it).
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

PG_BASE = os.environ.get("COMPLIANCE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite"] + ([] if PG_BASE == "off" else ["postgresql"])


def _admin_engine():
    return create_engine(PG_BASE, isolation_level="AUTOCOMMIT")


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path: Path):
    """A migrated, empty store on each backend."""
    from compliance.store import migrate

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        migrate.upgrade(url)
        yield url
        return
    name = f"ct_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_BASE.rsplit("/", 1)[0] + "/" + name
    try:
        migrate.upgrade(url)
        yield url
    finally:
        from compliance.store.engine import make_engine

        make_engine(url).dispose()
        make_engine.cache_clear()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def empty_db_url(request, tmp_path: Path):
    """An un-migrated SQLite URL."""
    return f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture
def cli(db_url):
    """Invoke the CLI against the test store: returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from compliance.cli.main import app

    runner = CliRunner()

    def invoke(*args: str, actor: str = "tester"):
        r = runner.invoke(app, ["--db", db_url, "--actor", actor, *map(str, args)], catch_exceptions=False)
        return r.exit_code, r.stdout, r.stderr

    invoke.url = db_url
    return invoke


# ---------------------------------------------------------------- the sample bank, built once per run
def _shared_dir(tmp_path_factory, name: str) -> Path:
    """A folder shared by all xdist workers of this run (their basetemps share a parent)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    return root / name


@contextmanager
def _locked(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def bank(tmp_path_factory) -> Path:
    """The sample bank (SAMPLE_BANK_DIR to reuse a build): built once, whatever the worker count."""
    from sample_data.build import build

    out = Path(os.environ["SAMPLE_BANK_DIR"]) if os.environ.get("SAMPLE_BANK_DIR") else _shared_dir(tmp_path_factory, "bank")
    with _locked(out.parent / f".{out.name}.lock"):
        return build(out).parent


@pytest.fixture(scope="session")
def story_store(bank, tmp_path_factory) -> str:
    """A SQLite store with the sample bank's year replayed through the real checks (once per run)."""
    from compliance.services.demo import replay

    d = _shared_dir(tmp_path_factory, "story")
    db = d / "story.db"
    with _locked(d.parent / ".story.lock"):
        if not (d / "done").exists():
            d.mkdir(parents=True, exist_ok=True)
            db.unlink(missing_ok=True)
            replay(f"sqlite:///{db}", bank / "manifest.yaml", say=lambda _m: None)
            (d / "done").write_text("ok")
    return f"sqlite:///{db}"
