#!/usr/bin/env bash
# Set up .venv and build gmkernels incrementally (tools/env.sh: a second run with no change
# reaches pytest in seconds), then run the test suite. Extra args go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/env.sh"
cd "$ROOT"
exec "${GMK_VENV:-$ROOT/.venv}/bin/python" -m pytest python_tests "$@"
