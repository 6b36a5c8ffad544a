# Sourced by scripts/quickstart.sh and scripts/test.sh: create or reuse .venv and install the package.
# Idempotent: a stamp of the install inputs lives in .venv; when it matches, nothing is installed.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HF_CROSSDISTILL_VENV:-$REPO_ROOT/.venv}"
EXTRAS="${HF_CROSSDISTILL_EXTRAS:-dev,sparse,demo}"
TORCH_SPEC="${HF_CROSSDISTILL_TORCH:-torch==2.13.0}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[venv] creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

stamp_inputs() {
  cat "$REPO_ROOT/setup.cfg" "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/scripts/_venv.sh"
  echo "extras=$EXTRAS"
}
want_stamp="$(stamp_inputs | "$VPY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
have_stamp="$(cat "$VENV/.hf_crossdistill_stamp" 2>/dev/null || true)"

# pip warns once per package about find-links / index folders a machine's pip config names but lacks.
quiet_pip() { grep -v "is ignored: it is neither a file nor a directory" || true; }

if [ "$want_stamp" != "$have_stamp" ]; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # torch first, and only when none is importable: a user's CUDA build stays as it is, and pip never
  # resolves torch through another package (which would pull several GB of CUDA wheels).
  if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    echo "[venv] installing $TORCH_SPEC"
    "$VPY" -m pip install -q "$TORCH_SPEC" 2>&1 | quiet_pip
  fi
  echo "[venv] installing hf_crossdistill[$EXTRAS] (editable)"
  "$VPY" -m pip install -q -e "$REPO_ROOT[$EXTRAS]" 2>&1 | quiet_pip
  echo "$want_stamp" > "$VENV/.hf_crossdistill_stamp"
else
  echo "[venv] $VENV is up to date"
fi
export PATH="$VENV/bin:$PATH"
