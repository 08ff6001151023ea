#!/usr/bin/env bash
# Build gmkernels into .venv (tools/env.sh) and run the benchmark suite (quick by default).
# Extra args go to `python -m gmkernels.bench` (--full, --filter, --out, ...).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/env.sh"
cd "$ROOT"
exec "${GMK_VENV:-$ROOT/.venv}/bin/python" -m gmkernels.bench "$@"
