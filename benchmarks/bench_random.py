"""pytest-benchmark over the random cases of the gmkernels.bench registry
(gmkernels/bench/cases_random.py: normal fills; in the full suite also uniform fills), grouped
by case.

    pytest benchmarks/bench_random.py --benchmark-only
    GMK_BENCH_SUITE=full pytest benchmarks/bench_random.py --benchmark-only
"""

import pytest

from gmkernels.bench import pytest_params

from _common import bench_case


@pytest.mark.parametrize("case,provider", pytest_params("random"))
def test_random(benchmark, case, provider):
    bench_case(benchmark, case, provider)
