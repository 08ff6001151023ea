"""pytest configuration for the benchmark modules (``pytest benchmarks/bench_sde.py
--benchmark-only``). Not part of the test suite: pyproject's ``testpaths`` is python_tests/,
and these modules are named bench_*.py so pytest never collects them unless named."""

import os
import sys

# Benchmark the checkout this file sits in (with its in-place built gmkernels/_C*.so) when
# gmkernels is not installed, so the command works from the repository root as is.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import gmkernels  # noqa: F401
except ImportError:
    sys.path.insert(0, _ROOT)

from gmkernels.bench.registry import use_inductor_cache  # noqa: E402

# Share the Inductor cache with `python -m gmkernels.bench` (bench_out/ is git-ignored), so
# the compile provider's first compile is paid once per machine, not once per run.
use_inductor_cache(os.path.join(_ROOT, "bench_out", "inductor_cache"))
