#!/usr/bin/env bash
# The paper's RL run: StableReinforce + the R1-Reward reward with the referee on its own GPUs.
#
#   R1R_POLICY_PATH=/ckpt/sft_hf R1R_DATA_DIR=/data/rl R1R_GPUS_PER_NODE=4 bash examples/run_rl.sh
#   BACKEND=megatron bash examples/run_rl.sh                 # Megatron-Core policy (megatron extra)
#   BACKEND=cpu bash examples/run_rl.sh                      # the CPU miniature (r1reward_cpu.yaml; README
#                                                            # "Run verl's trainer on CPU"), FSDP on gloo
#   bash examples/run_rl.sh preset=authors_script            # the authors' train.sh values
#   bash examples/run_rl.sh ablation=no_preclip trainer.logger='[console,wandb]'
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

case "${BACKEND:-fsdp}" in
    fsdp) CONFIG=r1reward ;;
    megatron) CONFIG=r1reward_megatron ;;
    cpu) CONFIG=r1reward_cpu ;;
    *) echo "BACKEND must be fsdp, megatron or cpu" >&2; exit 2 ;;
esac

ppo "$CONFIG" "$@"
