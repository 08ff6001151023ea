"""Shared test set-up.

* TRITON_INTERPRET=1: the Triton kernels run on CPU tensors in the interpreter (there is no GPU
  in CI). @triton.jit reads it when a kernel module is imported, so it is set before anything
  imports gmkernels.triton.
* One torch.compile cache for the session (the first compile costs ~12 s here).
* `backends` lists what can run here; tests parametrize over it and compare with "reference".
"""

import os
import tempfile

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), "gmk_inductor_cache"))

import pytest  # noqa: E402
import torch  # noqa: E402

import gmkernels  # noqa: E402
from gmkernels import _backend  # noqa: E402


def available_backends():
    out = []
    if _backend.extension_available():
        out.append("native")
    if _backend.triton_available() and _backend.triton_interpret():
        out.append("triton")
    return out


# The test suite is about the compiled kernels: a run where the extension did not load is a
# failed build, not something to skip past.
def pytest_sessionstart(session):
    if not _backend.extension_available() and os.environ.get("GMK_ALLOW_NO_EXTENSION") != "1":
        raise pytest.UsageError(
            "gmkernels._C did not load: " + str(_backend.build_info()["extension_error"])
            + " (build with `pip install --no-build-isolation -e .`; set GMK_ALLOW_NO_EXTENSION=1 "
              "to test the reference alone)")


BACKENDS = available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each non-reference backend that can run here, made current for the test."""
    with gmkernels.use_backend(request.param):
        yield request.param


def report(a: torch.Tensor, b: torch.Tensor) -> str:
    """Numbers for a failure message: max abs difference and where."""
    if a.numel() == 0:
        return "empty"
    d = (a.double() - b.double()).abs()
    i = int(d.argmax())
    return (f"max |diff| = {d.max().item():.3g} at flat index {i} "
            f"(got {a.flatten()[i].item():.9g}, want {b.flatten()[i].item():.9g})")


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
