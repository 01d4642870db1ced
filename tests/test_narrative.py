"""The validator's narrative: stored through the ledger, versioned, four eyes, printed attributed
and dated with the rating beside the computed verdict, Markdown rendered with HTML escaped."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from tests.helpers import small_manifest


def _as_of() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_narrative_set_versioned_and_printed(cli, tmp_path: Path):
    assert cli("import", small_manifest(tmp_path / "bank"))[0] == 0
    cli.grant("carol", "validator")
    f = tmp_path / "c.md"
    f.write_text("First draft.", encoding="utf-8")
    code, out, err = cli("narrative", "set", "--quarter", "2026Q4", "--model", "retail-pd",
                         "--section", "conclusion", "--file", f, "--rating", "not fit", "--json", actor="carol")
    assert code == 0, err
    assert json.loads(out)["version"] == 1
    f.write_text("The SAE is **stale** on v2 <script>alert(1)</script>.\n\n- retrain by Q1\n- re-validate", encoding="utf-8")
    code, out, err = cli("narrative", "set", "--quarter", "2026Q4", "--model", "retail-pd",
                         "--section", "conclusion", "--file", f, "--rating", "fit with conditions", "--json", actor="carol")
    assert code == 0, err
    assert json.loads(out)["version"] == 2
    lim = tmp_path / "l.md"
    lim.write_text("Not for adverse-action reasons.", encoding="utf-8")
    assert cli("narrative", "set", "--quarter", "2026Q4", "--section", "limitations",
               "--file", lim, actor="carol")[0] == 0
    html = tmp_path / "r.html"
    code, out, err = cli("report", "--quarter", "2026Q4", "--as-of", _as_of(), "--out", html, "--format", "html")
    assert code == 0, err
    text = html.read_text(encoding="utf-8")
    assert "<b>stale</b>" in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>alert" not in text
    assert "<li>retrain by Q1</li>" in text and "First draft." not in text
    assert "Written by carol on" in text and "(version 2)" in text
    assert "Not for adverse-action reasons." in text
    assert "Validator&#39;s rating:" in text or "Validator's rating:" in text
    assert 'b-fit_with_conditions' in text


def test_narrative_refuses_owner_bad_section_and_rating(cli, tmp_path: Path):
    assert cli("import", small_manifest(tmp_path / "bank"))[0] == 0
    cli.grant("carol", "validator")
    f = tmp_path / "c.md"
    f.write_text("text", encoding="utf-8")
    code, out, err = cli("narrative", "set", "--quarter", "2026Q4", "--model", "retail-pd",
                         "--section", "conclusion", "--file", f, actor="alice")
    assert code != 0 and "segregation of duties: alice owns retail-pd" in err
    code, _, err = cli("narrative", "set", "--quarter", "2026Q4", "--section", "summary", "--file", f, actor="carol")
    assert code != 0 and "--section" in err
    code, _, err = cli("narrative", "set", "--quarter", "2026Q4", "--section", "conclusion",
                       "--file", f, "--rating", "great", actor="carol")
    assert code != 0 and "--rating" in err
    code, _, err = cli("narrative", "set", "--quarter", "2026Q4", "--section", "limitations",
                       "--file", f, "--rating", "fit", actor="carol")
    assert code != 0 and "conclusion" in err


def _narratives(url: str) -> int:
    from sqlalchemy import func, select

    from compliance.store.engine import session_scope
    from compliance.store.models import Narrative

    with session_scope(url, readonly=True) as s:
        return s.scalar(select(func.count()).select_from(Narrative))


def test_narrative_follows_role_grants_not_names(cli, tmp_path: Path):
    """Who may write the validator's narrative is decided by the segregation-of-duties rules
    (role grants, recorded ownership and development), not by comparing the author to the
    model's owner string."""
    assert cli("import", small_manifest(tmp_path / "bank"), actor="ingest")[0] == 0  # ingest develops both models
    f = tmp_path / "c.md"
    f.write_text("Conclusion.", encoding="utf-8")

    def write(actor: str, model: str | None = None):
        return cli("narrative", "set", "--quarter", "2026Q4", *(["--model", model] if model else []),
                   "--section", "conclusion", "--file", f, actor=actor)

    cli.grant("dan", "validator")
    cli.grant("dan", "developer", "card-fraud")  # a validator who also develops card-fraud
    cli.grant("frank", "validator", "retail-pd")  # a validator of one model only
    cli.grant("olga", "owner", "retail-pd")  # an owner by grant (the model's owner string is alice)
    cli.grant("olga", "approver")
    before = _narratives(cli.url)
    refused = [
        (write("dan", "card-fraud"), "segregation of duties: dan is a developer of card-fraud"),
        (write("dan"), "segregation of duties: dan is a developer of card-fraud"),
        (write("olga", "retail-pd"), "segregation of duties: olga is an owner of retail-pd"),
        (write("ingest", "retail-pd"), "segregation of duties: ingest is a developer of retail-pd"),
        (write("erin", "retail-pd"), "needs the validator or approver role: erin does not hold it"),
        (write("frank"), "needs the validator or approver role: frank does not hold it on card-fraud"),
    ]
    for (code, _, err), message in refused:
        assert code == 1 and message in err and err.count("\n") == 1, err
    assert _narratives(cli.url) == before  # every refusal leaves the store unchanged
    for actor, model in (("dan", "retail-pd"), ("frank", "retail-pd"), ("olga", "card-fraud")):
        code, _, err = write(actor, model)
        assert code == 0, (actor, model, err)
    cli.grant("carol", "validator")
    assert write("carol")[0] == 0  # the portfolio narrative: unconflicted on every model, global role
    assert _narratives(cli.url) == before + 4
