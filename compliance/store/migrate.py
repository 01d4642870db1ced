"""Run Alembic migrations with the URL injected in code (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from compliance.store.engine import current_revision, make_engine, resolve_url


def migrations_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_migrations"
    if packaged.is_dir():
        return packaged
    return here.parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def script_head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _run(step, url: str | None, revision: str, clock=None, admin: str | None = None) -> str | None:
    url = resolve_url(url)
    engine = make_engine(url)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        cfg.attributes["clock"] = clock
        cfg.attributes["admin"] = admin
        step(cfg, revision)
    return current_revision(engine)


def upgrade(url: str | None = None, revision: str = "head", *, clock=None, admin: str | None = None) -> str | None:
    """Create or upgrade the schema. ``clock`` stamps the seeded rows (replays only). Whoever
    initialises the store is its first admin (migration 0007): the authenticated login, or
    ``admin`` when a replay names its historical administrator."""
    return _run(command.upgrade, url, revision, clock, admin)


def downgrade(url: str | None = None, revision: str = "base") -> str | None:
    return _run(command.downgrade, url, revision)


def current(url: str | None = None) -> str | None:
    return current_revision(make_engine(resolve_url(url)))
