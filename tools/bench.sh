#!/usr/bin/env bash
# Set up .venv and build gmkernels incrementally (tools/env.sh), then run the benchmark suite
# (quick by default).
# Extra args go to `python -m gmkernels.bench` (--full, --filter, --out, ...).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/env.sh"
cd "$ROOT"
exec "${GMK_VENV:-$ROOT/.venv}/bin/python" -m gmkernels.bench "$@"
