#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and builds gmkernels into it.
#   GMK_VENV   where the venv lives (default: .venv in the repository)
#   PYTHON     the interpreter that creates it (default: python3)
# Other build switches (GMK_WITH_CUDA, TORCH_CUDA_ARCH_LIST) pass through to setup.py.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${GMK_VENV:-$ROOT/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "gmkernels: creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
echo "gmkernels: installing dependencies (requirements-dev.txt)"
"$VENV/bin/python" -m pip install -q -r "$ROOT/requirements-dev.txt"
echo "gmkernels: building the extension (pip install --no-build-isolation -e .)"
# --no-build-isolation: compile against the torch in this venv, not a fresh (CUDA) download.
MAX_JOBS=${MAX_JOBS:-2} "$VENV/bin/python" -m pip install -q --no-build-isolation -e "$ROOT"
"$VENV/bin/python" -c "import gmkernels, json; print('gmkernels build:', json.dumps(gmkernels.build_info()))"
