"""The report context is converted to plain data once, by a converter compiled per type: it gives
exactly what the generic, path-naming walk gives (same JSON bytes, same hash), falls back to that
walk for anything unusual, and still names the first bad field."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from compliance.errors import InputError
from compliance.report import context as C
from tests.report_fixtures import make_context


@pytest.mark.parametrize("kind", ["portfolio", "model"])
def test_fast_conversion_equals_the_generic_walk(kind):
    ctx = make_context(30, kind=kind)
    slow = C._to_plain(C.ReportContext, ctx, "$")
    assert C.context_to_dict(ctx) == slow
    assert C.context_to_json(ctx) == C.canonical_json(slow)


def test_hashed_context_is_with_context_hash_plus_its_json():
    ctx = make_context(12)
    assert ctx.attestations  # the fixture is signed: the hash must leave the sign-off out
    hashed, data = C.hashed_context(ctx)
    blank = dataclasses.replace(ctx, cover=dataclasses.replace(ctx.cover, context_hash=""), attestations=[],
                                summary=dataclasses.replace(ctx.summary, signoff_state=""))
    assert hashed.cover.context_hash == hashlib.sha256(C.canonical_json(C._to_plain(C.ReportContext, blank, "$"))).hexdigest()
    assert hashed.cover.context_hash == C.context_hash(ctx)
    assert data == C.context_to_json(hashed)
    assert C.json_context_hash(data) == hashed.cover.context_hash


def test_a_bound_sign_off_is_in_the_json_and_not_in_the_hash():
    ctx = dataclasses.replace(make_context(12), attestations=[])
    row = C.AttestationRow(reviewer="carol", role="validator", decision="approve", comment="ok", date="2026-10-06",
                           key_fingerprint="ab" * 32)

    def bind(c):
        return dataclasses.replace(c, attestations=[row], summary=dataclasses.replace(c.summary, signoff_state="approved"))

    plain_hashed, _ = C.hashed_context(ctx)
    bound, data = C.hashed_context(ctx, bind=bind)
    assert bound.cover.context_hash == plain_hashed.cover.context_hash and bound.attestations == [row]
    assert data == C.context_to_json(bound)


def test_ints_in_float_fields_and_subclasses_convert_as_before():
    ctx = make_context(5)
    ctx.summary.coverage = 1  # an int in a float field becomes 1.0

    class Tag(str):
        pass

    ctx.inventory[0].tags = [Tag("x")]  # a str subclass takes the generic path: same value
    plain = C.context_to_dict(ctx)
    assert plain["summary"]["coverage"] == 1.0 and isinstance(plain["summary"]["coverage"], float)
    assert plain == C._to_plain(C.ReportContext, ctx, "$")


@pytest.mark.parametrize("field,value,words", [
    ("coverage", float("nan"), "$.summary.coverage is nan"),
    ("coverage", "high", "$.summary.coverage should be a number"),
    ("models_in_scope", True, "$.summary.models_in_scope should be an integer"),
])
def test_a_bad_value_is_still_named(field, value, words):
    ctx = make_context(5)
    setattr(ctx.summary, field, value)
    with pytest.raises(InputError, match=words.replace("$", r"\$").replace(".", r"\.")):
        C.context_to_json(ctx)


def test_canonical_json_still_names_a_nan_path():
    with pytest.raises(InputError, match=r"\$\.a\[1\]"):
        C.canonical_json({"a": [1.0, float("inf")]})
