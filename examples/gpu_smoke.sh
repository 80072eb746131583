#!/usr/bin/env bash
# The first run on real GPUs: measure what the dry run's memory table only computes.
# Two training steps of the paper run (FSDP, 4 policy GPUs + 1 hosted referee) and of Megatron on 8
# (layout=full8, TP 2 x PP 2, the referee at R1R_REFEREE_URL), sampling every GPU's memory per process
# (nvidia-smi, every 0.5 s); then, per run: the peak memory of each role on each GPU (policy trainer,
# policy vLLM, referee vLLM; roles from Ray's process titles), the rows verl's overlong-prompt filter
# dropped, and the step times. Compare the peaks with `bash examples/dry_run.sh --config-name ...`.
#
#   R1R_POLICY_PATH=/ckpt/sft_hf R1R_DATA_DIR=/data/rl bash examples/gpu_smoke.sh            # both runs
#   RUNS=fsdp bash examples/gpu_smoke.sh      # only the paper run (5 GPUs); RUNS=megatron needs 8 + a referee URL
#   OUT=smoke/ bash examples/gpu_smoke.sh     # where logs and samples go (default runs/gpu_smoke)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

OUT="${OUT:-runs/gpu_smoke}"
RUNS="${RUNS:-fsdp megatron}"
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null || { echo "gpu_smoke.sh: nvidia-smi not found (no NVIDIA GPU here)" >&2; exit 2; }

# two steps, no validation, no checkpoint: what is measured is the rollout's wake-up and the update
SMOKE=(trainer.total_training_steps=2 trainer.val_before_train=false trainer.test_freq=-1 trainer.save_freq=-1
       trainer.logger='[console]' "trainer.experiment_name=gpu_smoke")

sample() {  # sample OUT_CSV: gpu uuid, pid, used MiB every 0.5 s until killed
    local ts
    while true; do
        ts="$(date +%s.%N)"
        nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,nounits 2>/dev/null |
            while IFS=', ' read -r uuid pid mib; do
                title="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120 || true)"
                echo "$ts,$uuid,$pid,$mib,${title//,/;}"
            done
        sleep 0.5
    done >>"$1"
}

report() {  # report NAME: peaks per GPU and role, filtered rows, step times
    local name="$1"
    "$PYTHON" - "$OUT/$name.mem.csv" "$OUT/$name.log" <<'EOF'
import collections, re, subprocess, sys
mem_csv, log = sys.argv[1], sys.argv[2]
index = {}
for row in subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,memory.total", "--format=csv,noheader,nounits"],
                          capture_output=True, text=True).stdout.splitlines():
    i, uuid, total = [x.strip() for x in row.split(",")]
    index[uuid] = (int(i), int(total))
peak = collections.defaultdict(int)  # (gpu, role) -> MiB, the largest sample of all that role's processes
per_sample = collections.defaultdict(int)
for line in open(mem_csv):
    t, uuid, pid, mib, title = line.rstrip("\n").split(",", 4)
    role = "vLLM" if re.search(r"vllm|vLLM|LLMServer|EngineCore", title) else "trainer"
    per_sample[(t, uuid, role)] += int(mib)  # one nvidia-smi sample: all of a role's processes on that GPU
for (t, uuid, role), mib in per_sample.items():
    peak[(uuid, role)] = max(peak[(uuid, role)], mib)
gpus = sorted({u for u, _ in peak}, key=lambda u: index.get(u, (99, 0))[0])
print(f"peak memory per GPU and role (GiB), {mem_csv}:")
for u in gpus:
    i, total = index.get(u, ("?", 0))
    roles = {r: peak[(u, r)] / 1024 for r in ("trainer", "vLLM") if (u, r) in peak}
    kind = "referee" if "trainer" not in roles else "policy"
    print(f"  GPU {i} ({kind}): " + ", ".join(f"{r} {g:.1f}" for r, g in roles.items())
          + f"; together {sum(roles.values()):.1f} of {total / 1024:.1f}")
text = open(log, errors="replace").read()
for m in re.finditer(r"filter dataset len: (\d+)", text):
    print(f"  verl's overlong-prompt filter kept {m.group(1)} rows")
steps = re.findall(r"timing_s/step:([\d.]+)", text)
print("  step times (s): " + (", ".join(f"{float(s):.0f}" for s in steps) if steps else "none logged"))
EOF
}

for run in $RUNS; do
    case "$run" in
        fsdp) ARGS=(--config-name r1reward) ;;
        megatron) ARGS=(--config-name r1reward_megatron layout=full8 referee=endpoint) ;;
        *) echo "gpu_smoke.sh: RUNS has $run; expected fsdp and/or megatron" >&2; exit 2 ;;
    esac
    : >"$OUT/$run.mem.csv"
    sample "$OUT/$run.mem.csv" &
    sampler=$!
    status=0
    "$PYTHON" -m verl.trainer.main_ppo --config-path "$CONFIG_PATH" "${ARGS[@]}" "${SMOKE[@]}" "$@" \
        2>&1 | tee "$OUT/$run.log" || status=$?
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    echo "== $run: exit status $status"
    report "$run"
done
