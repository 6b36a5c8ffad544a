#!/usr/bin/env bash
# Install what is missing (into .venv) and run the test suite.
#   bash scripts/test.sh               default suite (not slow, no GPU, no browser)
#   bash scripts/test.sh -m slow       any pytest arguments are passed through
# With CI=true the slow and browser tests run too (they fit CI's time limit).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$REPO_ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

args=("$@")
if [ ${#args[@]} -eq 0 ] && [ "${CI:-}" = "true" ]; then
  # CI runs the slow and browser tests too. The browser tests need Debian's chromium; installing it is
  # best effort (the tests skip with the reason when it is missing).
  if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[test] installing chromium for the browser tests"
    (timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq chromium) >/dev/null 2>&1 \
      || echo "[test] chromium could not be installed; browser tests will skip"
  fi
  args=(-m "not gpu and not quickstart_full" --durations=15)
fi
python -m ruff check .
python -m pytest "${args[@]}"
