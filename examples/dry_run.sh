#!/usr/bin/env bash
# Print the resolved config of any run on CPU after verl's own validation; starts nothing.
#
#   bash examples/dry_run.sh --config-name r1reward preset=authors_script
#   bash examples/dry_run.sh --config-name r1reward_ablations -m
#   bash examples/dry_run.sh --config-name r1reward_sft --summary
set -euo pipefail
DRY_RUN=1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

"$PYTHON" -m r1reward_verl.dryrun --config-path "$CONFIG_PATH" "$@"
