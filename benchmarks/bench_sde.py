"""pytest-benchmark over the sde cases of the gmkernels.bench registry (the Langevin step):
every provider of every case, grouped by case so that the providers sit side by side.

    pytest benchmarks/bench_sde.py --benchmark-only                 # quick cases
    GMK_BENCH_SUITE=full pytest benchmarks/bench_sde.py --benchmark-only
    pytest benchmarks/bench_sde.py --benchmark-only -k "not compile"  # skip torch.compile

``python -m gmkernels.bench`` runs the same cases with ratio tables and a plot.
"""

import pytest

from gmkernels.bench import pytest_params

from _common import bench_case


@pytest.mark.parametrize("case,provider", pytest_params("sde"))
def test_sde(benchmark, case, provider):
    bench_case(benchmark, case, provider)
