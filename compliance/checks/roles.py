"""Column roles of a dataset (DESIGN §2): which columns are model inputs, labels, protected attributes...

Pure functions over column names and dtypes. Roles are stored with a registered dataset as
``{role: [column, ...]}``. Where roles are not given they are inferred from names and dtypes,
and the inference is reported (never silent): a label is never treated as an input by default.

Inference (first match wins; names compared lower-case):

- ``timestamp``: a date/time dtype, or ``timestamp``/``date``/``time``/``datetime``, ``*_date``,
  ``*_at``, ``*_time``, ``*_ts``
- ``id``: ``id``, ``uuid``, ``*_id``, ``*_uuid``
- ``target``: ``target``, ``label``, ``y``, ``class``, ``outcome``, ``default``, ``*_label``,
  ``*_target``, ``*_outcome``, ``default_*``, ``is_*``
- ``score``: ``score``, ``prediction``, ``*_score``, ``*_prob``, ``*_pred``
- ``weight``: ``weight``, ``*_weight``
- otherwise ``input``; an input whose name is a usual protected characteristic (``age``, ``sex``,
  ``gender``, ``race``, ``ethnicity``, ``religion``, ``nationality``, ``marital_status``,
  ``disability``, or ending in ``_age``) is also marked ``protected``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from compliance.errors import InputError, UsageError

ROLES = ("input", "target", "protected", "score", "id", "timestamp", "weight")
# Roles that exclude being an input: drift is judged on inputs only, and these never are.
NOT_INPUT = ("target", "score", "id", "timestamp", "weight")
PROTECTED_NAMES = {"age", "sex", "gender", "race", "ethnicity", "religion", "nationality", "marital_status",
                   "disability"}


def parse_role_options(values: Iterable[str]) -> dict[str, list[str]]:
    """``["input=a,b", "target=y"]`` -> ``{"input": ["a", "b"], "target": ["y"]}`` (repeatable, merged)."""
    out: dict[str, list[str]] = {}
    for raw in values:
        role, sep, cols = raw.partition("=")
        role = role.strip()
        if not sep:
            raise UsageError(f"column role {raw!r} is not of the form ROLE=col1,col2 (roles: {', '.join(ROLES)})")
        if role not in ROLES:
            raise UsageError(f"unknown column role {role!r}: expected one of {', '.join(ROLES)}")
        names = [c.strip() for c in cols.split(",") if c.strip()]
        if not names:
            raise UsageError(f"column role {role!r} names no column")
        for c in names:
            if c not in out.setdefault(role, []):
                out[role].append(c)
    return out


def infer_role(name: str, dtype: str = "") -> str:
    """The role a column gets when none is given (see the module docstring)."""
    n = name.lower()
    d = dtype.lower()
    if d.startswith(("datetime", "date", "timestamp", "time")) or n in ("timestamp", "date", "time", "datetime") \
            or n.endswith(("_date", "_at", "_time", "_ts")):
        return "timestamp"
    if n in ("id", "uuid") or n.endswith(("_id", "_uuid")):
        return "id"
    if n in ("target", "label", "y", "class", "outcome", "default") or n.endswith(("_label", "_target", "_outcome")) \
            or n.startswith(("default_", "is_")):
        return "target"
    if n in ("score", "prediction") or n.endswith(("_score", "_prob", "_pred")):
        return "score"
    if n == "weight" or n.endswith("_weight"):
        return "weight"
    return "input"


def is_protected_name(name: str) -> bool:
    n = name.lower()
    return n in PROTECTED_NAMES or n.endswith("_age")


def resolve_roles(schema: Sequence[tuple[str, str]], given: Mapping[str, Sequence[str]] | None,
                  *, where: str = "data") -> tuple[dict[str, list[str]], list[str]]:
    """Roles of every column of ``schema`` ([(name, dtype)]): the ``given`` ones, the rest inferred.

    Returns ``(roles, inferred)`` where ``inferred`` lists human-readable notes on what was
    inferred (empty when every column was given a role). A column named in ``given`` that the
    file does not have, or a column that is both an input and a target/id/timestamp/score/weight,
    is an error. When ``given`` names inputs, unlisted columns are not inputs (only their other
    inferred roles are kept)."""
    given = {k: list(v) for k, v in (given or {}).items() if v}
    names = [n for n, _ in schema]
    have = set(names)
    for role, cols in given.items():
        if role not in ROLES:
            raise UsageError(f"unknown column role {role!r}: expected one of {', '.join(ROLES)}")
        missing = [c for c in cols if c not in have]
        if missing:
            raise InputError(f"{where}: column role {role} names column(s) not in the file: {', '.join(missing)}")
    assigned = {c for cols in given.values() for c in cols}
    roles: dict[str, list[str]] = {r: list(given.get(r, [])) for r in ROLES}
    inferred: dict[str, list[str]] = {}
    inputs_given = "input" in given
    for name, dtype in schema:
        if name in assigned:
            continue
        role = infer_role(name, dtype)
        if role == "input" and inputs_given:
            inferred.setdefault("none (not listed as input)", []).append(name)
            continue
        roles[role].append(name)
        inferred.setdefault(role, []).append(name)
        if role == "input" and is_protected_name(name) and "protected" not in given:
            roles["protected"].append(name)
            inferred.setdefault("protected", []).append(name)
    bad = [(c, r) for r in NOT_INPUT for c in roles[r] if c in roles["input"]]
    if bad:
        c, r = bad[0]
        raise UsageError(f"{where}: column {c!r} cannot be both an input and a {r}")
    notes = [f"{r}: {', '.join(cols)}" for r, cols in inferred.items()]
    return {r: cols for r, cols in roles.items() if cols}, notes


def check_roles_shape(doc: object, *, where: str = "columns") -> dict[str, list[str]]:
    """Validate a stored/manifest roles mapping ``{role: [column, ...]}``."""
    if not isinstance(doc, Mapping):
        raise InputError(f"{where}: expected a mapping of role -> list of columns")
    out: dict[str, list[str]] = {}
    for role, cols in doc.items():
        if role not in ROLES:
            raise UsageError(f"{where}: unknown column role {role!r}: expected one of {', '.join(ROLES)}")
        if isinstance(cols, str):
            cols = [c.strip() for c in cols.split(",") if c.strip()]
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise InputError(f"{where}: role {role!r} must list column names")
        out[role] = list(cols)
    return out


def file_schema(path) -> list[tuple[str, str]]:
    """Column names and dtypes of a CSV or Parquet file (Parquet: its schema; CSV: the first 1,000 rows)."""
    from pathlib import Path

    from compliance.checks.drift import _file_format

    p = Path(path)
    fmt = _file_format(p)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            return [(f.name, "datetime" if pa.types.is_temporal(f.type) else str(f.type)) for f in pq.read_schema(p)]
        import pandas as pd

        return [(str(c), str(t)) for c, t in pd.read_csv(p, nrows=1000).dtypes.items()]
    except Exception as exc:  # pandas/pyarrow raise many types for a bad file
        raise InputError(f"{p.name}: cannot read its columns ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
