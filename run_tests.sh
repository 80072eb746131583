#!/usr/bin/env bash
# One command on a fresh machine: create .venv/, install the CPU stack and this project, run the tests.
#   bash run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first (CPU CI stack), then the project constrained to that torch/torchvision
.venv/bin/python -m pip install -q -r constraints-cpu.txt
.venv/bin/python -m pip install -q -c constraints-cpu.txt -e ".[test]"
exec .venv/bin/python -m pytest "$@"
