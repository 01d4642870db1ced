#!/usr/bin/env bash
# Regenerate docs/img/pack-summary.png (the README picture): page 3 (executive summary) of the
# demo audit pack. Usage: scripts/readme_picture.sh [DEMO_DIR]   (runs `compliance demo` first)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$root/compliance-demo}"
"$root/.venv/bin/compliance" demo --dir "$dir" >/dev/null
pdftoppm -png -r 80 -f 3 -l 3 -singlefile "$dir/audit-pack-2026Q3.pdf" "$root/docs/img/pack-summary"
echo "wrote $root/docs/img/pack-summary.png"
