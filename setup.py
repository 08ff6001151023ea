"""Build gmkernels and its compiled extension ``gmkernels._C``.

    pip install --no-build-isolation -e .          # CPU kernels (any torch >= 2.4)
    GMK_WITH_CUDA=1 pip install --no-build-isolation .   # and the CUDA kernels
    python setup.py build_ext --inplace            # the extension only, incrementally in build/

tools/env.sh (what tools/test.sh and tools/bench.sh run) registers the package once with
GMK_BUILD_EXT=0 and then builds the extension with `build_ext --inplace`: the objects stay in
build/, so ninja recompiles only what changed.

Environment:
  GMK_BUILD_EXT      1 (default): build the extension; 0: package only, no extension and no
                     torch import (to register an editable install whose extension is built
                     in place by `setup.py build_ext --inplace`).
  GMK_WITH_CUDA      auto (default): build the CUDA kernels when torch is a CUDA build and nvcc
                     is found; 1: require them (fail loudly otherwise); 0: never.
  TORCH_CUDA_ARCH_LIST  architectures of the CUDA build, default "8.0;9.0".
  CUDA_HOME          the toolkit root (the folder with bin/nvcc and include/cuda_runtime.h);
                     found from nvcc when unset.

Build isolation would pull a separate (CUDA, several GB) torch into the build environment
and compile against headers that do not match the installed torch: use --no-build-isolation.
"""

import os
import shutil
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"


def read_sources():
    """The one source list (csrc/SOURCES), shared with CMakeLists.txt."""
    cpu, cuda = [], []
    for line in (CSRC / "SOURCES").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        kind, path = line.split()
        (cpu if kind == "cpu" else cuda).append(os.path.join("csrc", path))
    return cpu, cuda


def find_cuda_home():
    """The toolkit root. torch guesses it from `which nvcc`, which is wrong when nvcc is a
    wrapper script (here /usr/local/bin/nvcc execs the real one), so look for the headers."""
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [env] if env else []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    candidates += ["/usr/local/cuda"]
    for c in candidates:
        if c and (Path(c) / "bin" / "nvcc").exists() and (Path(c) / "include" / "cuda_runtime.h").exists():
            return c
    return None


def want_cuda(torch):
    flag = os.environ.get("GMK_WITH_CUDA", "auto").strip().lower()
    if flag not in ("auto", "0", "1"):
        sys.exit(f"GMK_WITH_CUDA must be auto, 0 or 1, got {flag!r}")
    if flag == "0":
        return False, None
    cuda_home = find_cuda_home()
    cuda_torch = torch.version.cuda is not None
    if flag == "1":
        if not cuda_torch:
            sys.exit(f"GMK_WITH_CUDA=1 but torch {torch.__version__} is not a CUDA build")
        if cuda_home is None:
            sys.exit("GMK_WITH_CUDA=1 but no CUDA toolkit (bin/nvcc + include/cuda_runtime.h) was "
                     "found; set CUDA_HOME to the toolkit root")
        return True, cuda_home
    return cuda_torch and cuda_home is not None, cuda_home


def headers():
    """Every header under csrc/: setuptools rebuilds only when a listed file is newer than the
    .so, so the headers are listed too (ninja's depfiles then pick the objects to recompile)."""
    return sorted(str(p.relative_to(ROOT)) for p in CSRC.rglob("*")
                  if p.suffix in (".h", ".cuh", ".hpp")) + ["csrc/SOURCES"]


def extensions():
    flag = os.environ.get("GMK_BUILD_EXT", "1").strip()
    if flag not in ("0", "1"):
        sys.exit(f"GMK_BUILD_EXT must be 0 or 1, got {flag!r}")
    if flag == "0":
        return [], {}
    import torch

    with_cuda, cuda_home = want_cuda(torch)
    if with_cuda:
        os.environ["CUDA_HOME"] = cuda_home  # before cpp_extension reads it
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    from torch.utils import cpp_extension

    cpu_src, cuda_src = read_sources()
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "") if with_cuda else ""
    define = [
        ("GMK_TORCH_VERSION", f'"{torch.__version__}"'),
        ("GMK_CUDA_ARCHS", f'"{archs}"'),
    ]
    include_dirs = [str(CSRC / "include")]
    # -fno-math-errno / -fno-trapping-math: without them sqrtf keeps an errno branch and GCC
    # will not if-convert float selects, and the Philox/Box-Muller loops stay scalar.
    cxx = ["-O3", "-g0", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
    nvcc = ["-O3", "-std=c++17", "--expt-relaxed-constexpr"]
    # A pip-installed CUDA torch ships some CUDA headers inside the wheel.
    for site in map(Path, sys.path):
        inc = site / "nvidia" / "cu13" / "include"
        if with_cuda and inc.is_dir():
            include_dirs.append(str(inc))
            break
    common = dict(
        include_dirs=include_dirs,
        depends=headers(),
        define_macros=define + ([("GMK_WITH_CUDA", "1")] if with_cuda else []),
        extra_link_args=["-fopenmp"],
    )
    if with_cuda:
        ext = cpp_extension.CUDAExtension(
            "gmkernels._C", cpu_src + cuda_src, extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            **common)
    else:
        ext = cpp_extension.CppExtension(
            "gmkernels._C", cpu_src, extra_compile_args={"cxx": cxx}, **common)
    print(f"gmkernels: building the extension with CUDA={'on (' + archs + ')' if with_cuda else 'off'}")
    build_ext = build_ext_class(cpp_extension).with_options(no_python_abi_suffix=False)
    return [ext], {"build_ext": build_ext}


def build_ext_class(cpp_extension):
    """torch's BuildExtension, with object files that keep the source's extension for .cu files.

    A family has <family>.cpp and <family>.cu side by side (ARCHITECTURE), and setuptools names
    both objects <family>.o: ninja then stops with "multiple rules generate .../random.o". CUDA
    objects are named <family>.cu.o instead, as CMake does.
    """

    class BuildExt(cpp_extension.BuildExtension):
        def build_extensions(self):
            plain = self.compiler.object_filenames

            def object_filenames(sources, strip_dir=False, output_dir=""):
                objects = plain(sources, strip_dir=strip_dir, output_dir=output_dir)
                return [o[: -len(".o")] + ".cu.o" if str(s).endswith(".cu") and o.endswith(".o")
                        else o for s, o in zip(sources, objects)]

            self.compiler.object_filenames = object_filenames
            super().build_extensions()

    return BuildExt


ext_modules, cmdclass = extensions()

setup(
    name="gmkernels",
    version="0.1.0",
    description="Fused PyTorch kernels for the hot loops of classic generative models",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["gmkernels", "gmkernels.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy", "tqdm"],
    extras_require={
        "triton": ["triton"],
        "test": ["pytest", "scipy", "expecttest"],
        "bench": ["matplotlib", "pytest-benchmark"],
        "examples": ["matplotlib", "scikit-learn"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
