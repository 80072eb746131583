# Sourced by the example scripts (verl style: everything is an environment variable or a Hydra
# override passed through "$@").
#
#   PYTHON      interpreter with this project installed (default: python3)
#   DRY_RUN=1   compose + validate + print the run on CPU (r1reward_verl.dryrun), start nothing
#   R1R_*       paths and sizes read by hydra_configs/*.yaml (see README "Reproduce the paper")

EXAMPLES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$EXAMPLES_DIR")"
CONFIG_PATH="$REPO_DIR/hydra_configs"
PYTHON="${PYTHON:-python3}"
cd "$REPO_DIR" || exit 1

if [[ "${DRY_RUN:-0}" == 1 ]]; then
    # placeholders so that a dry run resolves without the real paths
    : "${R1R_POLICY_PATH:=/path/to/sft_checkpoint}" "${R1R_DATA_DIR:=/path/to/rl_parquet}"
    : "${R1R_SFT_DIR:=/path/to/sft_parquet}"
    : "${R1R_POLICY_DATA:=/path/to/policy_parquet}" "${R1R_JUDGE_PATH:=/path/to/r1reward_checkpoint}"
    : "${R1R_JUDGE_URL:=http://judge-host:8000/v1}"
    export R1R_POLICY_PATH R1R_DATA_DIR R1R_SFT_DIR R1R_POLICY_DATA R1R_JUDGE_PATH R1R_JUDGE_URL
fi

# dry_run CONFIG_NAME [overrides...]: compose + validate + print key values, start nothing
dry_run() {
    local name="$1"
    shift
    "$PYTHON" -m r1reward_verl.dryrun --config-path "$CONFIG_PATH" --config-name "$name" --summary "$@"
}

# multirun_first ARGS...: ARGS with -m/--multirun moved to the front. Hydra's command line (argparse) takes no
# flag after the first override ("unrecognized arguments"), and the scripts put overrides before the user's own
# (submit_cluster.sh rl_cpu OVERRIDES... --multirun). Sets the array ARGS.
multirun_first() {
    local flag=() rest=() a
    for a in "$@"; do
        case "$a" in
            -m|--multirun) flag=(-m) ;;
            *) rest+=("$a") ;;
        esac
    done
    ARGS=("${flag[@]}" "${rest[@]}")
}

# ppo CONFIG_NAME [overrides...]: verl's PPO entry point on one of our configs
ppo() {
    local name="$1"
    shift
    multirun_first "$@"
    set -- "${ARGS[@]}"
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        dry_run "$name" "$@"
    else
        "$PYTHON" -m verl.trainer.main_ppo --config-path "$CONFIG_PATH" --config-name "$name" "$@"
    fi
}

# sft CONFIG_NAME [overrides...]: verl's SFT trainer; torchrun on one node, Ray on several
sft() {
    local name="$1"
    shift
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        dry_run "$name" "$@"
    elif [[ "${R1R_NNODES:-1}" -gt 1 ]]; then
        "$PYTHON" -m verl.trainer.sft_trainer_ray --config-path "$CONFIG_PATH" --config-name "$name" "$@"
    else
        torchrun --standalone --nnodes 1 --nproc_per_node "${R1R_GPUS_PER_NODE:-4}" \
            -m verl.trainer.sft_trainer --config-path "$CONFIG_PATH" --config-name "$name" "$@"
    fi
}
