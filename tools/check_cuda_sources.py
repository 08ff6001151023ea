#!/usr/bin/env python3
"""Compile every CUDA kernel file of csrc/SOURCES standalone with nvcc, for each architecture.

    python tools/check_cuda_sources.py                 # sm_80 and sm_90, all .cu files
    python tools/check_cuda_sources.py --arch 90 -j 4 --resource-usage

Why: CUDA code cannot run on a machine without a GPU, but it can at least always compile
(ARCHITECTURE: "every .cu file also compiles standalone with nvcc for sm_80 and sm_90 in CI").
The .cu files include no torch header, so each compiles in seconds with the plain toolkit.

The flags are those the extension build gives nvcc (setup.py plus torch's cpp_extension
defines, which remove the implicit __half/__nv_bfloat16 conversions), so a kernel that passes
here does not fail in the real build for want of them. Warnings are errors (--no-werror to relax):
a warning from nvcc's host pass, for example, is exactly what a standalone check is for.

Exit status: 0 when every (file, arch) compiles, 1 on any failure (nvcc's message printed),
2 when nvcc or the source list is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"

# torch.utils.cpp_extension.COMMON_NVCC_FLAGS (the defines) and setup.py's nvcc flags.
BUILD_FLAGS = [
    "-std=c++17",
    "-O3",
    "--expt-relaxed-constexpr",
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
]


def cuda_sources() -> list[str]:
    """The `cuda *.cu` entries of csrc/SOURCES (the glue *_cuda.cpp files need torch)."""
    out = []
    for line in (CSRC / "SOURCES").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        kind, path = line.split()
        if kind == "cuda" and path.endswith(".cu"):
            out.append(path)
    return out


def find_nvcc(explicit: str | None) -> str | None:
    """The real nvcc: --nvcc, $NVCC, $CUDA_HOME/bin/nvcc, /usr/local/cuda/bin/nvcc, then PATH
    (last, because a PATH nvcc may be a wrapper script)."""
    candidates = [explicit, os.environ.get("NVCC")]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            candidates.append(os.path.join(home, "bin", "nvcc"))
    candidates.append(shutil.which("nvcc"))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def compile_one(nvcc: str, src: str, arch: str, outdir: Path, werror: bool,
                resource_usage: bool) -> tuple[str, str, bool, float, str]:
    obj = outdir / f"{src.replace('/', '_')}.sm_{arch}.o"
    cmd = [nvcc, *BUILD_FLAGS, "-I", str(CSRC / "include"), "-c", str(CSRC / src), "-o", str(obj),
           "-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    if werror:
        cmd += ["-Werror", "all-warnings", "-Xcompiler", "-Wall"]
    if resource_usage:
        cmd += ["-Xptxas", "-v"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    dt = time.perf_counter() - t0
    msg = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        msg = "$ " + " ".join(cmd) + "\n" + msg
    return src, arch, proc.returncode == 0, dt, msg


def usage_summary(msg: str) -> str:
    """ptxas -v in one line: kernels, max registers, any spills or stack use."""
    regs = [int(l.split("Used ")[1].split()[0]) for l in msg.splitlines() if "Used " in l]
    spills = [l.strip() for l in msg.splitlines()
              if "spill" in l and not l.strip().startswith("0 bytes stack frame, 0 bytes spill")]
    s = f"{len(regs)} kernels, max {max(regs) if regs else 0} registers"
    if spills:
        s += f", {len(spills)} with stack/spills (e.g. {spills[0]})"
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", action="append", help="compute capability without the dot, "
                    "repeatable (default: 80 and 90)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--nvcc", help="path of nvcc (default: $NVCC, $CUDA_HOME/bin/nvcc, ...)")
    ap.add_argument("--no-werror", action="store_true", help="do not treat warnings as errors")
    ap.add_argument("--resource-usage", action="store_true",
                    help="print ptxas register / spill use per file and arch")
    args = ap.parse_args()

    archs = args.arch or ["80", "90"]
    nvcc = find_nvcc(args.nvcc)
    if nvcc is None:
        print("check_cuda_sources: no nvcc found (set CUDA_HOME or NVCC)", file=sys.stderr)
        return 2
    sources = cuda_sources()
    if not sources:
        print("check_cuda_sources: csrc/SOURCES lists no cuda *.cu file", file=sys.stderr)
        return 2
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    print(f"nvcc: {nvcc} ({version.strip().splitlines()[-1] if version else '?'})")
    print(f"{len(sources)} file(s) x sm_{', sm_'.join(archs)}, {args.jobs} job(s)")

    t0 = time.perf_counter()
    failures = []
    with tempfile.TemporaryDirectory(prefix="gmk-nvcc-") as tmp, \
            ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(compile_one, nvcc, s, a, Path(tmp), not args.no_werror,
                               args.resource_usage) for s in sources for a in archs]
        for f in futures:
            src, arch, ok, dt, msg = f.result()
            line = f"{'ok  ' if ok else 'FAIL'} {src:28s} sm_{arch}  {dt:6.1f}s"
            if ok and args.resource_usage:
                line += "  " + usage_summary(msg)
            print(line, flush=True)
            if not ok:
                failures.append((src, arch, msg))
    total = time.perf_counter() - t0
    for src, arch, msg in failures:
        print(f"\n---- {src} (sm_{arch}) ----\n{msg}")
    n = len(sources) * len(archs)
    print(f"\n{n - len(failures)} of {n} compiled, {len(failures)} failed, {total:.1f}s wall")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
