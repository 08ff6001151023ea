"""pytest-benchmark over the affine coupling cases of the gmkernels.bench registry (issue #4:
forward + logdet and forward + backward, (65536, 64) and (256, 16, 32, 32) images): every
provider of every case, grouped by case so that the providers sit side by side.

    pytest benchmarks/bench_coupling.py --benchmark-only                 # quick cases
    GMK_BENCH_SUITE=full pytest benchmarks/bench_coupling.py --benchmark-only
    pytest benchmarks/bench_coupling.py --benchmark-only -k "not compile"

``python -m gmkernels.bench --filter affine_coupling`` runs the same cases with ratio tables.
"""

import pytest

from gmkernels.bench import pytest_params

from _common import bench_case


@pytest.mark.parametrize("case,provider",
                         [p for p in pytest_params("flows") if p.id.startswith("affine_coupling")])
def test_coupling(benchmark, case, provider):
    bench_case(benchmark, case, provider)
