"""Benchmark cases of the random family: filling a tensor with normals (and, in --full,
uniforms).

Providers: ``eager`` = ``torch.randn`` / ``torch.rand`` (torch's own generator), ``compile`` =
that same call under ``torch.compile`` (Inductor's RNG, again a different stream), ``gmkernels``
= :func:`gmkernels.random.normal` / :func:`gmkernels.random.uniform` (Philox, docs/spec.md §0), and
``floor`` = ``out.fill_(1.0)``: writing the same number of bytes with nothing computed.

All three draw a fresh tensor per call, as a user would; the floor writes a preallocated one
(it is the memory bound, not a competitor).
"""

from __future__ import annotations

import itertools

import torch

from .. import random as gmk_random
from .registry import Case, register, require_fused, warm_compile

SEED = 20240531
ROW = 4096
QUICK_N = 1 << 22


def randn_eager(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A normal fill as a user writes it (``eager``; compiled, the ``compile`` provider)."""
    return torch.randn(shape, dtype=dtype, device=device)


def rand_eager(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A uniform fill as a user writes it."""
    return torch.rand(shape, dtype=dtype, device=device)


# op name -> (eager function, gmkernels function, dispatcher op that backs it)
FILLS = {
    "normal": (randn_eager, gmk_random.normal, "random_normal_"),
    "uniform": (rand_eager, gmk_random.uniform, "random_uniform_"),
}


def _setup(case: Case, device: torch.device) -> dict:
    return {"shape": case.shape, "dtype": case.dtype, "device": device, "op": case.op}


def _eager(inp):
    fn = FILLS[inp["op"]][0]
    shape, dtype, device = inp["shape"], inp["dtype"], inp["device"]
    return lambda: fn(shape, dtype, device)


def _compile(inp):
    return warm_compile(FILLS[inp["op"]][0], inp["shape"], inp["dtype"], inp["device"])


def _gmkernels(inp):
    _, fn, dispatcher_op = FILLS[inp["op"]]
    shape, dtype, device = inp["shape"], inp["dtype"], inp["device"]
    require_fused(dispatcher_op, device, what=f"gmkernels.random.{inp['op']}")
    step = itertools.count()  # a fresh stream position per call, as a sampler would use
    return lambda: fn(shape, SEED, next(step), dtype=dtype, device=device)


def _floor(inp):
    out = torch.empty(inp["shape"], dtype=inp["dtype"], device=inp["device"])
    return lambda: out.fill_(1.0)


PROVIDERS = {"eager": _eager, "compile": _compile, "gmkernels": _gmkernels, "floor": _floor}


def _note(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return "1-D: every element is its own row (docs/spec.md §0): the short-row path"
    return f"rows of {shape[-1]}: the long-row path"


def _fill(op, shape, dtype, suites):
    register(Case(family="random", op=op, shape=tuple(shape), dtype=dtype, setup=_setup,
                  providers=PROVIDERS, suites=frozenset(suites), note=_note(tuple(shape))))


# --quick: a normal fill of 2^22 float32, as rows of 4096 (the layout of a sampler's noise)
# and as a 1-D tensor (what `torch.randn(2**22)` gives). --full: 2^16 .. 2^24, two dtypes.
for _op in FILLS:
    for _dtype in (torch.float32, torch.float64):
        for _k in range(16, 25, 2):
            _n = 1 << _k
            _quick = _op == "normal" and _dtype == torch.float32 and _n == QUICK_N
            _suites = {"quick", "full"} if _quick else {"full"}
            _fill(_op, (_n // ROW, ROW), _dtype, _suites)
            _fill(_op, (_n,), _dtype, _suites)
