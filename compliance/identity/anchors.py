"""Ledger anchors (DESIGN §7): a signed checkpoint of the ledger head, kept outside the database.

An anchor is a small JSON document::

    {"format": "compliance-anchor/1", "organisation": ..., "head_seq": N, "head_hash": ...,
     "head_recorded_at": ..., "anchored_at": ..., "public_key": ..., "key_fingerprint": ...,
     "signature": ...}

signed (Ed25519) over the canonical JSON of every field but ``signature``. Whoever rewrites the
chain before entry N and re-hashes every later entry gets a chain that verifies on its own, but
entry N no longer has ``head_hash``: the anchor catches it.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compliance.errors import InputError
from compliance.identity import keys

FORMAT = "compliance-anchor/1"
FIELDS = ("format", "organisation", "head_seq", "head_hash", "head_recorded_at", "anchored_at",
          "public_key", "key_fingerprint")


def make(key: Ed25519PrivateKey, *, organisation: str, head_seq: int, head_hash: str, head_recorded_at: str,
         anchored_at: str) -> dict:
    pub = keys.public_b64(key.public_key())
    doc = {"format": FORMAT, "organisation": organisation, "head_seq": head_seq, "head_hash": head_hash,
           "head_recorded_at": head_recorded_at, "anchored_at": anchored_at, "public_key": pub,
           "key_fingerprint": keys.fingerprint(pub)}
    return dict(doc, signature=keys.sign(key, doc))


def load(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read anchor {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or any(k not in doc for k in FIELDS + ("signature",)):
        raise InputError(f"{path}: not a compliance anchor ({FORMAT})")
    if not isinstance(doc["head_seq"], int) or isinstance(doc["head_seq"], bool):
        raise InputError(f"{path}: head_seq is not an integer")
    return doc


def signature_ok(doc: dict) -> bool:
    """The anchor is signed by the key it names (and the fingerprint is that key's)."""
    try:
        if keys.fingerprint(doc["public_key"]) != doc["key_fingerprint"]:
            return False
    except (ValueError, TypeError):
        return False
    return keys.verify(doc["public_key"], {k: doc[k] for k in FIELDS}, doc["signature"])


def dumps(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"
