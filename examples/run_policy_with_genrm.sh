#!/usr/bin/env bash
# A vision-language policy rewarded by a trained R1-Reward model (pairwise judge): GRPO n=8, FSDP.
#
#   R1R_POLICY_DATA=data/policy_qa R1R_POLICY_MODEL=Qwen/Qwen2.5-VL-3B-Instruct R1R_JUDGE_PATH=/ckpt/r1reward_hf \
#     bash examples/run_policy_with_genrm.sh                         # judge hosted by verl on its own GPU pool
#   R1R_JUDGE_URL=http://judge-host:8000/v1 bash examples/run_policy_with_genrm.sh judge=endpoint
#   bash examples/run_policy_with_genrm.sh genrm=knockout            # 2(n-1) judge calls per group, not n(n-1)
#   DRY_RUN=1 bash examples/run_policy_with_genrm.sh                 # verl's validation on CPU, starts nothing
#
# No data yet? python -m preprocess.policy_qa --out data/policy_qa (a sample VQA parquet in verl's format).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ppo genrm_policy "$@"
