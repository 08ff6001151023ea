"""Every CUDA launcher (csrc/*/*.cu) executes on the CPU, under the CPU execution layer, against
the CPU kernel (issue 12 part 1; docs/architecture.md, "The CPU execution layer").

The cases live in _cuda_emu.py; each family runs in a child process with AddressSanitizer and
UBSan preloaded (so an out-of-bounds access in a kernel aborts it), under two thread schedules
and both index paths. The planted builds prove that the comparison can fail: each holds one
deliberate bug (an off-by-one in a tail loop, a removed __syncthreads, a wrong shuffle offset;
CMakeLists.txt, GMK_PLANT) and its family's cases must fail on it.

The libraries are built by tools/env.sh (`cmake -DGMK_BUILD_CUDA_EMU=ON`, build/emu-cmake); a
missing one is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import _cuda_emu as emu

HERE = Path(__file__).resolve().parent


def _runtime_libs() -> str:
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc, "the emulation tests need gcc (for the ASan / UBSan runtimes)"
    libs = [subprocess.run([gcc, f"-print-file-name={n}"], capture_output=True, text=True,
                           check=True).stdout.strip() for n in ("libasan.so", "libubsan.so")]
    for lib in libs:
        assert os.path.isabs(lib) and os.path.exists(lib), f"sanitizer runtime not found: {lib}"
    return " ".join(libs)


def _library(suffix: str = "") -> Path:
    path = emu.BUILD / f"libgmkernels_cuda_emu{'_' + suffix if suffix else ''}.so"
    assert path.exists(), (f"{path} is missing: build it with tools/env.sh, or cmake -S . -B "
                           f"build/emu-cmake -DGMK_BUILD_EXTENSION=OFF -DGMK_BUILD_CUDA_EMU=ON "
                           f"&& cmake --build build/emu-cmake -j2")
    return path


def _run_child(lib: Path, family: str, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["LD_PRELOAD"] = _runtime_libs()
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env["PYTHONPATH"] = os.pathsep.join([str(emu.ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, str(HERE / "_cuda_emu.py"), str(lib), family, *flags],
                          capture_output=True, text=True, env=env, timeout=900)


def _report(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout[-6000:]}\n--- stderr\n{r.stderr[-6000:]}"


def test_layer_self_test():
    """The layer's own semantics (csrc/emu/test_runtime.cpp): barriers order a block, shuffles,
    schedules that interleave, and the errors a broken launch or kernel gets."""
    exe = emu.BUILD / "test_emu_runtime"
    assert exe.exists(), f"{exe} is missing: build it with tools/env.sh"
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    assert r.returncode == 0 and "0 failed" in r.stdout, _report(r)


@pytest.mark.parametrize("family", emu.FAMILIES)
def test_cuda_kernels_match_cpu_under_emulation(family):
    r = _run_child(_library(), family)
    assert r.returncode == 0 and "planted build 0" in r.stdout, _report(r)
    # Every case ran under every configuration (no silent early exit).
    ok = [line for line in r.stdout.splitlines() if line.startswith("ok ")]
    assert len(ok) == len(emu.CASES[family]) * len(emu.configs(family)) and ok, _report(r)


@pytest.mark.parametrize("plant,family", sorted(emu.PLANTED.items()))
def test_planted_bug_is_caught(plant, family):
    r = _run_child(_library(plant), family, "--first-failure")
    assert f"planted build {plant[-1]}" in r.stdout, _report(r)
    caught_by_compare = "FAIL" in r.stdout
    caught_by_asan = "ERROR: AddressSanitizer" in r.stderr
    assert r.returncode != 0 and (caught_by_compare or caught_by_asan), (
        f"the planted bug {plant} in {family} went unnoticed\n" + _report(r))
