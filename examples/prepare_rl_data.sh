#!/usr/bin/env bash
# The released RL subset (yifanzhang114/R1-Reward-RL: local parquet shards, or its hub name with
# `datasets` access) -> verl parquet in $R1R_DATA_DIR (train/val, labels balanced 1:1 by swapping).
#
#   R1R_RL_INPUT=/data/R1-Reward-RL/data R1R_DATA_DIR=/data/r1reward_rl bash examples/prepare_rl_data.sh
#
# Images are bounded to 1,280 image tokens (--max-pixels 1003520, 28x28 pixels a token). Each prompt is
# counted with the policy's processor ($R1R_PROCESSOR, default $R1R_BASE_MODEL or Qwen2.5-VL-7B-Instruct;
# a local checkpoint directory works offline; set it empty to count nothing) as verl's RLHFDataset
# counts it; prompts over data.max_prompt_length (8192) and rows over rollout.limit_images (4) are
# dropped and counted as rejected in $R1R_DATA_DIR/summary.json, instead of verl dropping them
# silently at load time. Flags pass through and win: e.g. --max-prompt-tokens 20480 (preset=authors_script),
# --no-drop-overlong (keep them and only report), --workers 8.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${R1R_RL_INPUT:=yifanzhang114/R1-Reward-RL}"
: "${R1R_DATA_DIR:?set R1R_DATA_DIR to the output directory}"
: "${R1R_PROCESSOR=${R1R_BASE_MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}}"
LIMITS=(--max-pixels 1003520 --max-images 4 --drop-overlong)
if [[ -n "$R1R_PROCESSOR" ]]; then
    LIMITS+=(--processor "$R1R_PROCESSOR" --max-prompt-tokens 8192)
fi

"$PYTHON" -m preprocess.pairs --input "$R1R_RL_INPUT" --out "$R1R_DATA_DIR" --val-fraction 0.02 "${LIMITS[@]}" "$@"
