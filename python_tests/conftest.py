"""Shared test set-up.

* TRITON_INTERPRET=1: the Triton kernels run on CPU tensors in the interpreter (there is no GPU
  in CI). @triton.jit reads it when a kernel module is imported, so it is set before anything
  imports gmkernels.triton.
* One torch.compile cache for the session (the first compile costs ~12 s here).
* `BACKENDS` lists what can run here; the `backend` fixture parametrizes over it and tests
  compare with "reference". `triton` makes the Triton backend current (or skips, with the
  reason, where it cannot run); `one_thread` runs a test on one intra-op thread.
* The tolerance table, `assert_close` and `noncontig` are in _helpers.py.
"""

import os
import tempfile

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), "gmk_inductor_cache"))

import pytest  # noqa: E402
import torch  # noqa: E402

import gmkernels  # noqa: E402


def triton_runs_here() -> bool:
    """The Triton backend on CPU tensors: triton importable and the interpreter on."""
    return bool(gmkernels.build_info()["triton"]) and os.environ.get("TRITON_INTERPRET") == "1"


def available_backends():
    out = []
    if gmkernels.extension_available():
        out.append("native")
    if triton_runs_here():
        out.append("triton")
    return out


# The test suite is about the compiled kernels: a run where the extension did not load is a
# failed build, not something to skip past.
def pytest_sessionstart(session):
    if not gmkernels.extension_available() and os.environ.get("GMK_ALLOW_NO_EXTENSION") != "1":
        raise pytest.UsageError(
            "gmkernels._C did not load: " + str(gmkernels.build_info()["extension_error"])
            + " (build with `pip install --no-build-isolation -e .`; set GMK_ALLOW_NO_EXTENSION=1 "
              "to test the reference alone)")


BACKENDS = available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each non-reference backend that can run here, made current for the test."""
    with gmkernels.use_backend(request.param):
        yield request.param


@pytest.fixture
def triton():
    """The Triton backend made current; a skip with the reason where it cannot run here (which
    GMK_NO_SKIPS=1 turns into a failure)."""
    if not gmkernels.build_info()["triton"]:
        pytest.skip("triton is not installed")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("the Triton backend on CPU tensors needs TRITON_INTERPRET=1 (set to "
                    f"{os.environ.get('TRITON_INTERPRET')!r})")
    with gmkernels.use_backend("triton"):
        yield "triton"


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
