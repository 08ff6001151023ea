#!/usr/bin/env bash
# Set up .venv and build gmkernels incrementally (tools/env.sh: a second run with no change
# reaches pytest in seconds), then run the test suite. Extra args go to pytest, e.g.
#   bash tools/test.sh -q -k langevin        bash tools/test.sh python_tests/test_build.py
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/env.sh"
cd "$ROOT"
# No test path given: pyproject's testpaths (python_tests/) applies; a path runs just that.
exec "${GMK_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
