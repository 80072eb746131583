#!/usr/bin/env bash
# Cold-start data (paper §4.3): the annotator (GPT-4o, or any OpenAI-compatible server such as a
# local vLLM) writes reasoning for each pair with the Table 1 prompt, temperature 0, up to 3
# attempts; then the SFT parquet ($R1R_SFT_DIR) and the difficulty-filtered RL parquet
# ($R1R_DATA_DIR) are written from the annotated pairs. A crashed run resumes when rerun.
#
#   R1R_PAIRS=pairs.jsonl R1R_SFT_DIR=/data/sft R1R_DATA_DIR=/data/rl \
#   ANNOTATOR_URL=https://api.openai.com/v1 ANNOTATOR_MODEL=gpt-4o ANNOTATOR_KEY_ENV=OPENAI_API_KEY \
#   bash examples/make_sft_data.sh
#
# As examples/prepare_rl_data.sh: images bounded to 1,280 tokens (--max-pixels 1003520) and each row
# counted with $R1R_PROCESSOR (default $R1R_BASE_MODEL or Qwen2.5-VL-7B-Instruct; empty: no counting)
# as verl counts it. SFT rows over r1reward_sft.yaml's data.max_length (8192; verl's
# MultiTurnSFTDataset with truncation: error would stop the cold start at the first) are dropped and
# counted (sft_rejected_by_reason), as are RL prompts over 8192 tokens and RL rows over 4 images
# (rejected_by_reason), all in $R1R_DATA_DIR/summary.json. Flags after the script's pass through and
# win (e.g. --max-sft-tokens 16384, --no-drop-overlong).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${R1R_PAIRS:?set R1R_PAIRS to a pair file (generic pair format, JSONL or parquet)}"
: "${R1R_SFT_DIR:?set R1R_SFT_DIR}" "${R1R_DATA_DIR:?set R1R_DATA_DIR}"
: "${ANNOTATOR_URL:=https://api.openai.com/v1}" "${ANNOTATOR_MODEL:=gpt-4o}"
: "${ANNOTATOR_KEY_ENV:=OPENAI_API_KEY}" "${ANNOTATOR_CONCURRENCY:=16}"
: "${R1R_PROCESSOR=${R1R_BASE_MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}}"
ANNOTATED="${ANNOTATED:-$R1R_SFT_DIR/annotated.jsonl}"
LIMITS=(--max-pixels 1003520 --max-images 4 --drop-overlong)
if [[ -n "$R1R_PROCESSOR" ]]; then
    LIMITS+=(--processor "$R1R_PROCESSOR" --max-prompt-tokens 8192 --max-sft-tokens 8192)
fi
mkdir -p "$R1R_SFT_DIR"

"$PYTHON" -m preprocess.annotate --input "$R1R_PAIRS" --out "$ANNOTATED" --base-url "$ANNOTATOR_URL" \
    --model "$ANNOTATOR_MODEL" --api-key-env "$ANNOTATOR_KEY_ENV" --concurrency "$ANNOTATOR_CONCURRENCY"
"$PYTHON" -m preprocess.pairs --input "$ANNOTATED" --out "$R1R_DATA_DIR" --sft-out "$R1R_SFT_DIR" \
    --difficulty-filter "${LIMITS[@]}" "$@"
