"""The fused affine coupling transform (SPEC §1.2): RealNVP / Glow coupling layers, NICE's
additive coupling, and the elementwise affine step of MAF and IAF, in one pass over memory.

``affine_coupling`` is the ``torch.ops.gmkernels.affine_coupling`` dispatcher op with argument
checks and backend choice in front of it, a fake kernel (``torch.compile``) and autograd whose
backward is the fused ``affine_coupling_backward`` op.
"""

from __future__ import annotations

import math
import numbers

import torch

from .. import _backend
from ..reference import coupling as _ref

__all__ = ["affine_coupling"]

SCALES = {"exp": 0, "sigmoid": 1}
_SCALE_NAMES = {v: k for k, v in SCALES.items()}


def _op_exists(name: str) -> bool:
    return _backend.extension_available() and hasattr(torch.ops.gmkernels, name)


_HAS_OP = _op_exists("affine_coupling")  # a fact of the loaded build (hasattr costs ~us)


def _choose(device) -> str:
    """_backend.choose, falling back to the reference when the loaded extension predates the op."""
    if _HAS_OP:
        return _backend.choose("affine_coupling", device)
    name = _backend._override()
    if name == "native":
        raise RuntimeError("gmkernels: backend 'native' cannot run affine_coupling: the loaded "
                           "extension has no gmkernels::affine_coupling (rebuild it)")
    if name == "triton":
        return _backend.choose("affine_coupling", device)
    return "reference"


def _check(op: str, x, s, t, mask, scale, clamp):
    """Validates the arguments; returns (mask tensor, scale code, clamp float or None)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{op}: x must be a floating-point tensor, got {x.dtype}")
    if x.dim() < 1:
        raise ValueError(f"{op}: x must have a batch dimension (rank >= 1), got a 0-d tensor")
    for name, v in (("s", s), ("t", t)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a tensor, got {type(v).__name__}")
        if v.shape != x.shape:
            raise ValueError(f"{op}: {name} must have the shape of x {tuple(x.shape)}, "
                             f"got {tuple(v.shape)}")
        if v.dtype != x.dtype:
            raise TypeError(f"{op}: {name} must have the dtype of x ({x.dtype}), got {v.dtype}")
        if v.device != x.device:
            raise ValueError(f"{op}: {name} must be on x's device ({x.device}), got {v.device}")
    if not isinstance(mask, torch.Tensor) and isinstance(mask, (bool, numbers.Real)):
        if mask not in (0, 1):
            raise ValueError(f"{op}: mask must be 0, 1 or a tensor of 0/1, got {mask!r}")
        mask = torch.tensor(bool(mask), device=x.device)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{op}: mask must be a tensor (or 0 / 1), got {type(mask).__name__}")
    if mask.is_complex():
        raise TypeError(f"{op}: mask must be a bool, integer or floating tensor, got {mask.dtype}")
    if mask.device != x.device:
        raise ValueError(f"{op}: mask must be on x's device ({x.device}), got {mask.device}")
    ms, xs = mask.shape, x.shape
    if len(ms) > len(xs) or any(m != 1 and m != n for m, n in zip(ms[::-1], xs[::-1])):
        raise ValueError(f"{op}: mask of shape {tuple(mask.shape)} is not broadcastable to x "
                         f"of shape {tuple(x.shape)}")
    # A value check reads the mask (a host sync on CUDA, a branch torch.compile cannot trace),
    # so bool masks (what RealNVP uses) and traced graphs skip it.
    if mask.dtype != torch.bool and not torch.compiler.is_compiling():
        if bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError(f"{op}: mask must hold only 0 and 1 (1 = pass through)")
    if scale not in SCALES:
        raise ValueError(f"{op}: scale must be one of {tuple(SCALES)}, got {scale!r}")
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
    """Affine coupling transform with its log-determinant, fused (SPEC §1.2).

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

    Gradients flow to x, s and t (fused backward op; the scale is recomputed from s, not
    saved), not to the mask.

    >>> x = torch.randn(8, 4); mask = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    >>> s, t = net(x * mask).chunk(2, dim=1)              # any conditioner of the pass part
    >>> y, logdet = gmkernels.affine_coupling(x, s, t, mask, clamp=5.0)
    >>> x2, neg = gmkernels.affine_coupling(y, s, t, mask, inverse=True, clamp=5.0)  # x2 == x
    """
    op = "gmkernels.affine_coupling"
    mask, code, clamp = _check(op, x, s, t, mask, scale, clamp)
    inverse = bool(inverse)
    backend = _choose(x.device)
    if backend == "native":
        return _backend.call_op(torch.ops.gmkernels.affine_coupling, (x, s, t),
                                x, s, t, mask, inverse, code, clamp)
    if backend == "triton":
        return _TritonCoupling.apply(x, s, t, mask, inverse, code, clamp)
    return _ref.affine_coupling(x, s, t, mask, inverse=inverse, scale=scale, clamp=clamp)


def mask_pattern(mask: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The Triton kernels' view of a mask (the layout coupling.cpp's coupling_prepare builds): a
    bool pattern of M = numel/B elements shared by every row (returned stride 0), or, for a
    mask that varies over the batch, B*M elements (stride M)."""
    if mask.dim() == x.dim() and mask.shape[0] != 1:
        return mask.expand(x.shape).ne(0).contiguous(), math.prod(x.shape[1:])
    m = mask.squeeze(0) if mask.dim() == x.dim() else mask
    return m.expand(x.shape[1:]).ne(0).contiguous(), 0


class _TritonCoupling(torch.autograd.Function):
    """Autograd for the Triton backend: the same fused backward as the native op's."""

    @staticmethod
    def forward(ctx, x, s, t, mask, inverse, code, clamp):
        from ..triton import coupling as _tri
        pat, stride = mask_pattern(mask, x)
        x, s, t = x.contiguous(), s.contiguous(), t.contiguous()
        y, ld = _tri.affine_coupling_fwd(x, s, t, pat, stride, inverse, code, clamp)
        ctx.save_for_backward(x, s, t, pat)
        ctx.args = (stride, inverse, code, clamp)
        return y, ld

    @staticmethod
    def backward(ctx, gy, gld):
        from ..triton import coupling as _tri
        x, s, t, pat = ctx.saved_tensors
        stride, inverse, code, clamp = ctx.args
        gy = torch.zeros_like(x) if gy is None else gy.contiguous()
        gld = x.new_zeros(x.shape[0]) if gld is None else gld.contiguous()
        gx, gs, gt = _tri.affine_coupling_bwd(gy, gld, x, s, t, pat, stride, inverse, code, clamp)
        n = ctx.needs_input_grad
        return (gx if n[0] else None, gs if n[1] else None, gt if n[2] else None,
                None, None, None, None)


# --------------------------------------------------------------------------------------------
# fake kernels and autograd of the dispatcher ops

if _op_exists("affine_coupling"):

    @torch.library.register_fake("gmkernels::affine_coupling")
    def _coupling_fake(x, s, t, mask, inverse, scale, clamp):
        return (torch.empty_like(x, memory_format=torch.contiguous_format),
                x.new_empty((x.shape[0],)))

if _op_exists("affine_coupling_backward"):

    @torch.library.register_fake("gmkernels::affine_coupling_backward")
    def _coupling_bwd_fake(gy, gld, x, s, t, mask, inverse, scale, clamp):
        return tuple(torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(3))

if _op_exists("affine_coupling") and _op_exists("affine_coupling_backward"):

    def _coupling_setup(ctx, inputs, output):
        x, s, t, mask, inverse, scale, clamp = inputs
        ctx.save_for_backward(x, s, t, mask)
        ctx.args = (inverse, scale, clamp)

    def _coupling_backward(ctx, gy, gld):
        x, s, t, mask = ctx.saved_tensors
        inverse, scale, clamp = ctx.args
        if gy is None:
            gy = torch.zeros_like(x)
        if gld is None:
            gld = x.new_zeros((x.shape[0],))
        gx, gs, gt = torch.ops.gmkernels.affine_coupling_backward(
            gy, gld, x, s, t, mask, inverse, scale, clamp)
        n = ctx.needs_input_grad
        return (gx if n[0] else None, gs if n[1] else None, gt if n[2] else None,
                None, None, None, None)

    torch.library.register_autograd("gmkernels::affine_coupling", _coupling_backward,
                                    setup_context=_coupling_setup)
