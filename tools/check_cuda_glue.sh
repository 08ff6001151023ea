#!/usr/bin/env bash
# Quick compile check (g++ -fsyntax-only) of CUDA glue files (csrc/*/*_cuda.cpp) against the
# CUDA torch in .venv-cuda (made by tools/cuda_build_check.sh). Seconds per file instead of
# the full CUDA build's minutes; the full build in CI remains the real check.
#   tools/check_cuda_glue.sh [FILE...]     # default: every csrc/*/*_cuda.cpp
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GMK_CUDA_VENV:-$ROOT/.venv-cuda}"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda-13.0}"
[[ -x "$VENV/bin/python" ]] || { echo "no $VENV: run tools/cuda_build_check.sh once" >&2; exit 1; }
mapfile -t INC < <("$VENV/bin/python" - <<'PY'
import site, pathlib
from torch.utils import cpp_extension as ce
for p in ce.include_paths(device_type="cuda"):
    print(p)
for s in site.getsitepackages():
    q = pathlib.Path(s) / "nvidia" / "cu13" / "include"
    if q.is_dir():
        print(q)
PY
)
ABI=$("$VENV/bin/python" -c "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))")
PYINC=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
FILES=("$@"); [[ ${#FILES[@]} -gt 0 ]] || mapfile -t FILES < <(ls "$ROOT"/csrc/*/*_cuda.cpp)
rc=0
for f in "${FILES[@]}"; do
  flags=(-std=c++20 -fsyntax-only -DGMK_WITH_CUDA=1 -DTORCH_EXTENSION_NAME=_C -D_GLIBCXX_USE_CXX11_ABI=$ABI
         -I"$ROOT/csrc/include" -I"$ROOT/csrc" -I"$CUDA_HOME/include" -I"$PYINC")
  for i in "${INC[@]}"; do flags+=(-isystem "$i"); done
  if g++ "${flags[@]}" "$f"; then echo "ok   $f"; else echo "FAIL $f"; rc=1; fi
done
exit $rc
