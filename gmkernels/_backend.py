"""What is built (CPU extension, CUDA kernels, Triton) and which backend runs an op.

Backends:
  ``"native"``     the compiled C++ kernels of ``gmkernels._C`` (CPU, and CUDA when built);
  ``"triton"``     the Triton kernels (CUDA tensors; CPU tensors only under ``TRITON_INTERPRET=1``);
  ``"reference"``  plain PyTorch (gmkernels/reference), always available.

By default a tensor runs on the native kernel of its device, or on the reference when the
extension, the op (a stale build) or its kernel for that device is missing, with a warning
once per op and reason (:func:`choose_backend`). ``use_backend(name)`` (a context manager) or the
environment variable ``GMK_BACKEND`` override the choice; an override that cannot run raises.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.machinery
import importlib.util
import os
import re
import threading
import warnings

import torch

BACKENDS = ("native", "triton", "reference")

_BUILD_FIX = ("run `bash tools/test.sh` in the source tree (it builds .venv and the extension "
              "into it) or `pip install --no-build-isolation -e .` with the torch you run")

# A torch version as setup.py bakes it into the module (GMK_TORCH_VERSION, a NUL-terminated
# string literal), e.g. "2.13.0+cpu" or "2.14.0.dev20260101+cu130".
_VERSION_LITERAL = re.compile(
    rb"\x00(\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.dev\d+)?(?:\+[0-9A-Za-z.]+)?)\x00")


def _built_against(path: str) -> str | None:
    """The torch version a built ``_C`` records, read from the file without loading it: the one
    version-shaped string literal in the binary, or None when there is not exactly one."""
    try:
        with open(path, "rb") as f:
            found = set(_VERSION_LITERAL.findall(f.read()))
    except OSError:
        return None
    return found.pop().decode() if len(found) == 1 else None


def _load_failure(error: BaseException, pkg_dir: str) -> str:
    """Why ``from . import _C`` failed, in words a user can act on: no build in ``pkg_dir``, a
    build for another Python, or a build that does not load (often another torch)."""
    built = sorted(glob.glob(os.path.join(pkg_dir, "_C.*")))
    built = [p for p in built if p.endswith((".so", ".pyd", ".dylib"))]
    loader = f"{type(error).__name__}: {error}"
    if not built:
        return (f"the compiled extension was not built in {pkg_dir} (no _C*.so there); "
                f"{_BUILD_FIX}")
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    loadable = [p for p in built if os.path.basename(p) in {"_C" + s for s in suffixes}]
    if not loadable:
        names = ", ".join(os.path.basename(p) for p in built)
        return (f"the compiled extension in {pkg_dir} ({names}) was built for another Python "
                f"(this one loads _C with a suffix in {suffixes}); {_BUILD_FIX}")
    version = _built_against(loadable[0])
    against = (f"it was built against torch {version}" if version is not None
               else "the torch it was built against is unknown")
    return (f"the compiled extension {loadable[0]} exists but failed to load ({against}, this "
            f"process runs torch {torch.__version__}; a torch or ABI mismatch is the usual "
            f"cause); the loader said: {loader}; rebuild it: {_BUILD_FIX}")


_C = None
_C_ERROR: str | None = None
try:
    from . import _C  # noqa: F811  (loading it registers torch.ops.gmkernels.*)
except Exception as e:  # a checkout that was never built, or an ABI mismatch
    _C = None
    _C_ERROR = _load_failure(e, os.path.dirname(os.path.abspath(__file__)))

_warned = False


def _warn_missing_extension() -> None:
    global _warned
    if _C is None and not _warned:
        _warned = True
        warnings.warn(
            f"gmkernels: the compiled extension gmkernels._C did not load, so every op runs on "
            f"the plain-PyTorch reference: {_C_ERROR}",
            RuntimeWarning,
            stacklevel=3,
        )


_warn_missing_extension()


def extension_available() -> bool:
    """True when ``gmkernels._C`` loaded, i.e. the native CPU kernels are registered.

    >>> gmkernels.extension_available() == (gmkernels.build_info()["extension_error"] is None)
    True
    """
    return _C is not None


def triton_available() -> bool:
    """True when ``triton`` can be imported (it is optional)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


_OP_CACHE: dict = {}


def op_exists(op: str) -> bool:
    """Whether the loaded extension defines ``gmkernels::op`` (a stale build may predate it)."""
    hit = _OP_CACHE.get(op)
    if hit is None:
        hit = _OP_CACHE[op] = _C is not None and hasattr(torch.ops.gmkernels, op)
    return hit


_DISPATCH_KEYS = {"cpu": torch.DispatchKey.CPU, "cuda": torch.DispatchKey.CUDA}
_native_cache: dict = {}


@torch.compiler.assume_constant_result  # a fact of the build: torch.compile folds it
def native_has(op: str, device_type: str) -> bool:
    """Whether the dispatcher has a native kernel of ``gmkernels::op`` for this device type."""
    hit = _native_cache.get((op, device_type))
    if hit is None:
        key = _DISPATCH_KEYS.get(device_type)
        hit = (key is not None and op_exists(op)
               and getattr(torch.ops.gmkernels, op).default.has_kernel_for_dispatch_key(key))
        _native_cache[(op, device_type)] = hit
    return hit


def _why_not_native(op: str, dev: str) -> str | None:
    """Why the native kernel of ``op`` cannot run on ``dev`` tensors, or None when it can."""
    if native_has(op, dev):
        return None
    if _C is None:
        return f"the extension did not load: {_C_ERROR}"
    if not op_exists(op):
        return (f"the loaded extension has no gmkernels::{op} (it is older than the source; "
                "rebuild it: pip install --no-build-isolation -e .)")
    if dev not in _DISPATCH_KEYS:
        return f"gmkernels has no native kernels for {dev} tensors"
    return f"the extension was built without {dev.upper()} kernels (build_info: {build_info()})"


_warned: set = set()


def warn_once(op: str, reason: str) -> None:
    """One RuntimeWarning per (op, reason) and process."""
    if (op, reason) not in _warned:
        _warned.add((op, reason))
        warnings.warn(f"gmkernels: {op} runs on the plain-PyTorch reference: {reason}",
                      RuntimeWarning, stacklevel=4)


_default_cache: dict = {}


@torch.compiler.assume_constant_result  # a fact of the build: torch.compile folds it
def _default_backend(op: str, dev: str) -> str:
    hit = _default_cache.get((op, dev))
    if hit is None:
        why = _why_not_native(op, dev)
        hit = _default_cache[(op, dev)] = "native" if why is None else "reference"
        if why is not None and _C is not None:  # a missing extension warned at import
            warn_once(op, why)
    return hit


def build_info() -> dict:
    """What this installation has: a dict with at least ``torch`` (the version the extension
    was built against), ``cuda`` (CUDA kernels built), ``cuda_archs``, ``openmp``, ``triton``
    (importable), ``extension`` (``_C`` loaded) and ``cpu_isa`` (the SIMD path the CPU kernels
    chose at run time).

    >>> info = gmkernels.build_info()
    >>> info["extension"] == gmkernels.extension_available()
    True
    >>> info["torch_runtime"] == torch.__version__
    True
    """
    info = {"torch": None, "cuda": False, "cuda_archs": "", "openmp": False, "cpu_isa": None}
    if _C is not None:
        info.update(_C.build_info())
    info["extension"] = _C is not None
    info["extension_error"] = _C_ERROR
    info["triton"] = triton_available()
    info["torch_runtime"] = torch.__version__
    return info


_local = threading.local()


def _override() -> str | None:
    name = getattr(_local, "backend", None)
    if name is None:
        name = os.environ.get("GMK_BACKEND") or None
    if name is not None and name not in BACKENDS:
        raise ValueError(f"GMK_BACKEND / use_backend: expected one of {BACKENDS}, got {name!r}")
    return name


@contextlib.contextmanager
def use_backend(name: str):
    """Run the gmkernels ops inside the ``with`` block on backend ``name``
    (``"native"``, ``"triton"`` or ``"reference"``). Thread-local; nests.

    >>> x = torch.randn(8, 2)
    >>> with gmkernels.use_backend("reference"):
    ...     y = gmkernels.langevin_step(x, -x, 0.01, 0.1, seed=0)
    >>> torch.allclose(y, gmkernels.langevin_step(x, -x, 0.01, 0.1, seed=0), atol=1e-6)
    True
    """
    if name not in BACKENDS:
        raise ValueError(f"use_backend: expected one of {BACKENDS}, got {name!r}")
    prev = getattr(_local, "backend", None)
    _local.backend = name
    try:
        yield
    finally:
        _local.backend = prev


def _call_below_autograd(op, args):
    """``op(*args)`` with the Autograd dispatch keys excluded. The only use of a private torch
    API in gmkernels: ``torch._C._AutoDispatchBelowAutograd`` is the guard that the C++
    ``at::AutoDispatchBelowAutograd`` exposes, and there is no public Python equivalent
    (``torch.no_grad`` still runs the Python autograd kernel). On a torch that drops it, the
    call goes through autograd as usual: only slower. What replaces it: registering the
    autograd formula in C++ (``torch::autograd::Function``), whose kernel is cheap enough that
    no bypass is needed."""
    guard = getattr(torch._C, "_AutoDispatchBelowAutograd", None)
    if guard is None:
        return op(*args)
    with guard():
        return op(*args)


def call_op(op, tensors, *args):
    """Call a dispatcher op, skipping its autograd kernel when no tensor in ``tensors`` needs a
    gradient. The kernel that ``torch.library.register_autograd`` installs is Python and costs
    about 15 us a call (measured on a (1024, 2) Langevin step: 34 us through it, 18 us below
    it), which is most of a small sampler step. Under torch.compile the plain call is traced."""
    if (not torch.compiler.is_compiling()
            and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))):
        return _call_below_autograd(op, args)
    return op(*args)


def choose_backend(op: str, device) -> str:
    """The backend that runs ``op`` (a ``gmkernels::`` op name) on ``device``.

    Without an override: ``"native"`` when the loaded extension has a kernel of ``op`` for
    the device type, else ``"reference"``, with a RuntimeWarning (once per op and reason) that
    names the op and why: an extension older than the source (no such op), a build without
    CUDA kernels, a device type gmkernels has no kernels for. An override
    (:func:`use_backend`, ``GMK_BACKEND``) that cannot run raises a RuntimeError instead.

    >>> gmkernels._backend.choose_backend("langevin_step", torch.device("cpu"))
    'native'
    """
    dev = device.type if type(device) is torch.device else torch.device(device).type
    name = _override()
    if name is None:
        return _default_backend(op, dev)
    if name == "native":
        why = _why_not_native(op, dev)
        if why is not None:
            raise RuntimeError(f"gmkernels: backend 'native' cannot run {op} on {dev}: {why}")
    elif name == "triton":
        if not triton_available():
            raise RuntimeError(f"gmkernels: backend 'triton' requested for {op} but triton is not installed")
        if dev == "cpu" and not triton_interpret():
            raise RuntimeError(
                f"gmkernels: backend 'triton' on CPU tensors needs TRITON_INTERPRET=1 (the Triton "
                f"interpreter) for {op}; use a CUDA tensor or another backend")
        if dev not in ("cpu", "cuda"):
            raise RuntimeError(f"gmkernels: backend 'triton' cannot run {op} on {dev}")
    return name


