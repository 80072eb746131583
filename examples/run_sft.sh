#!/usr/bin/env bash
# Long-CoT cold start: verl's SFT trainer on hydra_configs/r1reward_sft.yaml (lr 1e-5, batch 256,
# 1 epoch). One node: torchrun over R1R_GPUS_PER_NODE GPUs; R1R_NNODES > 1: verl's Ray SFT trainer.
#
#   R1R_SFT_DIR=/data/sft R1R_GPUS_PER_NODE=4 bash examples/run_sft.sh [overrides...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

sft r1reward_sft "$@"
