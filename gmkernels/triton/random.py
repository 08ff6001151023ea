"""Triton kernels of the random fills (docs/spec.md §0): raw words, uniforms, normals, Rademacher signs
and Bernoulli draws from the one Philox stream.

Called by :mod:`gmkernels.random` when the ``"triton"`` backend is chosen: CUDA tensors, or CPU
tensors under ``TRITON_INTERPRET=1``. The words equal those of the C++ kernels and the reference
exactly; see :mod:`gmkernels.triton._philox` for the float transforms.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference.random import row_view, uniform_top
from ._philox import (cast_to, interleave4, normals4, stream_halves, stream_words, tile_config,
                      tile_index, uniform_from_word)

__all__ = ["fill_", "bernoulli"]

# What a fill kernel writes (a constexpr of the kernel).
DRAW_UINT32, DRAW_UNIFORM, DRAW_NORMAL, DRAW_RADEMACHER, DRAW_BERNOULLI = range(5)
DRAWS = {"uint32": DRAW_UINT32, "uniform": DRAW_UNIFORM, "normal": DRAW_NORMAL,
         "rademacher": DRAW_RADEMACHER}

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@triton.jit(do_not_specialize=["seed_lo", "seed_hi", "off_lo", "off_hi", "row0"])
def _fill_kernel(out_ptr, p_ptr, rows, M, n_gblocks,
                 seed_lo: tl.uint32, seed_hi: tl.uint32, off_lo: tl.uint32, off_hi: tl.uint32,
                 row0: tl.uint32,
                 DRAW: tl.constexpr, FP64: tl.constexpr, TOP: tl.constexpr,
                 BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """One tile of a fill of the contiguous (rows, M) tensor ``out``.

    DRAW: 0 raw words (out int64), 1 uniform, 2 normal, 3 Rademacher, 4 Bernoulli with
    probabilities ``p`` (contiguous, shape of out). FP64: compute in float64 (float64 out or p);
    otherwise float32, rounded to out's dtype on the store. TOP: the largest uniform the
    store keeps (reference ``uniform_top``: below 1 in float16 / bfloat16; 1 - 2^-24, no clamp,
    otherwise).
    """
    r, g, m, _ = tile_index(tl.program_id(0), n_gblocks, BLOCK_R, BLOCK_G)
    w0, w1, w2, w3 = stream_words(g, r, seed_lo, seed_hi, off_lo, off_hi, row0)
    mask = (r < rows) & (m < M)
    offs = r * M + m
    if DRAW == 0:
        v = interleave4(w0, w1, w2, w3).to(tl.int64)  # uint32 -> int64 zero-extends
    elif DRAW == 2:
        n0, n1, n2, n3 = normals4(w0, w1, w2, w3, FP64)
        v = interleave4(n0, n1, n2, n3)
    elif DRAW == 3:
        # +1 where the top bit is clear, else -1
        v = 1.0 - 2.0 * (interleave4(w0, w1, w2, w3) >> 31).to(tl.float32)
    else:
        u = uniform_from_word(interleave4(w0, w1, w2, w3))
        if FP64:
            u = u.to(tl.float64)  # exact: the uniform has 24 bits
        if DRAW == 4:
            p = tl.load(p_ptr + offs, mask=mask, other=0.0)
            p = p.to(u.dtype)
            # p outside [0, 1] or NaN: NaN (the wrapper refuses it on the CPU; see bernoulli)
            v = tl.where((p >= 0.0) & (p <= 1.0), tl.where(u < p, 1.0, 0.0), float("nan"))
        else:
            v = tl.minimum(u, TOP)
    tl.store(out_ptr + offs, cast_to(v, out_ptr.dtype.element_ty), mask=mask)


def _launch(out: torch.Tensor, p: torch.Tensor | None, draw: int, fp64: bool, seed: int,
            offset: int, sample_offset: int) -> None:
    """Fills the contiguous ``out`` (and reads the contiguous ``p`` for Bernoulli)."""
    rows, M = row_view(out.shape)
    if rows == 0 or M == 0:
        return  # nothing to draw, and a grid of 0 programs is not launchable
    block_r, block_g, n_gblocks, n_programs, num_warps = tile_config(rows, M, out.device)
    _fill_kernel[(n_programs,)](
        out, out if p is None else p, rows, M, n_gblocks,
        *stream_halves(seed, offset, sample_offset),
        DRAW=draw, FP64=fp64, TOP=uniform_top(out.dtype), BLOCK_R=block_r, BLOCK_G=block_g,
        num_warps=num_warps)


def fill_(out: torch.Tensor, draw: str, seed: int, offset: int = 0,
          sample_offset: int = 0) -> torch.Tensor:
    """Fills ``out`` in place with draws of the (seed, offset, sample_offset) stream.

    Args:
        out: any shape and strides; rows are dim 0, a 0-d tensor is one row (docs/spec.md §0).
            int64 for ``draw="uint32"``; float16, bfloat16, float32 or float64 otherwise.
        draw: ``"uint32"`` (the raw words, values in [0, 2^32)), ``"uniform"`` ([0, 1), 24 bits),
            ``"normal"`` (Box-Muller, float64 math for float64 out, float32 otherwise) or
            ``"rademacher"`` (±1).
        seed, offset: ints in [0, 2^64); sample_offset: int in [0, 2^32), the global row index
            of row 0 (checked by the caller, :func:`gmkernels.random.check_stream_args`).

    Returns:
        ``out``.
    """
    if draw not in DRAWS:
        raise ValueError(f"gmkernels.triton.random.fill_: draw must be one of {tuple(DRAWS)}, "
                         f"got {draw!r}")
    if draw == "uint32":
        if out.dtype != torch.int64:
            raise TypeError(f"gmkernels.triton.random.fill_: draw='uint32' writes int64, "
                            f"got out of dtype {out.dtype}")
    elif out.dtype not in FLOAT_DTYPES:
        raise TypeError(f"gmkernels.triton.random.fill_: draw={draw!r} needs out of dtype "
                        f"{FLOAT_DTYPES}, got {out.dtype}")
    # The kernel addresses out as a dense row-major (rows, M) block; other strides get a
    # contiguous temporary that is copied back.
    dst = out if out.is_contiguous() else torch.empty(out.shape, dtype=out.dtype, device=out.device)
    _launch(dst, None, DRAWS[draw], out.dtype == torch.float64, seed, offset, sample_offset)
    if dst is not out:
        out.copy_(dst)
    return out


def bernoulli(p: torch.Tensor, seed: int, offset: int = 0, sample_offset: int = 0) -> torch.Tensor:
    """Bernoulli draws ``1 if u < p else 0``, u the element's uniform (docs/spec.md §0).

    Args:
        p: probabilities, any shape and strides, float16/bfloat16/float32/float64. The
            comparison is in float64 for float64 p, else in float32.
        seed, offset, sample_offset: the stream, as in :func:`fill_`.

    Returns:
        a new contiguous tensor of p's shape, dtype and device, holding 0 and 1, and NaN
        where p is NaN or outside [0, 1] (as the C++ kernels and the reference).
    """
    if p.dtype not in FLOAT_DTYPES:
        raise TypeError(f"gmkernels.triton.random.bernoulli: p must have a dtype in "
                        f"{FLOAT_DTYPES}, got {p.dtype}")
    p = p.contiguous()
    out = torch.empty_like(p)
    _launch(out, p, DRAW_BERNOULLI, p.dtype == torch.float64, seed, offset, sample_offset)
    return out
