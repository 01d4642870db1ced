"""SHA-256 of files (streamed) and canonical JSON (DESIGN §7)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from compliance.errors import InputError

CHUNK = 1 << 20
READ = 1 << 16


def sha256_file(path: str | Path) -> str:
    """Stream a file through SHA-256 (constant memory, any size)."""
    p = Path(path)
    h = hashlib.sha256()
    try:
        with p.open("rb", buffering=0) as fh:  # unbuffered 64 KiB reads: no 1 MiB buffer per small file
            while chunk := fh.read(READ):
                h.update(chunk)
    except FileNotFoundError:
        raise InputError(f"file not found: {p}") from None
    except IsADirectoryError:
        raise InputError(f"expected a file, got a folder: {p}") from None
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror}") from None
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_safe(value: Any) -> Any:
    """Replace NaN/inf by None recursively so the value has a canonical JSON form."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return json_safe(value.item())
    return value


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """Sorted keys, UTF-8, no insignificant whitespace, no NaN (one encoder, built once:
    ``json.dumps`` with options builds a new one per call)."""
    return _CANONICAL.encode(value)


GENESIS_HASH = "0" * 64


def ledger_entry_hash(prev_hash: str, seq: int, recorded_at: str, actor: str, action: str, entity_type: str,
                      entity_id: str, payload: str) -> str:
    """DESIGN §7: SHA-256(prev_hash ‖ canonical JSON of the entry). The one definition, used by the
    store's ledger and by pack verification (which must not need the store)."""
    body = canonical_json({
        "seq": seq, "recorded_at": recorded_at, "actor": actor, "action": action,
        "entity_type": entity_type, "entity_id": entity_id, "payload": payload,
    })
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


_STRING = json.encoder.encode_basestring  # the encoder's own string form (ensure_ascii=False)


def ledger_chain(prev_hash: str, seq: int, recorded_at: str, actor: str, action: str,
                 items: Iterable[tuple[str, str, str]]) -> Iterator[tuple[int, str, str]]:
    """:func:`ledger_entry_hash` along a run of entries that share stamp, actor and action
    (one bulk append): yields (seq, prev_hash, hash) for each (entity type, entity id, payload),
    seq counting on from ``seq``. The canonical JSON is assembled from the encoder's own pieces
    (keys in sorted order, strings as the encoder writes them, ``seq`` as an integer), so each
    hash is byte for byte the one :func:`ledger_entry_hash` gives (tests/test_ledger.py)."""
    head = f'{{"action":{_STRING(action)},"actor":{_STRING(actor)},"entity_id":'
    tail = f',"recorded_at":{_STRING(recorded_at)},"seq":'
    sha = hashlib.sha256
    types: dict[str, str] = {}
    for etype, eid, payload in items:
        seq = int(seq) + 1
        mid = types.get(etype)
        if mid is None:
            mid = types[etype] = f',"entity_type":{_STRING(etype)},"payload":'
        h = sha(f"{prev_hash}{head}{_STRING(eid)}{mid}{_STRING(payload)}{tail}{seq!r}}}".encode("utf-8")).hexdigest()
        yield seq, prev_hash, h
        prev_hash = h
