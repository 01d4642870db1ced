"""Settings of the web view and the read-only database URL it opens."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from compliance.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8600


@dataclass(frozen=True)
class WebConfig:
    """What `compliance serve` was started with.

    db_url           the store (opened read-only: see :func:`readonly_url`)
    reports_dir      folder holding the rendered packs; a file is offered for download only
                     when its name is an output of a recorded report run and its bytes have
                     the recorded SHA-256
    trusted_proxies  addresses (or networks) of the SSO reverse proxy; only requests from them
                     may name the user in ``user_header``; from anywhere else the header is ignored
    user_header      the header the proxy sets to the authenticated user (e.g. X-Remote-User)
    require_user     refuse (401) any request that does not come through a trusted proxy with a user
    per_page         rows per page of long lists
    """

    db_url: str
    reports_dir: Path | None = None
    trusted_proxies: tuple[str, ...] = ()
    user_header: str = "X-Remote-User"
    require_user: bool = False
    per_page: int = 50
    networks: tuple = field(default=(), compare=False)

    def __post_init__(self):
        nets = []
        for p in self.trusted_proxies:
            try:
                nets.append(ipaddress.ip_network(p.strip(), strict=False))
            except ValueError:
                raise UsageError(f"--trusted-proxy {p!r} is not an IP address or network") from None
        object.__setattr__(self, "networks", tuple(nets))
        if self.require_user and not nets:
            raise UsageError("--require-user needs at least one --trusted-proxy (the SSO proxy that names the user)")
        if self.reports_dir is not None and not Path(self.reports_dir).is_dir():
            raise UsageError(f"--reports-dir {self.reports_dir} is not a folder")
        if not self.user_header or not all(c.isalnum() or c == "-" for c in self.user_header):
            raise UsageError(f"--user-header {self.user_header!r} is not a header name")

    def trusted(self, client_host: str | None) -> bool:
        if not client_host or not self.networks:
            return False
        try:
            addr = ipaddress.ip_address(client_host)
        except ValueError:
            return False
        return any(addr in n for n in self.networks)


def readonly_url(url: str) -> str:
    """The same store, opened so that the database itself refuses writes.

    SQLite: the file is opened with ``mode=ro`` (a URI filename); PostgreSQL: every transaction
    starts READ ONLY (``default_transaction_read_only``). Memory databases cannot be read-only
    and are refused."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        db = u.database
        if not db or db == ":memory:" or db.startswith("file:"):
            raise UsageError("serve needs a SQLite file (an in-memory or URI database cannot be opened read-only)")
        path = Path(db).resolve()
        if not path.is_file():
            raise UsageError(f"no store at {path}: run `compliance init` (or `compliance demo`) first")
        return f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true"
    if u.get_backend_name() == "postgresql":
        opts = u.query.get("options", "")
        opts = (opts + " " if opts else "") + "-c default_transaction_read_only=on"
        return u.update_query_dict({"options": opts}).render_as_string(hide_password=False)
    raise UsageError(f"serve supports SQLite and PostgreSQL stores, not {u.get_backend_name()}")
