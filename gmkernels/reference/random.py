"""The reference random stream: Philox4x32-10 in plain PyTorch int64 arithmetic (docs/spec.md §0).

This is the oracle the compiled and Triton kernels are tested against, word for word, and the
fallback when the extension is not built. It favours clarity over speed: it materializes
every counter of the tensor.

Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11.
"""

from __future__ import annotations

import math

import torch

__all__ = ["philox4x32_10", "row_view", "uint32", "uniform", "uniform_top", "normal",
           "bernoulli", "rademacher"]

MASK32 = 0xFFFFFFFF
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
TWO_POW_M24 = 2.0 ** -24


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of a * m for int64 tensors a in [0, 2^32) and m < 2^32.
    The 64-bit product would overflow int64, so a is split into 16-bit halves."""
    p_lo = (a & 0xFFFF) * m            # < 2^48
    p_hi = (a >> 16) * m               # < 2^48; a*m = p_hi * 2^16 + p_lo
    t = ((p_hi & 0xFFFF) << 16) + p_lo  # < 2^49
    return (p_hi >> 16) + (t >> 32), t & MASK32


def philox4x32_10(counter, key) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 of counters ``(c0, c1, c2, c3)`` (int64 tensors or ints, broadcast) under
    ``key = (k0, k1)`` (ints). Returns the four output words as int64 tensors in [0, 2^32).

    >>> [f"{int(w):08x}" for w in gmkernels.random.philox4x32_10((0, 0, 0, 0), (0, 0))]
    ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
    >>> # row 2 of a (3, 4) tensor of words: counter (0, 2, offset lo, offset hi), key (seed lo, hi)
    >>> words = gmkernels.random.philox4x32_10((0, 2, 0, 0), (7, 0))
    >>> torch.equal(torch.stack(words), gmkernels.random.uint32((3, 4), seed=7)[2])
    True
    """
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) for c in counter)
    c0, c1, c2, c3 = torch.broadcast_tensors(c0, c1, c2, c3)
    k0, k1 = int(key[0]) & MASK32, int(key[1]) & MASK32
    for _ in range(10):
        hi0, lo0 = _mulhilo(c0, PHILOX_M0)
        hi1, lo1 = _mulhilo(c2, PHILOX_M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def row_view(shape) -> tuple[int, int]:
    """(rows, M) of a random tensor of this shape: dim 0 is the row; a 0-d tensor is one row.

    >>> gmkernels.random.row_view((8, 3, 5)), gmkernels.random.row_view(())
    ((8, 15), (1, 1))
    """
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    rows = shape[0]
    numel = math.prod(shape)
    return rows, (numel // rows if rows else 0)


def _counter_words(shape, seed: int, offset: int, sample_offset: int, device) -> torch.Tensor:
    """The four words of every counter: int64 tensor (rows, groups, 4), groups = ceil(M/4)."""
    rows, M = row_view(shape)
    groups = (M + 3) // 4
    g = torch.arange(groups, dtype=torch.int64, device=device).view(1, groups)
    r = torch.arange(rows, dtype=torch.int64, device=device).view(rows, 1) + sample_offset
    w = philox4x32_10((g, r, offset & MASK32, (offset >> 32) & MASK32),
                      (seed & MASK32, (seed >> 32) & MASK32))
    return torch.stack(w, dim=-1)


def _per_element(quads: torch.Tensor, shape) -> torch.Tensor:
    """(rows, groups, 4) values -> the tensor of `shape`: element m of row r takes quads[r, m//4, m%4]."""
    rows, M = row_view(shape)
    groups = quads.shape[1]
    return quads.reshape(rows, 4 * groups)[:, :M].reshape(tuple(shape))


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def uint32(shape, seed: int, offset: int = 0, sample_offset: int = 0, device=None) -> torch.Tensor:
    """The raw words as int64 values in [0, 2^32).

    >>> torch.equal(gmkernels.reference.random.uint32((5, 7), seed=3, offset=2),
    ...             gmkernels.random.uint32((5, 7), seed=3, offset=2))  # the same words
    True
    """
    return _per_element(_counter_words(shape, seed, offset, sample_offset, device), shape)


def _uniform_of(words: torch.Tensor, dtype) -> torch.Tensor:
    return (words >> 8).to(dtype) * TWO_POW_M24


def uniform_top(dtype: torch.dtype) -> float:
    """The largest uniform a fill stores in ``dtype``: ``1 - 2^-digits`` for float16 (11
    significand bits) and bfloat16 (8), where (w >> 8) 2^-24 close to 1 would round to 1.0;
    ``1 - 2^-24`` (the largest uniform, so no clamp) for float32 and float64
    (csrc/include/gmk/philox.h uniform_top).

    >>> gmkernels.reference.random.uniform_top(torch.float16), gmkernels.reference.random.uniform_top(torch.bfloat16)
    (0.99951171875, 0.99609375)
    """
    digits = {torch.float16: 11, torch.bfloat16: 8}.get(dtype, 24)
    return 1.0 - 2.0 ** -digits


def uniform(shape, seed: int, offset: int = 0, sample_offset: int = 0, *, dtype=torch.float32,
            device=None) -> torch.Tensor:
    """Uniform in [0, 1): (w >> 8) * 2^-24, in every dtype: in float16 / bfloat16 the values
    that would round to 1.0 are stored as the largest value below 1 (:func:`uniform_top`).

    >>> torch.equal(gmkernels.reference.random.uniform((5, 7), seed=3),
    ...             gmkernels.random.uniform((5, 7), seed=3))
    True
    """
    w = _counter_words(shape, seed, offset, sample_offset, device)
    u = _uniform_of(w, compute_dtype(dtype))
    if dtype in (torch.float16, torch.bfloat16):
        u = torch.clamp_max(u, uniform_top(dtype))
    return _per_element(u, shape).to(dtype)


def _box_muller(wa: torch.Tensor, wb: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    u1 = ((wa >> 8) + 1).to(dtype) * TWO_POW_M24          # (0, 1]
    u2 = (wb >> 8).to(dtype) * TWO_POW_M24                # [0, 1)
    r = torch.sqrt(-2.0 * torch.log(u1))
    theta = u2 * (2.0 * math.pi)
    return r * torch.cos(theta), r * torch.sin(theta)


def normal(shape, seed: int, offset: int = 0, sample_offset: int = 0, *, dtype=torch.float32,
           device=None) -> torch.Tensor:
    """Standard normals by Box-Muller on word pairs (w0, w1) -> n0, n1 and (w2, w3) -> n2, n3,
    computed in ``dtype`` (float32 for half types).

    >>> ref = gmkernels.reference.random.normal((1024, 2), seed=0)
    >>> # log, sqrt, cos and sin round differently per backend: within an ulp, not bit for bit
    >>> bool((ref - gmkernels.random.normal((1024, 2), seed=0)).abs().max() <= 1e-6)
    True
    """
    w = _counter_words(shape, seed, offset, sample_offset, device)
    cd = compute_dtype(dtype)
    n0, n1 = _box_muller(w[..., 0], w[..., 1], cd)
    n2, n3 = _box_muller(w[..., 2], w[..., 3], cd)
    return _per_element(torch.stack((n0, n1, n2, n3), dim=-1), shape).to(dtype)


def bernoulli(p: torch.Tensor, seed: int, offset: int = 0, sample_offset: int = 0) -> torch.Tensor:
    """1 where the element's uniform u < p, else 0, and NaN where p is NaN or outside [0, 1]
    (no valid draw: the wrapper :func:`gmkernels.random.bernoulli` refuses such p on the CPU,
    and every kernel writes NaN there); shape and dtype of p.

    >>> p = torch.linspace(0, 1, 12).reshape(3, 4)
    >>> torch.equal(gmkernels.reference.random.bernoulli(p, seed=3),
    ...             gmkernels.random.bernoulli(p, seed=3))
    True
    """
    u = uniform(p.shape, seed, offset, sample_offset, dtype=compute_dtype(p.dtype), device=p.device)
    pc = p.to(u.dtype)
    draw = (u < pc).to(p.dtype)
    return torch.where((pc >= 0) & (pc <= 1), draw, torch.full_like(draw, float("nan")))


def rademacher(shape, seed: int, offset: int = 0, sample_offset: int = 0, *, dtype=torch.float32,
               device=None) -> torch.Tensor:
    """+1 where the element's word has its top bit clear, else -1.

    >>> torch.equal(gmkernels.reference.random.rademacher((5, 7), seed=3),
    ...             gmkernels.random.rademacher((5, 7), seed=3))
    True
    """
    w = uint32(shape, seed, offset, sample_offset, device)
    return (1 - 2 * (w >> 31)).to(dtype)
