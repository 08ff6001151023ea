"""Backwards in differentiable torch ops: the composite backward of every differentiable op.

A fused ``<op>_backward`` op (and a Triton backward kernel) computes first-order gradients
only: its outputs carry no autograd graph, so a second backward through them would silently
miss every term that flows through the first gradient. Under
``torch.autograd.grad(..., create_graph=True)`` (sliced score matching, a loss on a gradient,
backpropagating through a gradient-based sampler) each op's backward therefore runs a
**composite backward** instead: the same gradients written in differentiable torch ops, which
a second (third, ...) backward differentiates like any other graph. :func:`wants_graph` is the
switch at the top of every backward: true only when the backward runs with grad mode on
(``create_graph=True``) and one of its tensors requires grad; every other backward keeps the
fused op.

* The SDE steps are affine in x and the score / drift with per-row coefficients, so their
  gradients are closed forms (``langevin_grads``, ``euler_maruyama_grads``,
  ``reverse_sde_grads``, ``affine_noise_grads``). The noise is regenerated from
  ``(seed, offset, sample_offset)`` by the :mod:`gmkernels.random` fill of the current backend,
  the stream the kernels draw (docs/spec.md §0). The Triton backend's SDE steps (all but the
  Langevin step, which has a backward kernel) use these closed forms for their first-order
  backward too: there they are one elementwise pass.
* ``planar_flow``, ``affine_coupling`` and ``rbm_free_energy`` re-run their reference forward
  under autograd and differentiate it with ``create_graph=True`` (:func:`recompute_grads`).
"""

from __future__ import annotations

import math

import torch

from . import random as _random
from ._checks import rows_of
from ._enums import PREDICTORS, SCALES, SDE_KINDS, names
from .reference import coupling as _ref_coupling
from .reference import planar as _ref_planar
from .reference import rbm as _ref_rbm
from .reference.random import compute_dtype
from .score.coefficients import reverse_coefficients

__all__ = ["wants_graph", "recompute_grads", "planar_flow_grads", "affine_coupling_grads",
           "rbm_free_energy_grads", "langevin_grads", "euler_maruyama_grads",
           "reverse_sde_grads", "affine_noise_grads"]

_U64 = (1 << 64) - 1
_KIND_NAMES = names(SDE_KINDS)
_PRED_NAMES = names(PREDICTORS)
_SCALE_NAMES = names(SCALES)


def wants_graph(*tensors) -> bool:
    """Whether a backward must build a graph of its gradients: grad mode is on inside it
    (``create_graph=True``) and one of ``tensors`` (its incoming gradients and saved inputs)
    requires grad. False in every first-order backward, which then runs the fused op."""
    return torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def recompute_grads(forward, inputs, needs, grad_outputs):
    """Gradients of ``forward(*inputs)`` (a tensor or a tuple of tensors) with respect to the
    inputs flagged in ``needs``, weighted by ``grad_outputs`` (None: that output gets no
    gradient), as differentiable tensors (``create_graph=True``). None where not needed.

    Each needed input goes in as its own view, so an input passed twice (``f(x, x)``) gets the
    partial derivative of its own position, not the total one."""
    with torch.enable_grad():
        args = [t.view_as(t) if n else t for t, n in zip(inputs, needs)]
        outs = forward(*args)
    outs = tuple(outs) if isinstance(outs, (tuple, list)) else (outs,)
    pairs = [(o, g) for o, g in zip(outs, grad_outputs) if g is not None and o.requires_grad]
    wanted = [a for a, n in zip(args, needs) if n]
    if pairs and wanted:
        grads = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                         create_graph=True, allow_unused=True))
    else:
        grads = iter([None] * len(wanted))
    return tuple(next(grads) if n else None for n in needs)


def planar_flow_grads(z, u_hat, w, b, needs, grad_outputs):
    """(gz, gu_hat, gw, gb) of ``planar_flow`` for the outputs' gradients (gy, gl)."""
    return recompute_grads(_ref_planar.planar_flow, (z, u_hat, w, b), needs, grad_outputs)


def affine_coupling_grads(x, s, t, mask, inverse, code, clamp, needs, grad_outputs):
    """(gx, gs, gt) of ``affine_coupling`` (scale as the schema's int code) for the outputs'
    gradients (gy, gld): the reference forward in the kernels' compute dtype (float32 for the
    half types), differentiated."""
    cd = compute_dtype(x.dtype)

    def forward(x, s, t):
        y, ld = _ref_coupling.affine_coupling(x.to(cd), s.to(cd), t.to(cd), mask,
                                              inverse=inverse, scale=_SCALE_NAMES[code],
                                              clamp=clamp)
        return y.to(x.dtype), ld.to(x.dtype)

    return recompute_grads(forward, (x, s, t), needs, grad_outputs)


def rbm_free_energy_grads(v, W, b, c, needs, grad):
    """(gv, gW, gb, gc) of ``rbm_free_energy`` for the output's gradient ``grad``."""
    return recompute_grads(_ref_rbm.rbm_free_energy, (v, W, b, c), needs, (grad,))


# --------------------------------------------------------------------------------------------
# the SDE steps' closed forms

def row_sum(v: torch.Tensor, rows: int) -> torch.Tensor:
    """(rows,) sums of v over each row (all of a sample's elements)."""
    return v.reshape(rows, v.numel() // max(rows, 1)).sum(dim=1)


def bcast(v, like: torch.Tensor):
    """A (B,) tensor as (B, 1, ..., 1) against ``like``; floats and 0-d tensors as they are."""
    if isinstance(v, torch.Tensor) and v.dim() == 1 and like.dim() > 1:
        return v.reshape((-1,) + (1,) * (like.dim() - 1))
    if isinstance(v, torch.Tensor) and like.dim() == 0:
        return v.reshape(())
    return v


def noise(like: torch.Tensor, seed: int, offset: int, sample_offset: int, dtype) -> torch.Tensor:
    """The step's xi of ``like``'s shape in ``dtype``, drawn by the current backend's fill
    (seed and offset as uint64 or as the dispatcher's int64 bits)."""
    return _random.normal(like.shape, seed & _U64, offset & _U64, sample_offset, dtype=dtype,
                          device=like.device)


def langevin_grads(gy, out, grad, a_t, a, seed, offset, sample_offset, lo, hi, need_a, need_c):
    """(gx, gg, ga, gc) of ``out = clamp(x + a grad + c xi)``: gx = gy*pass, gg = gy*pass*a,
    ga = row sums of gy*pass*grad, gc = row sums of gy*pass*xi (None unless needed, in the
    compute dtype). pass = 1, or with a clamp 1 where ``out`` is strictly inside (lo, hi), as
    the fused backward (csrc/sde/sde.h clamp_pass)."""
    cd = compute_dtype(out.dtype)
    g = gy.to(cd)
    if lo is not None:
        o = out.to(cd)
        g = g * ((o > lo) & (o < hi)).to(cd)  # a product: an inf gradient where clamped is NaN
    rows = rows_of(out)
    ar = bcast(a_t.to(cd), g) if a_t is not None else a
    gx, gg = g.to(out.dtype), (g * ar).to(out.dtype)
    ga = row_sum(g * grad.to(cd), rows) if need_a else None
    gc = row_sum(g * noise(out, seed, offset, sample_offset, cd), rows) if need_c else None
    return gx, gg, ga, gc


def euler_maruyama_grads(gy, g_t, dt, seed, offset, sample_offset, need_g):
    """(grad_x, grad_drift, grad_diffusion or None) of ``x + drift dt + g sqrt|dt| xi``."""
    gx = gy.contiguous()
    gd = gy * dt
    gg = None
    if need_g:
        cd = compute_dtype(gy.dtype)
        w = gy.to(cd) * (math.sqrt(abs(dt)) * noise(gy, seed, offset, sample_offset, cd))
        gg = w if g_t.shape == gy.shape and gy.dim() != 1 else row_sum(w, rows_of(gy))
        gg = gg.to(g_t.dtype)
    return gx, gd, gg


def reverse_sde_grads(gy, t_t, t, dt, kind, p0, p1, predictor, pf):
    """(grad_x, grad_score) of the reverse step ``cx x + cs s + cn xi`` (kind and predictor
    as the schemas' int codes): the noise term has no differentiable input."""
    cd = compute_dtype(gy.dtype)
    cx, cs, _ = reverse_coefficients(_KIND_NAMES[kind], p0, p1, t_t, t, dt, _PRED_NAMES[predictor],
                                     pf, cd, gy.device)
    g = gy.to(cd)
    return (bcast(cx, g) * g).to(gy.dtype), (bcast(cs, g) * g).to(gy.dtype)


def affine_noise_grads(gy, x, e, cx_t, cx, ce_t, ce, cn_t, seed, offset, sample_offset, needs):
    """Gradients of ``cx x - ce e + cn xi`` for (x, e, cx_t, ce_t, cn_t), each None unless its
    flag in ``needs`` is set (and, for a coefficient, it is a tensor)."""
    cd = compute_dtype(gy.dtype)
    g = gy.to(cd)
    rows = rows_of(gy)
    pick = lambda t, f: bcast(t.to(cd), g) if t is not None else f  # noqa: E731
    gx = (pick(cx_t, cx) * g).to(gy.dtype) if needs[0] else None
    ge = (-pick(ce_t, ce) * g).to(gy.dtype) if needs[1] else None
    gcx = row_sum(g * x.to(cd), rows).to(cx_t.dtype) if needs[2] and cx_t is not None else None
    gce = (-row_sum(g * e.to(cd), rows)).to(ce_t.dtype) if needs[3] and ce_t is not None else None
    gcn = None
    if needs[4] and cn_t is not None:
        gcn = row_sum(g * noise(gy, seed, offset, sample_offset, cd), rows).to(cn_t.dtype)
    return gx, ge, gcx, gce, gcn
