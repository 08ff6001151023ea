"""The device axis of the test suite: which (backend, device) pairs run here, the context a test
runs in on its device, and an opt-in audit that finds, on a CPU-only machine, what would break
on a GPU. conftest.py's fixtures (`backend`, `any_backend`, `triton`, `device`) are built on it.

* ``device_backend_params(cuda_available, cuda_built, triton_available)``: the pairs each
  fixture parametrizes over (a pure function, tested in test_device_axis.py for a machine with
  and without a GPU).
* ``on_device(device)``: what a test on the device axis runs inside: ``torch.device(device)``
  as the default device (so the tensors a test creates land there) and the ``TestDevice``
  mode, which lets the tests keep their seeded CPU generators: a factory call that names a CPU
  generator and no device (``torch.randn(shape, generator=g)``) draws on the CPU and moves the
  result to the device, so a test's inputs are the same numbers on every device (a CUDA
  failure can be replayed on the CPU with its exact inputs) and no test needs an edit to run
  on CUDA. The mode is on for every device, the CPU included, so that CPU CI runs the code
  path (and torch.compile traces through it) that a GPU run uses.
* ``GMK_DEVICE_AUDIT=1``: on any machine, every device-axis test also runs under an audit that
  records what would fail on a GPU: a tensor that stays on the host there (created before the
  test, e.g. at import or as a parametrize value; created with an explicit CPU device; moved
  with ``.cpu()`` or ``.to("cpu")``; or computed from such tensors) mixed with the test's
  device tensors in one call, and ``.numpy()`` of a device tensor. A test with findings fails
  at teardown with their locations. It sees what goes through torch's function modes:
  ``torch.from_numpy`` does not (its tensors count as the device's), nor do tensors made by
  autograd or inside C++.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import weakref

import torch
from torch.overrides import TorchFunctionMode

BACKEND_FIXTURES = ("backend", "any_backend", "triton")


def device_backend_params(cuda_available: bool, cuda_built: bool, triton_available: bool, *,
                          extension: bool = True,
                          triton_interpret: bool | None = None) -> dict[str, list]:
    """The parameters of the device-axis fixtures on a machine with these facts.

    ``cuda_available``: torch.cuda.is_available(); ``cuda_built``: the extension has CUDA
    kernels; ``triton_available``: triton imports; ``extension``: gmkernels._C loaded;
    ``triton_interpret``: TRITON_INTERPRET=1 (default: exactly when there is no GPU, which is
    what conftest.py sets).

    Returns lists keyed by fixture: ``devices`` ("cpu", plus "cuda" with a GPU and CUDA
    kernels), and (backend, device) pairs for ``backend`` (native on every device, triton on
    the CPU in the interpreter or on CUDA compiled), ``any_backend`` (those plus the reference
    on every device) and ``triton``.

    >>> device_backend_params(False, False, True)["backend"]
    [('native', 'cpu'), ('triton', 'cpu')]
    >>> device_backend_params(True, True, True)["backend"]
    [('native', 'cpu'), ('native', 'cuda'), ('triton', 'cuda')]
    """
    if triton_interpret is None:
        triton_interpret = not cuda_available
    devices = ["cpu"] + (["cuda"] if cuda_available and cuda_built else [])
    native = [("native", d) for d in devices] if extension else []
    if not triton_available:
        triton = []
    elif triton_interpret:
        triton = [("triton", "cpu")]  # the interpreter runs on host tensors
    elif cuda_available:
        triton = [("triton", "cuda")]  # compiled kernels (with or without gmkernels' CUDA build)
    else:
        triton = []  # neither a GPU nor the interpreter
    return {"devices": devices, "backend": native + triton,
            "any_backend": native + triton + [("reference", d) for d in devices],
            "triton": triton}


def pair_id(pair) -> str:
    """The test id of a (backend, device) pair: ``native-cpu``, ``triton-cuda``, ..."""
    return f"{pair[0]}-{pair[1]}" if pair is not None else "none"


def item_device(callspec_params: dict) -> str | None:
    """The device a collected test runs on, from its parameters (None: not on the axis)."""
    for name in BACKEND_FIXTURES:
        pair = callspec_params.get(name)
        if isinstance(pair, tuple) and len(pair) == 2:
            return pair[1]
    dev = callspec_params.get("device")
    return dev if isinstance(dev, str) else None


# ---------------------------------------------------------------------------------------------
# The context of a test on a device

# Factories that take a generator and create a tensor from nothing (no tensor inputs).
_HOST_DRAWS = frozenset({torch.randn, torch.rand, torch.randint, torch.randperm})


class TestDevice(TorchFunctionMode):
    """Seeded CPU generators keep working on any default device (see the module docstring);
    with an ``audit``, every call also goes through it."""

    __test__ = False  # not a pytest test class

    def __init__(self, device, audit: "DeviceAudit | None" = None):
        super().__init__()
        self.device = torch.device(device)
        self.audit = audit

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        gen = kwargs.get("generator")
        if (gen is not None and func in _HOST_DRAWS and kwargs.get("device") is None
                and "out" not in kwargs and gen.device.type == "cpu"
                and self.device.type != "cpu"):
            return self._draw_on_host(func, args, kwargs)
        if self.audit is not None:
            return self.audit.call(func, args, kwargs)
        return func(*args, **kwargs)

    def _draw_on_host(self, func, args, kwargs):
        kwargs = dict(kwargs, device="cpu")
        requires_grad = kwargs.pop("requires_grad", False)
        out = func(*args, **kwargs).to(self.device)
        # moved from the host it is no leaf: make it one again, as the test asked
        return out.requires_grad_() if requires_grad else out


@contextlib.contextmanager
def on_device(device, audit: "DeviceAudit | None" = None):
    """Run the body with ``device`` as torch's default device and the TestDevice mode on."""
    with torch.device(device), TestDevice(device, audit):
        yield


# ---------------------------------------------------------------------------------------------
# GMK_DEVICE_AUDIT=1

def audit_enabled() -> bool:
    return os.environ.get("GMK_DEVICE_AUDIT") == "1"


_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
_OWN_FILES = {os.path.join(_TESTS_DIR, f) for f in ("_device.py", "conftest.py")}


def _tensors(obj, out, depth=0):
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif depth < 2 and isinstance(obj, (list, tuple)):
        for o in obj:
            _tensors(o, out, depth + 1)
    elif depth < 2 and isinstance(obj, dict):
        for o in obj.values():
            _tensors(o, out, depth + 1)
    return out


def _name(func) -> str:
    return getattr(func, "__name__", None) or str(func)


def _is_gmkernels_op(func) -> bool:
    """A torch.ops.gmkernels op (overload or packet): its glue checks every tensor's device."""
    ns = getattr(func, "namespace", None)
    if ns is None:
        ns = str(getattr(func, "_qualified_op_name", "")).split("::")[0]
    return ns == "gmkernels"


class SimulatedDevice(str):
    """The device name the fixtures hand a test under the audit: "cpu" on this machine, but
    the test's device (not the host) for the audit, as "cuda" would be on a GPU."""


def _literal_host(dev) -> bool:
    """A device argument that names the host whatever the test's device ("cpu", cpu:0)."""
    if isinstance(dev, SimulatedDevice):
        return False
    try:
        return torch.device(dev).type == "cpu"
    except (TypeError, RuntimeError):
        return False


class TensorSet:
    """A set of tensors by identity that does not keep them alive (a WeakSet would compare
    tensors with ==, which is element-wise)."""

    def __init__(self, tensors=()):
        self._refs: dict[int, weakref.ref] = {}
        for t in tensors:
            self.add(t)

    def add(self, t: torch.Tensor) -> None:
        i = id(t)
        if i not in self._refs:
            self._refs[i] = weakref.ref(t, lambda _, i=i, refs=self._refs: refs.pop(i, None))

    def discard(self, t: torch.Tensor) -> None:
        self._refs.pop(id(t), None)

    def __contains__(self, t) -> bool:
        r = self._refs.get(id(t))
        return r is not None and r() is t

    def __iter__(self):
        return (t for t in (r() for r in list(self._refs.values())) if t is not None)


class DeviceAudit:
    """Taint tracking of host tensors through one test (see the module docstring).

    ``host`` holds the tensors that would stay on the host in a GPU run; ``findings`` the
    problems seen, each with the test-file line that caused it."""

    # Calls where host and device tensors legitimately meet: moves and indexing.
    MIXING_OK = frozenset({"to", "copy_", "__getitem__", "__setitem__", "type_as", "new_tensor",
                           "__get__", "__set__"})
    # Calls whose every tensor must share one device even if some are 0-d.
    NO_0D = frozenset({"cat", "stack", "hstack", "vstack", "equal", "concatenate"})

    def __init__(self, host=None):
        self.host = TensorSet(host or ())
        self.findings: list[str] = []
        # torch.device objects read from a tensor (x.device: a new object each read), by id,
        # with where that tensor lives in a GPU run; kept alive so that ids stay unique
        self._devices: dict[int, tuple[torch.device, bool]] = {}

    def _host_target(self, dev) -> bool:
        """Whether a device argument (a str, a torch.device, an index) is the host in a GPU run:
        x.device is where x is; a literal "cpu" is the host; the fixtures' name is not."""
        seen = self._devices.get(id(dev))
        if seen is not None and seen[0] is dev:
            return seen[1]
        return _literal_host(dev)

    # -- the rules ------------------------------------------------------------------------
    def _to_target(self, args, kwargs):
        """For Tensor.to: 'host', 'device' or None (a dtype-only move keeps the taint)."""
        cands = list(args[1:]) + [kwargs.get("device"), kwargs.get("other")]
        for a in cands:
            if a is None or isinstance(a, (torch.dtype, bool)):
                continue
            if isinstance(a, torch.Tensor):
                return "host" if a in self.host else "device"
            if isinstance(a, (str, torch.device, int)):
                return "host" if self._host_target(a) else "device"
        return None

    def call(self, func, args, kwargs):
        name = _name(func)
        tensors = _tensors(args, [], 0) + _tensors(kwargs, [], 1)
        host = [t for t in tensors if t in self.host]
        if name == "numpy" and tensors and not host:
            self._find(".numpy() of a tensor on the test's device (on CUDA that raises TypeError;"
                       " use .cpu().numpy())")
        if host and name not in self.MIXING_OK and len(host) < len(tensors):
            strict = name in self.NO_0D or _is_gmkernels_op(func)
            bad = [t for t in host if t.dim() > 0 or strict]
            if bad:
                self._find(f"{name}() mixes {len(bad)} host tensor(s) (shape "
                           f"{tuple(bad[0].shape)}: created before the test, on an explicit CPU "
                           f"device or by .cpu()) with tensors on the test's device: on CUDA "
                           f"that call fails")
        out = func(*args, **kwargs)
        # where the result lives in a GPU run
        in_place = bool(args) and args[0] is out
        if name == "cpu":
            verdict = "host"
        elif name == "cuda":
            verdict = "device"
        elif name == "to":
            verdict = self._to_target(args, kwargs) or ("host" if host else "device")
        elif kwargs.get("device") is not None:
            verdict = "host" if self._host_target(kwargs["device"]) else "device"
        elif in_place or name in ("copy_", "__setitem__", "__set__"):
            verdict = None  # an in-place call keeps its tensor's taint
        else:  # a computation, a view or an attribute (.T, .grad): host iff all inputs are
            verdict = "host" if tensors and len(host) == len(tensors) else "device"
        if isinstance(out, torch.device) and len(tensors) == 1:  # x.device
            self._devices[id(out)] = (out, bool(host))
        if verdict == "host":
            for t in _tensors(out, [], 0):
                self.host.add(t)
        elif verdict == "device":
            for t in _tensors(out, [], 0):
                self.host.discard(t)
        return out

    def _find(self, what: str) -> None:
        frame = sys._getframe(1)
        where = "?"
        while frame is not None:
            f = os.path.abspath(frame.f_code.co_filename)
            if f.startswith(_TESTS_DIR) and f not in _OWN_FILES:
                where = f"{os.path.relpath(f, os.path.dirname(_TESTS_DIR))}:{frame.f_lineno}"
                break
            frame = frame.f_back
        line = f"{where}: {what}"
        if line not in self.findings:
            self.findings.append(line)


_SNAPSHOT: TensorSet | None = None


def snapshot_host_tensors() -> None:
    """Mark every tensor alive now (after collection: module-level tensors, parametrize values)
    as a host tensor for the audit: in a GPU run they are created before any test sets its
    device, so they stay on the CPU."""
    global _SNAPSHOT
    # type(o), not isinstance: isinstance reads __class__, which some lazy objects warn about
    _SNAPSHOT = TensorSet(o for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def new_audit() -> DeviceAudit:
    return DeviceAudit(_SNAPSHOT)
