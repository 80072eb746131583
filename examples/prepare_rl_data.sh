#!/usr/bin/env bash
# The released RL subset (yifanzhang114/R1-Reward-RL: local parquet shards, or its hub name with
# `datasets` access) -> verl parquet in $R1R_DATA_DIR (train/val, labels balanced 1:1 by swapping).
#
#   R1R_RL_INPUT=/data/R1-Reward-RL/data R1R_DATA_DIR=/data/r1reward_rl bash examples/prepare_rl_data.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${R1R_RL_INPUT:=yifanzhang114/R1-Reward-RL}"
: "${R1R_DATA_DIR:?set R1R_DATA_DIR to the output directory}"

"$PYTHON" -m preprocess.pairs --input "$R1R_RL_INPUT" --out "$R1R_DATA_DIR" --val-fraction 0.02 "$@"
