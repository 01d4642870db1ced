"""The CLI starts without torch; a wheel installed outside the checkout runs init and import."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.helpers import small_manifest

ROOT = Path(__file__).resolve().parents[1]


def _no_torch(code: str, cwd: Path) -> None:
    probe = code + "\nimport sys\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    r = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_help_registry_and_report_path_do_not_import_torch(tmp_path):
    m = small_manifest(tmp_path / "bank")
    db = f"sqlite:///{tmp_path / 's.db'}"
    _no_torch(
        "from typer.testing import CliRunner\nfrom compliance.cli.main import app\nr = CliRunner()\n"
        "assert r.invoke(app, ['--help']).exit_code == 0\n"
        f"assert r.invoke(app, ['--db', {db!r}, 'init']).exit_code == 0\n"
        f"res = r.invoke(app, ['--db', {db!r}, 'import', {str(m)!r}])\nassert res.exit_code == 0, res.stderr\n"
        f"assert r.invoke(app, ['--db', {db!r}, 'model', 'list']).exit_code == 0\n"
        f"assert r.invoke(app, ['--db', {db!r}, 'artifact', 'show', 'pd-sae-v1']).exit_code == 0\n"
        f"assert r.invoke(app, ['--db', {db!r}, 'verify']).exit_code == 0\n"
        f"assert r.invoke(app, ['--db', {db!r}, 'status', '--quarter', '2026Q1']).exit_code == 0\n"
        f"res = r.invoke(app, ['--db', {db!r}, 'report', '--quarter', '2026Q1', '--out', {str(tmp_path / 'p.pdf')!r}])\n"
        "assert res.exit_code == 0, res.stderr\n"
        f"res = r.invoke(app, ['--db', {db!r}, 'export', '--quarter', '2026Q1', '--out', {str(tmp_path / 'p.zip')!r}])\n"
        "assert res.exit_code == 0, res.stderr\n"
        f"assert r.invoke(app, ['verify', '--pack', {str(tmp_path / 'p.zip')!r}]).exit_code == 0\n",
        ROOT,
    )


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_checkout(tmp_path):
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheel = next(dist.glob("compliance-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # Dependencies come from the test environment (no network needed); the package itself only from the wheel.
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    m = small_manifest(work / "bank")
    exe = env_dir / "bin" / "compliance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_")}
    where = subprocess.run([str(py), "-c", "import compliance, pathlib; print(pathlib.Path(compliance.__file__).parent)"],
                           cwd=work, capture_output=True, text=True, env=env)
    assert str(env_dir) in where.stdout, where.stdout + where.stderr  # the wheel, not the checkout
    for args in (["init"], ["import", str(m)], ["verify"]):
        r = subprocess.run([str(exe), *args], cwd=work, capture_output=True, text=True, env=env)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    assert (work / "compliance.db").is_file()
