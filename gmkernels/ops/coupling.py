"""The fused affine coupling transform (docs/spec.md §1.2): RealNVP / Glow coupling layers, NICE's
additive coupling, and the elementwise affine step of MAF and IAF, in one pass over memory.

``affine_coupling`` is the ``torch.ops.gmkernels.affine_coupling`` dispatcher op with argument
checks and backend choice in front of it, a fake kernel (``torch.compile``) and autograd whose
backward is the fused ``affine_coupling_backward`` op.
"""

from __future__ import annotations

import math
import numbers

import torch

from .. import _autograd, _backend, _checks
from .._enums import SCALES
from ..reference import coupling as _ref

__all__ = ["affine_coupling"]

def _check(op: str, x, s, t, mask, scale, clamp):
    """Validates the arguments; returns (mask tensor, scale code, clamp float or None)."""
    _checks.floating(op, "x", x)
    if x.dim() < 1:
        raise ValueError(f"{op}: x must have a batch dimension (rank >= 1), got a 0-d tensor")
    _checks.like(op, "x", x, "s", s)
    _checks.like(op, "x", x, "t", t)
    if not isinstance(mask, torch.Tensor) and isinstance(mask, (bool, numbers.Real)):
        if mask not in (0, 1):
            raise ValueError(f"{op}: mask must be 0, 1 or a tensor of 0/1, got {mask!r}")
        mask = torch.tensor(bool(mask), device=x.device)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{op}: mask must be a tensor (or 0 / 1), got {type(mask).__name__}")
    if mask.is_complex():
        raise TypeError(f"{op}: mask must be a bool, integer or floating tensor, got {mask.dtype}")
    _checks.same_device(op, "mask", mask, "x", x)
    ms, xs = mask.shape, x.shape
    if len(ms) > len(xs) or any(m != 1 and m != n for m, n in zip(ms[::-1], xs[::-1])):
        raise ValueError(f"{op}: mask of shape {tuple(mask.shape)} is not broadcastable to x "
                         f"of shape {tuple(x.shape)}")
    if mask.dtype != torch.bool:  # a bool mask (what RealNVP uses) needs no value read
        _checks.values(op, "mask", mask, "0 or 1 (1 = pass through)",
                       lambda m: (m == 0) | (m == 1))
    _checks.choice(op, "scale", scale, SCALES)
    if clamp is not None and not (type(clamp) is float and math.isfinite(clamp) and clamp > 0):
        if isinstance(clamp, bool) or not isinstance(clamp, numbers.Real):
            raise TypeError(f"{op}: clamp must be None or a float > 0, got {type(clamp).__name__}")
        clamp = float(clamp)
        if not (math.isfinite(clamp) and clamp > 0):
            raise ValueError(f"{op}: clamp must be None or a finite float > 0, got {clamp}")
    return mask, SCALES[scale], clamp


def affine_coupling(x: torch.Tensor, s: torch.Tensor, t: torch.Tensor, mask, *,
                    inverse: bool = False, scale: str = "exp",
                    clamp: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Affine coupling transform with its log-determinant, fused (docs/spec.md §1.2).

    Per element, with ``l`` the log-scale of ``s``:

    * ``scale="exp"``:     ``l = s``             (RealNVP, Dinh et al. 2017; Glow)
    * ``scale="sigmoid"``: ``l = log(sigmoid(s + 2) + 1e-3)`` (nflows' AffineCouplingTransform;
      the scale stays in [1e-3, 1.001], so the layer can only contract)
    * ``clamp=c``: ``s`` is first soft-clamped to ``c * tanh(s / c)`` (in the kernel)
    * forward:  ``y = x * e^l + t``,       ``logdet = +sum((1 - mask) * l)``
    * inverse:  ``y = (x - t) * e^-l``,    ``logdet = -sum((1 - mask) * l)``
    * where ``mask`` is 1, ``y = x`` exactly, whatever ``s`` and ``t`` hold (a select, so a
      huge ``s`` there cannot give inf * 0 = NaN).

    The sums run over every dim but the first. ``e^-l`` is computed directly (``exp(-s)``),
    never as ``1 / exp(s)``: with float32 and ``|s| <= 80`` (``e^80 = 5.5e34``) the outputs stay
    finite for ``|x|, |t| < ~6e3``, and the logdet is finite for any finite ``s``.

    MAF / IAF (Papamakarios et al. 2017; Kingma et al. 2016): with ``mask=0`` every element is
    transformed, so MAF's inverse ``u = (x - mu) * exp(-alpha)`` is
    ``affine_coupling(x, alpha, mu, 0, inverse=True)`` (logdet ``-sum(alpha)``) and IAF's
    forward ``z = x * exp(s) + m`` is ``affine_coupling(x, s, m, 0)``; the autoregressive
    network supplies ``s``/``alpha`` and ``t``/``mu``. NICE's additive coupling is ``s = 0``.

    Args:
        x: (B, ...) with B the batch, e.g. (B, D) or images (B, C, H, W); any strides;
            float32, float64 (float16/bfloat16 with float32 math).
        s, t: network outputs of x's shape, dtype and device (the raw log-scale and shift).
        mask: 1 = pass through, 0 = transform; a bool/integer/float tensor of 0/1 broadcastable
            to x (a checkerboard (1, 1, H, W), a channel mask (1, C, 1, 1), a half mask (D,)),
            or the number 0 / 1. A mask without a batch dim is read as one small pattern per
            row, never expanded to x's size.
        inverse: apply the inverse transform.
        scale: ``"exp"`` or ``"sigmoid"``.
        clamp: None or a float ``c > 0`` for the soft clamp ``c * tanh(s / c)``.

    Returns:
        ``(y, logdet)``: y a new contiguous tensor of x's shape and dtype; logdet (B,) of x's
        dtype (accumulated in float32 / float64).

    Gradients: flow to x, s and t (fused backward op; the scale is recomputed from s, not
    saved), not to the mask. Double backward (``create_graph=True``) is supported by a
    composite backward: that backward re-runs the reference forward (in the kernel's compute
    dtype) under autograd and differentiates it with ``create_graph=True``, instead of the
    fused op.

    >>> x = torch.randn(8, 4); mask = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    >>> net = torch.nn.Linear(4, 8)                       # any conditioner of the pass part
    >>> s, t = net(x * mask).chunk(2, dim=1)
    >>> y, logdet = gmkernels.affine_coupling(x, s, t, mask, clamp=5.0)
    >>> x2, neg = gmkernels.affine_coupling(y, s, t, mask, inverse=True, clamp=5.0)
    >>> torch.allclose(x2, x, atol=1e-5) and torch.allclose(neg, -logdet)
    True
    """
    op = "gmkernels.affine_coupling"
    mask, code, clamp = _check(op, x, s, t, mask, scale, clamp)
    _checks.boolean(op, "inverse", inverse)
    inverse = bool(inverse)
    backend = _backend.choose_backend("affine_coupling", x.device)
    if backend == "native":
        return _backend.call_op(torch.ops.gmkernels.affine_coupling, (x, s, t),
                                x, s, t, mask, inverse, code, clamp)
    if backend == "triton":
        from ..triton import coupling as _tri
        return _tri.AffineCoupling.apply(x, s, t, mask, inverse, code, clamp)
    return _ref.affine_coupling(x, s, t, mask, inverse=inverse, scale=scale, clamp=clamp)


if _backend.op_exists("affine_coupling"):

    @torch.library.register_fake("gmkernels::affine_coupling")
    def _coupling_fake(x, s, t, mask, inverse, scale, clamp):
        return (torch.empty_like(x, memory_format=torch.contiguous_format),
                x.new_empty((x.shape[0],)))

if _backend.op_exists("affine_coupling_backward"):

    @torch.library.register_fake("gmkernels::affine_coupling_backward")
    def _coupling_bwd_fake(gy, gld, x, s, t, mask, inverse, scale, clamp):
        return tuple(torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(3))

if _backend.op_exists("affine_coupling") and _backend.op_exists("affine_coupling_backward"):

    def _coupling_setup(ctx, inputs, output):
        x, s, t, mask, inverse, scale, clamp = inputs
        ctx.save_for_backward(x, s, t, mask)
        ctx.args = (inverse, scale, clamp)

    def _coupling_backward(ctx, gy, gld):
        x, s, t, mask = ctx.saved_tensors
        inverse, scale, clamp = ctx.args
        n = ctx.needs_input_grad
        if _autograd.wants_graph(gy, gld, x, s, t):  # create_graph: the composite backward
            return _autograd.affine_coupling_grads(x, s, t, mask, inverse, scale, clamp, n[:3],
                                                   (gy, gld)) + (None,) * 4
        if gy is None:
            gy = torch.zeros_like(x)
        if gld is None:
            gld = x.new_zeros((x.shape[0],))
        gx, gs, gt = torch.ops.gmkernels.affine_coupling_backward(
            gy, gld, x, s, t, mask, inverse, scale, clamp)
        return (gx if n[0] else None, gs if n[1] else None, gt if n[2] else None,
                None, None, None, None)

    torch.library.register_autograd("gmkernels::affine_coupling", _coupling_backward,
                                    setup_context=_coupling_setup)
