#!/usr/bin/env bash
# The newcomer test: build the wheel, install it into a fresh virtual environment OUTSIDE the
# checkout (CPU torch first), and run the README's demo end to end from an empty folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/compliance-newcomer.XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$root/.venv/bin/python" -m build --wheel --no-isolation --outdir "$work/dist" "$root" >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" install -q "torch==2.13.0"
"$work/venv/bin/pip" install -q "$work"/dist/compliance-*.whl
mkdir "$work/user" && cd "$work/user"
start=$(date +%s)
env -u COMPLIANCE_DB_URL "$work/venv/bin/compliance" demo --dir demo
echo "newcomer demo took $(( $(date +%s) - start ))s"
test -s demo/audit-pack-2026Q3.pdf
"$work/venv/bin/compliance" --db "sqlite:///$work/user/demo/compliance.db" verify
"$work/venv/bin/compliance" verify --pack demo/regulator-export-2026Q3.zip
