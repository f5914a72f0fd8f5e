#!/usr/bin/env bash
# Creates .venv (if missing), installs convscope, and builds the demo page in ./convscope-demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[samples]"
.venv/bin/convscope demo --out "${1:-convscope-demo}"
