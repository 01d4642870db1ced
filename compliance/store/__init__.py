"""The store: schema, engine, ledger and the raw and columnar reads."""

# the store a command opens when neither --db nor COMPLIANCE_DB_URL names one
DEFAULT_DB_URL = "sqlite:///compliance.db"
