#!/usr/bin/env bash
# tools/gpu_check.sh OUTDIR: everything one short run on a GPU machine can check, in one
# command and with no preparation, written into OUTDIR:
#   1. env      the machine, the toolkit, torch/triton, which optional packages are there
#   2. build    the extension with CUDA kernels for sm_90 only, in place, against the torch
#               already installed (no venv, no download): GMK_WITH_CUDA=1
#               TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=$(nproc) python setup.py build_ext --inplace;
#               then every registered op must have a CUDA kernel
#   3. tests    the test suite's cuda device axis (pytest -m cuda, GMK_NO_SKIPS=1), split
#               over GMK_GPU_CHECK_SHARDS parallel pytest processes (GMK_TEST_SHARD=i/n)
#   4. bench    the quick benchmark suite on CUDA: python -m gmkernels.bench --device cuda
#               (results.json / results.md / results.png)
#   5. summary  summary.md: each stage's status and time, test counts, the failures, the
#               benchmark table
#
#   bash tools/gpu_check.sh "$OUT"             # on the GPU machine, from a copy of the tree
#   GMK_GPU_CHECK_DRY=1 bash tools/gpu_check.sh /tmp/gc   # the same stages here, on the CPU
#
# Target machine: one H200, 16 cores, CUDA 13.0, torch 2.11 (cu130), triton 3.6 and pytest, no
# network, about 10 minutes per command. The script finishes in under 8 minutes: each stage
# runs under `timeout` with a share of a 465 s deadline (a hang still leaves its log, and the
# stages after it still run), and the benchmark drops its torch.compile provider when less than
# 240 s are left for it.
#
# Build-time estimate for that machine (README "Running on a GPU"): the CUDA build compiles 25
# units: 13 CPU ones and 6 CUDA glue ones with the torch headers, and 6 torch-free .cu files.
# Measured here (AMD EPYC, CPU seconds of one compile, user + sys): csrc/sde/sde_cpu.cpp 152 s,
# the longest; a torch-header unit without kernels (csrc/random/random.cpp) 26 s; the .cu files
# for sm_90 with tools/check_cuda_sources.py's flags: sde 46, coupling 22, planar 13, random 12,
# rbm 6, bm 4 s. With MAX_JOBS=16 every unit compiles at once, so the build takes about its
# slowest unit plus the link: ~2.5 min at this machine's speed per core (less on a faster one),
# leaving ~3 min for the tests and the rest for the benchmark. Serially (torch's fallback when
# ninja is missing) it is the sum, ~14 min: the script then stops at once and says so.
#
# Environment (all optional):
#   PYTHON                  the interpreter with torch (default: python3 or python, the
#                           first that imports torch)
#   MAX_JOBS                compile jobs (default: nproc)
#   TORCH_CUDA_ARCH_LIST    default 9.0
#   GMK_GPU_CHECK_SHARDS    parallel pytest processes (default 4; 2 in the dry run)
#   GMK_GPU_CHECK_PYTEST    extra pytest arguments (e.g. "-k langevin")
#   GMK_GPU_CHECK_DEADLINE  seconds for the whole run (default 465)
#   GMK_GPU_CHECK_WHEELS    a folder of wheels to install offline first (default .gpu_wheels)
#   GMK_GPU_CHECK_DRY=1     a dry run on any machine: no GPU, no CUDA build (`setup.py
#                           build_ext --inplace --help`, or the real CPU build with
#                           GMK_GPU_CHECK_DRY_BUILD=1), a few fast CPU tests instead of -m cuda,
#                           one tiny benchmark case on the CPU. It runs every stage's commands,
#                           so a typo shows here and not on the GPU (python_tests/test_gpu_check.py).
set -uo pipefail  # not -e: a failed stage is recorded and the next one runs

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: bash tools/gpu_check.sh OUTDIR" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$1" || exit 2
OUT="$(cd "$1" && pwd)"
cd "$ROOT" || exit 2

DRY="${GMK_GPU_CHECK_DRY:-0}"
if [[ -z "${PYTHON:-}" ]]; then  # the first of python3, python that has torch
  for cand in python3 python; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import torch' 2>/dev/null; then
      PYTHON="$(command -v "$cand")"
      break
    fi
  done
  PYTHON="${PYTHON:-python3}"
fi
NPROC="$(nproc 2>/dev/null || echo 4)"
export MAX_JOBS="${MAX_JOBS:-$NPROC}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# One compile cache for the tests and the benchmark, outside OUTDIR (it is not a result).
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-${TMPDIR:-/tmp}/gmk_inductor_cache}"
SHARDS="${GMK_GPU_CHECK_SHARDS:-4}"
[[ "$DRY" == "1" ]] && SHARDS="${GMK_GPU_CHECK_SHARDS:-2}"
DEADLINE_S="${GMK_GPU_CHECK_DEADLINE:-465}"
T0=$(date +%s)
STAGES="$OUT/stages.tsv"
: >"$STAGES"

say() { printf '[gpu_check %4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*" | tee -a "$OUT/gpu_check.log"; }

# Seconds left before the deadline, less what the later stages need at least.
left() { local reserve="$1"; echo $(( DEADLINE_S - ($(date +%s) - T0) - reserve )); }

# limit WANT RESERVE: a stage's time limit, at most WANT, leaving RESERVE for the rest.
limit() {
  local want="$1" reserve="$2" l
  l=$(left "$reserve")
  (( l < want )) && want=$l
  (( want < 10 )) && want=10
  echo "$want"
}

# stage NAME CMD...: run, record status and seconds (124/137: its timeout).
stage() {
  local name="$1"; shift
  local t0 rc
  t0=$(date +%s)
  say "== $name"
  "$@"
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >>"$STAGES"
  say "== $name: exit $rc in $(( $(date +%s) - t0 ))s"
  return $rc
}

# ---------------------------------------------------------------------------------------------
stage_env() {
  {
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "host: $(uname -a)"
    echo "cores: $NPROC, MAX_JOBS=$MAX_JOBS, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, dry=$DRY"
    echo "tree: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git')" \
         "$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l | tr -d ' ') changed file(s)"
    echo "python: $PYTHON"
    if command -v nvidia-smi >/dev/null; then
      timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
        --format=csv,noheader
    else
      echo "nvidia-smi: none"
    fi
    local nvcc
    nvcc="$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)"
    echo "nvcc: ${nvcc:-none} $( [[ -n "$nvcc" ]] && timeout 30 "$nvcc" --version | tail -n 2 | tr '\n' ' ')"
    echo "ninja: $(command -v ninja || "$PYTHON" -c 'import ninja, os; print(os.path.join(ninja.BIN_DIR, "ninja"))' 2>/dev/null || echo none)"
    timeout 90 "$PYTHON" - <<'EOF'
import importlib, importlib.util
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device 0: {p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
          f"{p.total_memory / 2**30:.0f} GiB")
for mod in ("triton", "numpy", "scipy", "expecttest", "matplotlib", "tqdm", "pytest",
            "hypothesis", "setuptools", "ninja"):
    if importlib.util.find_spec(mod) is None:
        print(f"{mod}: MISSING")
    else:
        m = importlib.import_module(mod)
        print(f"{mod}: {getattr(m, '__version__', '?')}")
EOF
  } >"$OUT/env.txt" 2>&1
  local rc=$?
  cat "$OUT/env.txt"
  return $rc
}

# ---------------------------------------------------------------------------------------------
stage_build() {
  local log="$OUT/build.log" lim
  lim=$(limit 240 200)
  if [[ "$DRY" == "1" ]]; then
    if [[ "${GMK_GPU_CHECK_DRY_BUILD:-0}" == "1" ]]; then
      GMK_WITH_CUDA=0 timeout -k 10 "$lim" "$PYTHON" setup.py build_ext --inplace >"$log" 2>&1
    else  # the same command line, setup.py run up to the build without compiling anything
      GMK_WITH_CUDA=0 timeout -k 10 "$lim" "$PYTHON" setup.py build_ext --inplace --help \
        >"$log" 2>&1
    fi
  else
    if ! command -v ninja >/dev/null && ! "$PYTHON" -c 'import ninja' 2>/dev/null; then
      say "ninja is missing: torch's cpp_extension would compile the 25 units one by one" \
          "(6-10 min, past this run's budget); install ninja (pip install ninja) and rerun"
      echo "ninja missing" >"$log"
      return 3
    fi
    GMK_WITH_CUDA=1 timeout -k 10 "$lim" "$PYTHON" setup.py build_ext --inplace >"$log" 2>&1
  fi
  local rc=$?
  tail -n 5 "$log"
  # per-object compile times from ninja's log (start and end in ms, then the output)
  local nlog
  nlog="$(find "$ROOT/build" -name .ninja_log 2>/dev/null | head -n 1)"
  if [[ -n "$nlog" ]]; then
    awk -F'\t' '!/^#/ { n = split($4, p, "/"); printf "%7.1fs  %s/%s\n", ($2 - $1) / 1000, p[n-1], p[n] }' \
      "$nlog" | sort -rn >"$OUT/build_times.txt"
    head -n 5 "$OUT/build_times.txt"
  fi
  [[ $rc -ne 0 ]] && return $rc
  # every registered op has a kernel for the device the tests will use
  local want=CUDA
  [[ "$DRY" == "1" ]] && want=CPU
  GMK_WANT_KEY="$want" timeout 60 "$PYTHON" - >"$OUT/registration.txt" 2>&1 <<'EOF'
import os, sys
import torch
import gmkernels
key = os.environ["GMK_WANT_KEY"]
info = gmkernels.build_info()
print("build_info:", {k: v for k, v in info.items() if k != "extension_error"})
if not info["extension"]:
    sys.exit(f"gmkernels._C did not load: {info['extension_error']}")
ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("gmkernels::"))
missing = [n for n in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(n, key)]
print(f"{len(ops) - len(missing)} of {len(ops)} gmkernels ops have a {key} kernel")
if missing or not ops:
    sys.exit(f"ops without a {key} kernel: {missing}")
EOF
  rc=$?
  cat "$OUT/registration.txt"
  return $rc
}

# ---------------------------------------------------------------------------------------------
stage_tests() {
  local lim n select=() extra=()
  lim=$(limit 200 75)
  n=$SHARDS
  if [[ "$DRY" == "1" ]]; then
    select=(python_tests/test_device_axis.py -m "not cuda" -k "params or audit")
  else
    select=(python_tests -m cuda)
  fi
  # shellcheck disable=SC2206  # word splitting of the user's extra arguments is the point
  [[ -n "${GMK_GPU_CHECK_PYTEST:-}" ]] && extra=(${GMK_GPU_CHECK_PYTEST})
  say "pytest ${select[*]} ${extra[*]} in $n shard(s), limit ${lim}s"
  local pids=() i
  for (( i = 0; i < n; i++ )); do
    # SIGINT first: pytest stops the test at hand and still writes its summary and junit file
    GMK_NO_SKIPS=1 GMK_TEST_SHARD="$i/$n" timeout -s INT -k 20 "$lim" \
      "$PYTHON" -m pytest "${select[@]}" "${extra[@]}" -q -p no:cacheprovider \
      --continue-on-collection-errors -o faulthandler_timeout=120 \
      --junitxml="$OUT/tests-$i.xml" >"$OUT/tests-$i.log" 2>&1 &
    pids+=($!)
  done
  local rc=0 r
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    r=$?
    say "shard $i/$n: exit $r, $(tail -n 1 "$OUT/tests-$i.log")"
    (( r != 0 )) && rc=$r
  done
  return $rc
}

# ---------------------------------------------------------------------------------------------
stage_bench() {
  local lim args=()
  lim=$(limit 300 15)
  if [[ "$DRY" == "1" ]]; then
    args=(--device cpu --filter rbm_gibbs/64x64x32 --repeat 1 --no-compile)
  else
    args=(--device cuda)
    if (( lim < 240 )); then
      args+=(--no-compile)
      say "bench: ${lim}s left, without the torch.compile provider"
    fi
  fi
  timeout -s INT -k 15 "$lim" "$PYTHON" -m gmkernels.bench "${args[@]}" --out "$OUT" \
    --no-progress >"$OUT/bench.log" 2>&1
  local rc=$?
  tail -n 3 "$OUT/bench.log"
  return $rc
}

# ---------------------------------------------------------------------------------------------
stage_summary() {
  GMK_OUT="$OUT" GMK_T0="$T0" GMK_DRY="$DRY" "$PYTHON" "$ROOT/tools/gpu_check_summary.py" \
    >"$OUT/summary.md" 2>"$OUT/summary.err"
  local rc=$?
  cat "$OUT/summary.md"
  return $rc
}

# Wheels carried along for what the machine may lack (pure-Python or py3-none ones such as
# ninja, expecttest, hypothesis: see README "Running on a GPU"), installed offline into a
# folder of their own, which PYTHONPATH and PATH then include.
install_wheels() {
  local dir="${GMK_GPU_CHECK_WHEELS:-$ROOT/.gpu_wheels}" site="${TMPDIR:-/tmp}/gmk_gpu_site"
  compgen -G "$dir/*.whl" >/dev/null || return 0
  say "installing the wheels of $dir into $site (offline)"
  "$PYTHON" -m pip install --quiet --no-index --no-deps --target "$site" "$dir"/*.whl \
    >"$OUT/wheels.log" 2>&1 || say "wheel install failed (see wheels.log); going on without"
  export PYTHONPATH="$PYTHONPATH:$site" PATH="$PATH:$site/bin"
}

say "gmkernels GPU check into $OUT (dry=$DRY, deadline ${DEADLINE_S}s, python $PYTHON)"
install_wheels
stage env stage_env
BUILD_OK=1
stage build stage_build || BUILD_OK=0
if [[ $BUILD_OK -eq 1 ]]; then
  stage tests stage_tests
  stage bench stage_bench
else
  say "the build failed: no tests, no benchmark (see $OUT/build.log)"
  printf 'tests\tskipped\t0\nbench\tskipped\t0\n' >>"$STAGES"
fi
stage summary stage_summary
say "done in $(( $(date +%s) - T0 ))s; summary: $OUT/summary.md"
# the exit status: 0 only when every stage passed
awk -F'\t' '$2 != "0" { bad = 1 } END { exit bad }' "$STAGES"
