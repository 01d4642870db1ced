"""The project's exceptions.

Library code raises these; the CLI maps them to a one-line message and an exit code
(``UsageError`` → 2, everything else → 1). Nothing else should escape to the user.
"""

from __future__ import annotations


class ComplianceError(Exception):
    """Base class: a failure we can explain in one line."""

    exit_code = 1


class UsageError(ComplianceError):
    """The command was called wrongly (bad option value, unparsable date...)."""

    exit_code = 2


class NotFound(ComplianceError):
    """An unknown model, version, artifact, check, report..."""


class Conflict(ComplianceError):
    """A duplicate id or an operation the current state does not allow."""


class InputError(ComplianceError):
    """Bad input data: missing file, wrong shape, NaN, malformed manifest, hash mismatch."""


class SchemaOutOfDate(ComplianceError):
    """The database schema is not at the head revision."""


class IntegrityFailure(ComplianceError):
    """The ledger or an evidence row does not verify."""


class AlreadyRecorded(Conflict):
    """A check with the same idempotency key is already on record (a retried task): nothing new
    is written, the earlier check stands."""

    def __init__(self, key: str, check_id: int):
        super().__init__(f"check {check_id} already records {key}")
        self.key, self.check_id = key, check_id


class LookAhead(Conflict):
    """A check asked to use data whose window ends after the check's time (DESIGN §3: no look-ahead)."""
