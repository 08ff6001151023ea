"""pytest-benchmark over the rbm cases of the gmkernels.bench registry
(gmkernels/bench/cases_rbm.py): the fused k-step Gibbs op against the eager loop,
torch.compile and the GEMM floor; AIS and exact log Z.

    pytest benchmarks/bench_rbm.py --benchmark-only                 # quick cases
    GMK_BENCH_SUITE=full pytest benchmarks/bench_rbm.py --benchmark-only

``python -m gmkernels.bench --family rbm`` runs the same cases with ratio tables.
"""

import pytest

from gmkernels.bench import pytest_params

from _common import bench_case


@pytest.mark.parametrize("case,provider", pytest_params("rbm"))
def test_rbm(benchmark, case, provider):
    bench_case(benchmark, case, provider)
