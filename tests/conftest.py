"""Test fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from COMPLIANCE_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
each test gets a fresh database created from it and dropped afterwards. PostgreSQL tests never
skip silently: if the server is unreachable they fail, unless COMPLIANCE_TEST_PG=off is set
explicitly (for a laptop without PostgreSQL; CI never sets it).
"""

from __future__ import annotations

import json
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


class _Templates:
    """One freshly migrated store per backend and test worker, made on first use; each test's store
    is a copy of it (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL), the
    same rows and schema that running the migrations for that test would give — in a tenth of the
    time (Alembic ran for each of the suite's ≈ 450 stores: 1.3 s each on PostgreSQL)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sqlite_file: Path | None = None
        self.pg_name: str | None = None

    def sqlite(self, dest: Path) -> str:
        import shutil

        if self.sqlite_file is None:
            f = self.folder / "template.db"
            self._migrated(f"sqlite:///{f}")
            if Path(f"{f}-wal").exists():  # pragma: no cover - a closed engine has checkpointed
                raise RuntimeError("the template store still has a WAL file")
            self.sqlite_file = f
        shutil.copyfile(self.sqlite_file, dest)
        return f"sqlite:///{dest}"

    def postgresql(self, name: str) -> str:
        if self.pg_name is None:
            self.pg_name = f"ct_tpl_{uuid.uuid4().hex[:12]}"
            self._create(self.pg_name)
            self._migrated(_pg_url(self.pg_name))
        self._create(name, template=self.pg_name)
        return _pg_url(name)

    @staticmethod
    def _migrated(url: str) -> None:
        from compliance.store import migrate
        from compliance.store.engine import make_engine

        migrate.upgrade(url)
        make_engine(url).dispose()  # no connection left: a template must have none to be copied

    @staticmethod
    def _create(name: str, template: str | None = None) -> None:
        admin = _admin_engine()
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        admin.dispose()

    def drop(self) -> None:
        if self.pg_name is not None:
            _drop_pg(self.pg_name)


def _pg_url(name: str) -> str:
    return PG_BASE.rsplit("/", 1)[0] + "/" + name


def _drop_pg(name: str) -> None:
    from compliance.store.engine import make_engine

    make_engine(_pg_url(name)).dispose()
    make_engine.cache_clear()
    admin = _admin_engine()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def store_templates(tmp_path_factory):
    t = _Templates(tmp_path_factory.mktemp("store-template"))
    yield t
    t.drop()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path: Path, store_templates):
    """A migrated, empty store on each backend (a copy of this worker's migrated template)."""
    if request.param == "sqlite":
        yield store_templates.sqlite(tmp_path / "store.db")
        return
    name = f"ct_{uuid.uuid4().hex[:12]}"
    url = store_templates.postgresql(name)
    try:
        yield url
    finally:
        _drop_pg(name)


@pytest.fixture
def empty_db_url(request, tmp_path: Path):
    """An un-migrated SQLite URL."""
    return f"sqlite:///{tmp_path / 'empty.db'}"


_LOGINS: set[tuple[str, str]] = set()


def pg_login(url: str, role: str) -> str:
    """``url`` (a PostgreSQL test database) as the login role ``role``: the role is created if
    needed (roles are cluster-wide) and may read and append to every table of that database."""
    from sqlalchemy.engine import make_url

    if (url, role) not in _LOGINS:
        eng = create_engine(url, isolation_level="AUTOCOMMIT")
        q = role.replace('"', '""')
        with eng.connect() as c:
            if c.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first() is None:
                try:
                    c.execute(text(f'CREATE ROLE "{q}" LOGIN'))
                except Exception:  # noqa: BLE001 - another worker created it meanwhile
                    pass
            c.execute(text(f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO "{q}"'))
            c.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{q}"'))
            # tables a later migration (re)creates in this test are readable and appendable too
            c.execute(text(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE ON TABLES TO "{q}"'))
            c.execute(text(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO "{q}"'))
        eng.dispose()
        _LOGINS.add((url, role))
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def login_url(url: str, person: str) -> tuple[str, dict]:
    """(URL, environment) under which a command runs as ``person``: a PostgreSQL login role, or
    on SQLite the OS user (``getpass`` reads LOGNAME / USER)."""
    if url.startswith("postgresql"):
        return pg_login(url, person), {"COMPLIANCE_ACTOR": None}
    return url, {"LOGNAME": person, "USER": person, "COMPLIANCE_ACTOR": None}


def initialiser(url: str) -> str:
    """Who initialised a test store (its first admin): postgres, or the OS user running pytest."""
    import getpass

    return "postgres" if url.startswith("postgresql") else getpass.getuser()


@pytest.fixture
def cli(db_url):
    """Invoke the CLI against the test store as a person: returns (exit_code, stdout, stderr).

    ``actor`` is who is authenticated (a PostgreSQL login role, or the OS user on SQLite);
    ``replay=True`` passes ``--replay --actor`` instead (a replay of history names its actor).
    ``cli.grant(person, role, model=None)`` registers the person and grants the role as the
    store's first admin (its initialiser)."""
    from typer.testing import CliRunner

    from compliance.cli.main import app

    runner = CliRunner()

    def invoke(*args: str, actor: str = "tester", replay: bool = False, input: str | None = None):
        if replay:
            url, env = login_url(db_url, invoke.admin)
            argv = ["--db", url, "--replay", "--actor", actor, *map(str, args)]
        else:
            url, env = login_url(db_url, actor)
            argv = ["--db", url, *map(str, args)]
        r = runner.invoke(app, argv, catch_exceptions=False, env=env, input=input)
        return r.exit_code, r.stdout, r.stderr

    def grant(person: str, role: str, model: str | None = None) -> None:
        login_url(db_url, person)  # the login exists before the person is added
        code, out, err = invoke("person", "list", "--json", actor=invoke.admin)
        if person not in {p["id"] for p in json.loads(out)}:
            code, out, err = invoke("person", "add", person, actor=invoke.admin)
            assert code == 0, err
        code, out, err = invoke("role", "grant", person, role, *(["--model", model] if model else []), actor=invoke.admin)
        assert code == 0, err

    invoke.url = db_url
    invoke.admin = initialiser(db_url)
    invoke.grant = grant
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
