"""The gmkernels benchmark runner: ``python -m gmkernels.bench``.

Every op is timed side by side, in one run, against the baselines a user would otherwise
have: the hand-written PyTorch expression (``eager``), the same function under
``torch.compile`` (``compile``), and the memory floor (``floor``: a kernel that moves the same
bytes and computes nothing). Tables report medians and the ratios the targets are set on.

Layout:
  registry.py       :class:`Case`, the families and the registry; ``compiled``/``warm_compile``
                    share one ``torch.compile`` per function across cases, and
                    ``compile_settings`` scopes the dynamo/Inductor settings to the bench's own
                    compiles
  cases_<family>.py the cases of one op family, named as the op groups are: cases_random,
                    cases_sde (the Langevin step, the fused SDE steps, a sampling loop),
                    cases_planar, cases_coupling (the flows), cases_rbm, cases_bm (the
                    Boltzmann machines)
  timing.py         warm-up + repeated samples -> median and IQR
  runner.py         runs cases x providers, one failure never ends the run; machine info
  report.py         stdout tables, results.md, results.json, results.png
  __main__.py       the command line

The same registry drives the pytest-benchmark modules ``benchmarks/bench_<family>.py`` (one per
family) through :func:`pytest_params`.

>>> from gmkernels.bench import select, run
>>> recs = run(select("quick", ["langevin_step/1024x2"]), providers=["eager", "gmkernels"])
"""

from __future__ import annotations

from .registry import (FAMILIES, PROVIDERS, Case, ProviderUnavailable, all_cases, compile_settings,
                       compiled, register, require_fused, select, warm_compile, warm_up)
from .runner import machine_info, run
from .timing import measure

__all__ = ["FAMILIES", "PROVIDERS", "Case", "ProviderUnavailable", "all_cases",
           "compile_settings", "compiled", "register", "require_fused", "select", "warm_compile",
           "warm_up", "run", "machine_info", "measure", "pytest_params"]


def pytest_params(family: str, suite: str | None = None):
    """``pytest.param(case, provider, id=...)`` for every (case, provider) of ``family`` (one of
    :data:`FAMILIES`) in
    ``suite`` (default: the ``GMK_BENCH_SUITE`` environment variable, else ``"quick"``), for
    ``@pytest.mark.parametrize("case,provider", ...)`` in ``benchmarks/bench_<family>.py``."""
    import os

    import pytest

    suite = suite or os.environ.get("GMK_BENCH_SUITE", "quick")
    return [pytest.param(c, p, id=f"{c.op}-{c.shape_str}-{c.dtype_str}-{p}")
            for c in select(suite, families=[family])
            for p in PROVIDERS if p in c.providers]
