"""pytest-benchmark over the bm cases of the gmkernels.bench registry (the fully connected
Boltzmann machine, gmkernels/bench/cases_bm.py): bm_gibbs against the eager loop over sites,
grouped by case so that the providers sit side by side.

    pytest benchmarks/bench_bm.py --benchmark-only                 # quick cases
    GMK_BENCH_SUITE=full pytest benchmarks/bench_bm.py --benchmark-only

``python -m gmkernels.bench --family bm`` runs the same cases with ratio tables.
"""

import pytest

from gmkernels.bench import pytest_params

from _common import bench_case


@pytest.mark.parametrize("case,provider", pytest_params("bm"))
def test_bm(benchmark, case, provider):
    bench_case(benchmark, case, provider)
