"""Triton kernels of the affine coupling transform (docs/spec.md §1.2) and its backward.

Mirror of ``csrc/flows/coupling.h``: per element, with ``pass = mask != 0`` and
``s' = c tanh(s / c)`` when clamped,

* ``scale="exp"``:     log-scale ``l = s'``
* ``scale="sigmoid"``: ``l = log(sigmoid(s' + 2) + 1e-3)``
* forward ``y = x e^l + t``, inverse ``y = (x - t) e^-l``; pass elements ``y = x``;
* ``logdet = ±sum over the non-pass elements of l`` per row (minus for the inverse).

A program takes ``BLOCK_R`` rows and walks along them in ``BLOCK_M`` columns, so the logdet
sums stay in registers. Called by :mod:`gmkernels.ops.coupling` when the ``"triton"`` backend
is chosen. Compute dtype: float64 for float64 tensors, float32 otherwise.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from .. import _autograd
from ._philox import INTERPRET, cast_to

__all__ = ["affine_coupling_fwd", "affine_coupling_bwd"]

SIGMOID_EPS = tl.constexpr(1e-3)


@triton.jit
def _exp(v):
    """libdevice's exp when compiled (tl.exp on float32 is ex2.approx, whose error grows with
    |v|, and the log-scale reaches +-80); numpy's in the interpreter (no libdevice there)."""
    if INTERPRET:
        return tl.exp(v)
    else:
        return libdevice.exp(v)


@triton.jit
def _tanh(u):
    """tanh: libdevice when compiled; (1 - e) / (1 + e) with e = exp(-2|u|) in [0, 1] in the
    interpreter (libdevice.tanh does not run there; this form never overflows)."""
    if INTERPRET:
        e = tl.exp(-2.0 * tl.abs(u))
        th = (1.0 - e) / (1.0 + e)
        return tl.where(u < 0, -th, th)
    else:
        return libdevice.tanh(u)


@triton.jit
def _scale(s, c, ic, SCALE: tl.constexpr, CLAMP: tl.constexpr, INVERSE: tl.constexpr,
           NEED_DL: tl.constexpr):
    """(l, f, dl/ds) of coupling.h's coupling_scale: l the log-scale, f = e^l forward or e^-l
    inverse (computed directly, never 1/e^l). dl is None unless NEED_DL."""
    sc = s
    dclamp = 1.0
    if CLAMP:
        th = _tanh(s * ic)
        sc = c * th
        dclamp = 1.0 - th * th
    if SCALE == 0:
        if INVERSE:
            f = _exp(-sc)
        else:
            f = _exp(sc)
        dl = dclamp
        l = sc
    else:
        a = sc + 2.0
        e = _exp(-tl.abs(a))  # in (0, 1]: no overflow
        inv1e = 1.0 / (1.0 + e)
        sig = tl.where(a < 0, e * inv1e, inv1e)
        scale = sig + SIGMOID_EPS
        if INVERSE:
            f = 1.0 / scale
        else:
            f = scale
        dl = dclamp * (e * inv1e * inv1e) / scale
        l = tl.log(scale)
    if NEED_DL:
        return l, f, dl
    else:
        return l, f, None


@triton.jit
def _coupling_fwd_kernel(x_ptr, s_ptr, t_ptr, m_ptr, y_ptr, ld_ptr, c: tl.float64,
                         ic: tl.float64, rows, M, mrs,
                         SCALE: tl.constexpr, CLAMP: tl.constexpr, INVERSE: tl.constexpr,
                         FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_M: tl.constexpr):
    """y and logdet of BLOCK_R rows of the contiguous (rows, M) tensors."""
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    pid = tl.program_id(0)
    r = (pid * BLOCK_R + tl.arange(0, BLOCK_R)).to(tl.int64)[:, None]
    cols = tl.arange(0, BLOCK_M)[None, :]
    cc = tl.full([], c, CD)
    icc = tl.full([], ic, CD)
    acc = tl.zeros([BLOCK_R, BLOCK_M], CD)
    for m0 in range(0, M, BLOCK_M):
        j = m0 + cols
        inb = (r < rows) & (j < M)
        off = r * M + j
        x = tl.load(x_ptr + off, mask=inb, other=0.0).to(CD)
        s = tl.load(s_ptr + off, mask=inb, other=0.0).to(CD)
        t = tl.load(t_ptr + off, mask=inb, other=0.0).to(CD)
        pas = tl.load(m_ptr + r * mrs + j, mask=inb, other=1) != 0
        s = tl.where(pas, 0.0, s)  # never used where pass: keeps the discarded lanes finite
        l, f, _ = _scale(s, cc, icc, SCALE, CLAMP, INVERSE, False)
        if INVERSE:
            y = (x - t) * f
        else:
            y = x * f + t
        y = tl.where(pas, x, y)
        tl.store(y_ptr + off, cast_to(y, y_ptr.dtype.element_ty), mask=inb)
        acc += tl.where(pas | ~inb, 0.0, l)
    ld = tl.sum(acc, axis=1)
    if INVERSE:
        ld = -ld
    rr = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    tl.store(ld_ptr + rr, cast_to(ld, ld_ptr.dtype.element_ty), mask=rr < rows)


@triton.jit
def _coupling_bwd_kernel(gy_ptr, gld_ptr, x_ptr, s_ptr, t_ptr, m_ptr, gx_ptr, gs_ptr, gt_ptr,
                         c: tl.float64, ic: tl.float64, rows, M, mrs,
                         SCALE: tl.constexpr, CLAMP: tl.constexpr, INVERSE: tl.constexpr,
                         FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_M: tl.constexpr):
    """grad_x, grad_s, grad_t of BLOCK_R rows (coupling.h's coupling_elem_backward)."""
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    pid = tl.program_id(0)
    r = (pid * BLOCK_R + tl.arange(0, BLOCK_R)).to(tl.int64)[:, None]
    cols = tl.arange(0, BLOCK_M)[None, :]
    cc = tl.full([], c, CD)
    icc = tl.full([], ic, CD)
    gld = tl.load(gld_ptr + r, mask=r < rows, other=0.0).to(CD)
    for m0 in range(0, M, BLOCK_M):
        j = m0 + cols
        inb = (r < rows) & (j < M)
        off = r * M + j
        gy = tl.load(gy_ptr + off, mask=inb, other=0.0).to(CD)
        x = tl.load(x_ptr + off, mask=inb, other=0.0).to(CD)
        s = tl.load(s_ptr + off, mask=inb, other=0.0).to(CD)
        t = tl.load(t_ptr + off, mask=inb, other=0.0).to(CD)
        pas = tl.load(m_ptr + r * mrs + j, mask=inb, other=1) != 0
        s = tl.where(pas, 0.0, s)
        _, f, dl = _scale(s, cc, icc, SCALE, CLAMP, INVERSE, True)
        gyf = gy * f
        if INVERSE:
            gl = -(gyf * (x - t)) - gld
            gt = -gyf
        else:
            gl = gyf * x + gld
            gt = gy
        gx = tl.where(pas, gy, gyf)
        gs = tl.where(pas, 0.0, gl * dl)
        gt = tl.where(pas, 0.0, gt)
        ty = gx_ptr.dtype.element_ty
        tl.store(gx_ptr + off, cast_to(gx, ty), mask=inb)
        tl.store(gs_ptr + off, cast_to(gs, ty), mask=inb)
        tl.store(gt_ptr + off, cast_to(gt, ty), mask=inb)


# Elements per program: 2^16 in the interpreter (few programs: each costs Python time there),
# 4096 on a GPU (BLOCK_M up to 1024 columns per step; 4 warps hold 32 values per thread).
_INTERPRET_TILE = 1 << 16
_GPU_TILE = 4096
_GPU_MAX_M = 1024


def _tiles(rows: int, M: int, device) -> tuple[int, int, int]:
    if device.type == "cpu":
        block_m = min(triton.next_power_of_2(M), _INTERPRET_TILE)
        block_r = min(triton.next_power_of_2(rows), max(1, _INTERPRET_TILE // block_m))
    else:
        block_m = min(triton.next_power_of_2(M), _GPU_MAX_M)
        block_r = min(triton.next_power_of_2(rows), max(1, _GPU_TILE // block_m))
    return block_r, block_m, triton.cdiv(rows, block_r)


def _consts(clamp):
    return (float(clamp), 1.0 / float(clamp)) if clamp is not None else (1.0, 1.0)


def affine_coupling_fwd(x: torch.Tensor, s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor,
                        mask_row_stride: int, inverse: bool, scale: int, clamp):
    """(y, logdet) of contiguous (B, ...) x, s, t. ``mask``: contiguous uint8/bool pattern of
    M = numel / B elements (mask_row_stride 0) or of B*M (mask_row_stride M). scale: 0 exp,
    1 sigmoid. Returns a contiguous y and a (B,) logdet, both of x's dtype."""
    rows = x.shape[0]
    M = x[0].numel() if rows else 0
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    ld = torch.zeros((rows,), dtype=x.dtype, device=x.device)
    if rows == 0 or M == 0:
        return y, ld
    block_r, block_m, n = _tiles(rows, M, x.device)
    c, ic = _consts(clamp)
    _coupling_fwd_kernel[(n,)](
        x, s, t, mask, y, ld, c, ic, rows, M, mask_row_stride,
        SCALE=int(scale), CLAMP=clamp is not None, INVERSE=bool(inverse),
        FP64=x.dtype == torch.float64, BLOCK_R=block_r, BLOCK_M=block_m, num_warps=4)
    return y, ld


def affine_coupling_bwd(gy: torch.Tensor, gld: torch.Tensor, x: torch.Tensor, s: torch.Tensor,
                        t: torch.Tensor, mask: torch.Tensor, mask_row_stride: int, inverse: bool,
                        scale: int, clamp):
    """(grad_x, grad_s, grad_t) of :func:`affine_coupling_fwd`, all contiguous inputs; gld is
    the (B,) gradient of the logdet."""
    rows = x.shape[0]
    M = x[0].numel() if rows else 0
    gx = torch.empty_like(x, memory_format=torch.contiguous_format)
    gs = torch.empty_like(gx)
    gt = torch.empty_like(gx)
    if rows == 0 or M == 0:
        return gx, gs, gt
    block_r, block_m, n = _tiles(rows, M, x.device)
    c, ic = _consts(clamp)
    _coupling_bwd_kernel[(n,)](
        gy, gld, x, s, t, mask, gx, gs, gt, c, ic, rows, M, mask_row_stride,
        SCALE=int(scale), CLAMP=clamp is not None, INVERSE=bool(inverse),
        FP64=x.dtype == torch.float64, BLOCK_R=block_r, BLOCK_M=block_m, num_warps=4)
    return gx, gs, gt


def mask_pattern(mask: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The Triton kernels' view of a mask (the layout coupling.cpp's coupling_prepare builds): a
    bool pattern of M = numel/B elements shared by every row (returned stride 0), or, for a
    mask that varies over the batch, B*M elements (stride M)."""
    if mask.dim() == x.dim() and mask.shape[0] != 1:
        return mask.expand(x.shape).ne(0).contiguous(), math.prod(x.shape[1:])
    m = mask.squeeze(0) if mask.dim() == x.dim() else mask
    return m.expand(x.shape[1:]).ne(0).contiguous(), 0


class AffineCoupling(torch.autograd.Function):
    """Autograd for the Triton backend: the same fused backward as the native op's."""

    @staticmethod
    def forward(ctx, x, s, t, mask, inverse, code, clamp):
        pat, stride = mask_pattern(mask, x)
        # the inputs as given: their contiguous copies would be cut from the graph
        ctx.save_for_backward(x, s, t, mask, pat)
        ctx.args = (stride, inverse, code, clamp)
        return affine_coupling_fwd(x.contiguous(), s.contiguous(), t.contiguous(), pat, stride,
                                   inverse, code, clamp)

    @staticmethod
    def backward(ctx, gy, gld):
        x, s, t, mask, pat = ctx.saved_tensors
        stride, inverse, code, clamp = ctx.args
        n = ctx.needs_input_grad
        if _autograd.wants_graph(gy, gld, x, s, t):  # create_graph: the composite backward
            return _autograd.affine_coupling_grads(x, s, t, mask, inverse, code, clamp, n[:3],
                                                   (gy, gld)) + (None,) * 4
        x, s, t = x.contiguous(), s.contiguous(), t.contiguous()
        gy = torch.zeros_like(x) if gy is None else gy.contiguous()
        gld = x.new_zeros(x.shape[0]) if gld is None else gld.contiguous()
        gx, gs, gt = affine_coupling_bwd(gy, gld, x, s, t, pat, stride, inverse, code, clamp)
        return (gx if n[0] else None, gs if n[1] else None, gt if n[2] else None,
                None, None, None, None)
