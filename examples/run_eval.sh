#!/usr/bin/env bash
# Evaluate a reward model on VL-RewardBench, Multimodal RewardBench and MM-RLHF-RewardBench: greedy,
# voting@k / any@k for k = 1..K from one sampling pass (one request with n = K per prompt), and both
# response orders. Writes items.jsonl, metrics.json, table.md and accuracy_vs_k*.png to $EVAL_OUT.
#
#   R1R_EVAL_MODEL=/ckpt/r1reward_hf R1R_BENCH_DIR=/bench bash examples/run_eval.sh
#
# R1R_BENCH_DIR holds the benchmark files with their media (relative paths start there):
#   vl_rewardbench.jsonl (or the HF parquet), all_data.json (Multimodal RewardBench),
#   mm_rlhf_rewardbench.jsonl; missing files are left out.
# EVAL_BACKEND=vllm (default, GPU) | transformers (CPU/1 GPU) | openai (EVAL_BASE_URL, EVAL_KEY_ENV)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${R1R_EVAL_MODEL:?set R1R_EVAL_MODEL to the model directory (HF format) or served model name}"
: "${R1R_BENCH_DIR:?set R1R_BENCH_DIR to the folder with the benchmark files and media}"
: "${EVAL_OUT:=runs/eval/$(basename "$R1R_EVAL_MODEL")}" "${EVAL_K:=15}" "${EVAL_BACKEND:=vllm}"

ARGS=()
for spec in vl_rewardbench=vl_rewardbench.jsonl vl_rewardbench=vl_rewardbench.parquet \
    multimodal_rewardbench=all_data.json mm_rlhf_rewardbench=mm_rlhf_rewardbench.jsonl; do
    bench="${spec%%=*}" file="$R1R_BENCH_DIR/${spec#*=}"
    if [[ -f "$file" && " ${ARGS[*]:-} " != *" --bench $bench="* ]]; then
        ARGS+=(--bench "$bench=$file" --media-root "$bench=$R1R_BENCH_DIR")
    fi
done
if [[ ${#ARGS[@]} -eq 0 ]]; then
    echo "no benchmark file in $R1R_BENCH_DIR" >&2
    exit 2
fi
if [[ "$EVAL_BACKEND" == openai ]]; then
    ARGS+=(--base-url "${EVAL_BASE_URL:?set EVAL_BASE_URL}" ${EVAL_KEY_ENV:+--api-key-env "$EVAL_KEY_ENV"})
fi

"$PYTHON" -m r1reward_verl.eval run --model "$R1R_EVAL_MODEL" --backend "$EVAL_BACKEND" --k "$EVAL_K" --swap \
    --tensor-parallel-size "${R1R_EVAL_TP:-1}" --out "$EVAL_OUT" "${ARGS[@]}" "$@"
