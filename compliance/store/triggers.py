"""Database triggers that make evidence append-only (DESIGN §7), on SQLite and PostgreSQL.

Migrations call these with an explicit, frozen list of table names.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION compliance_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'compliance: %% on %% is not allowed: evidence is append-only', TG_OP, TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql
"""


def create_append_only_triggers(conn: Connection, tables: list[str]) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(PG_FUNCTION)
        for t in tables:
            conn.exec_driver_sql(
                f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                f"FOR EACH ROW EXECUTE FUNCTION compliance_append_only()")
            conn.exec_driver_sql(
                f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION compliance_append_only()")
    else:
        for t in tables:
            for op in ("UPDATE", "DELETE"):
                conn.exec_driver_sql(
                    f"CREATE TRIGGER {t}_no_{op.lower()} BEFORE {op} ON {t} BEGIN "
                    f"SELECT RAISE(ABORT, 'compliance: {op} on {t} is not allowed: evidence is append-only'); END")


def drop_append_only_triggers(conn: Connection, tables: list[str], *, drop_function: bool = False) -> None:
    if conn.dialect.name == "postgresql":
        for t in tables:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}")
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        if drop_function:
            conn.exec_driver_sql("DROP FUNCTION IF EXISTS compliance_append_only()")
    else:
        for t in tables:
            for op in ("update", "delete"):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {t}_no_{op}")
