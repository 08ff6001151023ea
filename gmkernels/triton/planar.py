"""Triton kernels of the planar flow (docs/spec.md §1.1): the fused K-layer forward and its backward.

Mirror of ``csrc/flows/planar.cpp`` / ``planar.cu``: one program owns ``BLOCK_B`` rows with the
whole row (``BLOCK_D >= D``) in registers and loops over the K layers. The backward makes the
same three sweeps as the C++ kernels: (0) forward, storing the pre-activations a_k in a (K, B)
workspace; (1) reverse sweep, storing d/da_k and d/d(û_k·w_k) there too; (2) forward sweep
rebuilding z_k for d/dw_k. Nothing of size (B, K, D) is stored. Shared-parameter gradients are
per-program partial sums ((programs, K, D), summed by the caller), so they do not depend on the
order in which programs run.

tanh and 1 - tanh² come from one exp(-2|a|) (``tl.extra.libdevice.tanh`` does not run in the
interpreter), log|1 + (1 - h²)û·w| without cancellation as in planar.h (layer_log_psi).
Called by :mod:`gmkernels.ops.planar` when the ``"triton"`` backend is chosen.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _autograd

__all__ = ["planar_flow_fwd", "planar_flow_bwd"]


@triton.jit
def _act(a):
    """(tanh a, 1 - tanh² a) from e = exp(-2|a|): tanh|a| = (1 - e)/(1 + e), sech² = 4e/(1+e)².
    1 - e cancels for small |a| (tanh(1e-30) would come out 0), so below |a| = 0.1 tanh is its
    Taylor series through a^15 (next term < 1e-17 relative there)."""
    ax = tl.abs(a)
    e = tl.exp(-2.0 * ax)
    d = 1.0 + e
    a2 = a * a
    p = -929569.0 / 638512875.0
    p = p * a2 + 21844.0 / 6081075.0
    p = p * a2 - 1382.0 / 155925.0
    p = p * a2 + 62.0 / 2835.0
    p = p * a2 - 17.0 / 315.0
    p = p * a2 + 2.0 / 15.0
    p = p * a2 - 1.0 / 3.0
    small = a + a * a2 * p
    th = (1.0 - e) / d
    h = tl.where(ax < 0.1, small, tl.where(a < 0, -th, th))
    s = 4.0 * e / (d * d)
    return h, s


@triton.jit
def _psi(h, s, uw):
    """1 + s·uw without cancellation (csrc/flows/planar.h layer_psi): for uw < 0,
    (1 + uw) + h²(-uw), both terms >= 0."""
    return tl.where(uw >= 0, 1.0 + s * uw, (1.0 + uw) - h * h * uw)


@triton.jit
def _log_psi(h, s, uw):
    """log|psi| (csrc/flows/planar.h layer_log_psi): for uw >= 0 log1p(s·uw) by Goldberg's
    log(u)·y/(u - 1), u = 1 + y (log1p accuracy near 0); for uw < 0 log of _psi's form."""
    y = s * uw
    u = 1.0 + y
    den = tl.where(u == 1.0, 1.0, u - 1.0)
    l1p = tl.where(u == 1.0, y, tl.log(u) * (y / den))
    return tl.where(uw >= 0, l1p, tl.log(tl.abs(_psi(h, s, uw))))


@triton.jit
def _params(u_ptr, w_ptr, b_ptr, rows, cols, k, K, D, rmask, cmask, PS: tl.constexpr,
            CD: tl.constexpr):
    """û_k, w_k as (BLOCK_B, BLOCK_D) (per sample) or (1, BLOCK_D) (shared) and b_k."""
    if PS:
        m2 = rmask[:, None] & cmask[None, :]
        off = (rows[:, None].to(tl.int64) * K + k) * D + cols[None, :]
        uk = tl.load(u_ptr + off, mask=m2, other=0.0).to(CD)
        wk = tl.load(w_ptr + off, mask=m2, other=0.0).to(CD)
        bk = tl.load(b_ptr + rows.to(tl.int64) * K + k, mask=rmask, other=0.0).to(CD)
    else:
        uk = tl.load(u_ptr + k * D + cols, mask=cmask, other=0.0).to(CD)[None, :]
        wk = tl.load(w_ptr + k * D + cols, mask=cmask, other=0.0).to(CD)[None, :]
        bk = tl.load(b_ptr + k).to(CD)
    return uk, wk, bk


@triton.jit
def _planar_fwd_kernel(z_ptr, u_ptr, w_ptr, b_ptr, out_ptr, ld_ptr, B, K, D,
                       PS: tl.constexpr, FP64: tl.constexpr, BLOCK_B: tl.constexpr,
                       BLOCK_D: tl.constexpr):
    """out, logdet of BLOCK_B rows of the contiguous (B, D) z."""
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_D)
    rmask = rows < B
    cmask = cols < D
    m2 = rmask[:, None] & cmask[None, :]
    zoff = rows[:, None].to(tl.int64) * D + cols[None, :]
    z = tl.load(z_ptr + zoff, mask=m2, other=0.0).to(CD)
    ld = tl.zeros([BLOCK_B], dtype=CD)
    for k in range(K):
        uk, wk, bk = _params(u_ptr, w_ptr, b_ptr, rows, cols, k, K, D, rmask, cmask, PS, CD)
        a = tl.sum(z * wk, axis=1) + bk
        uw = tl.sum(uk * wk, axis=1)
        h, s = _act(a)
        ld += _log_psi(h, s, uw)
        z = z + uk * h[:, None]
    tl.store(out_ptr + zoff, z.to(out_ptr.dtype.element_ty), mask=m2)
    tl.store(ld_ptr + rows, ld.to(ld_ptr.dtype.element_ty), mask=rmask)


@triton.jit
def _planar_bwd_kernel(gy_ptr, gl_ptr, z_ptr, u_ptr, w_ptr, b_ptr, gz_ptr, gu_ptr, gw_ptr,
                       gb_ptr, ws_ptr, B, K, D,
                       HAS_GY: tl.constexpr, HAS_GL: tl.constexpr, PS: tl.constexpr,
                       FP64: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
    """Backward of BLOCK_B rows. ws: (3K, B) in the compute dtype (a_k, d/da_k, c_k).
    Per sample, gu/gw (B, K, D) and gb (B, K) are written; shared, gu/gw are (programs, K, D)
    and gb (programs, K) partial sums of this program's rows."""
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_D)
    rmask = rows < B
    cmask = cols < D
    m2 = rmask[:, None] & cmask[None, :]
    rows64 = rows.to(tl.int64)
    zoff = rows64[:, None] * D + cols[None, :]
    z0 = tl.load(z_ptr + zoff, mask=m2, other=0.0).to(CD)
    # (0) forward, storing a_k
    z = z0
    for k in range(K):
        uk, wk, bk = _params(u_ptr, w_ptr, b_ptr, rows, cols, k, K, D, rmask, cmask, PS, CD)
        a = tl.sum(z * wk, axis=1) + bk
        tl.store(ws_ptr + k * B + rows64, a, mask=rmask)
        h, s = _act(a)
        z = z + uk * h[:, None]
    # (1) reverse sweep
    if HAS_GY:
        gz = tl.load(gy_ptr + zoff, mask=m2, other=0.0).to(CD)
    else:
        gz = tl.zeros([BLOCK_B, BLOCK_D], dtype=CD)
    if HAS_GL:
        gl = tl.load(gl_ptr + rows, mask=rmask, other=0.0).to(CD)
    else:
        gl = tl.zeros([BLOCK_B], dtype=CD)
    for kk in range(K):
        k = K - 1 - kk
        uk, wk, bk = _params(u_ptr, w_ptr, b_ptr, rows, cols, k, K, D, rmask, cmask, PS, CD)
        a = tl.load(ws_ptr + k * B + rows64, mask=rmask, other=0.0)
        h, s = _act(a)
        dotu = tl.sum(gz * uk, axis=1)
        uw = tl.sum(uk * wk, axis=1)
        inv_psi = 1.0 / _psi(h, s, uw)
        c = gl * s * inv_psi
        ga = dotu * s + gl * uw * inv_psi * (-2.0 * h * s)
        tl.store(ws_ptr + (K + k) * B + rows64, ga, mask=rmask)
        tl.store(ws_ptr + (2 * K + k) * B + rows64, c, mask=rmask)
        gu_k = gz * h[:, None] + c[:, None] * wk
        if PS:
            off = (rows64[:, None] * K + k) * D + cols[None, :]
            tl.store(gu_ptr + off, gu_k.to(gu_ptr.dtype.element_ty), mask=m2)
            tl.store(gb_ptr + rows64 * K + k, ga.to(gb_ptr.dtype.element_ty), mask=rmask)
        else:
            # masked rows have gz = 0, gl = 0, hence ga = c = 0: they add nothing
            tl.store(gu_ptr + (pid * K + k) * D + cols, tl.sum(gu_k, axis=0), mask=cmask)
            tl.store(gb_ptr + pid * K + k, tl.sum(ga, axis=0))
        gz = gz + ga[:, None] * wk
    tl.store(gz_ptr + zoff, gz.to(gz_ptr.dtype.element_ty), mask=m2)
    # (2) forward sweep rebuilding z_k: d/dw_k = ga_k z_k + c_k û_k
    z = z0
    for k in range(K):
        uk, wk, bk = _params(u_ptr, w_ptr, b_ptr, rows, cols, k, K, D, rmask, cmask, PS, CD)
        a = tl.load(ws_ptr + k * B + rows64, mask=rmask, other=0.0)
        ga = tl.load(ws_ptr + (K + k) * B + rows64, mask=rmask, other=0.0)
        c = tl.load(ws_ptr + (2 * K + k) * B + rows64, mask=rmask, other=0.0)
        h, s = _act(a)
        gw_k = ga[:, None] * z + c[:, None] * uk
        if PS:
            off = (rows64[:, None] * K + k) * D + cols[None, :]
            tl.store(gw_ptr + off, gw_k.to(gw_ptr.dtype.element_ty), mask=m2)
        else:
            tl.store(gw_ptr + (pid * K + k) * D + cols, tl.sum(gw_k, axis=0), mask=cmask)
        z = z + uk * h[:, None]


def _config(B: int, D: int, device) -> tuple[int, int, int]:
    """(BLOCK_B, BLOCK_D, num_warps). The interpreter (CPU tensors) runs a program as numpy
    arrays, so it gets large blocks and few programs; a GPU gets ~4K elements per program."""
    block_d = triton.next_power_of_2(max(D, 2))
    cap = (1 << 14) if device.type == "cpu" else 4096
    block_b = max(1, min(triton.next_power_of_2(max(B, 1)), max(cap // block_d, 1)))
    return block_b, block_d, 4


def planar_flow_fwd(z, u_hat, w, b):
    """(z_K, logdet) of contiguous float32/float64 inputs (shapes as the op's)."""
    B, D = z.shape
    ps = u_hat.dim() == 3
    K = u_hat.shape[1] if ps else u_hat.shape[0]
    out = torch.empty_like(z)
    ld = torch.empty(B, dtype=z.dtype, device=z.device)
    if B == 0:
        return out, ld
    BB, BD, nw = _config(B, D, z.device)
    _planar_fwd_kernel[(triton.cdiv(B, BB),)](z, u_hat, w, b, out, ld, B, K, D, PS=ps,
                                             FP64=z.dtype == torch.float64, BLOCK_B=BB,
                                             BLOCK_D=BD, num_warps=nw)
    return out, ld


def planar_flow_bwd(gy, gl, z, u_hat, w, b):
    """(grad_z, grad_u_hat, grad_w, grad_b); gy / gl may be None (zero)."""
    B, D = z.shape
    ps = u_hat.dim() == 3
    K = u_hat.shape[1] if ps else u_hat.shape[0]
    gz = torch.empty_like(z)
    if B == 0:
        return gz, torch.zeros_like(u_hat), torch.zeros_like(w), torch.zeros_like(b)
    BB, BD, nw = _config(B, D, z.device)
    n = triton.cdiv(B, BB)
    ws = torch.empty((3 * max(K, 1), B), dtype=z.dtype, device=z.device)
    if ps:
        gu, gw, gb = torch.empty_like(u_hat), torch.empty_like(w), torch.empty_like(b)
    else:
        gu = torch.zeros((n, K, D), dtype=z.dtype, device=z.device)
        gw = torch.zeros((n, K, D), dtype=z.dtype, device=z.device)
        gb = torch.zeros((n, K), dtype=z.dtype, device=z.device)
    _planar_bwd_kernel[(n,)](gy if gy is not None else z, gl if gl is not None else z, z,
                             u_hat, w, b, gz, gu, gw, gb, ws, B, K, D,
                             HAS_GY=gy is not None, HAS_GL=gl is not None, PS=ps,
                             FP64=z.dtype == torch.float64, BLOCK_B=BB, BLOCK_D=BD,
                             num_warps=nw)
    if not ps:
        gu, gw, gb = gu.sum(0), gw.sum(0), gb.sum(0)
    return gz, gu, gw, gb


class PlanarFlow(torch.autograd.Function):
    """Autograd for the Triton backend: the Triton backward kernel, or under
    create_graph=True the composite backward (the reference forward, differentiated). The
    inputs are saved as given (their contiguous copies would be cut from the graph)."""

    @staticmethod
    def forward(ctx, z, u_hat, w, b):
        ctx.save_for_backward(z, u_hat, w, b)
        return planar_flow_fwd(*(t.contiguous() for t in (z, u_hat, w, b)))

    @staticmethod
    def backward(ctx, gy, gl):
        z, u_hat, w, b = ctx.saved_tensors
        if _autograd.wants_graph(gy, gl, z, u_hat, w, b):
            return _autograd.planar_flow_grads(z, u_hat, w, b, ctx.needs_input_grad, (gy, gl))
        return planar_flow_bwd(None if gy is None else gy.contiguous(),
                               None if gl is None else gl.contiguous(),
                               *(t.contiguous() for t in (z, u_hat, w, b)))
