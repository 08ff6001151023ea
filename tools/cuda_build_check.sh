#!/usr/bin/env bash
# Full CUDA build of gmkernels in a venv of its own, then a check that the build registered a
# CUDA kernel for every op. Needs the CUDA toolkit, not a GPU: no CUDA op is ever called.
#
#   tools/cuda_build_check.sh [VENV]        # VENV defaults to <repo>/.venv-cuda (kept, reused)
#
# The build runs in a temporary copy of the working tree, so the checkout's build/ folder and
# gmkernels/_C*.so (which a CPU build there uses) are never touched; the wheel is installed into
# VENV only. Environment (all optional):
#   CUDA_HOME             toolkit root               (default /usr/local/cuda-13.0)
#   TORCH_CUDA_ARCH_LIST  architectures              (default "8.0;9.0")
#   MAX_JOBS              parallel compile jobs      (default 2: each torch TU needs ~1.5 GB)
#   GMK_TORCH_SPEC        the torch to build against (default torch==2.14.1, a CUDA 13 wheel)
#   PYTHON                interpreter for the venv   (default python3; the torch wheel is cp311)
#   GMK_KEEP_BUILD_DIR=1  keep the temporary copy (it is always kept when the build fails)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-cuda}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${GMK_TORCH_SPEC:-torch==2.14.1}"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda-13.0}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
export MAX_JOBS="${MAX_JOBS:-2}"
export GMK_WITH_CUDA=1

T_START=$(date +%s)
SUMMARY=()
WORK=""
OK=0

say() { printf '[cuda_build_check] %s\n' "$*"; }
die() { printf '[cuda_build_check] ERROR: %s\n' "$*" >&2; exit 1; }

# Runs a named stage and records its wall time (a failure stops the script via set -e).
stage() {
  local name="$1"; shift
  local t0 t1
  t0=$(date +%s)
  say "== $name"
  "$@"
  t1=$(date +%s)
  SUMMARY+=("$(printf '%-10s %5ds' "$name" $((t1 - t0)))")
}

finish() {
  local rc=$?
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    if [[ $OK -eq 1 && "${GMK_KEEP_BUILD_DIR:-0}" != "1" ]]; then
      rm -rf "$WORK"
    else
      say "build copy kept at $WORK (build log: $WORK/build.log)"
    fi
  fi
  say "stage timings:"
  for line in "${SUMMARY[@]+"${SUMMARY[@]}"}"; do say "  $line"; done
  say "total $(( $(date +%s) - T_START ))s, exit $rc"
}
trap finish EXIT

preflight() {
  [[ -x "$CUDA_HOME/bin/nvcc" ]] \
    || die "no nvcc at CUDA_HOME=$CUDA_HOME (set CUDA_HOME to the toolkit root)"
  [[ -f "$CUDA_HOME/include/cuda_runtime.h" ]] \
    || die "no include/cuda_runtime.h under CUDA_HOME=$CUDA_HOME"
  command -v "$PYTHON" >/dev/null || die "no interpreter '$PYTHON' (set PYTHON)"
  "$CUDA_HOME/bin/nvcc" --version | tail -n 2
  "$PYTHON" --version
  say "repo $ROOT, venv $VENV, archs '$TORCH_CUDA_ARCH_LIST', MAX_JOBS=$MAX_JOBS"
}

make_venv() {
  if [[ -x "$VENV/bin/python" ]]; then
    say "reusing $VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
  # Already-satisfied requirements make this a few seconds on a reused venv; the first time
  # it installs the ~5 GB CUDA torch and its nvidia-* wheels (minutes).
  # (grep: drop pip's per-package notes about local index folders that lack a package.)
  "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC" ninja setuptools wheel numpy tqdm 2>&1 \
    | { grep -v -E '^WARNING: Location .* is ignored' || true; }
  "$VENV/bin/python" - <<'EOF'
import sys, torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
sys.exit(0 if torch.version.cuda else f"torch {torch.__version__} is not a CUDA build")
EOF
}

copy_tree() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/gmk-cuda-build.XXXXXX")"
  # tar rather than rsync: it is on every machine. Leave out venvs, build outputs and git.
  tar -C "$ROOT" --exclude='./.venv*' --exclude='./build' --exclude='./dist' --exclude='./.git' \
      --exclude='*.so' --exclude='*.o' --exclude='*.egg-info' --exclude='__pycache__' \
      -cf - . | tar -C "$WORK" -xf -
  say "copied the working tree to $WORK"
}

build() {
  local log="$WORK/build.log"
  say "building (log: $log)"
  # --no-deps: the requirements are in place, and pip must not swap the torch built against.
  if ! (cd "$WORK" && "$VENV/bin/python" -m pip install --no-build-isolation --no-deps -v .) \
      >"$log" 2>&1; then
    say "build FAILED; the errors:"
    grep -n -E 'error|Error|FAILED' "$log" | head -n 60 || true
    say "last lines of the log:"
    tail -n 40 "$log"
    return 1
  fi
  grep -m 1 -E '^ *gmkernels: building' "$log" || true
  # Per-object compile times, from ninja's own log (start and end in ms, then the output).
  local nlog
  nlog="$(find "$WORK/build" -name .ninja_log | head -n 1)"
  if [[ -n "$nlog" ]]; then
    say "compile times:"
    awk -F'\t' '!/^#/ { n = split($4, p, "/")
                         printf "  %7.1fs  %s/%s\n", ($2 - $1) / 1000, p[n-1], p[n] }' "$nlog"
  fi
  # The CUDA torch wheel ships some CUDA headers in site-packages/nvidia/cu13/include, which
  # setup.py must add to the include path: check that the compile lines carry it.
  local inc
  inc="$("$VENV/bin/python" - <<'EOF'
import sys
from pathlib import Path
for p in map(Path, sys.path):
    if (p / "nvidia" / "cu13" / "include").is_dir():
        print(p / "nvidia" / "cu13" / "include")
        break
EOF
)"
  if [[ -n "$inc" ]]; then
    grep -q -F -- "-I$inc" "$log" \
      || die "the wheel's CUDA headers $inc are not on the compile lines"
    say "include path carries $inc"
  else
    say "note: this torch has no site-packages/nvidia/cu13/include (toolkit headers only)"
  fi
  local n_cu
  n_cu=$(grep -c -E 'nvcc .*\.cu ' "$log" || true)
  say "$n_cu nvcc compile line(s) in the log"
}

check_registration() {
  # From / so that `import gmkernels` finds the installed wheel, not a source tree.
  (cd / && "$VENV/bin/python" - <<'EOF'
import sys

import torch
import gmkernels
from gmkernels import _backend

print(f"gmkernels from {gmkernels.__file__}")
if not gmkernels.extension_available():
    sys.exit(f"gmkernels._C did not load: {_backend._C_ERROR}")
info = gmkernels.build_info()
print(f"build_info: {info}")
if info.get("cuda") is not True:
    sys.exit(f"build_info()['cuda'] is {info.get('cuda')!r}, expected True")

ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("gmkernels::"))
if not ops:
    sys.exit("no gmkernels:: ops are registered")
missing = []
for name in ops:
    cuda = torch._C._dispatch_has_kernel_for_dispatch_key(name, "CUDA")
    cpu = torch._C._dispatch_has_kernel_for_dispatch_key(name, "CPU")
    print(f"  {name:45s} CPU={'yes' if cpu else 'NO ':3s} CUDA={'yes' if cuda else 'NO'}")
    if not cuda:
        missing.append(name)
print(f"{len(ops) - len(missing)} of {len(ops)} gmkernels ops have a CUDA kernel")
if missing:
    sys.exit("ops without a CUDA kernel: " + ", ".join(missing))
EOF
  )
}

stage preflight preflight
stage venv make_venv
stage copy copy_tree
stage build build
stage check check_registration
OK=1
say "PASS"
