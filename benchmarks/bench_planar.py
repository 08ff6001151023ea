"""pytest-benchmark over the planar cases of the gmkernels.bench registry (the planar flow,
gmkernels/bench/cases_planar.py): every provider of every case, grouped by case.

    pytest benchmarks/bench_planar.py --benchmark-only                  # quick cases
    GMK_BENCH_SUITE=full pytest benchmarks/bench_planar.py --benchmark-only
    pytest benchmarks/bench_planar.py --benchmark-only -k "not compile"

``python -m gmkernels.bench --family planar`` runs the same cases with ratio tables.
"""

import pytest

from gmkernels.bench import pytest_params

from _common import bench_case


@pytest.mark.parametrize("case,provider", pytest_params("planar"))
def test_planar(benchmark, case, provider):
    bench_case(benchmark, case, provider)
