"""pytest-benchmark over the coupling cases of the gmkernels.bench registry (the affine
coupling transform, gmkernels/bench/cases_coupling.py: forward + logdet and forward + backward,
(65536, 64) and (256, 16, 32, 32) images): every provider of every case, grouped by case so
that the providers sit side by side.

    pytest benchmarks/bench_coupling.py --benchmark-only                 # quick cases
    GMK_BENCH_SUITE=full pytest benchmarks/bench_coupling.py --benchmark-only
    pytest benchmarks/bench_coupling.py --benchmark-only -k "not compile"

``python -m gmkernels.bench --family coupling`` runs the same cases with ratio tables.
"""

import pytest

from gmkernels.bench import pytest_params

from _common import bench_case


@pytest.mark.parametrize("case,provider", pytest_params("coupling"))
def test_coupling(benchmark, case, provider):
    bench_case(benchmark, case, provider)
