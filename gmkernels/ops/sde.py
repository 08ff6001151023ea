"""Fused stochastic steps (SPEC §3): the Langevin update.

``langevin_step`` is ``torch.ops.gmkernels.langevin_step`` with argument checks, seed
handling and backend choice in front of it, a fake kernel (``torch.compile``) and autograd.
"""

from __future__ import annotations

import math
import numbers

import torch

from .. import _backend
from ..random import as_int64_bits, check_stream_args, resolve_seed, row_view
from ..reference import sde as _ref

__all__ = ["langevin_step", "langevin_step_"]


# --------------------------------------------------------------------------------------------
# argument checks shared by the sde ops

def check_x_like(op: str, x, name: str, other, other_name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {x.dtype}")
    if not isinstance(other, torch.Tensor):
        raise TypeError(f"{op}: {other_name} must be a tensor, got {type(other).__name__}")
    if other.shape != x.shape:
        raise ValueError(f"{op}: {other_name} must have the shape of {name} {tuple(x.shape)}, "
                         f"got {tuple(other.shape)}")
    if other.dtype != x.dtype:
        raise TypeError(f"{op}: {other_name} must have the dtype of {name} ({x.dtype}), got {other.dtype}")
    if other.device != x.device:
        raise ValueError(f"{op}: {other_name} must be on {name}'s device ({x.device}), got {other.device}")


def scalar_or_per_sample(op: str, name: str, v, x: torch.Tensor, *, nonnegative: bool = True):
    """A step parameter: a finite float (>= 0), or a per-sample (B,) tensor on x's device.
    Returns (tensor or None, float)."""
    rows = x.shape[0] if x.dim() else 1
    if isinstance(v, torch.Tensor):
        if v.dim() == 0:
            v = float(v)
        else:
            if v.dim() != 1 or v.shape[0] != rows:
                raise ValueError(f"{op}: {name} must be a float or a per-sample tensor of shape "
                                 f"({rows},), got shape {tuple(v.shape)}")
            if not v.dtype.is_floating_point:
                raise TypeError(f"{op}: {name} must be a floating-point tensor, got {v.dtype}")
            if v.device != x.device:
                raise ValueError(f"{op}: {name} must be on {x.device}, got {v.device}")
            # A value check reads the tensor (a host sync on CUDA, a data-dependent branch
            # that torch.compile cannot trace), so traced graphs skip it.
            if not torch.compiler.is_compiling():
                bad = ~torch.isfinite(v) | (v < 0) if nonnegative else ~torch.isfinite(v)
                if bool(bad.any()):
                    raise ValueError(f"{op}: every {name} must be finite"
                                     f"{' and >= 0' if nonnegative else ''}, got {v.tolist()}")
            return v, 0.0
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{op}: {name} must be a float or a (B,) tensor, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or (nonnegative and v < 0):
        raise ValueError(f"{op}: {name} must be finite{' and >= 0' if nonnegative else ''}, got {v}")
    return None, v


def check_clamp(op: str, clamp):
    if clamp is None:
        return None, None
    try:
        lo, hi = (float(c) for c in clamp)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: clamp must be None or a pair (lo, hi) of floats, got {clamp!r}") from None
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ValueError(f"{op}: clamp must be (lo, hi) with lo <= hi, got ({lo}, {hi})")
    return lo, hi


# --------------------------------------------------------------------------------------------
# langevin_step

def _prepare(op, x, grad, step_size, noise_scale, seed, offset, sample_offset, generator, clamp):
    check_x_like(op, x, "x", grad, "grad")
    a_t, a = scalar_or_per_sample(op, "step_size", step_size, x)
    c_t, c = scalar_or_per_sample(op, "noise_scale", noise_scale, x)
    lo, hi = check_clamp(op, clamp)
    rows, _ = row_view(x.shape)
    seed, offset, sample_offset = check_stream_args(op, resolve_seed(seed, generator), offset,
                                                    sample_offset, rows)
    return a_t, a, c_t, c, lo, hi, seed, offset, sample_offset


def langevin_step(x: torch.Tensor, grad: torch.Tensor, step_size, noise_scale, *, seed=None,
                  offset: int = 0, sample_offset: int = 0, generator=None,
                  clamp=None) -> torch.Tensor:
    """One fused Langevin / SGLD update (SPEC §3.1), in one pass over memory:

        out = clamp(x + step_size * grad + noise_scale * xi),
        xi  = gmkernels.random.normal(x.shape, seed, offset, sample_offset)

    Unadjusted Langevin with score ``grad = ∇log p``: ``step_size = ε, noise_scale = sqrt(2ε)``.
    Annealed Langevin (Song & Ermon 2019, Alg. 1): ``step_size = α_i/2, noise_scale = sqrt(α_i)``.
    SGLD on an energy (Welling & Teh 2011; Du & Mordatch 2019): ``grad = -∇E``,
    ``step_size = λ/2, noise_scale = sqrt(λ)``, optionally ``clamp`` to the data range.

    Args:
        x: (B, ...) any rank and strides; float32, float64 (float16/bfloat16 with float32 math).
        grad: same shape, dtype and device as x.
        step_size, noise_scale: floats >= 0, or per-sample (B,) tensors broadcast over the
            other dims (differentiable).
        seed: uint64 Philox key; None draws one from ``generator`` / the default generator.
        offset: uint64 stream position; a sampler gives each step its own.
        sample_offset: global index of row 0 (sharding a batch reproduces the full batch).
        clamp: None or (lo, hi): clip the result; no gradient flows where it clipped.

    Returns:
        a new contiguous tensor of x's shape and dtype.

    Gradients: d/dx is the identity (zero where clamped), d/dgrad is ``step_size``, d/dstep_size
    is ``sum(grad)`` and d/dnoise_scale is ``sum(xi)`` over each sample (the noise is
    regenerated in the backward from the seed, not stored).

    >>> x = torch.randn(8, 2); g = -x                  # score of N(0, I)
    >>> y = gmkernels.langevin_step(x, g, 0.01, (2 * 0.01) ** 0.5, seed=0, offset=step)
    """
    op = "gmkernels.langevin_step"
    a_t, a, c_t, c, lo, hi, seed, offset, sample_offset = _prepare(
        op, x, grad, step_size, noise_scale, seed, offset, sample_offset, generator, clamp)
    backend = _backend.choose("langevin_step", x.device)
    if backend == "native":
        return torch.ops.gmkernels.langevin_step(x, grad, a_t, a, c_t, c, as_int64_bits(seed),
                                                 as_int64_bits(offset), sample_offset, lo, hi)
    clamp = None if lo is None else (lo, hi)
    if backend == "triton":
        return _TritonLangevin.apply(x, grad, a_t, a, c_t, c, seed, offset, sample_offset, clamp)
    return _ref.langevin_step(x, grad, a if a_t is None else a_t, c if c_t is None else c_t,
                              seed, offset, sample_offset, clamp)


def langevin_step_(x: torch.Tensor, grad: torch.Tensor, step_size, noise_scale, *, seed=None,
                   offset: int = 0, sample_offset: int = 0, generator=None,
                   clamp=None) -> torch.Tensor:
    """In-place :func:`langevin_step`: overwrites and returns ``x`` (for sampler loops, where
    a fresh output per step is an allocation and a cache miss). Not differentiable: use
    :func:`langevin_step` under autograd."""
    op = "gmkernels.langevin_step_"
    if torch.is_grad_enabled() and (x.requires_grad or grad.requires_grad):
        raise RuntimeError(f"{op}: in-place step on tensors that require grad; use "
                           "gmkernels.langevin_step (out of place) for autograd, or torch.no_grad()")
    a_t, a, c_t, c, lo, hi, seed, offset, sample_offset = _prepare(
        op, x, grad, step_size, noise_scale, seed, offset, sample_offset, generator, clamp)
    backend = _backend.choose("langevin_step_", x.device)
    if backend == "native":
        torch.ops.gmkernels.langevin_step_(x, grad, a_t, a, c_t, c, as_int64_bits(seed),
                                           as_int64_bits(offset), sample_offset, lo, hi)
        return x
    clamp = None if lo is None else (lo, hi)
    if backend == "triton":
        from ..triton import sde as _tri
        y = _tri.langevin_step_fwd(x, grad, a_t, a, c_t, c, seed, offset, sample_offset, clamp)
    else:
        y = _ref.langevin_step(x, grad, a if a_t is None else a_t, c if c_t is None else c_t,
                               seed, offset, sample_offset, clamp)
    return x.copy_(y)


class _TritonLangevin(torch.autograd.Function):
    """Autograd for the Triton backend: the same backward as the native op's."""

    @staticmethod
    def forward(ctx, x, grad, a_t, a, c_t, c, seed, offset, sample_offset, clamp):
        from ..triton import sde as _tri
        out = _tri.langevin_step_fwd(x, grad, a_t, a, c_t, c, seed, offset, sample_offset, clamp)
        ctx.save_for_backward(out, grad, a_t)
        ctx.args = (a, seed, offset, sample_offset, clamp, a_t is not None, c_t)
        return out

    @staticmethod
    def backward(ctx, gy):
        from ..triton import sde as _tri
        out, grad, a_t = ctx.saved_tensors
        a, seed, offset, sample_offset, clamp, has_a_t, c_t = ctx.args
        need_a = has_a_t and ctx.needs_input_grad[2]
        need_c = c_t is not None and ctx.needs_input_grad[4]
        gx, gg, ga, gc = _tri.langevin_step_bwd(gy, out, grad, a_t if has_a_t else None, a, seed,
                                               offset, sample_offset, clamp, need_a, need_c)
        return (gx, gg, ga.to(a_t.dtype) if need_a else None, None,
                gc.to(c_t.dtype) if need_c else None, None, None, None, None, None)


# --------------------------------------------------------------------------------------------
# fake kernels and autograd of the dispatcher ops

if _backend.extension_available():

    @torch.library.register_fake("gmkernels::langevin_step")
    def _langevin_fake(x, grad, a_t, a, c_t, c, seed, offset, sample_offset, lo, hi):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake("gmkernels::langevin_step_")
    def _langevin_inplace_fake(x, grad, a_t, a, c_t, c, seed, offset, sample_offset, lo, hi):
        return None

    @torch.library.register_fake("gmkernels::langevin_step_backward")
    def _langevin_bwd_fake(gy, out, grad, a_t, a, seed, offset, sample_offset, lo, hi,
                           need_step_grad, need_noise_grad):
        acc = torch.float64 if out.dtype == torch.float64 else torch.float32
        rows = out.shape[0] if out.dim() else 1
        gx = torch.empty_like(out, memory_format=torch.contiguous_format)
        gg = torch.empty_like(out, memory_format=torch.contiguous_format)
        ga = out.new_empty((rows if need_step_grad else 0,), dtype=acc)
        gc = out.new_empty((rows if need_noise_grad else 0,), dtype=acc)
        return gx, gg, ga, gc

    def _setup_context(ctx, inputs, output):
        x, grad, a_t, a, c_t, c, seed, offset, sample_offset, lo, hi = inputs
        ctx.save_for_backward(output, grad, a_t, c_t)
        ctx.args = (a, seed, offset, sample_offset, lo, hi)

    def _backward(ctx, gy):
        out, grad, a_t, c_t = ctx.saved_tensors
        a, seed, offset, sample_offset, lo, hi = ctx.args
        need_a = a_t is not None and ctx.needs_input_grad[2]
        need_c = c_t is not None and ctx.needs_input_grad[4]
        gx, gg, ga, gc = torch.ops.gmkernels.langevin_step_backward(
            gy, out, grad, a_t, a, seed, offset, sample_offset, lo, hi, need_a, need_c)
        return (gx, gg, ga.to(a_t.dtype) if need_a else None, None,
                gc.to(c_t.dtype) if need_c else None, None, None, None, None, None, None)

    torch.library.register_autograd("gmkernels::langevin_step", _backward,
                                    setup_context=_setup_context)
