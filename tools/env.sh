#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and builds gmkernels into it, doing
# only the work that something changed calls for:
#   1. the venv:          created when $VENV/bin/python is missing;
#   2. the requirements:  `pip install -r requirements-dev.txt` when requirements-dev.txt differs
#                         from the copy recorded in $VENV/.gmk-requirements (delete it to redo);
#   3. the package:       registered once in the venv (`pip install -e . --no-deps` with the
#                         extension build switched off, GMK_BUILD_EXT=0), again only when the
#                         venv's `gmkernels` is not this checkout;
#   4. the extension:     `setup.py build_ext --inplace` into the persistent build/ folder, so
#                         ninja recompiles only the sources (or headers) that changed; skipped
#                         altogether when the stamp build/gmk-ext.stamp still matches.
#   5. the CUDA kernels under the CPU execution layer (issue 12): a CMake build in build/emu-cmake
#                         (-DGMK_BUILD_CUDA_EMU=ON: ASan + UBSan libraries, no torch) that
#                         python_tests/test_cuda_emu.py runs; skipped when the stamp
#                         build/emu-cmake.stamp still matches (csrc/, CMakeLists.txt, the compiler
#                         and the built libraries).
# The stamp is a hash of every file under csrc/, setup.py, the venv's torch (torch/version.py),
# the Python version, the build switches below and the built gmkernels/_C*.so itself: any
# change to one of them (or a .so replaced by another build) rebuilds, so a stale extension is
# never used silently.
#
#   GMK_VENV   where the venv lives (default: .venv in the repository)
#   PYTHON     the interpreter that creates it (default: python3)
#   MAX_JOBS   parallel compile jobs (default 2: each torch translation unit needs ~1.5 GB)
# Other build switches (GMK_WITH_CUDA, TORCH_CUDA_ARCH_LIST, CUDA_HOME, CC, CXX, CFLAGS,
# CXXFLAGS, LDFLAGS) pass through to setup.py and are part of the stamp.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${GMK_VENV:-$ROOT/.venv}
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
PY="$VENV/bin/python"
t0=$(date +%s)
say() { echo "gmkernels: $*"; }

# 1. the venv
if [ ! -x "$PY" ]; then
  say "creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi

# 2. the requirements
REQ_STAMP="$VENV/.gmk-requirements"
if cmp -s "$ROOT/requirements-dev.txt" "$REQ_STAMP"; then
  say "dependencies up to date (requirements-dev.txt unchanged since the last install)"
else
  say "installing dependencies (requirements-dev.txt)"
  # (grep: drop pip's note for each local index folder that lacks a package.)
  "$PY" -m pip install -q -r "$ROOT/requirements-dev.txt" 2>&1 \
    | { grep -v -E '^WARNING: Location .* is ignored' || true; }
  cp "$ROOT/requirements-dev.txt" "$REQ_STAMP"
fi

# What the extension is built against, without importing torch (find_spec only locates it).
# -I: neither the current directory nor PYTHONPATH may stand in for the venv's own packages.
mapfile -t FACTS < <("$PY" -I -c '
import importlib.util as u, os, platform, sysconfig
t = u.find_spec("torch"); g = u.find_spec("gmkernels")
print(os.path.dirname(t.origin) if t else "", sysconfig.get_config_var("EXT_SUFFIX"),
      platform.python_version(), (g.origin if g else None) or "", sep="\n")')
TORCH_DIR=${FACTS[0]:-} EXT_SUFFIX=${FACTS[1]:-} PYVER=${FACTS[2]:-} GMK_INIT=${FACTS[3]:-}
[ -n "$TORCH_DIR" ] && [ -n "$EXT_SUFFIX" ] \
  || { echo "gmkernels: torch is not importable from $VENV" >&2; exit 1; }

# 3. the package, registered once (editable: the venv imports this checkout's gmkernels/)
if [ "$GMK_INIT" != "$ROOT/gmkernels/__init__.py" ]; then
  say "registering $ROOT in $VENV (pip install -e . --no-deps, extension build off)"
  GMK_BUILD_EXT=0 "$PY" -m pip install -q --no-build-isolation --no-deps -e "$ROOT"
fi

# 4. the extension
SO="$ROOT/gmkernels/_C$EXT_SUFFIX"
STAMP="$ROOT/build/gmk-ext.stamp"
inputs_hash() {
  {
    (cd "$ROOT" && find csrc -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    (cd "$ROOT" && sha256sum setup.py)
    sha256sum "$TORCH_DIR/version.py"
    echo "python $PYVER $VENV"
    for v in GMK_WITH_CUDA TORCH_CUDA_ARCH_LIST CUDA_HOME CC CXX CFLAGS CXXFLAGS LDFLAGS; do
      echo "$v=${!v-<unset>}"
    done
  } | sha256sum | cut -d' ' -f1
}
want="$(inputs_hash)"
have_so=""
[ -f "$SO" ] && have_so="$(sha256sum "$SO" | cut -d' ' -f1)"
if [ -n "$have_so" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want $have_so" ]; then
  say "extension up to date ($(basename "$SO"); sources, torch and switches unchanged)"
else
  say "building the extension (setup.py build_ext --inplace; ninja in $ROOT/build recompiles what changed)"
  rm -f "$STAMP"
  # --force: setuptools would skip the build when the .so is newer than the .cpp files, which
  # misses a header or torch change; ninja still recompiles only the objects whose source,
  # headers or command line changed. The venv's bin/ on PATH: torch looks for `ninja` there.
  (cd "$ROOT" && PATH="$VENV/bin:$PATH" MAX_JOBS=${MAX_JOBS:-2} \
     "$PY" setup.py -q build_ext --inplace --force)
  [ -f "$SO" ] || { echo "gmkernels: the build did not produce $SO" >&2; exit 1; }
  # The new module must load and report the torch it was built against before it is stamped.
  (cd / && "$PY" -I -c "
import sys; sys.path.insert(0, sys.argv[1])
import json, gmkernels
info = gmkernels.build_info()
assert info['extension'], 'gmkernels._C was built but does not load: ' + str(getattr(gmkernels._backend, '_C_ERROR', '?'))
print('gmkernels build:', json.dumps(info))" "$ROOT")
  echo "$want $(sha256sum "$SO" | cut -d' ' -f1)" > "$STAMP"
fi
# 5. the CUDA kernels for the CPU execution layer (make's own dependency tracking rebuilds
# only what changed; the stamp skips even the cmake call when nothing did)
EMU_DIR="$ROOT/build/emu-cmake"
EMU_STAMP="$ROOT/build/emu-cmake.stamp"
mkdir -p "$ROOT/build"
CMAKE="$VENV/bin/cmake"
[ -x "$CMAKE" ] || CMAKE=$(command -v cmake || true)
[ -n "$CMAKE" ] || { echo "gmkernels: cmake is needed for the CUDA emulation build (pip install cmake)" >&2; exit 1; }
emu_hash() {
  {
    (cd "$ROOT" && find csrc -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    (cd "$ROOT" && sha256sum CMakeLists.txt)
    "${CXX:-c++}" --version | head -1
    (cd "$EMU_DIR" 2>/dev/null && sha256sum libgmkernels_cuda_emu*.so 2>/dev/null) || true
  } | sha256sum | cut -d' ' -f1
}
if [ -f "$EMU_STAMP" ] && [ "$(cat "$EMU_STAMP")" = "$(emu_hash)" ]; then
  say "CUDA emulation libraries up to date (build/emu-cmake)"
else
  say "building the CUDA kernels for the CPU execution layer (cmake, build/emu-cmake)"
  rm -f "$EMU_STAMP"
  "$CMAKE" -S "$ROOT" -B "$EMU_DIR" -DGMK_BUILD_EXTENSION=OFF -DGMK_BUILD_CUDA_EMU=ON \
    -DCMAKE_BUILD_TYPE=Release > "$ROOT/build/emu-cmake.log" 2>&1 \
    || { cat "$ROOT/build/emu-cmake.log" >&2; exit 1; }
  "$CMAKE" --build "$EMU_DIR" -j"${MAX_JOBS:-2}" >> "$ROOT/build/emu-cmake.log" 2>&1 \
    || { tail -50 "$ROOT/build/emu-cmake.log" >&2; exit 1; }
  emu_hash > "$EMU_STAMP"
fi

say "environment ready in $(( $(date +%s) - t0 )) s"
