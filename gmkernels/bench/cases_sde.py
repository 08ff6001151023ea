"""Benchmark cases of the sde family: the fused Langevin step (issue #2).

The step is ``y = x + a*g + c*xi`` with ``xi ~ N(0, I)``: unadjusted Langevin with
``a = eps = 0.01`` and ``c = sqrt(2 eps)``. Providers:

* ``eager``: the expression a user writes, ``x + a*g + c*torch.randn_like(x)`` (five passes
  over memory plus torch's RNG; four temporaries);
* ``compile``: that same function under ``torch.compile``;
* ``gmkernels``: :func:`gmkernels.langevin_step`, out of place like the two above;
* ``gmkernels_inplace``: :func:`gmkernels.langevin_step_` (what a sampler loop uses);
* ``floor``: ``torch.add(x, g, out=o)``: the same bytes moved (read 2 arrays, write 1) with no
  arithmetic or randomness, i.e. the best any step could do.

eager/compile draw from torch's generator, gmkernels from Philox (SPEC §0): different streams
of the same distribution. The bit-exact pure-PyTorch Philox reference
(:func:`gmkernels.reference.sde.langevin_step`) is the test oracle, not a provider: its int64
emulation of 32-bit Philox is far slower than anything here.
"""

from __future__ import annotations

import itertools
import math

import torch

from .. import _backend
from ..ops.sde import langevin_step, langevin_step_
from .registry import Case, ProviderUnavailable, register, warm_compile

EPS = 0.01
STEP_SIZE = EPS
NOISE_SCALE = math.sqrt(2 * EPS)
SEED = 20240531


def langevin_eager(x: torch.Tensor, g: torch.Tensor, a: float, c: float) -> torch.Tensor:
    """The Langevin step as written by hand in plain PyTorch (the ``eager`` provider, and,
    compiled, the ``compile`` provider)."""
    return x + a * g + c * torch.randn_like(x)


def _setup(case: Case, device: torch.device) -> dict:
    # Fixed-seed inputs so that every run times the same data (values do not change the
    # speed of these ops, but it keeps runs comparable and avoids denormal surprises).
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(case.shape, dtype=case.dtype, generator=gen).to(device)
    g = torch.randn(case.shape, dtype=case.dtype, generator=gen).to(device)
    return {"x": x, "g": g}


def _eager(inp):
    x, g = inp["x"], inp["g"]
    return lambda: langevin_eager(x, g, STEP_SIZE, NOISE_SCALE)


def _compile(inp):
    return warm_compile(langevin_eager, inp["x"], inp["g"], STEP_SIZE, NOISE_SCALE)


def _require_fused(op: str, x: torch.Tensor) -> None:
    # Without the extension the op silently falls back to the reference; timing that would
    # report the reference's speed under the gmkernels name.
    if _backend.choose(op, x.device) == "reference":
        raise ProviderUnavailable(f"gmkernels.{op} has no native/triton kernel for {x.device.type} "
                                  "here (extension not loaded?); it would run the slow reference")


def _gmkernels(inp):
    x, g = inp["x"], inp["g"]
    _require_fused("langevin_step", x)
    # A sampler gives each step its own stream offset; so do we (costs a Python increment).
    step = itertools.count()
    return lambda: langevin_step(x, g, STEP_SIZE, NOISE_SCALE, seed=SEED, offset=next(step))


def _gmkernels_inplace(inp):
    x, g = inp["x"].clone(), inp["g"]  # its own x: the other providers keep the shared one
    _require_fused("langevin_step_", x)
    step = itertools.count()
    return lambda: langevin_step_(x, g, STEP_SIZE, NOISE_SCALE, seed=SEED, offset=next(step))


def _floor(inp):
    x, g = inp["x"], inp["g"]
    out = torch.empty_like(x)
    return lambda: torch.add(x, g, out=out)


PROVIDERS = {
    "eager": _eager,
    "compile": _compile,
    "gmkernels": _gmkernels,
    "gmkernels_inplace": _gmkernels_inplace,
    "floor": _floor,
}

ROW = 4096  # row length of the 2-D cases: long rows, 4 normals per Philox call
QUICK_N = 1 << 22


def _note(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return ("1-D: every element is its own row (SPEC §0), one Philox call per element: "
                "the short-row path")
    if shape[-1] < 16:
        return f"{math.prod(shape)} elements: per-call overhead dominates"
    return f"rows of {shape[-1]}: the long-row path"


def _langevin(shape, dtype, suites):
    register(Case(family="sde", op="langevin_step", shape=tuple(shape), dtype=dtype,
                  setup=_setup, providers=PROVIDERS, suites=frozenset(suites),
                  note=_note(tuple(shape))))


# --quick: the issue #2 targets (N = 2^22 float32) on both row paths, plus a tiny step.
# --full: sizes 2^16 .. 2^24 in float32 and float64; it contains the quick cases.
for _dtype in (torch.float32, torch.float64):
    for _k in range(16, 25, 2):
        _n = 1 << _k
        _quick = _dtype == torch.float32 and _n == QUICK_N
        _suites = {"quick", "full"} if _quick else {"full"}
        _langevin((_n // ROW, ROW), _dtype, _suites)
        _langevin((_n,), _dtype, _suites)
    _langevin((1024, 2), _dtype, {"quick", "full"} if _dtype == torch.float32 else {"full"})
