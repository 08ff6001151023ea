"""One counter-based random stream for every backend (docs/spec.md §0).

Every stochastic op draws from Philox4x32-10 keyed by ``seed`` (uint64) at stream position
``offset`` (uint64). A random tensor is read as rows along dim 0; element ``m`` of row ``r``
uses counter ``(m // 4, r + sample_offset, lo32(offset), hi32(offset))`` and word ``m % 4``.
So the draws of a row depend only on (seed, offset, r + sample_offset, m): not on the batch
size, the device, the backend or the number of threads, and a shard of a batch run with
``sample_offset=b`` reproduces rows b, b+1, ... of the full batch exactly.

The fill functions here (``uint32``, ``uniform``, ``normal``, ``bernoulli``, ``rademacher``,
and the in-place ``uint32_``, ``uniform_``, ``normal_``, ``rademacher_`` that write into a
tensor the caller owns) run on the compiled kernels (CPU/CUDA), on Triton, or on the
pure-PyTorch reference
(:mod:`gmkernels.reference.random`, which also holds :func:`philox4x32_10`). This module is
the family's one place: the public functions and the fake kernels of its dispatcher ops.

Seeds: pass ``seed=None`` to draw one from ``generator`` (or torch's default generator), so
``torch.manual_seed`` makes a run reproducible. ``device``: where the fill functions create their
tensor, by default torch's default device (``torch.get_default_device()``), as ``torch.randn``
does; the words do not depend on it.

>>> import gmkernels
>>> z = gmkernels.random.normal((4, 3), seed=7)
>>> torch.equal(z[2:3], gmkernels.random.normal((1, 3), seed=7, sample_offset=2))
True
"""

from __future__ import annotations

import torch

from . import _backend, _checks
from ._checks import U32, U64, as_int64_bits, check_stream_args, resolve_seed  # noqa: F401
from .reference import random as _ref
from .reference.random import philox4x32_10, row_view  # noqa: F401  (public: the reference RNG)

__all__ = ["uint32", "uniform", "normal", "bernoulli", "rademacher", "philox4x32_10",
           "resolve_seed", "check_stream_args", "row_view",
           "uint32_", "uniform_", "normal_", "rademacher_"]


def _fill(op: str, draw: str, shape, dtype, seed, offset, sample_offset, generator, device):
    name = f"gmkernels.random.{draw}"
    shape = _checks.shape(name, shape)
    # like torch.randn: None is the default device (torch.set_default_device / with torch.device(...))
    device = (_checks.device(name, "device", device) if device is not None
              else torch.get_default_device())
    _checks.rows_limit(name, "shape", shape)
    rows, _ = row_view(shape)
    seed, offset, sample_offset = _checks.stream(name, rows, seed, offset, sample_offset, generator)
    backend = _backend.choose_backend(op, device)
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
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"gmkernels.random.{name}: dtype must be a floating-point dtype, got {dtype}")


def uint32(shape, seed=None, offset: int = 0, sample_offset: int = 0, *, generator=None,
           device=None) -> torch.Tensor:
    """The raw Philox words of a tensor of ``shape``, as int64 values in [0, 2^32).

    Args:
        shape: output shape, ints (a float or bool size is refused, not truncated); rows are
            dim 0 (docs/spec.md §0).
        seed: uint64 key, or None to draw one from ``generator``.
        offset: uint64 stream position (give each call of a sampler its own).
        sample_offset: global index of row 0, < 2^32.

    >>> w = gmkernels.random.uint32((2, 5), seed=1)
    >>> w.dtype, bool(((w >= 0) & (w < 2 ** 32)).all())
    (torch.int64, True)
    """
    return _fill("random_uint32_", "uint32", shape, torch.int64, seed, offset, sample_offset,
                 generator, device)


def uniform(shape, seed=None, offset: int = 0, sample_offset: int = 0, *, dtype=torch.float32,
            generator=None, device=None) -> torch.Tensor:
    """Uniforms in [0, 1) with 24 random bits, ``(w >> 8) * 2^-24``, in ``dtype``.

    Every dtype stays in [0, 1): float16 and bfloat16 cannot hold 1 - 2^-24, and
    round-to-nearest would give 1.0 for the top 2^-12 (float16) / 2^-9 (bfloat16) of the
    draws, so those are stored as the largest value below 1 (1 - 2^-11, 1 - 2^-8; on every
    backend). float32 and float64 hold every draw exactly.

    >>> float(gmkernels.random.uniform((4096, 64), seed=0, dtype=torch.float16).max()) < 1
    True

    >>> u = gmkernels.random.uniform((2, 5), seed=1)
    >>> torch.equal(u, (gmkernels.random.uint32((2, 5), seed=1) >> 8) * 2.0 ** -24)
    True
    """
    _check_float_dtype("uniform", dtype)
    return _fill("random_uniform_", "uniform", shape, dtype, seed, offset, sample_offset,
                 generator, device)


def normal(shape, seed=None, offset: int = 0, sample_offset: int = 0, *, dtype=torch.float32,
           generator=None, device=None) -> torch.Tensor:
    """Standard normals by Box-Muller on word pairs (docs/spec.md §0), in ``dtype``: element ``m`` of a
    row takes normal ``m % 4`` of counter ``m // 4``. This is the noise of every gmkernels
    sampler step, e.g. ``langevin_step(x, g, a, c, seed=s)`` adds ``c * normal(x.shape, s)``.

    >>> x = torch.zeros(3, 4)
    >>> y = gmkernels.langevin_step(x, x, 0.0, 1.0, seed=5, offset=2)
    >>> torch.allclose(y, gmkernels.random.normal(x.shape, seed=5, offset=2))
    True
    """
    _check_float_dtype("normal", dtype)
    return _fill("random_normal_", "normal", shape, dtype, seed, offset, sample_offset,
                 generator, device)


def rademacher(shape, seed=None, offset: int = 0, sample_offset: int = 0, *, dtype=torch.float32,
               generator=None, device=None) -> torch.Tensor:
    """Rademacher signs: +1 where the element's word has its top bit clear, else -1.

    >>> r = gmkernels.random.rademacher((2, 5), seed=1)
    >>> torch.equal(r, torch.where(gmkernels.random.uint32((2, 5), seed=1) < 2 ** 31, 1.0, -1.0))
    True
    """
    _check_float_dtype("rademacher", dtype)
    return _fill("random_rademacher_", "rademacher", shape, dtype, seed, offset, sample_offset,
                 generator, device)


def bernoulli(p: torch.Tensor, seed=None, offset: int = 0, sample_offset: int = 0, *,
              generator=None) -> torch.Tensor:
    """Bernoulli draws ``1 if u < p else 0`` with ``u = uniform(p.shape, seed, offset,
    sample_offset)``; same shape, dtype and device as the probabilities ``p``.

    Every p must be in [0, 1]. A NaN, ±inf or a value outside [0, 1] has no valid draw
    (``u < NaN`` would silently give 0): for a CPU ``p`` this function reads the values
    and raises ``ValueError``; for a CUDA ``p`` it does not (the read would be a device sync
    per call), and every kernel (and the reference) writes NaN in exactly the elements whose
    p is invalid instead, so the bad value shows where it was and nowhere else.

    >>> gmkernels.random.bernoulli(torch.tensor([[0.5, 1.5]]), seed=1)
    Traceback (most recent call last):
        ...
    ValueError: gmkernels.random.bernoulli: every p must be in [0, 1], got [1.5] among its values

    >>> p = torch.full((2, 5), 0.3)
    >>> torch.equal(gmkernels.random.bernoulli(p, seed=1),
    ...             (gmkernels.random.uniform((2, 5), seed=1) < p).float())
    True
    """
    op = "gmkernels.random.bernoulli"
    _checks.floating(op, "p", p)
    _checks.values(op, "p", p, "in [0, 1]", lambda v: (v >= 0) & (v <= 1))
    rows, _ = row_view(p.shape)
    seed, offset, sample_offset = _checks.stream(op, rows, seed, offset, sample_offset, generator)
    backend = _backend.choose_backend("random_bernoulli", p.device)
    if backend == "reference":
        return _ref.bernoulli(p, seed, offset, sample_offset)
    if backend == "native":
        return torch.ops.gmkernels.random_bernoulli(p, as_int64_bits(seed), as_int64_bits(offset),
                                                    sample_offset)
    from .triton import random as _tri
    return _tri.bernoulli(p, seed, offset, sample_offset)


# --------------------------------------------------------------------------------------------
# in-place fills: the same draws written into a tensor the caller owns

def _fill_inplace(op: str, draw: str, out, seed, offset, sample_offset, generator):
    name = f"gmkernels.random.{draw}_"
    if draw == "uint32":
        _checks.tensor(name, "out", out)
        if out.dtype != torch.int64:
            raise TypeError(f"{name}: out must be int64 (the words are in [0, 2^32)), "
                            f"got {out.dtype}")
    else:
        _checks.floating(name, "out", out)
    if torch.is_grad_enabled() and out.requires_grad:
        raise RuntimeError(f"{name}: out must not require grad (an in-place fill is not "
                           "differentiable), got a tensor that requires grad; fill it under "
                           "torch.no_grad()")
    _checks.writable(name, "out", out)
    rows, _ = row_view(out.shape)
    seed, offset, sample_offset = _checks.stream(name, rows, seed, offset, sample_offset, generator)
    backend = _backend.choose_backend(op, out.device)
    if backend == "native":  # the op bumps out's version counter (csrc/include/gmk/inplace.h)
        getattr(torch.ops.gmkernels, op)(out, as_int64_bits(seed), as_int64_bits(offset),
                                         sample_offset)
    elif backend == "triton":
        from .triton import random as _tri
        _tri.fill_(out, draw, seed, offset, sample_offset)
        torch.autograd.graph.increment_version(out)  # the kernel wrote out's memory directly
    elif draw == "uint32":
        out.copy_(_ref.uint32(out.shape, seed, offset, sample_offset, device=out.device))
    else:
        out.copy_(getattr(_ref, draw)(out.shape, seed, offset, sample_offset, dtype=out.dtype,
                                      device=out.device))
    return out


def uint32_(out: torch.Tensor, seed=None, offset: int = 0, sample_offset: int = 0, *,
            generator=None) -> torch.Tensor:
    """Fills the int64 tensor ``out`` in place with :func:`uint32` of its shape and returns it.

    Every in-place fill (``uint32_``, ``uniform_``, ``normal_``, ``rademacher_``) writes the
    values its out-of-place twin returns for ``out.shape`` and ``out.dtype``, on every backend.
    ``out`` may have any strides that do not overlap themselves (``out[:, ::2]``, ``out.t()``);
    an expanded tensor or an ``as_strided`` view whose elements share memory raises
    ``ValueError``. As torch's in-place ops do, a fill bumps ``out._version`` (a backward that
    saved ``out`` then raises), and refuses an ``out`` that requires grad while grad mode is on
    and an inference tensor outside ``torch.inference_mode()`` (``RuntimeError``).

    >>> out = torch.empty(2, 5, dtype=torch.int64)
    >>> gmkernels.random.uint32_(out, seed=1) is out
    True
    >>> torch.equal(out, gmkernels.random.uint32((2, 5), seed=1))
    True
    """
    return _fill_inplace("random_uint32_", "uint32", out, seed, offset, sample_offset, generator)


def uniform_(out: torch.Tensor, seed=None, offset: int = 0, sample_offset: int = 0, *,
             generator=None) -> torch.Tensor:
    """Fills the floating tensor ``out`` in place with :func:`uniform` of its shape and dtype
    (see :func:`uint32_` for what every in-place fill shares) and returns it.

    >>> out = torch.empty(3, 4)
    >>> torch.equal(gmkernels.random.uniform_(out, seed=1),
    ...             gmkernels.random.uniform((3, 4), seed=1))
    True
    """
    return _fill_inplace("random_uniform_", "uniform", out, seed, offset, sample_offset, generator)


def normal_(out: torch.Tensor, seed=None, offset: int = 0, sample_offset: int = 0, *,
            generator=None) -> torch.Tensor:
    """Fills the floating tensor ``out`` in place with :func:`normal` of its shape and dtype
    (see :func:`uint32_` for what every in-place fill shares) and returns it.

    >>> buf = torch.zeros(3, 8)
    >>> _ = gmkernels.random.normal_(buf[:, ::2], seed=1)          # a strided view of a buffer
    >>> torch.equal(buf[:, ::2], gmkernels.random.normal((3, 4), seed=1))
    True
    >>> bool((buf[:, 1::2] == 0).all())                              # the rest is untouched
    True
    """
    return _fill_inplace("random_normal_", "normal", out, seed, offset, sample_offset, generator)


def rademacher_(out: torch.Tensor, seed=None, offset: int = 0, sample_offset: int = 0, *,
                generator=None) -> torch.Tensor:
    """Fills the floating tensor ``out`` in place with :func:`rademacher` of its shape and dtype
    (see :func:`uint32_` for what every in-place fill shares) and returns it.

    >>> out = torch.empty(3, 4, dtype=torch.float64)
    >>> torch.equal(gmkernels.random.rademacher_(out, seed=1),
    ...             gmkernels.random.rademacher((3, 4), seed=1, dtype=torch.float64))
    True
    """
    return _fill_inplace("random_rademacher_", "rademacher", out, seed, offset, sample_offset,
                         generator)


# --------------------------------------------------------------------------------------------
# fake kernels of the dispatcher ops (torch.compile); the fills write in place, so no autograd

def _fill_fake(out, seed, offset, sample_offset):
    return None  # the schemas return nothing: `out` is marked written, `Tensor(a!) out`


for _name in ("random_uint32_", "random_uniform_", "random_normal_", "random_rademacher_"):
    if _backend.op_exists(_name):
        torch.library.register_fake(f"gmkernels::{_name}")(_fill_fake)

if _backend.op_exists("random_bernoulli"):

    @torch.library.register_fake("gmkernels::random_bernoulli")
    def _bernoulli_fake(p, seed, offset, sample_offset):
        return torch.empty_like(p, memory_format=torch.contiguous_format)
