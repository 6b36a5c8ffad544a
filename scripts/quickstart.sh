#!/usr/bin/env bash
# The main job: synthetic nuScenes → tiny LiDAR teacher → UniDistill L→C camera student vs a no-KD student, all
# scored with the official nuScenes metrics; writes outputs/quickstart/{results.md, bev.png, hub_student/}.
#   bash scripts/quickstart.sh                         # < 25 min on 2 CPU cores
#   bash scripts/quickstart.sh --teacher-steps 100     # any scripts/quickstart.py option passes through
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$REPO_ROOT"
# One compute thread: the second core runs the data-loading worker (dataloader_num_workers: 1 in the recipes).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export TOKENIZERS_PARALLELISM=false
python scripts/quickstart.py "$@"
