"""Shared body of the pytest-benchmark modules: time one (case, provider) of the registry."""

import pytest
import torch

from gmkernels.bench import ProviderUnavailable


def bench_case(benchmark, case, provider, device="cpu"):
    """Builds the provider's callable (compiling outside the timing), labels the result with
    the case, and hands the callable to pytest-benchmark. A provider that cannot run here
    (e.g. torch.compile without a C++ compiler) is skipped with the reason."""
    try:
        fn = case.build(provider, device)
    except ProviderUnavailable as e:
        pytest.skip(str(e))
    benchmark.group = f"{case.family}/{case.op} {case.shape_str} {case.dtype_str}"
    benchmark.extra_info.update(family=case.family, op=case.op, shape=list(case.shape),
                                dtype=case.dtype_str, provider=provider,
                                threads=torch.get_num_threads())
    benchmark(fn)
