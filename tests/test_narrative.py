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
    f = tmp_path / "c.md"
    f.write_text("text", encoding="utf-8")
    code, out, err = cli("narrative", "set", "--quarter", "2026Q4", "--model", "retail-pd",
                         "--section", "conclusion", "--file", f, actor="alice")
    assert code != 0 and "four-eyes" in err
    code, _, err = cli("narrative", "set", "--quarter", "2026Q4", "--section", "summary", "--file", f, actor="carol")
    assert code != 0 and "--section" in err
    code, _, err = cli("narrative", "set", "--quarter", "2026Q4", "--section", "conclusion",
                       "--file", f, "--rating", "great", actor="carol")
    assert code != 0 and "--rating" in err
    code, _, err = cli("narrative", "set", "--quarter", "2026Q4", "--section", "limitations",
                       "--file", f, "--rating", "fit", actor="carol")
    assert code != 0 and "conclusion" in err
