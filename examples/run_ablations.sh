#!/usr/bin/env bash
# Table 6 / §5.2 ablations as one Hydra sweep: no advantage filter, no pre-clip, plain Reinforce++,
# no consistency reward; one run after another, each under its own trainer.experiment_name.
#
#   R1R_POLICY_PATH=/ckpt/sft_hf R1R_DATA_DIR=/data/rl bash examples/run_ablations.sh [overrides...]
#   bash examples/run_ablations.sh ablation=none,no_preclip       # choose the members
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ppo r1reward_ablations -m "$@"
