#!/usr/bin/env bash
# Creates .venv (if missing), installs convscope with its test extras, then runs ruff, the import
# layering contracts (.importlinter) and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Playwright drives Debian's chromium; it never downloads a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
bash scripts/ensure_chromium.sh || true
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Idle OpenMP threads sleep instead of spinning: on a shared, oversubscribed machine spinning
# threads made small ops 10-50x slower (a 2-thread multitask step: 13 s spinning, 0.2 s passive).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
.venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest "$@"
