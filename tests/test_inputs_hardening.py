"""Bad inputs end in one clear line and a non-zero exit: future as-of, numbers out of range,
YAML bombs, control characters (issue 20)."""

from __future__ import annotations

import dataclasses
import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from compliance.errors import InputError
from compliance.safeyaml import MAX_DEPTH, load_yaml
from tests.helpers import small_manifest


def test_report_as_of_in_the_future_is_refused_and_nothing_is_recorded(cli, tmp_path):
    for as_of in ("2099-01-01", "9999-12-31"):
        for cmd in (["report", "--out", tmp_path / "p.pdf"], ["export", "--out", tmp_path / "p.zip"]):
            code, out, err = cli(*cmd, "--as-of", as_of)
            assert code == 2 and ("in the future" in err or "out of range" in err), (code, out, err)
            assert "Traceback" not in err and "unexpected" not in err
            assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.pdf").exists() and not (tmp_path / "p.zip").exists()
    code, out, _ = cli("reports", "--json")
    assert code == 0 and out.strip() == "[]"


BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _bomb_manifest(tmp_path: Path) -> Path:
    m = small_manifest(tmp_path / "bank")
    doc = yaml.safe_load(m.read_text())
    text = yaml.safe_dump(doc, sort_keys=False)
    lol = BOMB.replace("\n", "\n  ").rstrip()
    text = text.replace("tags:\n  - sr11-7", "tags: *i", 1)
    m.write_text("bombs:\n  " + lol + "\n" + text)
    return m


def test_yaml_alias_bomb_in_model_tags_ends_in_one_line_quickly_in_bounded_memory(db_url, tmp_path):
    m = _bomb_manifest(tmp_path)
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))\n"
            "from compliance.cli.main import app\n"
            "sys.argv = ['compliance', '--db', sys.argv[1], 'import', sys.argv[2]]\n"
            "app()\n")
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", code, db_url, str(m)], capture_output=True, text=True, timeout=10)
    assert time.monotonic() - t0 < 10
    assert res.returncode == 1 and "alias bomb" in res.stderr, res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_yaml_limits_depth_recursion_and_size():
    with pytest.raises(InputError, match="levels deep"):
        load_yaml("[" * 5000 + "]" * 5000, what="deep.yaml")
    with pytest.raises(InputError, match="levels deep"):
        load_yaml("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, MAX_DEPTH + 5)) + "  " * (MAX_DEPTH + 5) + "x: 1",
                  what="deep.yaml")
    with pytest.raises(InputError, match="recursive alias"):
        load_yaml("a: &a [*a]", what="loop.yaml")
    with pytest.raises(InputError, match="more than"):
        load_yaml("x: " + "a" * (65 << 20), what="big.yaml")
    assert load_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2", what="ok.yaml") == {"base": {"x": 1},
                                                                                   "other": {"x": 1, "y": 2}}


def test_no_module_reads_yaml_around_the_safe_loader():
    root = Path(__file__).resolve().parents[1] / "compliance"
    offenders = [str(p) for p in root.rglob("*.py") if p.name != "safeyaml.py"
                 and ("yaml.safe_load" in p.read_text() or "yaml.load(" in p.read_text())]
    assert offenders == []


def test_tier_must_be_a_whole_number(cli, tmp_path):
    m = small_manifest(tmp_path / "bank")
    m.write_text(m.read_text().replace("tier: 1", "tier: 2.7", 1))
    code, _, err = cli("import", m)
    assert code != 0 and "'tier' must be an integer, got 2.7" in err
    code, out, _ = cli("model", "list", "--json")
    assert json.loads(out) == []


def test_huge_finding_id_and_far_dates_are_clear_errors(cli):
    code, _, err = cli("finding", "update", str(10**23), "--status", "closed", "--note", "x")
    assert code == 1 and "out of range" in err and "unexpected" not in err
    code, _, err = cli("status", "--as-of", "9999-12-31")
    assert code == 2 and "out of range" in err and "unexpected" not in err
    code, _, err = cli("status", "--as-of", "2099-01-01")
    assert code == 2 and "in the future" in err


def test_safetensors_shape_that_overflows_is_a_corrupt_header(tmp_path):
    from compliance.interp.headers import read_safetensors_header

    for shape in ("[1e400, 4]", "[2.0, 4]", "[true, 4]"):
        head = ('{"w": {"dtype": "F32", "shape": ' + shape + ', "data_offsets": [0, 32]}}').encode()
        p = tmp_path / "w.safetensors"
        p.write_bytes(struct.pack("<Q", len(head)) + head + bytes(32))
        with pytest.raises(InputError, match="corrupted safetensors header"):
            read_safetensors_header(p)


def test_control_characters_are_refused_on_input_and_escaped_on_output(cli):
    code, out, err = cli("model", "add", "m1", "--name", "x", "--owner", "o\x1b[31mred", "--tier", "2", "--use", "u")
    assert code == 1 and "\x1b" not in err and "\\x1b[31m" in err, err
    from compliance.report.render import render_html
    from report_fixtures import make_context

    ctx = make_context(2)
    row = dataclasses.replace(ctx.inventory[0], name="evil\x1b[2J\u202ename")
    html = render_html(dataclasses.replace(ctx, inventory=[row, *ctx.inventory[1:]]))
    assert "\x1b" not in html and "\u202e" not in html and "evil\\x1b[2J\\u202ename" in html


def test_all_nan_column_is_reported_as_missing(tmp_path):
    from compliance.checks.drift import compute_drift, compute_drift_files

    ref = pd.DataFrame({"x": np.arange(2000.0), "y": np.arange(2000.0)})
    cur = pd.DataFrame({"x": [np.nan] * 2000, "y": np.arange(2000.0)})
    ref.to_csv(tmp_path / "r.csv", index=False)
    cur.to_csv(tmp_path / "c.csv", index=False)
    for res in (compute_drift(ref, cur), compute_drift_files(tmp_path / "r.csv", tmp_path / "c.csv")):
        f = res.feature("x")
        assert (f.missing_ref, f.missing_cur, f.n_cur) == (0, 2000, 0)
        assert f.status == "error" and "no non-missing values in the current window" in f.note


def test_adapter_modules_are_an_allow_list_at_registration_and_at_check_time(cli, tmp_path):
    from compliance.errors import UsageError
    from compliance.services.checks import version_model
    from compliance.store.engine import session_scope
    from compliance.store.models import ModelVersion
    from tests.helpers import weights_file

    code, _, err = cli("model", "add", "m1", "--name", "x", "--owner", "o", "--tier", "2", "--use", "u",
                       "--adapter", "os:system")
    assert code == 2 and "adapter module 'os' is not in the policy's adapter_modules" in err
    assert cli("model", "add", "m2", "--name", "x", "--owner", "o", "--tier", "2", "--use", "u",
               "--adapter", "sample_data.adapter:load")[0] == 0
    assert cli("version", "add", "m2", "v1", "--weights", weights_file(tmp_path / "w.safetensors"))[0] == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("adapter_modules: 'bank.adapters; rm -rf /'\n")
    code, _, err = cli("policy", "set", "--file", bad)
    assert code == 1 and "adapter_modules must be a list of module names" in err
    pol = tmp_path / "p.yaml"
    pol.write_text("adapter_modules: [bank.adapters]\n")
    assert cli("policy", "set", "--file", pol)[0] == 0
    assert cli("model", "add", "m3", "--name", "x", "--owner", "o", "--tier", "2", "--use", "u",
               "--adapter", "bank.adapters.pd:load")[0] == 0  # a sub-module of an allowed package
    # m2's adapter was allowed when registered; the policy in force now refuses to run it
    with session_scope(cli.url, readonly=True) as s:
        v = s.query(ModelVersion).filter_by(model_id="m2").one()
        with pytest.raises(UsageError, match="'sample_data.adapter' is not in the policy"):
            version_model(s, v)
