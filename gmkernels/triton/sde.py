"""Triton kernels of the fused Langevin step (SPEC §3.1) and its backward.

Mirror of ``csrc/sde/sde.h`` / ``sde.cpp``: the noise ``xi`` is regenerated in the kernel from
the Philox stream (never stored), so forward and backward each make one pass over memory.
Called by :mod:`gmkernels.ops.sde` when the ``"triton"`` backend is chosen.

Compute dtype: float64 for float64 tensors, float32 otherwise (float16/bfloat16 are loaded,
computed in float32 and rounded on the store), as the C++ kernels' ``opmath_type``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference.random import row_view
from ._philox import (cast_to, interleave4, normals4, stream_halves, stream_words, tile_config,
                      tile_index)

__all__ = ["langevin_step_fwd", "langevin_step_bwd"]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_STREAM = ["seed_lo", "seed_hi", "off_lo", "off_hi", "row0"]


@triton.jit
def _noise_tile(r, g, seed_lo, seed_hi, off_lo, off_hi, row0, FP64: tl.constexpr):
    """The (BLOCK_R, 4 * BLOCK_G) standard normals of a tile, in the compute dtype."""
    w0, w1, w2, w3 = stream_words(g, r, seed_lo, seed_hi, off_lo, off_hi, row0)
    n0, n1, n2, n3 = normals4(w0, w1, w2, w3, FP64)
    return interleave4(n0, n1, n2, n3)


@triton.jit
def _row_param(ptr, r, rows, v, HAS_T: tl.constexpr, CD: tl.constexpr):
    """A per-row parameter: ptr[r] as (BLOCK_R, 1) when HAS_T, else the scalar v, in CD."""
    if HAS_T:
        return tl.load(ptr + r, mask=r < rows, other=0.0).to(CD)
    else:
        # tl.full keeps a float64 argument exact (a bare Python float would be float32)
        return tl.full([], v, CD)


@triton.jit(do_not_specialize=_STREAM)
def _langevin_fwd_kernel(x_ptr, g_ptr, y_ptr, a_ptr, c_ptr,
                         a: tl.float64, c: tl.float64, lo: tl.float64, hi: tl.float64,
                         rows, M, n_gblocks,
                         seed_lo: tl.uint32, seed_hi: tl.uint32, off_lo: tl.uint32,
                         off_hi: tl.uint32, row0: tl.uint32,
                         HAS_A: tl.constexpr, HAS_C: tl.constexpr, CLAMP: tl.constexpr,
                         FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """y = clamp(x + a*g + c*xi) on one tile of the contiguous (rows, M) tensors.

    a_ptr / c_ptr: per-row (rows,) values in the compute dtype when HAS_A / HAS_C, else unused
    (the scalars a / c apply). lo, hi: clamp bounds, used when CLAMP.
    """
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    r, g, m, _ = tile_index(tl.program_id(0), n_gblocks, BLOCK_R, BLOCK_G)
    mask = (r < rows) & (m < M)
    offs = r * M + m
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(CD)
    gr = tl.load(g_ptr + offs, mask=mask, other=0.0).to(CD)
    xi = _noise_tile(r, g, seed_lo, seed_hi, off_lo, off_hi, row0, FP64)
    ar = _row_param(a_ptr, r, rows, a, HAS_A, CD)
    cr = _row_param(c_ptr, r, rows, c, HAS_C, CD)
    y = x + ar * gr + cr * xi
    if CLAMP:
        lo_c = tl.full([], lo, CD)
        hi_c = tl.full([], hi, CD)
        # the C++ select (a NaN passes through), not min/max
        y = tl.where(y < lo_c, lo_c, tl.where(y > hi_c, hi_c, y))
    tl.store(y_ptr + offs, cast_to(y, y_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=_STREAM)
def _langevin_bwd_kernel(gy_ptr, y_ptr, g_ptr, a_ptr, gx_ptr, gg_ptr, pa_ptr, pc_ptr,
                         a: tl.float64, lo: tl.float64, hi: tl.float64,
                         rows, M, n_gblocks,
                         seed_lo: tl.uint32, seed_hi: tl.uint32, off_lo: tl.uint32,
                         off_hi: tl.uint32, row0: tl.uint32,
                         HAS_A: tl.constexpr, CLAMP: tl.constexpr, NEED_A: tl.constexpr,
                         NEED_C: tl.constexpr, FP64: tl.constexpr,
                         BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """Backward of one tile: gx = gy*pass, gg = gy*pass*a_row, and this tile's per-row partial
    sums of gy*pass*g (NEED_A) and gy*pass*xi (NEED_C) written to pa/pc[pg, r], pa/pc being
    (n_gblocks, rows) in the compute dtype. pass = 1, or with CLAMP 1 where the saved output
    y is strictly inside (lo, hi) and 0 elsewhere (csrc/sde/sde.h clamp_pass).

    Partial sums per tile instead of atomics: the result does not depend on the order in
    which programs run (same gradients run to run), and the interpreter runs it as well.
    """
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    r, g, m, pg = tile_index(tl.program_id(0), n_gblocks, BLOCK_R, BLOCK_G)
    mask = (r < rows) & (m < M)
    offs = r * M + m
    go = tl.load(gy_ptr + offs, mask=mask, other=0.0).to(CD)
    if CLAMP:
        y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(CD)
        inside = (y > tl.full([], lo, CD)) & (y < tl.full([], hi, CD))
        # a product, as the C++ gy * pass (an inf gradient on a clamped element gives NaN)
        go = go * tl.where(inside, 1.0, 0.0).to(CD)
    ar = _row_param(a_ptr, r, rows, a, HAS_A, CD)
    tl.store(gx_ptr + offs, cast_to(go, gx_ptr.dtype.element_ty), mask=mask)
    tl.store(gg_ptr + offs, cast_to(go * ar, gg_ptr.dtype.element_ty), mask=mask)
    row_ok = r < rows
    if NEED_A:
        gr = tl.load(g_ptr + offs, mask=mask, other=0.0).to(CD)
        tl.store(pa_ptr + pg.to(tl.int64) * rows + r, tl.sum(go * gr, axis=1)[:, None], mask=row_ok)
    if NEED_C:
        # masked lanes have go = 0 and a finite xi (u1 > 0), so they add nothing
        xi = _noise_tile(r, g, seed_lo, seed_hi, off_lo, off_hi, row0, FP64)
        tl.store(pc_ptr + pg.to(tl.int64) * rows + r, tl.sum(go * xi, axis=1)[:, None], mask=row_ok)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check(op: str, ref: torch.Tensor, ref_name: str, **others) -> None:
    if ref.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {ref_name} must have a dtype in {FLOAT_DTYPES}, got {ref.dtype}")
    for name, t in others.items():
        if t.shape != ref.shape or t.dtype != ref.dtype or t.device != ref.device:
            raise ValueError(f"{op}: {name} must match {ref_name} (shape {tuple(ref.shape)}, "
                             f"{ref.dtype}, {ref.device}), got ({tuple(t.shape)}, {t.dtype}, "
                             f"{t.device})")


def _per_row(op: str, name: str, t: torch.Tensor | None, rows: int, like: torch.Tensor):
    """A per-row (rows,) parameter as a contiguous tensor of the compute dtype, or None."""
    if t is None:
        return None
    if t.shape != (rows,) or t.device != like.device:
        raise ValueError(f"{op}: {name} must be a ({rows},) tensor on {like.device}, got "
                         f"{tuple(t.shape)} on {t.device}")
    return t.detach().to(_compute_dtype(like.dtype)).contiguous()


def _clamp_args(clamp) -> tuple[bool, float, float]:
    if clamp is None:
        return False, 0.0, 0.0
    return True, float(clamp[0]), float(clamp[1])


def langevin_step_fwd(x: torch.Tensor, grad: torch.Tensor, a_t: torch.Tensor | None, a: float,
                      c_t: torch.Tensor | None, c: float, seed: int, offset: int,
                      sample_offset: int, clamp=None) -> torch.Tensor:
    """``clamp(x + a*grad + c*xi)``, ``xi = gmkernels.random.normal(x.shape, seed, offset,
    sample_offset)`` (SPEC §3.1), one fused pass.

    Args:
        x, grad: (B, ...) any strides, same shape/dtype/device; float16/bfloat16/float32/float64.
        a_t, c_t: per-row (B,) step sizes / noise scales (any float dtype), or None to use the
            floats a / c.
        seed, offset: ints in [0, 2^64); sample_offset: int in [0, 2^32) (checked by the caller).
        clamp: None or (lo, hi).

    Returns:
        a new contiguous tensor of x's shape and dtype.
    """
    op = "gmkernels.triton.sde.langevin_step_fwd"
    _check(op, x, "x", grad=grad)
    rows, M = row_view(x.shape)
    a_t = _per_row(op, "step_size", a_t, rows, x)
    c_t = _per_row(op, "noise_scale", c_t, rows, x)
    x, grad = x.contiguous(), grad.contiguous()
    y = torch.empty_like(x)
    if rows == 0 or M == 0:
        return y
    on, lo, hi = _clamp_args(clamp)
    block_r, block_g, n_gblocks, n_programs, num_warps = tile_config(rows, M, x.device)
    _langevin_fwd_kernel[(n_programs,)](
        x, grad, y, x if a_t is None else a_t, x if c_t is None else c_t,
        float(a), float(c), lo, hi, rows, M, n_gblocks,
        *stream_halves(seed, offset, sample_offset),
        HAS_A=a_t is not None, HAS_C=c_t is not None, CLAMP=on, FP64=x.dtype == torch.float64,
        BLOCK_R=block_r, BLOCK_G=block_g, num_warps=num_warps)
    return y


def langevin_step_bwd(gy: torch.Tensor, out: torch.Tensor, grad: torch.Tensor,
                      a_t: torch.Tensor | None, a: float, seed: int, offset: int,
                      sample_offset: int, clamp, need_a: bool, need_c: bool):
    """Backward of :func:`langevin_step_fwd`, one fused pass (the noise regenerated, not stored).

    Args:
        gy: gradient of the output, shape/dtype of ``out`` (any strides).
        out: the saved forward output (for the clamp mask).
        grad: the forward's ``grad`` input (for d/da).
        a_t, a: the step size, per row (B,) or the float a.
        seed, offset, sample_offset, clamp: as in the forward.
        need_a, need_c: whether to return the per-row sums for d/da and d/dc.

    Returns:
        (gx, gg, ga, gc): gx = gy*pass and gg = gy*pass*a (contiguous, out's shape and dtype);
        ga[b] = sum over row b of gy*pass*grad, gc[b] = sum of gy*pass*xi, (B,) tensors in the
        compute dtype (float64 for float64, else float32), or empty (0,) tensors when not
        needed. pass = 1 unless clamp is set and out is not strictly inside (lo, hi).
    """
    op = "gmkernels.triton.sde.langevin_step_bwd"
    _check(op, out, "out", grad_out=gy, grad=grad)
    rows, M = row_view(out.shape)
    a_t = _per_row(op, "step_size", a_t, rows, out)
    cd = _compute_dtype(out.dtype)
    gy, out, grad = gy.contiguous(), out.contiguous(), grad.contiguous()
    gx, gg = torch.empty_like(out), torch.empty_like(out)
    empty = out.new_empty((0,), dtype=cd)
    if rows == 0 or M == 0:
        zeros = out.new_zeros((rows,), dtype=cd)  # sums over empty rows
        return gx, gg, zeros if need_a else empty, zeros.clone() if need_c else empty
    on, lo, hi = _clamp_args(clamp)
    block_r, block_g, n_gblocks, n_programs, num_warps = tile_config(rows, M, out.device)
    # Every (group block, row) slot is written by exactly one program, so no zero fill.
    pa = out.new_empty((n_gblocks, rows), dtype=cd) if need_a else empty
    pc = out.new_empty((n_gblocks, rows), dtype=cd) if need_c else empty
    _langevin_bwd_kernel[(n_programs,)](
        gy, out, grad, out if a_t is None else a_t, gx, gg,
        pa if need_a else out, pc if need_c else out,
        float(a), lo, hi, rows, M, n_gblocks,
        *stream_halves(seed, offset, sample_offset),
        HAS_A=a_t is not None, CLAMP=on, NEED_A=bool(need_a), NEED_C=bool(need_c),
        FP64=out.dtype == torch.float64, BLOCK_R=block_r, BLOCK_G=block_g, num_warps=num_warps)
    # Long rows span several tiles: add the tiles' partials (a tiny (n_gblocks, B) reduction).
    ga = (pa[0] if n_gblocks == 1 else pa.sum(0)) if need_a else empty
    gc = (pc[0] if n_gblocks == 1 else pc.sum(0)) if need_c else empty
    return gx, gg, ga, gc
