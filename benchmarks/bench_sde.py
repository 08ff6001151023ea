"""pytest-benchmark over the sde cases of the gmkernels.bench registry
(gmkernels/bench/cases_sde.py: the Langevin step, the fused stochastic steps and the whole VP
sampling loop): every provider of every case, grouped by case so that the providers sit side by
side. Cases are enumerated by family, so a case registered in the "sde" family shows up here
without an edit.

    pytest benchmarks/bench_sde.py --benchmark-only                 # quick cases
    GMK_BENCH_SUITE=full pytest benchmarks/bench_sde.py --benchmark-only
    pytest benchmarks/bench_sde.py --benchmark-only -k "not compile"  # skip torch.compile

``python -m gmkernels.bench --family sde`` runs the same cases with ratio tables and a plot.
"""

import pytest

from gmkernels.bench import pytest_params

from _common import bench_case


@pytest.mark.parametrize("case,provider", pytest_params("sde"))
def test_sde(benchmark, case, provider):
    bench_case(benchmark, case, provider)
