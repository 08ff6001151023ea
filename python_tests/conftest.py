"""Shared test set-up.

* The device axis (python_tests/_device.py): the `backend`, `any_backend` and `triton`
  fixtures parametrize over (backend, device) pairs and the `device` fixture over devices:
  "cpu", plus "cuda" when a GPU is present and the extension has CUDA kernels. Test ids name
  both (``[native-cpu]``, ``[native-cuda]``, ``[triton-cuda]``, ``[reference-cpu]``, ``[cuda]``).
  The fixture makes its device torch's default device for the test (tensors the test creates
  land there; seeded CPU generators keep working, see _device.TestDevice) and its backend the
  current one. Tests on CUDA carry the marker ``cuda`` (``pytest -m cuda`` runs exactly them).
* TRITON_INTERPRET=1 only when there is no GPU (torch.cuda.is_available(), asked before
  anything imports triton): the Triton kernels then run on CPU tensors in the interpreter; on
  a GPU they are compiled and run on CUDA tensors. @triton.jit reads the variable when a
  kernel module is imported, so it is set before anything imports gmkernels.triton.
* One torch.compile cache for the session (the first compile costs ~12 s here).
* `BACKENDS` lists the backend names that can run here; `one_thread` runs a test on one
  intra-op thread. GMK_DEVICE_AUDIT=1 runs the device-axis tests under the audit of
  _device.py (what would fail on a GPU).
* The tolerance table, `assert_close` and `noncontig` are in _helpers.py.
"""

import contextlib
import os
import tempfile

import torch

CUDA_AVAILABLE = torch.cuda.is_available()  # imports no triton
if not CUDA_AVAILABLE:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), "gmk_inductor_cache"))

import pytest  # noqa: E402

import gmkernels  # noqa: E402
from gmkernels import _backend  # noqa: E402

import _device  # noqa: E402
from _device import device_backend_params, on_device, pair_id  # noqa: E402

# The CUDA kernels are built when the dispatcher has them (build_info()["cuda"] says the same).
CUDA_BUILT = gmkernels.extension_available() and _backend.native_has("langevin_step", "cuda")
PARAMS = device_backend_params(
    CUDA_AVAILABLE, CUDA_BUILT, bool(gmkernels.build_info()["triton"]),
    extension=gmkernels.extension_available(),
    triton_interpret=os.environ.get("TRITON_INTERPRET") == "1")
DEVICES = PARAMS["devices"]
BACKEND_PARAMS = PARAMS["backend"]
BACKENDS = list(dict.fromkeys(name for name, _ in BACKEND_PARAMS))  # the names, in order


def _why_none(kind: str) -> str:
    """Why a fixture has no (backend, device) pair here (its tests skip with this reason, which
    GMK_NO_SKIPS=1 turns into a failure)."""
    if kind == "triton":
        if not gmkernels.build_info()["triton"]:
            return "triton is not installed"
        return ("the Triton backend needs a GPU or TRITON_INTERPRET=1 (set to "
                f"{os.environ.get('TRITON_INTERPRET')!r}, no GPU)")
    return "gmkernels._C did not load: " + str(gmkernels.build_info()["extension_error"])


def _pair_params(pairs, kind):
    if not pairs:
        return [pytest.param(None, id="none", marks=pytest.mark.skip(reason=_why_none(kind)))]
    return [pytest.param(p, id=pair_id(p)) for p in pairs]


def _audit():
    return _device.new_audit() if _device.audit_enabled() else None


def _name_of(device: str) -> str:
    """The device name a test gets (under the audit, marked as the test's device)."""
    return _device.SimulatedDevice(device) if _device.audit_enabled() else device


@contextlib.contextmanager
def _run_on(pair):
    """The test body's context for a (backend, device) pair; with GMK_DEVICE_AUDIT=1, the
    audit's findings fail the test."""
    name, dev = pair
    audit = _audit()
    with on_device(dev, audit), gmkernels.use_backend(name):
        yield name
    if audit is not None and audit.findings:
        pytest.fail("GMK_DEVICE_AUDIT: on a GPU this test would fail:\n  "
                    + "\n  ".join(audit.findings), pytrace=False)


# The test suite is about the compiled kernels: a run where the extension did not load is a
# failed build, not something to skip past. So is a GPU run without the CUDA kernels in CI.
def pytest_sessionstart(session):
    if not gmkernels.extension_available() and os.environ.get("GMK_ALLOW_NO_EXTENSION") != "1":
        raise pytest.UsageError(
            "gmkernels._C did not load: " + str(gmkernels.build_info()["extension_error"])
            + " (build with `pip install --no-build-isolation -e .`; set GMK_ALLOW_NO_EXTENSION=1 "
              "to test the reference alone)")
    if CUDA_AVAILABLE and not CUDA_BUILT and os.environ.get("GMK_NO_SKIPS") == "1":
        raise pytest.UsageError(
            "GMK_NO_SKIPS=1: a GPU is present but gmkernels was built without CUDA kernels, so "
            "no test would run on it (build with GMK_WITH_CUDA=1, e.g. tools/gpu_check.sh)")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: a test on the cuda device (set by conftest.py)")
    shard = os.environ.get("GMK_TEST_SHARD")
    if shard:
        config.pluginmanager.register(_Shard(shard), "gmk_shard")


class _Shard:
    """GMK_TEST_SHARD=i/n keeps every n-th selected test from the i-th (0 <= i < n), after -m
    and -k have deselected theirs: n pytest processes with i = 0..n-1 run the selection once,
    in parallel (tools/gpu_check.sh)."""

    def __init__(self, spec: str):
        try:
            i, n = (int(v) for v in spec.split("/"))
            assert 0 <= i < n
        except (ValueError, AssertionError):
            raise pytest.UsageError(f"GMK_TEST_SHARD must be i/n with 0 <= i < n, got {spec!r}") from None
        self.i, self.n = i, n

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        keep = [it for k, it in enumerate(items) if k % self.n == self.i]
        drop = [it for k, it in enumerate(items) if k % self.n != self.i]
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config):
    return (f"gmkernels device axis: devices {DEVICES}; backend "
            f"{[pair_id(p) for p in BACKEND_PARAMS]}; GPU {'yes' if CUDA_AVAILABLE else 'no'} "
            f"(CUDA kernels {'built' if CUDA_BUILT else 'not built'}); TRITON_INTERPRET="
            f"{os.environ.get('TRITON_INTERPRET', '')}"
            + ("; GMK_DEVICE_AUDIT=1" if _device.audit_enabled() else ""))


def pytest_generate_tests(metafunc):
    """`device` alone: one test per device. With a backend fixture too, `device` is that
    fixture's device (no second axis)."""
    names = set(metafunc.fixturenames)
    if "device" not in names or names & set(_device.BACKEND_FIXTURES):
        return
    if any("device" in [a.strip() for a in (m.args[0].split(",") if isinstance(m.args[0], str)
                                            else m.args[0])]
           for m in metafunc.definition.iter_markers("parametrize")):
        return  # the test parametrizes `device` itself
    metafunc.parametrize("device", DEVICES, indirect=True)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        spec = getattr(item, "callspec", None)
        if spec is not None and _device.item_device(spec.params) == "cuda":
            item.add_marker(pytest.mark.cuda)


def pytest_collection_finish(session):
    if _device.audit_enabled():
        _device.snapshot_host_tensors()


@pytest.fixture(params=_pair_params(BACKEND_PARAMS, "backend"))
def backend(request):
    """Each non-reference backend on each device it runs on here, made current (the device
    made the default) for the test; yields the backend's name."""
    with _run_on(request.param) as name:
        yield name


@pytest.fixture(params=_pair_params(PARAMS["any_backend"], "backend"))
def any_backend(request):
    """`backend`'s pairs and the reference on every device: native / triton (what runs here)
    and the wrappers' reference path (which checks the wrappers' argument handling and
    dispatch)."""
    with _run_on(request.param) as name:
        yield name


@pytest.fixture(params=_pair_params(PARAMS["triton"], "triton"))
def triton(request):
    """The Triton backend made current on the device it runs on here: the CPU under the
    interpreter, CUDA on a GPU (compiled); a skip with the reason where it cannot run (which
    GMK_NO_SKIPS=1 turns into a failure)."""
    with _run_on(request.param) as name:
        yield name


@pytest.fixture
def device(request):
    """The device name ("cpu", "cuda"), made torch's default device for the test (the backend
    left to its default: the native kernels of that device). In a test that also has a backend
    fixture it is that fixture's device."""
    for name in _device.BACKEND_FIXTURES:
        if name in request.fixturenames:
            request.getfixturevalue(name)  # set up first: it sets the device
            yield _name_of(request.node.callspec.params[name][1])
            return
    audit = _audit()
    with on_device(request.param, audit):
        yield _name_of(request.param)
    if audit is not None and audit.findings:
        pytest.fail("GMK_DEVICE_AUDIT: on a GPU this test would fail:\n  "
                    + "\n  ".join(audit.findings), pytrace=False)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, the previous count restored after. For tests of many
    small steps, where OpenMP's fork-join costs more than the work on a loaded 2-core machine
    (measured: exp on a (20000, 2) tensor took 7.7 ms on 2 threads, 0.09 ms on 1; an Adam step
    of a small flow 330 ms against 9 ms). Results do not depend on the thread count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# In CI every dependency is installed and every backend that can run here is built, so a skip
# would only hide a broken install (triton or scipy missing, an op missing from the build).
# GMK_NO_SKIPS=1 (set by .ci/run) turns any skip into a failed session.
def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("GMK_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        reporter.write_line(f"GMK_NO_SKIPS=1: {len(skipped)} test(s) skipped; in CI a skip means "
                            "a missing dependency or op:", red=True)
        for rep in skipped[:20]:
            reporter.write_line(f"  {rep.nodeid}: {rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else rep.longrepr}")
        session.exitstatus = 1
