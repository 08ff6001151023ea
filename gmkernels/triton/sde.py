"""Triton kernels of the fused Langevin step (docs/spec.md §3.1) and its backward, and of the SDE steps
(docs/spec.md §3.2/§3.3): generic Euler-Maruyama, reverse-time VE/VP/sub-VP predictors, the
predictor-corrector Langevin corrector and the affine noise step behind the DDPM step.

Mirror of ``csrc/sde/sde.h`` / ``sde.cpp``: the noise ``xi`` is regenerated in the kernel from
the Philox stream (never stored), so forward and backward each make one pass over memory.
Called by :mod:`gmkernels.ops.sde` when the ``"triton"`` backend is chosen, with arguments it
has checked (the launchers here check nothing). The autograd Functions of this backend are at
the end of the file, beside the kernels they differentiate.

Compute dtype: float64 for float64 tensors, float32 otherwise (float16/bfloat16 are loaded,
computed in float32 and rounded on the store), as the C++ kernels' ``opmath_type``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from .. import _autograd
from ..reference.random import row_view
from ._philox import (INTERPRET, cast_to, interleave4, normals4, stream_halves, stream_words,
                      tile_config, tile_index)

__all__ = ["langevin_step_fwd", "langevin_step_bwd", "euler_maruyama_step_fwd",
           "reverse_sde_step_fwd", "langevin_corrector_step_fwd", "affine_noise_step_fwd",
           "Langevin", "EulerMaruyama", "ReverseSde", "AffineNoise"]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# langevin_corrector_step: a larger step size counts as none (gmkernels/reference/sde.py).
CORRECTOR_MAX_STEP = tl.constexpr(2.0 ** 120)
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


def _per_row(t: torch.Tensor | None, like: torch.Tensor):
    """A per-row (rows,) parameter as a contiguous tensor of the compute dtype, or None."""
    if t is None:
        return None
    return t.detach().to(_compute_dtype(like.dtype)).contiguous()


def _clamp_args(clamp) -> tuple[bool, float, float]:
    if clamp is None:
        return False, 0.0, 0.0
    return True, float(clamp[0]), float(clamp[1])


def langevin_step_fwd(x: torch.Tensor, grad: torch.Tensor, a_t: torch.Tensor | None, a: float,
                      c_t: torch.Tensor | None, c: float, seed: int, offset: int,
                      sample_offset: int, clamp=None) -> torch.Tensor:
    """``clamp(x + a*grad + c*xi)``, ``xi = gmkernels.random.normal(x.shape, seed, offset,
    sample_offset)`` (docs/spec.md §3.1), one fused pass.

    Args:
        x, grad: (B, ...) any strides, same shape/dtype/device; float16/bfloat16/float32/float64.
        a_t, c_t: per-row (B,) step sizes / noise scales (any float dtype), or None to use the
            floats a / c.
        seed, offset: ints in [0, 2^64); sample_offset: int in [0, 2^32) (checked by the caller).
        clamp: None or (lo, hi).

    Returns:
        a new contiguous tensor of x's shape and dtype.
    """
    rows, M = row_view(x.shape)
    a_t = _per_row(a_t, x)
    c_t = _per_row(c_t, x)
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
    rows, M = row_view(out.shape)
    a_t = _per_row(a_t, out)
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


# ---------------------------------------------------------------------------------------------
# SDE steps (docs/spec.md §3.2, §3.3): one fused pass each (two for the corrector), the noise
# xi = gmkernels.random.normal(x.shape, seed, offset, sample_offset) regenerated in the kernel.

@triton.jit
def _sqrt(v, FP64: tl.constexpr):
    """IEEE-rounded square root in the compute dtype (``tl.sqrt`` on float32 is an
    approximation on NVIDIA GPUs; ``sqrt_rn`` is float32-only, float64 sqrt is rounded)."""
    if FP64:
        return tl.sqrt(v)
    else:
        return tl.sqrt_rn(v)


@triton.jit
def _div(a, b, FP64: tl.constexpr):
    """IEEE-rounded division (float32 ``/`` compiles to the 2-ulp div.full.f32)."""
    if FP64:
        return a / b
    else:
        return tl.div_rn(a, b)


@triton.jit
def _exp(v):
    """exp in the dtype of v: libdevice's ``exp`` when compiled (``tl.exp`` on float32 is
    ex2.approx of ``v * log2(e)``, whose error grows with |v|, and the SDE schedules take
    exponents up to ~20), numpy's in the interpreter (which has no libdevice)."""
    if INTERPRET:
        return tl.exp(v)
    else:
        return libdevice.exp(v)


@triton.jit
def _full(v, CD: tl.constexpr):
    """A float64 scalar argument as a 0-d value of the compute dtype (rounded once)."""
    return tl.full([], v, CD)


@triton.jit(do_not_specialize=_STREAM)
def _euler_maruyama_fwd_kernel(x_ptr, f_ptr, y_ptr, d_ptr,
                               diffusion: tl.float64, dt: tl.float64, sqrt_dt: tl.float64,
                               rows, M, n_gblocks,
                               seed_lo: tl.uint32, seed_hi: tl.uint32, off_lo: tl.uint32,
                               off_hi: tl.uint32, row0: tl.uint32,
                               DIFF: tl.constexpr, FP64: tl.constexpr,
                               BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """y = x + f*dt + (d*sqrt|dt|)*xi on one tile.

    DIFF: 0 the float ``diffusion``; 1 per-row, d_ptr (rows,) in the compute dtype; 2 a full
    tensor, d_ptr of x's (rows, M) layout in any float dtype. sqrt_dt = sqrt(|dt|) from the host.
    """
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    r, g, m, _ = tile_index(tl.program_id(0), n_gblocks, BLOCK_R, BLOCK_G)
    mask = (r < rows) & (m < M)
    offs = r * M + m
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(CD)
    f = tl.load(f_ptr + offs, mask=mask, other=0.0).to(CD)
    if DIFF == 2:
        d = tl.load(d_ptr + offs, mask=mask, other=0.0).to(CD)
    elif DIFF == 1:
        d = _row_param(d_ptr, r, rows, diffusion, True, CD)
    else:
        d = _full(diffusion, CD)
    xi = _noise_tile(r, g, seed_lo, seed_hi, off_lo, off_hi, row0, FP64)
    y = x + f * _full(dt, CD) + d * _full(sqrt_dt, CD) * xi
    tl.store(y_ptr + offs, cast_to(y, y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _pow(a, b, FP64: tl.constexpr):
    """``a ** b`` (a > 0) in the dtype of a: libdevice's ``pow`` when compiled (as the C++
    ``powf``/``pow``); in the interpreter, which has no libdevice, ``exp(b * ln a)`` in float64
    rounded back (within an ulp of the correctly rounded power for float32)."""
    if INTERPRET:
        return tl.exp(b.to(tl.float64) * tl.log(a.to(tl.float64))).to(a.dtype)
    else:
        return libdevice.pow(a, b)


@triton.jit
def _reverse_sde_row_coefs(tr, dt, p0, p1, KIND: tl.constexpr, PREDICTOR: tl.constexpr,
                           PF: tl.constexpr, FP64: tl.constexpr):
    """Per-row (cx, ce, cn) of the reverse step from tr to tr - dt, ``y = cx*x - ce*s + cn*xi``
    (csrc/sde/sde.h reverse_sde_coefs, in the compute dtype): with F = Fc*x and G2,
    cx = 1 - Fc, ce = -G2 (-G2/2 under PF), cn = sqrt(G2) (unused under PF), where

    * Euler-Maruyama (any SDE) and reverse diffusion of sub-VP: Fc = fc*dt, G2 = g2*dt with
      f = fc*x and g^2 of the forward SDE (docs/spec.md §3.2);
    * reverse diffusion, VE: Fc = 0, G2 = sigma(t)^2 - sigma(max(t - dt, 0))^2;
    * reverse diffusion, VP: beta_d = beta(t)*dt, Fc = sqrt(1 - beta_d) - 1, G2 = beta_d.
    """
    if PREDICTOR == 1 and KIND == 0:
        ratio = _div(p1, p0, FP64)
        tp = tl.where(tr - dt > 0.0, tr - dt, 0.0)
        sg = p0 * _pow(ratio, tr, FP64)
        sp = p0 * _pow(ratio, tp, FP64)
        fc_dt = tl.zeros_like(tr)
        g2_dt = sg * sg - sp * sp
    elif PREDICTOR == 1 and KIND == 1:
        g2_dt = (p0 + tr * (p1 - p0)) * dt
        fc_dt = _sqrt(1.0 - g2_dt, FP64) - 1.0
    else:
        if KIND == 0:  # VE: sigma = p0 (p1/p0)^t, f = 0, g^2 = 2 sigma^2 ln(p1/p0)
            ratio = _div(p1, p0, FP64)
            sigma = p0 * _pow(ratio, tr, FP64)
            fc = tl.zeros_like(tr)
            g2 = 2.0 * sigma * sigma * tl.log(ratio)
        else:  # VP / sub-VP: beta = p0 + t (p1 - p0), f = -beta/2 x
            beta = p0 + tr * (p1 - p0)
            fc = -0.5 * beta
            if KIND == 1:
                g2 = beta
            else:  # sub-VP: g^2 = beta (1 - exp(-2 int_0^t beta))
                g2 = beta * (1.0 - _exp(-2.0 * (p0 * tr + 0.5 * tr * tr * (p1 - p0))))
        fc_dt = fc * dt
        g2_dt = g2 * dt
    cx = 1.0 - fc_dt
    if PF:
        ce = -0.5 * g2_dt
        cn = tl.zeros_like(g2_dt)
    else:
        ce = -g2_dt
        cn = _sqrt(g2_dt, FP64)
    return cx, ce, cn


@triton.jit(do_not_specialize=_STREAM)
def _reverse_sde_fwd_kernel(x_ptr, s_ptr, y_ptr, t_ptr,
                            t: tl.float64, dt: tl.float64, p0: tl.float64, p1: tl.float64,
                            rows, M, n_gblocks,
                            seed_lo: tl.uint32, seed_hi: tl.uint32, off_lo: tl.uint32,
                            off_hi: tl.uint32, row0: tl.uint32,
                            HAS_T: tl.constexpr, KIND: tl.constexpr, PREDICTOR: tl.constexpr,
                            PF: tl.constexpr, FP64: tl.constexpr,
                            BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """One reverse-time step from t to t - dt on one tile (KIND 0 VE / 1 VP / 2 sub-VP;
    PREDICTOR 0 Euler-Maruyama / 1 reverse diffusion; PF the probability-flow ODE, no noise):
    ``y = cx*x - ce*s + cn*xi`` with the per-row coefficients of
    :func:`_reverse_sde_row_coefs`, i.e.

    * EM:  y = x - (f - g2*s)*dt + sqrt(g2*dt)*xi   (PF: x - (f - g2*s/2)*dt)
    * RD:  y = x - (F - G2*s) + sqrt(G2)*xi         (PF: x - (F - G2*s/2))

    t per row from t_ptr (rows,) in the compute dtype when HAS_T, else the float t.
    """
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    r, g, m, _ = tile_index(tl.program_id(0), n_gblocks, BLOCK_R, BLOCK_G)
    mask = (r < rows) & (m < M)
    offs = r * M + m
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(CD)
    s = tl.load(s_ptr + offs, mask=mask, other=0.0).to(CD)
    tr = _row_param(t_ptr, r, rows, t, HAS_T, CD)
    cx, ce, cn = _reverse_sde_row_coefs(tr, _full(dt, CD), _full(p0, CD), _full(p1, CD),
                                        KIND, PREDICTOR, PF, FP64)
    y = cx * x - ce * s
    if not PF:  # no draws for the ODE
        y = y + cn * _noise_tile(r, g, seed_lo, seed_hi, off_lo, off_hi, row0, FP64)
    tl.store(y_ptr + offs, cast_to(y, y_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=_STREAM)
def _corrector_norms_kernel(s_ptr, pn_ptr, ps_ptr, rows, M, n_gblocks,
                            seed_lo: tl.uint32, seed_hi: tl.uint32, off_lo: tl.uint32,
                            off_hi: tl.uint32, row0: tl.uint32,
                            FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """This tile's per-row partial sums of xi^2 and s^2, written to pn/ps[pg, r] ((n_gblocks,
    rows) in the compute dtype), as the Langevin backward's partials (no atomics: the sums
    do not depend on the order the programs run in)."""
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    r, g, m, pg = tile_index(tl.program_id(0), n_gblocks, BLOCK_R, BLOCK_G)
    mask = (r < rows) & (m < M)
    s = tl.load(s_ptr + r * M + m, mask=mask, other=0.0).to(CD)
    xi = _noise_tile(r, g, seed_lo, seed_hi, off_lo, off_hi, row0, FP64)
    xi = tl.where(mask, xi, 0.0)  # the lanes past the row have noise too
    row_ok = r < rows
    slot = pg.to(tl.int64) * rows + r
    tl.store(pn_ptr + slot, tl.sum(xi * xi, axis=1)[:, None], mask=row_ok)
    tl.store(ps_ptr + slot, tl.sum(s * s, axis=1)[:, None], mask=row_ok)


@triton.jit(do_not_specialize=_STREAM)
def _corrector_fwd_kernel(x_ptr, s_ptr, y_ptr, a_ptr, means_ptr,
                          alpha: tl.float64, snr: tl.float64,
                          rows, M, n_gblocks,
                          seed_lo: tl.uint32, seed_hi: tl.uint32, off_lo: tl.uint32,
                          off_hi: tl.uint32, row0: tl.uint32,
                          HAS_A: tl.constexpr, FP64: tl.constexpr,
                          BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """y = x + eps*s + sqrt(2 eps)*xi on one tile, eps = 2*alpha*(snr*nn/gn)^2 from the batch
    means means = (nn, gn) = (mean_r ||xi_r||, mean_r ||s_r||) ((2,), compute dtype); eps = 0
    where gn == 0 or eps > 2^120 (y = x; a NaN gn stays NaN). alpha per row from a_ptr when
    HAS_A (csrc/sde/sde.h corrector_coefs)."""
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    r, g, m, _ = tile_index(tl.program_id(0), n_gblocks, BLOCK_R, BLOCK_G)
    mask = (r < rows) & (m < M)
    offs = r * M + m
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(CD)
    s = tl.load(s_ptr + offs, mask=mask, other=0.0).to(CD)
    nn = tl.load(means_ptr)
    gn = tl.load(means_ptr + 1)
    zero = gn == 0.0
    ratio = _div(_full(snr, CD) * nn, tl.where(zero, 1.0, gn), FP64)
    # 2*alpha*ratio*ratio left to right, as csrc/sde/sde.h corrector_coefs
    eps = 2.0 * _row_param(a_ptr, r, rows, alpha, HAS_A, CD) * ratio * ratio
    eps = tl.where(zero, 0.0, tl.where(eps > CORRECTOR_MAX_STEP, 0.0, eps))
    xi = _noise_tile(r, g, seed_lo, seed_hi, off_lo, off_hi, row0, FP64)
    y = x + eps * s + _sqrt(2.0 * eps, FP64) * xi
    tl.store(y_ptr + offs, cast_to(y, y_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=_STREAM)
def _affine_noise_fwd_kernel(x_ptr, e_ptr, y_ptr, cx_ptr, ce_ptr, cn_ptr,
                             cx: tl.float64, ce: tl.float64, cn: tl.float64,
                             rows, M, n_gblocks,
                             seed_lo: tl.uint32, seed_hi: tl.uint32, off_lo: tl.uint32,
                             off_hi: tl.uint32, row0: tl.uint32,
                             HAS_CX: tl.constexpr, HAS_CE: tl.constexpr, HAS_CN: tl.constexpr,
                             NOISE: tl.constexpr, FP64: tl.constexpr,
                             BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """y = cx*x - ce*e + cn*xi on one tile; each coefficient per row ((rows,), compute dtype)
    when its HAS_ flag is set, else the float. NOISE = False (the float cn is 0) skips the
    Philox draw: y = cx*x - ce*e."""
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    r, g, m, _ = tile_index(tl.program_id(0), n_gblocks, BLOCK_R, BLOCK_G)
    mask = (r < rows) & (m < M)
    offs = r * M + m
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(CD)
    e = tl.load(e_ptr + offs, mask=mask, other=0.0).to(CD)
    y = _row_param(cx_ptr, r, rows, cx, HAS_CX, CD) * x - _row_param(ce_ptr, r, rows, ce, HAS_CE,
                                                                     CD) * e
    if NOISE:
        xi = _noise_tile(r, g, seed_lo, seed_hi, off_lo, off_hi, row0, FP64)
        y = y + _row_param(cn_ptr, r, rows, cn, HAS_CN, CD) * xi
    tl.store(y_ptr + offs, cast_to(y, y_ptr.dtype.element_ty), mask=mask)


def euler_maruyama_step_fwd(x: torch.Tensor, drift: torch.Tensor,
                            diffusion_t: torch.Tensor | None, diffusion: float, dt: float,
                            seed: int, offset: int, sample_offset: int) -> torch.Tensor:
    """``x + drift*dt + diffusion*sqrt(|dt|)*xi`` (docs/spec.md §3.3, generic Euler-Maruyama), one pass.

    Args:
        x, drift: (B, ...) any strides, same shape/dtype/device; float16/bfloat16/float32/float64.
        diffusion_t: None (the float ``diffusion`` applies), a per-row (B,) tensor, or a full
            tensor of x's shape (any float dtype; a 1-D x makes the two the same thing).
        dt: the signed time step (|dt| under the square root).
        seed, offset: ints in [0, 2^64); sample_offset: int in [0, 2^32) (checked by the caller).

    Returns:
        a new contiguous tensor of x's shape and dtype.
    """
    rows, M = row_view(x.shape)
    mode = 0
    if diffusion_t is not None:
        if diffusion_t.shape == x.shape and diffusion_t.device == x.device:
            mode, diffusion_t = 2, diffusion_t.detach().contiguous()
        else:
            mode, diffusion_t = 1, _per_row(diffusion_t, x)
    x, drift = x.contiguous(), drift.contiguous()
    y = torch.empty_like(x)
    if rows == 0 or M == 0:
        return y
    block_r, block_g, n_gblocks, n_programs, num_warps = tile_config(rows, M, x.device)
    _euler_maruyama_fwd_kernel[(n_programs,)](
        x, drift, y, x if diffusion_t is None else diffusion_t,
        float(diffusion), float(dt), math.sqrt(abs(float(dt))), rows, M, n_gblocks,
        *stream_halves(seed, offset, sample_offset),
        DIFF=mode, FP64=x.dtype == torch.float64, BLOCK_R=block_r, BLOCK_G=block_g,
        num_warps=num_warps)
    return y


def reverse_sde_step_fwd(x: torch.Tensor, score: torch.Tensor, t_t: torch.Tensor | None,
                         t: float, dt: float, kind: int, p0: float, p1: float, predictor: int,
                         probability_flow: bool, seed: int, offset: int,
                         sample_offset: int) -> torch.Tensor:
    """One reverse-time step of the VE / VP / sub-VP SDE from t to t - dt (docs/spec.md §3.3), with
    the per-row f and g computed in the kernel from (p0, p1) and t, one pass over x and score.

    Args:
        x, score: (B, ...) any strides, same shape/dtype/device.
        t_t: per-row times (B,) (any float dtype), or None to use the float t.
        dt: the step (> 0, checked by the caller).
        kind: 0 VE (p0, p1 = sigma_min, sigma_max), 1 VP, 2 sub-VP (p0, p1 = beta_min,
            beta_max).
        predictor: 0 Euler-Maruyama, 1 reverse diffusion (Song et al. 2021).
        probability_flow: the probability-flow ODE step (half the score term, no noise; the
            stream is not read).
        seed, offset, sample_offset: the stream, as in :func:`euler_maruyama_step_fwd`.

    Returns:
        a new contiguous tensor of x's shape and dtype.
    """
    rows, M = row_view(x.shape)
    t_t = _per_row(t_t, x)
    x, score = x.contiguous(), score.contiguous()
    y = torch.empty_like(x)
    if rows == 0 or M == 0:
        return y
    block_r, block_g, n_gblocks, n_programs, num_warps = tile_config(rows, M, x.device)
    _reverse_sde_fwd_kernel[(n_programs,)](
        x, score, y, x if t_t is None else t_t,
        float(t), float(dt), float(p0), float(p1), rows, M, n_gblocks,
        *stream_halves(seed, offset, sample_offset),
        HAS_T=t_t is not None, KIND=int(kind), PREDICTOR=int(predictor),
        PF=bool(probability_flow), FP64=x.dtype == torch.float64, BLOCK_R=block_r,
        BLOCK_G=block_g, num_warps=num_warps)
    return y


def langevin_corrector_step_fwd(x: torch.Tensor, score: torch.Tensor,
                                alpha_t: torch.Tensor | None, alpha: float, snr: float,
                                seed: int, offset: int, sample_offset: int) -> torch.Tensor:
    """The predictor-corrector Langevin corrector (Song et al. 2021, Alg. 4/5) with the step
    size of their released code: ``nn = mean_r ||xi_r||``, ``gn = mean_r ||s_r||``,
    ``eps_r = 2*alpha_r*(snr*nn/gn)^2`` and ``y = x + eps_r*s + sqrt(2*eps_r)*xi``, the same xi
    in the norms and the update; eps = 0 (y = x) when gn == 0 or eps > 2^120.

    Two kernels: the per-row sums of xi^2 and s^2 (per-tile partials, added here, then the
    means of their square roots, all on the device), then the update, which draws xi again
    from the stream (it is never stored).

    Args:
        x, score: (B, ...) any strides, same shape/dtype/device.
        alpha_t: per-row (B,) alpha, or None to use the float alpha. snr: the float r.
        seed, offset, sample_offset: the stream, as in :func:`euler_maruyama_step_fwd`.

    Returns:
        a new contiguous tensor of x's shape and dtype.
    """
    rows, M = row_view(x.shape)
    alpha_t = _per_row(alpha_t, x)
    cd = _compute_dtype(x.dtype)
    x, score = x.contiguous(), score.contiguous()
    y = torch.empty_like(x)
    if rows == 0 or M == 0:
        return y
    block_r, block_g, n_gblocks, n_programs, num_warps = tile_config(rows, M, x.device)
    stream = stream_halves(seed, offset, sample_offset)
    fp64 = x.dtype == torch.float64
    # every (group block, row) slot is written by exactly one program, so no zero fill
    parts = x.new_empty((2, n_gblocks, rows), dtype=cd)
    _corrector_norms_kernel[(n_programs,)](
        score, parts[0], parts[1], rows, M, n_gblocks, *stream,
        FP64=fp64, BLOCK_R=block_r, BLOCK_G=block_g, num_warps=num_warps)
    # (2,): the batch means of the row norms, as float64 sums (csrc/sde/sde.h corrector_means)
    means = parts.sum(1).sqrt().to(torch.float64).mean(1).to(cd)
    _corrector_fwd_kernel[(n_programs,)](
        x, score, y, x if alpha_t is None else alpha_t, means,
        float(alpha), float(snr), rows, M, n_gblocks, *stream,
        HAS_A=alpha_t is not None, FP64=fp64, BLOCK_R=block_r, BLOCK_G=block_g,
        num_warps=num_warps)
    return y


def affine_noise_step_fwd(x: torch.Tensor, e: torch.Tensor, cx_t: torch.Tensor | None, cx: float,
                          ce_t: torch.Tensor | None, ce: float, cn_t: torch.Tensor | None,
                          cn: float, seed: int, offset: int, sample_offset: int) -> torch.Tensor:
    """``cx*x - ce*e + cn*xi`` (the DDPM ancestral step's form, Ho et al. 2020 Alg. 2), one
    pass; each coefficient a per-row (B,) tensor or, when its tensor is None, the float.

    Args:
        x, e: (B, ...) any strides, same shape/dtype/device.
        cx_t, ce_t, cn_t: per-row (B,) tensors (any float dtype) or None.
        seed, offset, sample_offset: the stream, as in :func:`euler_maruyama_step_fwd`
            (not read when cn_t is None and cn == 0).

    Returns:
        a new contiguous tensor of x's shape and dtype.
    """
    rows, M = row_view(x.shape)
    cx_t = _per_row(cx_t, x)
    ce_t = _per_row(ce_t, x)
    cn_t = _per_row(cn_t, x)
    x, e = x.contiguous(), e.contiguous()
    y = torch.empty_like(x)
    if rows == 0 or M == 0:
        return y
    block_r, block_g, n_gblocks, n_programs, num_warps = tile_config(rows, M, x.device)
    _affine_noise_fwd_kernel[(n_programs,)](
        x, e, y, *(x if v is None else v for v in (cx_t, ce_t, cn_t)),
        float(cx), float(ce), float(cn), rows, M, n_gblocks,
        *stream_halves(seed, offset, sample_offset),
        HAS_CX=cx_t is not None, HAS_CE=ce_t is not None, HAS_CN=cn_t is not None,
        NOISE=cn_t is not None or float(cn) != 0.0, FP64=x.dtype == torch.float64,
        BLOCK_R=block_r, BLOCK_G=block_g, num_warps=num_warps)
    return y


# ============================================================================================
# autograd of the Triton backend (gmkernels.ops.sde calls these when "triton" is chosen): the
# Langevin step runs its backward kernel; the SDE steps are affine in x and the score with
# per-row coefficients, so their backward is the closed form in torch ops of
# gmkernels._autograd, one elementwise pass (plus the regenerated noise for the gradient of a
# diffusion / noise coefficient), which is differentiable as it stands (double backward). Under
# create_graph=True the Langevin step runs that module's closed form instead of its kernel.

class Langevin(torch.autograd.Function):
    """Autograd for the Triton backend: the same backward as the native op's."""

    @staticmethod
    def forward(ctx, x, grad, a_t, a, c_t, c, seed, offset, sample_offset, clamp):
        out = langevin_step_fwd(x, grad, a_t, a, c_t, c, seed, offset, sample_offset, clamp)
        ctx.save_for_backward(out, grad, a_t)
        ctx.args = (a, seed, offset, sample_offset, clamp, a_t is not None, c_t)
        return out

    @staticmethod
    def backward(ctx, gy):
        out, grad, a_t = ctx.saved_tensors
        a, seed, offset, sample_offset, clamp, has_a_t, c_t = ctx.args
        need_a = has_a_t and ctx.needs_input_grad[2]
        need_c = c_t is not None and ctx.needs_input_grad[4]
        a_t = a_t if has_a_t else None
        if _autograd.wants_graph(gy, grad, a_t):  # create_graph: the composite backward
            lo, hi = (None, None) if clamp is None else (float(clamp[0]), float(clamp[1]))
            gx, gg, ga, gc = _autograd.langevin_grads(gy, out, grad, a_t, a, seed, offset,
                                                      sample_offset, lo, hi, need_a, need_c)
        else:
            gx, gg, ga, gc = langevin_step_bwd(gy, out, grad, a_t, a, seed, offset,
                                               sample_offset, clamp, need_a, need_c)
        return (gx, gg, ga.to(a_t.dtype) if need_a else None, None,
                gc.to(c_t.dtype) if need_c else None, None, None, None, None, None)


class EulerMaruyama(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, drift, g_t, g, dt, seed, offset, sample_offset):
        ctx.save_for_backward(g_t)
        ctx.args = (dt, seed, offset, sample_offset)
        return euler_maruyama_step_fwd(x.contiguous(), drift.contiguous(),
                                            None if g_t is None else g_t.contiguous(), g, dt,
                                            seed, offset, sample_offset)

    @staticmethod
    def backward(ctx, gy):
        (g_t,) = ctx.saved_tensors
        dt, seed, offset, sample_offset = ctx.args
        need_g = g_t is not None and ctx.needs_input_grad[2]
        gx, gd, gg = _autograd.euler_maruyama_grads(gy, g_t, dt, seed, offset, sample_offset,
                                                    need_g)
        return gx, gd, gg, None, None, None, None, None


class ReverseSde(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, score, t_t, t, dt, kind, p0, p1, predictor, pf, seed, offset, sample_offset):
        ctx.save_for_backward(t_t)
        ctx.args = (t, dt, kind, p0, p1, predictor, pf)
        return reverse_sde_step_fwd(x.contiguous(), score.contiguous(),
                                         None if t_t is None else t_t.contiguous(), t, dt, kind,
                                         p0, p1, predictor, pf, seed, offset, sample_offset)

    @staticmethod
    def backward(ctx, gy):
        (t_t,) = ctx.saved_tensors
        gx, gs = _autograd.reverse_sde_grads(gy, t_t, *ctx.args)
        return (gx, gs) + (None,) * 11


class AffineNoise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, e, cx_t, cx, ce_t, ce, cn_t, cn, seed, offset, sample_offset):
        ctx.save_for_backward(x, e, cx_t, ce_t, cn_t)
        ctx.args = (cx, ce, seed, offset, sample_offset)
        c = lambda t: None if t is None else t.contiguous()  # noqa: E731
        return affine_noise_step_fwd(x.contiguous(), e.contiguous(), c(cx_t), cx, c(ce_t), ce,
                                          c(cn_t), cn, seed, offset, sample_offset)

    @staticmethod
    def backward(ctx, gy):
        x, e, cx_t, ce_t, cn_t = ctx.saved_tensors
        cx, ce, seed, offset, sample_offset = ctx.args
        n = ctx.needs_input_grad
        gx, ge, gcx, gce, gcn = _autograd.affine_noise_grads(gy, x, e, cx_t, cx, ce_t, ce, cn_t,
                                                             seed, offset, sample_offset,
                                                             (n[0], n[1], n[2], n[4], n[6]))
        return gx, ge, gcx, None, gce, None, gcn, None, None, None, None
