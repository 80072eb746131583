#!/usr/bin/env bash
# Submit a run to a running Ray cluster (one node or many) through its dashboard:
#
#   RAY_ADDRESS=http://head:8265 R1R_NNODES=2 R1R_GPUS_PER_NODE=8 R1R_POLICY_PATH=/shared/sft \
#   R1R_DATA_DIR=/shared/rl bash examples/submit_cluster.sh rl [overrides...]
#
# JOB is one of: rl, rl_megatron, ablations, sft, eval, rl_cpu (the CPU miniature, r1reward_cpu.yaml, on CPU
# nodes whose `ray start --num-gpus N` declares N worker slots; tests/test_two_nodes.py). A sweep: --multirun
# (or -m) anywhere in the overrides. The project must be installed at the same path on every node (shared file
# system or identical checkout + `pip install -e .[gpu]`); paths in R1R_* must be visible from every node. R1R_*
# variables (never secrets: set API keys such as WANDB_API_KEY on the nodes) are forwarded to the job. Follow it
# on the dashboard or with `ray job logs --follow <id>`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

JOB="${1:?usage: submit_cluster.sh rl|rl_megatron|ablations|sft|eval|rl_cpu [overrides...]}"
shift
case "$JOB" in
    rl) ENTRY=(bash examples/run_rl.sh) ;;
    rl_megatron) ENTRY=(env BACKEND=megatron bash examples/run_rl.sh) ;;
    ablations) ENTRY=(bash examples/run_ablations.sh) ;;
    sft) ENTRY=(bash examples/run_sft.sh) ;;
    eval) ENTRY=(bash examples/run_eval.sh) ;;
    # r1reward_cpu.yaml sizes a local Ray (ray_init.num_gpus/num_cpus), which ray.init refuses on a running cluster
    rl_cpu) ENTRY=(env BACKEND=cpu bash examples/run_rl.sh ray_kwargs.ray_init.num_gpus=null
                   ray_kwargs.ray_init.num_cpus=null) ;;
    *) echo "unknown job: $JOB" >&2; exit 2 ;;
esac

: "${RAY_ADDRESS:?set RAY_ADDRESS to the cluster dashboard, e.g. http://127.0.0.1:8265}"
RUNTIME_ENV="$("$PYTHON" -c 'import json, os; print(json.dumps({"env_vars": {k: v for k, v in os.environ.items() if k.startswith("R1R_") or k in ("DRY_RUN", "PYTHON", "BACKEND")}}))')"

"${RAY:-ray}" job submit --address "$RAY_ADDRESS" --runtime-env-json "$RUNTIME_ENV" ${NO_WAIT:+--no-wait} \
    -- bash -c "cd '$REPO_DIR' && \"\$@\"" _ "${ENTRY[@]}" "$@"
