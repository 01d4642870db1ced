"""The documentation is tested against the code.

* docs/cli.md is exactly what scripts/gen_cli_docs.py generates from the real ``--help`` output;
* every command has a help text, and every command (leaf) shows an ``Example``;
* every doc file exists, and the methodology names every key of the default policy;
* the standalone pack verifier printed in docs/ledger-and-verification.md really verifies a pack
  produced by ``compliance export`` and really rejects tampered copies.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOC_FILES = ["methodology.md", "regulatory-crosswalk.md", "artifact-formats.md",
             "ledger-and-verification.md", "cli.md"]


def _gen():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gen():
    """The generator, each command's help rendered once per module (a render of every help
    text takes ~15 s on the CI machine; the tests below compare and check files, not renders)."""
    import functools

    mod = _gen()
    mod.help_text = functools.lru_cache(maxsize=None)(mod.help_text)
    return mod


@pytest.fixture(scope="module")
def helps(gen) -> dict[tuple[str, ...], tuple[object, str]]:
    return {path: (cmd, gen.help_text(path)) for path, cmd in gen.walk()}


# ------------------------------------------------------------------ (a) CLI reference is current
def test_cli_reference_is_generated_from_help(gen):
    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == gen.render(), "docs/cli.md is out of date: run python scripts/gen_cli_docs.py"


def test_format_table_is_generated_from_the_loaders_registry(tmp_path):
    spec = importlib.util.spec_from_file_location("gen_format_docs", ROOT / "scripts" / "gen_format_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    current = (DOCS / "artifact-formats.md").read_text(encoding="utf-8")
    assert current == mod.render(current), "docs/artifact-formats.md is out of date: run python scripts/gen_format_docs.py"
    from compliance.interp.formats import FORMATS

    for e in FORMATS:
        assert f"| {e.option} |" in current, e
    stale = tmp_path / "f.md"
    stale.write_text(current.replace("| gated |", "| gated (old) |"), encoding="utf-8")
    assert mod.main(["--check", "--out", str(stale)]) == 1
    assert mod.main(["--out", str(stale)]) == 0 and mod.main(["--check", "--out", str(stale)]) == 0


def test_generator_check_mode_detects_staleness(gen, tmp_path):
    stale = tmp_path / "cli.md"
    stale.write_text("# old\n", encoding="utf-8")
    assert gen.main(["--check", "--out", str(stale)]) == 1
    assert gen.main(["--out", str(stale)]) == 0
    assert gen.main(["--check", "--out", str(stale)]) == 0


def test_cli_reference_lists_every_command(gen, helps):
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert len(helps) > 20
    for path in helps:
        assert f"## `{' '.join(('compliance',) + path)}`" in text


# ------------------------------------------------------------------ (b) help texts and examples
def test_every_command_has_help(helps):
    offenders = [" ".join(p) or "(root)" for p, (cmd, _) in helps.items()
                 if not (getattr(cmd, "help", None) or "").strip()]
    assert not offenders, f"commands without a help text: {offenders}"


def test_every_command_has_an_example(helps):
    """Every command that does something (groups only list their commands) shows an Example."""
    leaves = {" ".join(p) for p, (cmd, _) in helps.items() if not getattr(cmd, "commands", None)}
    with_example = {" ".join(p) for p, (cmd, text) in helps.items()
                    if not getattr(cmd, "commands", None) and re.search(r"\bExamples?\b", text)}
    missing = sorted(leaves - with_example)
    assert with_example == leaves, f"commands whose --help has no 'Example': {missing}"


# ------------------------------------------------------------------ (c) doc files and policy keys
@pytest.mark.parametrize("name", DOC_FILES)
def test_doc_file_exists(name):
    p = DOCS / name
    assert p.is_file(), f"missing docs/{name}"
    assert len(p.read_text(encoding="utf-8")) > 500


def _flatten(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, key + ".")
        else:
            out.append(key)
    return out


def test_methodology_documents_every_policy_key():
    from compliance.policy_defaults import DEFAULT_POLICY

    text = (DOCS / "methodology.md").read_text(encoding="utf-8")
    keys = _flatten(DEFAULT_POLICY)
    assert "fidelity.ev_warn" in keys and "required_groups.1" in keys
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"policy keys not documented in docs/methodology.md: {missing}"


def test_crosswalk_doc_is_generated_from_the_pack_source():
    """docs/regulatory-crosswalk.md and the pack's appendix come from one source."""
    from compliance.report.context import default_crosswalk
    from compliance.report.crosswalk import crosswalk_doc

    text = (DOCS / "regulatory-crosswalk.md").read_text(encoding="utf-8")
    assert text == crosswalk_doc(), ("docs/regulatory-crosswalk.md is stale: regenerate with "
                                     "`python -m compliance.report.crosswalk --doc > docs/regulatory-crosswalk.md`")
    for row in default_crosswalk():
        assert f"| {row.framework} | {row.reference} | {row.requirement} | {row.sections} |" in text, row
    assert "SR 26-2" in text and "rescinded SR 11-7" in text and "| SR 11-7 |" not in text
    for ref in ("Art. 9", "Art. 10", "Art. 12", "Art. 15 — robustness", "Art. 17", "Art. 18", "Art. 19",
                "Art. 72", "Annex IV(2)"):
        assert f"| EU AI Act | {ref} |" in text
    for p in range(1, 6):
        assert f"| PRA SS1/23 | Principle {p} |" in text


def test_crosswalk_never_claims_outcomes_or_accuracy_without_such_checks():
    from compliance.report.context import default_crosswalk, default_not_covered

    rows = {(r.framework, r.reference): r for r in default_crosswalk({"fidelity", "data_drift"})}
    for key in (("OCC 2026-13 / SR 26-2", "Validation — outcomes analysis"), ("EU AI Act", "Art. 15 — accuracy")):
        assert not rows[key].covered and rows[key].sections.startswith("Not covered"), rows[key]
    assert any(b.title.startswith("Outcomes analysis") for b in default_not_covered({"fidelity"}))
    with_outcomes = {(r.framework, r.reference): r for r in default_crosswalk({"outcome"})}
    assert with_outcomes[("EU AI Act", "Art. 15 — accuracy")].covered
    assert not any(b.title.startswith("Outcomes analysis") for b in default_not_covered({"outcome"}))


# ------------------------------------------------------------------ (d) the auditor's script works
def _snippet() -> str:
    text = (DOCS / "ledger-and-verification.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- snippet:verify-pack[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "the verify-pack snippet is missing from docs/ledger-and-verification.md"
    return m.group(1)


def _canon(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _rewrite(src: Path, dst: Path, edit) -> None:
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    edit(files)
    with zipfile.ZipFile(dst, "w") as z:
        for n in sorted(files):
            z.writestr(n, files[n])


def _rehash_manifest(files: dict) -> None:
    man = json.loads(files["manifest.json"])
    man.pop("manifest_hash")
    for name in man["files"]:
        man["files"][name] = {"sha256": hashlib.sha256(files[name]).hexdigest(), "bytes": len(files[name])}
    man["manifest_hash"] = hashlib.sha256(_canon(man)).hexdigest()
    files["manifest.json"] = json.dumps(man, sort_keys=True, indent=2).encode()


def _edit_ledger_payload(files: dict) -> None:
    lines = files["ledger.jsonl"].decode().splitlines()
    for i, line in enumerate(lines):
        e = json.loads(line)
        if e["entity_type"] == "model" and "alice" in e["payload"]:
            e["payload"] = e["payload"].replace("alice", "mallory")
            lines[i] = _canon(e).decode()
            break
    else:  # pragma: no cover - the fixture always has alice's model in the excerpt
        raise AssertionError("no model entry to tamper with")
    files["ledger.jsonl"] = ("\n".join(lines) + "\n").encode()
    _rehash_manifest(files)


@pytest.fixture(scope="module")
def real_pack(tmp_path_factory) -> Path:
    """A pack produced by the real export path, with a ledger excerpt that starts mid-chain."""
    sys.path.insert(0, str(ROOT))
    from tests.helpers import small_manifest

    from compliance.services import registry
    from compliance.services.manifest import import_manifest
    from compliance.services.report import export_pack
    from compliance.store import migrate
    from compliance.store.engine import session_scope

    root = tmp_path_factory.mktemp("docs-pack")
    url = f"sqlite:///{root / 'store.db'}"

    def at(*a):
        return datetime(*a, tzinfo=timezone.utc)

    migrate.upgrade(url, clock=lambda: at(2025, 12, 1))  # the seeded catalog first: recorded_at never decreases

    with session_scope(url, actor="ml-eng", clock=lambda: at(2025, 12, 15), replay=True) as s:
        import_manifest(s, small_manifest(root / "bank"))
    with session_scope(url, actor="ml-eng", clock=lambda: at(2026, 2, 1), replay=True) as s:
        registry.add_model(s, "mortgage-pd", name="Mortgage PD", owner="alice", tier=2, use="PD for mortgages")
    with session_scope(url, actor="mrm", clock=lambda: at(2026, 4, 2), replay=True) as s:
        export_pack(s, "2026Q1", at(2026, 4, 1), root / "pack.zip")
    return root / "pack.zip"


def _run_snippet(tmp_path: Path, pack: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "verify_pack_standalone.py"
    script.write_text(_snippet(), encoding="utf-8")
    # -I: isolated mode, so nothing of this project (or its venv's site dir) can be imported
    return subprocess.run([sys.executable, "-I", "-S", str(script), str(pack)], capture_output=True, text=True,
                          timeout=60)


def test_standalone_verifier_is_short_and_stdlib_only():
    code = _snippet()
    imported = set(re.findall(r"^import (.+)$", code, re.M)[0].replace(" ", "").split(","))
    assert imported <= {"hashlib", "json", "re", "sys", "zipfile", "zlib"}
    assert "from compliance" not in code and "import compliance" not in code
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 110


def test_standalone_verifier_accepts_a_real_pack(real_pack, tmp_path):
    res = _run_snippet(tmp_path, real_pack)
    assert res.returncode == 0, res.stdout + res.stderr
    man = json.loads(zipfile.ZipFile(real_pack).read("manifest.json"))
    assert res.stdout.startswith("OK:") and man["ledger_head_hash"] in res.stdout
    assert f"after {'0' * 64}" not in res.stdout  # the quarter's excerpt starts mid-chain


def test_standalone_verifier_rejects_an_edited_table(real_pack, tmp_path):
    bad = tmp_path / "csv.zip"
    _rewrite(real_pack, bad, lambda f: f.__setitem__("tables/inventory.csv", f["tables/inventory.csv"] + b"x\n"))
    res = _run_snippet(tmp_path, bad)
    assert res.returncode == 1 and "tables/inventory.csv" in res.stderr


def test_standalone_verifier_rejects_an_edited_ledger_entry(real_pack, tmp_path):
    """A ledger payload edited and the manifest re-hashed: only recomputing entry hashes sees it."""
    bad = tmp_path / "ledger.zip"
    _rewrite(real_pack, bad, _edit_ledger_payload)
    res = _run_snippet(tmp_path, bad)
    assert res.returncode == 1 and "bad hash" in res.stderr, res.stderr
