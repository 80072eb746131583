#!/usr/bin/env bash
# Cold-start data (paper §4.3): the annotator (GPT-4o, or any OpenAI-compatible server such as a
# local vLLM) writes reasoning for each pair with the Table 1 prompt, temperature 0, up to 3
# attempts; then the SFT parquet ($R1R_SFT_DIR) and the difficulty-filtered RL parquet
# ($R1R_DATA_DIR) are written from the annotated pairs. A crashed run resumes when rerun.
#
#   R1R_PAIRS=pairs.jsonl R1R_SFT_DIR=/data/sft R1R_DATA_DIR=/data/rl \
#   ANNOTATOR_URL=https://api.openai.com/v1 ANNOTATOR_MODEL=gpt-4o ANNOTATOR_KEY_ENV=OPENAI_API_KEY \
#   bash examples/make_sft_data.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${R1R_PAIRS:?set R1R_PAIRS to a pair file (generic pair format, JSONL or parquet)}"
: "${R1R_SFT_DIR:?set R1R_SFT_DIR}" "${R1R_DATA_DIR:?set R1R_DATA_DIR}"
: "${ANNOTATOR_URL:=https://api.openai.com/v1}" "${ANNOTATOR_MODEL:=gpt-4o}"
: "${ANNOTATOR_KEY_ENV:=OPENAI_API_KEY}" "${ANNOTATOR_CONCURRENCY:=16}"
ANNOTATED="${ANNOTATED:-$R1R_SFT_DIR/annotated.jsonl}"
mkdir -p "$R1R_SFT_DIR"

"$PYTHON" -m preprocess.annotate --input "$R1R_PAIRS" --out "$ANNOTATED" --base-url "$ANNOTATOR_URL" \
    --model "$ANNOTATOR_MODEL" --api-key-env "$ANNOTATOR_KEY_ENV" --concurrency "$ANNOTATOR_CONCURRENCY"
"$PYTHON" -m preprocess.pairs --input "$ANNOTATED" --out "$R1R_DATA_DIR" --sft-out "$R1R_SFT_DIR" \
    --difficulty-filter "$@"
