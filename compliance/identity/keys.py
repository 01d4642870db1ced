"""Ed25519 signing keys and signatures (DESIGN §7).

A private key lives in a passphrase-protected PKCS#8 PEM file written with mode 0600, never in
the store. A public key is stored as base64 of its 32 raw bytes; its fingerprint is the SHA-256
(hex) of those bytes. What is signed is the canonical JSON (sorted keys, UTF-8, no whitespace) of
a small dict, so a verifier needs nothing but the fields and the public key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from compliance.errors import InputError, UsageError
from compliance.hashing import canonical_json

MIN_PASSPHRASE = 8


def generate(out: Path, passphrase: str) -> str:
    """Write a new private key to ``out`` (0600, refused if it exists); return its public key (b64)."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise UsageError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    out = Path(out)
    if out.exists():
        raise UsageError(f"{out} exists: a key file is never overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(passphrase.encode()))
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return public_b64(key.public_key())


def public_b64(pub: Ed25519PublicKey) -> str:
    return base64.b64encode(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def load_private(path: Path, passphrase: str) -> Ed25519PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode())
    except (ValueError, TypeError):
        raise InputError(f"{path}: not a private key, or wrong passphrase") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path}: not an Ed25519 key")
    return key


def read_public(path: Path) -> str:
    """A public key file: the base64 line `key generate` prints, or a PEM SubjectPublicKeyInfo."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read public key {path}: {exc}") from None
    return parse_public(text, str(path))


def parse_public(text: str, where: str = "public key") -> str:
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("not Ed25519")
            return public_b64(key)
        raw = base64.b64decode(text, validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
        return text
    except ValueError:
        raise InputError(f"{where}: not an Ed25519 public key") from None


def fingerprint(public: str) -> str:
    return hashlib.sha256(base64.b64decode(public)).hexdigest()


def sign(key: Ed25519PrivateKey, fields: dict) -> str:
    return base64.b64encode(key.sign(canonical_json(fields).encode())).decode()


def verify(public: str, fields: dict, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public)).verify(
            base64.b64decode(signature, validate=True), canonical_json(fields).encode())
        return True
    except (InvalidSignature, ValueError):
        return False


def attestation_fields(report_id: str, context_hash: str, decision: str, comment: str | None, signed_at: str) -> dict:
    """What a sign-off signs (DESIGN §7)."""
    return {"report_id": report_id, "context_sha256": context_hash, "decision": decision,
            "comment": comment or "", "signed_at": signed_at}


def passphrase_from_env(var: str = "COMPLIANCE_KEY_PASSPHRASE") -> str | None:
    return os.environ.get(var)
