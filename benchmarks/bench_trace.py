"""pytest-benchmark over the trace cases of the gmkernels.bench registry
(gmkernels/bench/cases_trace.py: the Hutchinson divergence of an MLP, K = 8 probes batched in
one pass against a Python loop over them): every provider of every case, grouped by case.

    pytest benchmarks/bench_trace.py --benchmark-only

``python -m gmkernels.bench --family trace`` runs the same cases with ratio tables.
"""

import pytest

from gmkernels.bench import pytest_params

from _common import bench_case


@pytest.mark.parametrize("case,provider", pytest_params("trace"))
def test_trace(benchmark, case, provider):
    bench_case(benchmark, case, provider)
