"""Bad inputs end in one clear line and a non-zero exit: future as-of, numbers out of range,
YAML bombs, control characters (issue 20)."""

from __future__ import annotations

from pathlib import Path


def test_report_as_of_in_the_future_is_refused_and_nothing_is_recorded(cli, tmp_path):
    for as_of in ("2099-01-01", "9999-12-31"):
        for cmd in (["report", "--out", tmp_path / "p.pdf"], ["export", "--out", tmp_path / "p.zip"]):
            code, out, err = cli(*cmd, "--as-of", as_of)
            assert code == 2 and "in the future" in err and "Traceback" not in err, (code, out, err)
            assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.pdf").exists() and not (tmp_path / "p.zip").exists()
    code, out, _ = cli("reports", "--json")
    assert code == 0 and out.strip() == "[]"
