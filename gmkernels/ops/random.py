"""Fake (meta) kernels of the random family's dispatcher ops, so they trace under
``torch.compile(fullgraph=True)``. The public functions are in :mod:`gmkernels.random`."""

from __future__ import annotations

import torch

from .. import _backend

if _backend.extension_available():

    def _fill_fake(out, seed, offset, sample_offset):
        return None

    for _name in ("random_uint32_", "random_uniform_", "random_normal_", "random_rademacher_"):
        torch.library.register_fake(f"gmkernels::{_name}")(_fill_fake)

    @torch.library.register_fake("gmkernels::random_bernoulli")
    def _bernoulli_fake(p, seed, offset, sample_offset):
        return torch.empty_like(p, memory_format=torch.contiguous_format)
