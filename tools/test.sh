#!/usr/bin/env bash
# Build gmkernels into .venv (tools/env.sh) and run the test suite. Extra args go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/env.sh"
cd "$ROOT"
exec "${GMK_VENV:-$ROOT/.venv}/bin/python" -m pytest python_tests "$@"
