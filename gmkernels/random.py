"""One counter-based random stream for every backend (SPEC §0).

Every stochastic op draws from Philox4x32-10 keyed by ``seed`` (uint64) at stream position
``offset`` (uint64). A random tensor is read as rows along dim 0; element ``m`` of row ``r``
uses counter ``(m // 4, r + sample_offset, lo32(offset), hi32(offset))`` and word ``m % 4``.
So the draws of a row depend only on (seed, offset, r + sample_offset, m): not on the batch
size, the device, the backend or the number of threads, and a shard of a batch run with
``sample_offset=b`` reproduces rows b, b+1, ... of the full batch exactly.

The fill functions here (``uint32``, ``uniform``, ``normal``, ``bernoulli``, ``rademacher``)
run on the compiled kernels (CPU/CUDA), on Triton, or on the pure-PyTorch reference
(:mod:`gmkernels.reference.random`, which also holds :func:`philox4x32_10`).

Seeds: pass ``seed=None`` to draw one from ``generator`` (or torch's default generator), so
``torch.manual_seed`` makes a run reproducible.

>>> import gmkernels
>>> z = gmkernels.random.normal((4, 3), seed=7)
>>> torch.equal(z[2:3], gmkernels.random.normal((1, 3), seed=7, sample_offset=2))
True
"""

from __future__ import annotations

import numbers

import torch

from . import _backend
from .reference import random as _ref
from .reference.random import philox4x32_10, row_view  # noqa: F401  (public: the reference RNG)

__all__ = ["uint32", "uniform", "normal", "bernoulli", "rademacher", "philox4x32_10",
           "resolve_seed", "check_stream_args", "row_view"]

U64 = 1 << 64
U32 = 1 << 32


def resolve_seed(seed=None, generator: torch.Generator | None = None) -> int:
    """The uint64 seed of an op call: ``seed`` itself, or, when it is None, one drawn from
    ``generator`` (or torch's default CPU generator), which advances that generator."""
    if seed is not None:
        return seed
    device = generator.device if generator is not None else "cpu"
    v = torch.randint(-(1 << 63), (1 << 63) - 1, (1,), dtype=torch.int64, generator=generator,
                      device=device)
    return int(v.item()) % U64


def _check_int(name: str, value, hi: int, op: str) -> int:
    if type(value) is int and 0 <= value < hi:  # the common case, without the ABC checks
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value < hi:
        bound = "2^64" if hi == U64 else "2^32"
        raise ValueError(f"{op}: {name} must be in [0, {bound}), got {value}")
    return value


def check_stream_args(op: str, seed, offset, sample_offset, rows: int | None = None):
    """Validates (seed, offset, sample_offset) against SPEC §0 and returns them as ints."""
    seed = _check_int("seed", seed, U64, op)
    offset = _check_int("offset", offset, U64, op)
    sample_offset = _check_int("sample_offset", sample_offset, U32, op)
    if rows is not None and rows + sample_offset >= U32:
        raise ValueError(f"{op}: rows + sample_offset must be < 2^32 (SPEC §0), got rows={rows}, "
                         f"sample_offset={sample_offset}")
    return seed, offset, sample_offset


def as_int64_bits(v: int) -> int:
    """A uint64 as the int64 with the same bits (the dispatcher's `int` is int64)."""
    return v - U64 if v >= (1 << 63) else v


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral):
        shape = (int(shape),)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must have sizes >= 0, got {shape}")
    return shape


def _fill(op: str, draw: str, shape, dtype, seed, offset, sample_offset, generator, device):
    shape = _shape(shape)
    device = torch.device(device) if device is not None else torch.device("cpu")
    rows, _ = row_view(shape)
    seed, offset, sample_offset = check_stream_args(
        f"gmkernels.random.{draw}", resolve_seed(seed, generator), offset, sample_offset, rows)
    backend = _backend.choose(op, device)
    if backend == "reference":
        if draw == "uint32":
            return _ref.uint32(shape, seed, offset, sample_offset, device=device)
        return getattr(_ref, draw)(shape, seed, offset, sample_offset, dtype=dtype, device=device)
    out = torch.empty(shape, dtype=dtype, device=device)
    if backend == "native":
        getattr(torch.ops.gmkernels, op)(out, as_int64_bits(seed), as_int64_bits(offset), sample_offset)
    else:
        from .triton import random as _tri
        _tri.fill_(out, draw, seed, offset, sample_offset)
    return out


def _check_float_dtype(name: str, dtype):
    if not dtype.is_floating_point:
        raise TypeError(f"gmkernels.random.{name}: dtype must be a floating-point dtype, got {dtype}")


def uint32(shape, seed=None, offset: int = 0, sample_offset: int = 0, *, generator=None,
           device=None) -> torch.Tensor:
    """The raw Philox words of a tensor of ``shape``, as int64 values in [0, 2^32).

    Args:
        shape: output shape; rows are dim 0 (SPEC §0).
        seed: uint64 key, or None to draw one from ``generator``.
        offset: uint64 stream position (give each call of a sampler its own).
        sample_offset: global index of row 0, < 2^32.
    """
    return _fill("random_uint32_", "uint32", shape, torch.int64, seed, offset, sample_offset,
                 generator, device)


def uniform(shape, seed=None, offset: int = 0, sample_offset: int = 0, *, dtype=torch.float32,
            generator=None, device=None) -> torch.Tensor:
    """Uniforms in [0, 1) with 24 random bits, ``(w >> 8) * 2^-24``, in ``dtype``."""
    _check_float_dtype("uniform", dtype)
    return _fill("random_uniform_", "uniform", shape, dtype, seed, offset, sample_offset,
                 generator, device)


def normal(shape, seed=None, offset: int = 0, sample_offset: int = 0, *, dtype=torch.float32,
           generator=None, device=None) -> torch.Tensor:
    """Standard normals by Box-Muller on word pairs (SPEC §0), in ``dtype``: element ``m`` of a
    row takes normal ``m % 4`` of counter ``m // 4``. This is the noise of every gmkernels
    sampler step, e.g. ``langevin_step(x, g, a, c, seed=s)`` adds ``c * normal(x.shape, s)``."""
    _check_float_dtype("normal", dtype)
    return _fill("random_normal_", "normal", shape, dtype, seed, offset, sample_offset,
                 generator, device)


def rademacher(shape, seed=None, offset: int = 0, sample_offset: int = 0, *, dtype=torch.float32,
               generator=None, device=None) -> torch.Tensor:
    """Rademacher signs: +1 where the element's word has its top bit clear, else -1."""
    _check_float_dtype("rademacher", dtype)
    return _fill("random_rademacher_", "rademacher", shape, dtype, seed, offset, sample_offset,
                 generator, device)


def bernoulli(p: torch.Tensor, seed=None, offset: int = 0, sample_offset: int = 0, *,
              generator=None) -> torch.Tensor:
    """Bernoulli draws ``1 if u < p else 0`` with ``u = uniform(p.shape, seed, offset,
    sample_offset)``; same shape, dtype and device as the probabilities ``p``."""
    if not isinstance(p, torch.Tensor) or not p.dtype.is_floating_point:
        raise TypeError("gmkernels.random.bernoulli: p must be a floating-point tensor, got "
                        f"{type(p).__name__ if not isinstance(p, torch.Tensor) else p.dtype}")
    rows, _ = row_view(p.shape)
    seed, offset, sample_offset = check_stream_args(
        "gmkernels.random.bernoulli", resolve_seed(seed, generator), offset, sample_offset, rows)
    backend = _backend.choose("random_bernoulli", p.device)
    if backend == "reference":
        return _ref.bernoulli(p, seed, offset, sample_offset)
    if backend == "native":
        return torch.ops.gmkernels.random_bernoulli(p, as_int64_bits(seed), as_int64_bits(offset),
                                                    sample_offset)
    from .triton import random as _tri
    return _tri.bernoulli(p, seed, offset, sample_offset)
