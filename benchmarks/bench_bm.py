"""pytest-benchmark over the fully connected Boltzmann machine cases of the gmkernels.bench
registry (gmkernels/bench/cases_bm.py, issue 5): bm_gibbs against the eager loop over sites,
grouped by case so that the providers sit side by side.

    pytest benchmarks/bench_bm.py --benchmark-only                 # quick cases
    GMK_BENCH_SUITE=full pytest benchmarks/bench_bm.py --benchmark-only

``python -m gmkernels.bench --family boltzmann`` runs the same cases with ratio tables.
"""

import pytest

from gmkernels.bench import pytest_params

from _common import bench_case


# The "boltzmann" family also holds the RBM cases (benchmarks/bench_rbm.py): keep the bm_* ops.
PARAMS = [p for p in pytest_params("boltzmann") if p.values[0].op.startswith("bm_")]


@pytest.mark.parametrize("case,provider", PARAMS)
def test_bm(benchmark, case, provider):
    bench_case(benchmark, case, provider)
