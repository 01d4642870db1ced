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


def create_door_check(conn: Connection, table: str, name: str, cond: str, *, sqlite_cond: str | None = None,
                      not_valid: bool = False) -> None:
    """A row check at the door: a CHECK constraint on PostgreSQL (``NOT VALID`` leaves existing rows
    alone), a ``BEFORE INSERT`` trigger on SQLite (which cannot add a constraint to a table). The
    SQLite condition names the new row's columns as ``NEW.col``; ``sqlite_cond`` gives it when it
    differs from ``cond``. Migrations pass frozen names and conditions: this only spells the DDL."""
    if conn.dialect.name == "postgresql":
        suffix = " NOT VALID" if not_valid else ""
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({cond}){suffix}")
    else:
        conn.exec_driver_sql(
            f"CREATE TRIGGER {name} BEFORE INSERT ON {table} "
            f"WHEN NOT coalesce(({sqlite_cond or cond}), 0) BEGIN "
            f"SELECT RAISE(ABORT, 'CHECK constraint failed: {name}'); END")


def drop_door_check(conn: Connection, table: str, name: str) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
    else:
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")


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


# ----------------------------------------------------------------------------- identity (0007)
# PostgreSQL only (SQLite has no authenticated user: there the service layer is the only guard).
# 1. Every ledger entry names the authenticated role (session_user); the evidence row it records
#    may name another actor only in a replay (action 'replay') or for an automatic action
#    ('system…'). 2. Segregation of duties on the rows that judge a model's evidence.
# The person a rule applies to is session_user, or the replayed actor when the transaction says
# it is a replay (SET LOCAL compliance.replay = 'on'; every entry of it is then marked 'replay').
PG_IDENTITY_FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION compliance_ledger_identity() RETURNS trigger AS $$
DECLARE who text;
BEGIN
  IF NEW.actor IS NULL THEN
    NEW.actor := session_user::text;
  END IF;
  IF NEW.actor <> session_user::text THEN
    RAISE EXCEPTION 'compliance: a ledger entry must name the authenticated role %%, not %%', session_user, NEW.actor;
  END IF;
  who := (NEW.payload::jsonb) ->> 'actor';
  IF who IS NOT NULL AND who <> session_user::text AND NEW.action <> 'replay'
     AND who <> 'system' AND who NOT LIKE 'system:%%' THEN
    RAISE EXCEPTION 'compliance: %% may not record an entry as %% (only a replay may name another actor)', session_user, who;
  END IF;
  IF current_setting('compliance.replay', true) = 'on' AND NEW.action <> 'replay' THEN
    RAISE EXCEPTION 'compliance: every entry of a replay is marked replay';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql
""",
    """
CREATE OR REPLACE FUNCTION compliance_person(row_actor text) RETURNS text AS $$
  SELECT CASE WHEN current_setting('compliance.replay', true) = 'on' THEN row_actor ELSE session_user::text END
$$ LANGUAGE sql STABLE
""",
    """
CREATE OR REPLACE FUNCTION compliance_has_role(p text, r text, m text) RETURNS boolean AS $$
  SELECT EXISTS (
    SELECT 1 FROM (SELECT DISTINCT ON (coalesce(model_id, '')) action FROM role_grant
                   WHERE person_id = p AND role = r AND (model_id IS NULL OR model_id = m)
                   ORDER BY coalesce(model_id, ''), id DESC) last
    WHERE last.action = 'grant')
$$ LANGUAGE sql STABLE
""",
    """
CREATE OR REPLACE FUNCTION compliance_conflicted(p text, m text) RETURNS boolean AS $$
  SELECT EXISTS (SELECT 1 FROM model WHERE id = m AND owner = p)
      OR EXISTS (SELECT 1 FROM model_version WHERE model_id = m AND actor = p)
      OR EXISTS (SELECT 1 FROM artifact WHERE model_id = m AND actor = p)
      OR compliance_has_role(p, 'owner', m) OR compliance_has_role(p, 'developer', m)
$$ LANGUAGE sql STABLE
""",
    """
CREATE OR REPLACE FUNCTION compliance_sod_attestation() RETURNS trigger AS $$
DECLARE p text := compliance_person(NEW.actor); m text;
BEGIN
  FOR m IN SELECT json_array_elements_text(scope::json) FROM report_run WHERE id = NEW.report_run_id LOOP
    IF compliance_conflicted(p, m) THEN
      RAISE EXCEPTION 'compliance: segregation of duties: %% owns or develops %% and cannot sign this report off', p, m;
    END IF;
    IF NOT (compliance_has_role(p, 'validator', m) OR compliance_has_role(p, 'approver', m)) THEN
      RAISE EXCEPTION 'compliance: a sign-off needs the validator or approver role: %% has neither for %%', p, m;
    END IF;
  END LOOP;
  RETURN NEW;
END $$ LANGUAGE plpgsql
""",
    """
CREATE OR REPLACE FUNCTION compliance_sod_judgement() RETURNS trigger AS $$
DECLARE p text := compliance_person(NEW.actor); m text;
BEGIN
  IF TG_TABLE_NAME = 'acceptance' THEN
    SELECT model_id INTO m FROM check_run WHERE id = NEW.check_id;
    IF m IS NULL THEN SELECT model_id INTO m FROM fm_occurrence WHERE id = NEW.occurrence_id; END IF;
  ELSIF TG_TABLE_NAME = 'finding_event' THEN
    IF NEW.status NOT IN ('verified', 'accepted', 'closed') THEN RETURN NEW; END IF;
    SELECT model_id INTO m FROM finding WHERE id = NEW.finding_id;
  END IF;
  IF m IS NOT NULL AND compliance_conflicted(p, m) THEN
    RAISE EXCEPTION 'compliance: segregation of duties: %% owns or develops %% and cannot judge its evidence', p, m;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql
""",
    """
CREATE OR REPLACE FUNCTION compliance_admin_only() RETURNS trigger AS $$
DECLARE p text := compliance_person(NEW.actor);
BEGIN
  IF EXISTS (SELECT 1 FROM role_grant WHERE role = 'admin') AND NOT compliance_has_role(p, 'admin', NULL) THEN
    RAISE EXCEPTION 'compliance: only an admin may write %% (%% is not an admin)', TG_TABLE_NAME, p;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql
""",
]
PG_IDENTITY_TRIGGERS = {
    "ledger_entry_identity": ("ledger_entry", "compliance_ledger_identity"),
    "attestation_sod": ("attestation", "compliance_sod_attestation"),
    "acceptance_sod": ("acceptance", "compliance_sod_judgement"),
    "finding_event_sod": ("finding_event", "compliance_sod_judgement"),
    "person_admin_only": ("person", "compliance_admin_only"),
    "role_grant_admin_only": ("role_grant", "compliance_admin_only"),
    "signing_key_admin_only": ("signing_key", "compliance_admin_only"),
}


def create_identity_triggers(conn: Connection) -> None:
    if conn.dialect.name != "postgresql":
        return
    for sql in PG_IDENTITY_FUNCTIONS:
        conn.exec_driver_sql(sql)
    for name, (table, fn) in PG_IDENTITY_TRIGGERS.items():
        conn.exec_driver_sql(f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {fn}()")


def drop_identity_triggers(conn: Connection) -> None:
    if conn.dialect.name != "postgresql":
        return
    for name, (table, _fn) in PG_IDENTITY_TRIGGERS.items():
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    for fn in ("compliance_ledger_identity()", "compliance_sod_attestation()", "compliance_sod_judgement()",
               "compliance_admin_only()", "compliance_conflicted(text, text)", "compliance_has_role(text, text, text)",
               "compliance_person(text)"):
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {fn}")
