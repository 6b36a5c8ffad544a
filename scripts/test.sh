#!/usr/bin/env bash
# Install what is missing (into .venv) and run the test suite.
#   bash scripts/test.sh               default suite (not slow, no GPU, no browser)
#   bash scripts/test.sh -m slow       any pytest arguments are passed through
# With CI=true the slow tests run too (they fit CI's time limit).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$REPO_ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    args=(-m "not gpu and not browser")
  fi
fi
python -m ruff check .
python -m pytest "${args[@]}"
