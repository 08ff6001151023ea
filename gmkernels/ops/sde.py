"""Fused stochastic steps (SPEC §3): the Langevin update and the SDE sampler steps.

Each public op is a ``torch.ops.gmkernels.*`` dispatcher op with argument checks, seed
handling and backend choice in front of it, a fake kernel (``torch.compile``) and autograd:

* ``langevin_step`` / ``langevin_step_``: ``clamp(x + a g + c xi)`` (SPEC §3.1);
* ``euler_maruyama_step``: ``x + drift dt + diffusion sqrt|dt| xi`` (SPEC §3.3);
* ``reverse_sde_step``: one reverse-time step of a VE / VP / sub-VP SDE (Song et al. 2021);
* ``langevin_corrector_step``: the predictor-corrector sampler's corrector (Song et al. 2021);
* ``affine_noise_step``: ``cx x - ce e + cn xi``, and ``ddpm_step`` on top of it (Ho et al. 2020).
"""

from __future__ import annotations

import math
import numbers

import torch

from .. import _backend
from ..random import as_int64_bits, check_stream_args, resolve_seed, row_view
from ..reference import sde as _ref

__all__ = ["langevin_step", "langevin_step_", "euler_maruyama_step", "reverse_sde_step",
           "langevin_corrector_step", "affine_noise_step", "ddpm_step"]


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
    if type(v) is float and math.isfinite(v) and (v >= 0 or not nonnegative):
        return None, v  # the common case, without the ABC isinstance checks below
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
        return _backend.call_op(torch.ops.gmkernels.langevin_step, (x, grad, a_t, c_t),
                                x, grad, a_t, a, c_t, c, as_int64_bits(seed),
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


# ============================================================================================
# SDE steps (issue 3; SPEC §3.2-3.3)
#
# Backends. "native": the dispatcher ops of csrc/sde/sde.cpp (schemas in the API of issue 3).
# "triton": gmkernels/triton/sde.py must provide these forward functions (all take contiguous
# tensors, return a new contiguous tensor of x's shape and dtype, compute in float32, float64
# for float64 inputs; seed and offset are Python ints in [0, 2^64), sample_offset in [0, 2^32);
# the noise is gmkernels.random.normal(x.shape, seed, offset, sample_offset) element by element):
#
#   euler_maruyama_step_fwd(x, drift, diffusion_t, diffusion, dt, seed, offset, sample_offset)
#       x + drift*dt + g*sqrt(|dt|)*xi; g = diffusion_t ((B,) per row, or x's shape) or the float
#   reverse_sde_step_fwd(x, score, t_t, t, dt, kind, p0, p1, predictor, probability_flow,
#                        seed, offset, sample_offset)
#       kind: int 0=ve, 1=vp, 2=subvp; (p0, p1) = (sigma_min, sigma_max) or (beta_min, beta_max);
#       predictor: int 0=euler_maruyama, 1=reverse_diffusion; t_t (B,) per-row times or None
#       (then the float t); probability_flow: bool (no noise drawn)
#   langevin_corrector_step_fwd(x, score, alpha_t, alpha, snr, seed, offset, sample_offset)
#   affine_noise_step_fwd(x, e, cx_t, cx, ce_t, ce, cn_t, cn, seed, offset, sample_offset)
#       cx*x - ce*e + cn*xi, each coefficient the (B,) tensor when given, else the float
#
# Their gradients (triton backend) come from torch.autograd.Functions below whose backward is
# the closed form in torch ops: every step is affine in x and the score with per-row
# coefficients, so the backward is one elementwise pass (plus the regenerated noise for the
# gradient of a diffusion / noise coefficient).
# ============================================================================================

SDE_KINDS = {"ve": 0, "vp": 1, "subvp": 2}
PREDICTORS = {"euler_maruyama": 0, "reverse_diffusion": 1}


def _op_exists(name: str) -> bool:
    """Whether the loaded extension registers ``gmkernels::name`` (a build may predate it)."""
    return _backend.extension_available() and hasattr(torch.ops.gmkernels, name)


def _choose(op: str, device) -> str:
    """_backend.choose, but an op the loaded extension lacks falls back to the reference by
    default (and the "native" override says so) instead of the dispatcher's lookup error."""
    if _op_exists(op):
        return _backend.choose(op, device)
    name = _backend._override()
    if name == "native":
        raise RuntimeError(f"gmkernels: backend 'native' cannot run {op}: the loaded extension "
                           f"has no gmkernels::{op} (rebuild it: pip install --no-build-isolation -e .)")
    if name == "triton":
        return _backend.choose(op, device)
    return "reference"


def _call(name: str, tensors, *args):
    return _backend.call_op(getattr(torch.ops.gmkernels, name), tensors, *args)


def _rows_of(x: torch.Tensor) -> int:
    return x.shape[0] if x.dim() else 1


def _stream(op, x, seed, offset, sample_offset, generator):
    rows, _ = row_view(x.shape)
    return check_stream_args(op, resolve_seed(seed, generator), offset, sample_offset, rows)


def _check_finite_float(op: str, name: str, v, *, positive=False, nonzero=False) -> float:
    if type(v) is float and math.isfinite(v) and (v > 0 or not positive) and (v != 0 or not nonzero):
        return v  # the common case, without the ABC isinstance checks below (~1 us each)
    if isinstance(v, torch.Tensor) and v.dim() == 0:
        v = float(v)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{op}: {name} must be a float, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{op}: {name} must be finite, got {v}")
    if positive and not v > 0:
        raise ValueError(f"{op}: {name} must be > 0, got {v}")
    if nonzero and v == 0:
        raise ValueError(f"{op}: {name} must be nonzero, got {v}")
    return v


def _check_time(op: str, t, x: torch.Tensor):
    """t: a float in [0, 1] or a per-sample (B,) floating tensor with values in [0, 1].
    Returns (tensor or None, float)."""
    rows = _rows_of(x)
    if isinstance(t, torch.Tensor) and t.dim() > 0:
        if t.dim() != 1 or t.shape[0] != rows:
            raise ValueError(f"{op}: t must be a float or a per-sample tensor of shape ({rows},), "
                             f"got shape {tuple(t.shape)}")
        if not t.dtype.is_floating_point:
            raise TypeError(f"{op}: t must be a floating-point tensor, got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{op}: t must be on x's device ({x.device}), got {t.device}")
        if not torch.compiler.is_compiling():
            bad = ~((t >= 0) & (t <= 1))
            if bool(bad.any()):
                raise ValueError(f"{op}: every t must be in [0, 1], got {t[bad][:8].tolist()} "
                                 "among its values")
        return t.detach(), 0.0
    tf = _check_finite_float(op, "t", t)
    if not 0.0 <= tf <= 1.0:
        raise ValueError(f"{op}: t must be in [0, 1], got {tf}")
    return None, tf


def sde_params(op: str, sde) -> tuple[str, float, float]:
    """(kind, p0, p1) of an SDE object: ``kind`` "ve" with ``sigma_min, sigma_max``, or "vp" /
    "subvp" with ``beta_min, beta_max`` (gmkernels.score.VESDE / VPSDE / subVPSDE)."""
    kind = getattr(sde, "kind", None)
    if kind not in SDE_KINDS:
        raise TypeError(f"{op}: sde must have an attribute kind in {tuple(SDE_KINDS)} (e.g. "
                        f"gmkernels.score.VESDE()), got {type(sde).__name__} with kind={kind!r}")
    names = ("sigma_min", "sigma_max") if kind == "ve" else ("beta_min", "beta_max")
    vals = []
    for n in names:
        if not hasattr(sde, n):
            raise TypeError(f"{op}: a {kind!r} sde must have attributes {names}, "
                            f"{type(sde).__name__} has no {n}")
        v = getattr(sde, n)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise ValueError(f"{op}: sde.{n} must be a finite float, got {v!r}")
        vals.append(float(v))
    p0, p1 = vals
    if kind == "ve" and not 0 < p0 < p1:
        raise ValueError(f"{op}: a VE sde needs 0 < sigma_min < sigma_max, got sigma_min={p0}, "
                         f"sigma_max={p1}")
    if kind != "ve" and (p0 < 0 or p1 < 0):
        raise ValueError(f"{op}: sde.beta_min and sde.beta_max must be >= 0, got {p0}, {p1}")
    return kind, p0, p1


def reverse_coefficients(kind: str, p0: float, p1: float, t_t, t: float, dt: float,
                         predictor: str, probability_flow: bool, dtype, device):
    """Per-row (cx, cs, cn) with reverse_sde_step(x, s) = cx*x + cs*s + cn*xi: (B,) tensors
    for per-sample times t_t, else 0-d tensors; computed in float64, returned in ``dtype``."""
    tt = (t_t.to(device=device, dtype=torch.float64) if t_t is not None
          else torch.tensor(t, dtype=torch.float64, device=device))
    c, g2 = _ref.sde_f_coeff_g2(kind, p0, p1, tt)
    if predictor == "euler_maruyama":
        cx, G2 = 1 - c * dt, g2 * dt
    elif kind == "ve":
        sig = lambda u: p0 * (p1 / p0) ** u  # noqa: E731
        cx, G2 = torch.ones_like(tt), sig(tt) ** 2 - sig(torch.clamp(tt - dt, min=0.0)) ** 2
    elif kind == "vp":
        beta_d = (p0 + tt * (p1 - p0)) * dt
        cx, G2 = 2 - torch.sqrt(1 - beta_d), beta_d
    else:
        cx, G2 = 1 - c * dt, g2 * dt
    if probability_flow:
        cs, cn = 0.5 * G2, torch.zeros_like(G2)
    else:
        cs, cn = G2, torch.sqrt(G2)
    return cx.to(dtype), cs.to(dtype), cn.to(dtype)


def _row_sum(v: torch.Tensor, rows: int) -> torch.Tensor:
    return v.reshape(rows, v.numel() // max(rows, 1)).sum(dim=1)


def _bcast(v, like: torch.Tensor):
    """A (B,) tensor as (B, 1, ..., 1) against ``like``; floats and 0-d tensors as they are."""
    if isinstance(v, torch.Tensor) and v.dim() == 1 and like.dim() > 1:
        return v.reshape((-1,) + (1,) * (like.dim() - 1))
    if isinstance(v, torch.Tensor) and like.dim() == 0:
        return v.reshape(())
    return v


def _noise(x, seed, offset, sample_offset, dtype):
    from .. import random as _random
    return _random.normal(x.shape, seed, offset, sample_offset, dtype=dtype, device=x.device)


def _compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------------------------
# euler_maruyama_step

def _check_diffusion(op: str, diffusion, x: torch.Tensor):
    """diffusion: a finite float, a per-sample (B,) tensor, or a tensor of x's shape.
    Returns (tensor or None, float, per_sample: bool)."""
    rows = _rows_of(x)
    if isinstance(diffusion, torch.Tensor) and diffusion.dim() > 0:
        if diffusion.device != x.device:
            raise ValueError(f"{op}: diffusion must be on x's device ({x.device}), got {diffusion.device}")
        if not diffusion.dtype.is_floating_point:
            raise TypeError(f"{op}: diffusion must be a floating-point tensor, got {diffusion.dtype}")
        if diffusion.dim() == 1 and diffusion.shape[0] == rows:
            per_row = True
        elif diffusion.shape == x.shape:
            per_row = False
            if diffusion.dtype != x.dtype:
                raise TypeError(f"{op}: a full diffusion tensor must have x's dtype ({x.dtype}), "
                                f"got {diffusion.dtype}")
        else:
            raise ValueError(f"{op}: diffusion must be a float, a per-sample tensor of shape "
                             f"({rows},) or a tensor of x's shape {tuple(x.shape)}, got shape "
                             f"{tuple(diffusion.shape)}")
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(diffusion).all()):
            raise ValueError(f"{op}: every diffusion value must be finite")
        return diffusion, 0.0, per_row
    return None, _check_finite_float(op, "diffusion", diffusion), True


def euler_maruyama_step(x: torch.Tensor, drift: torch.Tensor, diffusion, dt: float, *, seed=None,
                        offset: int = 0, sample_offset: int = 0, generator=None) -> torch.Tensor:
    """One Euler–Maruyama step of ``dx = f dt + g dw`` in one fused pass (SPEC §3.3):

        out = x + drift * dt + diffusion * sqrt(|dt|) * xi,
        xi  = gmkernels.random.normal(x.shape, seed, offset, sample_offset)

    A negative ``dt`` steps backwards in time (reverse-time SDEs), with the same noise scale.

    Args:
        x: (B, ...) any rank and strides; float32, float64 (half types with float32 math).
        drift: f(x, t), same shape, dtype and device as x (differentiable).
        diffusion: g: a float, a per-sample (B,) tensor, or a tensor of x's shape
            (differentiable when a tensor). For a 1-D x the (B,) tensor is both.
        dt: nonzero finite float.
        seed, offset, sample_offset, generator: the Philox stream (SPEC §0); ``seed=None``
            draws one from ``generator`` / torch's default generator.

    Returns:
        a new contiguous tensor of x's shape and dtype.

    Gradients: d/dx = 1, d/ddrift = dt, d/ddiffusion = sqrt|dt| xi (summed over each row for a
    per-sample diffusion; the noise is regenerated, not stored).

    Reference: Kloeden & Platen, "Numerical Solution of Stochastic Differential Equations"
    (1992), §9.1; Song et al. 2021, "Score-Based Generative Modeling through SDEs".

    >>> x = torch.randn(4096, 2)                      # Ornstein-Uhlenbeck dx = -x dt + sqrt(2) dw
    >>> for k in range(100):
    ...     x = gmkernels.euler_maruyama_step(x, -x, 2 ** 0.5, 0.01, seed=0, offset=k)
    """
    op = "gmkernels.euler_maruyama_step"
    check_x_like(op, x, "x", drift, "drift")
    g_t, g, per_row = _check_diffusion(op, diffusion, x)
    dt = _check_finite_float(op, "dt", dt, nonzero=True)
    seed, offset, sample_offset = _stream(op, x, seed, offset, sample_offset, generator)
    backend = _choose("euler_maruyama_step", x.device)
    if backend == "native":
        return _call("euler_maruyama_step", (x, drift, g_t), x, drift, g_t, g, dt,
                     as_int64_bits(seed), as_int64_bits(offset), sample_offset)
    if backend == "triton":
        return _TritonEulerMaruyama.apply(x, drift, g_t, g, dt, seed, offset, sample_offset)
    return _ref.euler_maruyama_step(x, drift, g if g_t is None else g_t, dt, seed, offset,
                                    sample_offset)


def _em_backward_torch(gy, g_t, dt, seed, offset, sample_offset, need_g):
    """(grad_x, grad_drift, grad_diffusion or None) of euler_maruyama_step in torch ops."""
    gx = gy.contiguous()
    gd = gy * dt
    gg = None
    if need_g:
        cd = _compute_dtype(gy.dtype)
        w = gy.to(cd) * (math.sqrt(abs(dt)) * _noise(gy, seed, offset, sample_offset, cd))
        gg = w if g_t.shape == gy.shape and gy.dim() != 1 else _row_sum(w, _rows_of(gy))
        gg = gg.to(g_t.dtype)
    return gx, gd, gg


class _TritonEulerMaruyama(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, drift, g_t, g, dt, seed, offset, sample_offset):
        from ..triton import sde as _tri
        ctx.save_for_backward(g_t)
        ctx.args = (dt, seed, offset, sample_offset)
        return _tri.euler_maruyama_step_fwd(x.contiguous(), drift.contiguous(),
                                            None if g_t is None else g_t.contiguous(), g, dt,
                                            seed, offset, sample_offset)

    @staticmethod
    def backward(ctx, gy):
        (g_t,) = ctx.saved_tensors
        dt, seed, offset, sample_offset = ctx.args
        need_g = g_t is not None and ctx.needs_input_grad[2]
        gx, gd, gg = _em_backward_torch(gy, g_t, dt, seed, offset, sample_offset, need_g)
        return gx, gd, gg, None, None, None, None, None


# --------------------------------------------------------------------------------------------
# reverse_sde_step

def reverse_sde_step(x: torch.Tensor, score: torch.Tensor, t, dt: float, sde, *,
                     predictor: str = "euler_maruyama", probability_flow: bool = False,
                     seed=None, offset: int = 0, sample_offset: int = 0,
                     generator=None) -> torch.Tensor:
    """One reverse-time step of a VE / VP / sub-VP SDE from t to t - dt, fused (SPEC §3.3):

    the drift f and diffusion g of the SDE are computed from ``sde``'s parameters and t inside
    the kernel, one pass over x and the score. Per row, with s the score:

    * VE: σ(t) = σ_min (σ_max/σ_min)^t, f = 0, g² = 2 σ(t)² ln(σ_max/σ_min);
      VP: β(t) = β_min + t (β_max - β_min), f = -β x / 2, g² = β;
      sub-VP: f = -β x / 2, g² = β (1 - exp(-2 (β_min t + t² (β_max - β_min) / 2))).
    * ``predictor="euler_maruyama"``: out = x - (f - g² s) dt + sqrt(g² dt) xi.
    * ``predictor="reverse_diffusion"`` (the discretized SDE of Song et al. 2021):
      out = x - (F - G² s) + G xi with VE: F = 0, G² = σ(t)² - σ(max(t - dt, 0))²;
      VP: F = (sqrt(1 - β(t) dt) - 1) x, G² = β(t) dt; sub-VP: F = f dt, G² = g² dt.
    * ``probability_flow=True``: the ODE step, s weighted by 1/2 and no noise
      (out = x - (f - g² s / 2) dt, or x - (F - G² s / 2)); the seed is not used.

    Args:
        x: (B, ...) any rank and strides; float32, float64 (half types with float32 math).
        score: s(x, t), same shape, dtype and device as x.
        t: a float in [0, 1] or a per-sample (B,) tensor on x's device (no gradient).
        dt: the step, a float > 0 (reverse_diffusion on a VP sde also needs β(t) dt < 1).
        sde: an object with ``kind`` in {"ve", "vp", "subvp"} and ``sigma_min, sigma_max``
            (ve) or ``beta_min, beta_max`` (vp, subvp), e.g. gmkernels.score.VPSDE().
        predictor: "euler_maruyama" or "reverse_diffusion".
        probability_flow: take the probability-flow ODE step instead.
        seed, offset, sample_offset, generator: the Philox stream (SPEC §0).

    Returns:
        a new contiguous tensor of x's shape and dtype. Differentiable in x and score
        (the step is linear in both with per-row coefficients).

    Reference: Song et al. 2021, "Score-Based Generative Modeling through Stochastic
    Differential Equations" (ICLR), eqs. (6), (13) and App. E.

    >>> sde = gmkernels.score.VPSDE()
    >>> x = torch.randn(512, 2)
    >>> x = gmkernels.reverse_sde_step(x, -x, 1.0, 1e-3, sde, seed=0, offset=1)   # N(0, I) score
    """
    op = "gmkernels.reverse_sde_step"
    check_x_like(op, x, "x", score, "score")
    kind, p0, p1 = sde_params(op, sde)
    if predictor not in PREDICTORS:
        raise ValueError(f"{op}: predictor must be one of {tuple(PREDICTORS)}, got {predictor!r}")
    if not isinstance(probability_flow, bool):
        raise TypeError(f"{op}: probability_flow must be a bool, got {type(probability_flow).__name__}")
    t_t, t = _check_time(op, t, x)
    dt = _check_finite_float(op, "dt", dt, positive=True)
    if predictor == "reverse_diffusion" and kind == "vp":
        tmax = float(t_t.max()) if (t_t is not None and t_t.numel() and
                                    not torch.compiler.is_compiling()) else t
        if (p0 + tmax * (p1 - p0)) * dt >= 1:
            raise ValueError(f"{op}: reverse_diffusion on a VP sde needs beta(t) * dt < 1, got "
                             f"beta(t) * dt = {(p0 + tmax * (p1 - p0)) * dt} (dt = {dt}): "
                             "take smaller steps")
    seed, offset, sample_offset = _stream(op, x, seed, offset, sample_offset, generator)
    backend = _choose("reverse_sde_step", x.device)
    k, pr = SDE_KINDS[kind], PREDICTORS[predictor]
    if backend == "native":
        return _call("reverse_sde_step", (x, score), x, score, t_t, t, dt, k, p0, p1, pr,
                     probability_flow, as_int64_bits(seed), as_int64_bits(offset), sample_offset)
    if backend == "triton":
        return _TritonReverse.apply(x, score, t_t, t, dt, k, p0, p1, pr, probability_flow, seed,
                                    offset, sample_offset)
    return _ref.reverse_sde_step(x, score, t if t_t is None else t_t, dt, kind, p0, p1, predictor,
                                 probability_flow, seed, offset, sample_offset)


_KIND_NAMES = {v: k for k, v in SDE_KINDS.items()}
_PRED_NAMES = {v: k for k, v in PREDICTORS.items()}


def _reverse_backward_torch(gy, t_t, t, dt, kind, p0, p1, predictor, pf):
    cd = _compute_dtype(gy.dtype)
    cx, cs, _ = reverse_coefficients(_KIND_NAMES[kind], p0, p1, t_t, t, dt, _PRED_NAMES[predictor],
                                     pf, cd, gy.device)
    g = gy.to(cd)
    return (_bcast(cx, g) * g).to(gy.dtype), (_bcast(cs, g) * g).to(gy.dtype)


class _TritonReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, score, t_t, t, dt, kind, p0, p1, predictor, pf, seed, offset, sample_offset):
        from ..triton import sde as _tri
        ctx.save_for_backward(t_t)
        ctx.args = (t, dt, kind, p0, p1, predictor, pf)
        return _tri.reverse_sde_step_fwd(x.contiguous(), score.contiguous(),
                                         None if t_t is None else t_t.contiguous(), t, dt, kind,
                                         p0, p1, predictor, pf, seed, offset, sample_offset)

    @staticmethod
    def backward(ctx, gy):
        (t_t,) = ctx.saved_tensors
        gx, gs = _reverse_backward_torch(gy, t_t, *ctx.args)
        return (gx, gs) + (None,) * 11


# --------------------------------------------------------------------------------------------
# langevin_corrector_step

def langevin_corrector_step(x: torch.Tensor, score: torch.Tensor, snr: float, *, alpha=1.0,
                            seed=None, offset: int = 0, sample_offset: int = 0,
                            generator=None) -> torch.Tensor:
    """The Langevin corrector of predictor-corrector sampling (Song et al. 2021, Alg. 4/5),
    with the step size set per row from a target signal-to-noise ratio:

        eps_r = 2 alpha_r (snr ||xi_r|| / ||s_r||)²,   out = x + eps_r s + sqrt(2 eps_r) xi,

    norms over each row (all of a sample's elements), xi = gmkernels.random.normal(x.shape,
    seed, offset, sample_offset): the same xi in the norm and the update. A row whose score is
    all zero gets eps_r = 0 (it is left unchanged, no NaN). Song et al.'s released code uses
    the batch means of the norms instead of per-row norms; per row makes a sample's step
    independent of the rest of the batch (and of sharding).

    Args:
        x: (B, ...) any rank and strides; float32, float64 (half types with float32 math).
        score: s(x, t), same shape, dtype and device as x.
        snr: the target signal-to-noise ratio r > 0 (0.16 for VE on CIFAR-10 in the paper).
        alpha: a float or per-sample (B,) tensor >= 0; 1 for VE, α_i = 1 - β_i for VP.
        seed, offset, sample_offset, generator: the Philox stream (SPEC §0).

    Returns:
        a new contiguous tensor of x's shape and dtype. Not differentiable (the step size
        depends on the score's norm; a sampler has no use for it): inputs that require grad
        under grad mode raise.

    Reference: Song et al. 2021, "Score-Based Generative Modeling through Stochastic
    Differential Equations", Algorithms 4 and 5.

    >>> x = torch.randn(512, 2) * 3
    >>> x = gmkernels.langevin_corrector_step(x, -x / 9, 0.16, seed=0, offset=2)
    """
    op = "gmkernels.langevin_corrector_step"
    check_x_like(op, x, "x", score, "score")
    snr = _check_finite_float(op, "snr", snr, positive=True)
    a_t, a = scalar_or_per_sample(op, "alpha", alpha, x)
    if torch.is_grad_enabled() and (x.requires_grad or score.requires_grad or
                                    (a_t is not None and a_t.requires_grad)):
        raise RuntimeError(f"{op} is not differentiable; call it under torch.no_grad() or on "
                           "detached tensors")
    seed, offset, sample_offset = _stream(op, x, seed, offset, sample_offset, generator)
    backend = _choose("langevin_corrector_step", x.device)
    if backend == "native":
        return _call("langevin_corrector_step", (), x, score, a_t, a, snr, as_int64_bits(seed),
                     as_int64_bits(offset), sample_offset)
    if backend == "triton":
        from ..triton import sde as _tri
        return _tri.langevin_corrector_step_fwd(x.contiguous(), score.contiguous(),
                                                None if a_t is None else a_t.contiguous(), a,
                                                snr, seed, offset, sample_offset)
    return _ref.langevin_corrector_step(x, score, snr, a if a_t is None else a_t, seed, offset,
                                        sample_offset)


# --------------------------------------------------------------------------------------------
# affine_noise_step and ddpm_step

def affine_noise_step(x: torch.Tensor, e: torch.Tensor, cx, ce, cn, *, seed=None, offset: int = 0,
                      sample_offset: int = 0, generator=None) -> torch.Tensor:
    """The fused update ``out = cx * x - ce * e + cn * xi`` (the DDPM ancestral step's form),
    xi = gmkernels.random.normal(x.shape, seed, offset, sample_offset).

    Args:
        x: (B, ...) any rank and strides; float32, float64 (half types with float32 math).
        e: same shape, dtype and device as x (e.g. the predicted noise).
        cx, ce, cn: finite floats or per-sample (B,) tensors (any sign).
        seed, offset, sample_offset, generator: the Philox stream (SPEC §0).

    Returns:
        a new contiguous tensor of x's shape and dtype. Differentiable in x, e and the tensor
        coefficients (d/dcn is the row sum of xi, regenerated).

    >>> y = gmkernels.affine_noise_step(x, eps, 1.01, 0.02, 0.1, seed=0)
    """
    op = "gmkernels.affine_noise_step"
    check_x_like(op, x, "x", e, "e")
    coeffs = [scalar_or_per_sample(op, n, v, x, nonnegative=False)
              for n, v in (("cx", cx), ("ce", ce), ("cn", cn))]
    seed, offset, sample_offset = _stream(op, x, seed, offset, sample_offset, generator)
    return _affine(x, e, coeffs, seed, offset, sample_offset)


def _affine(x, e, coeffs, seed, offset, sample_offset):
    (cx_t, cx), (ce_t, ce), (cn_t, cn) = coeffs
    backend = _choose("affine_noise_step", x.device)
    if backend == "native":
        return _call("affine_noise_step", (x, e, cx_t, ce_t, cn_t), x, e, cx_t, cx, ce_t, ce,
                     cn_t, cn, as_int64_bits(seed), as_int64_bits(offset), sample_offset)
    if backend == "triton":
        return _TritonAffine.apply(x, e, cx_t, cx, ce_t, ce, cn_t, cn, seed, offset, sample_offset)
    pick = lambda t, f: f if t is None else t  # noqa: E731
    return _ref.affine_noise_step(x, e, pick(cx_t, cx), pick(ce_t, ce), pick(cn_t, cn), seed,
                                  offset, sample_offset)


def _affine_backward_torch(gy, x, e, cx_t, cx, ce_t, ce, cn_t, seed, offset, sample_offset, needs):
    """Gradients of cx*x - ce*e + cn*xi for (x, e, cx_t, ce_t, cn_t) in torch ops."""
    cd = _compute_dtype(gy.dtype)
    g = gy.to(cd)
    rows = _rows_of(gy)
    pick = lambda t, f: _bcast(t.to(cd), g) if t is not None else f  # noqa: E731
    gx = (pick(cx_t, cx) * g).to(gy.dtype) if needs[0] else None
    ge = (-pick(ce_t, ce) * g).to(gy.dtype) if needs[1] else None
    gcx = _row_sum(g * x.to(cd), rows).to(cx_t.dtype) if needs[2] and cx_t is not None else None
    gce = (-_row_sum(g * e.to(cd), rows)).to(ce_t.dtype) if needs[3] and ce_t is not None else None
    gcn = None
    if needs[4] and cn_t is not None:
        gcn = _row_sum(g * _noise(gy, seed, offset, sample_offset, cd), rows).to(cn_t.dtype)
    return gx, ge, gcx, gce, gcn


class _TritonAffine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, e, cx_t, cx, ce_t, ce, cn_t, cn, seed, offset, sample_offset):
        from ..triton import sde as _tri
        ctx.save_for_backward(x, e, cx_t, ce_t, cn_t)
        ctx.args = (cx, ce, seed, offset, sample_offset)
        c = lambda t: None if t is None else t.contiguous()  # noqa: E731
        return _tri.affine_noise_step_fwd(x.contiguous(), e.contiguous(), c(cx_t), cx, c(ce_t), ce,
                                          c(cn_t), cn, seed, offset, sample_offset)

    @staticmethod
    def backward(ctx, gy):
        x, e, cx_t, ce_t, cn_t = ctx.saved_tensors
        cx, ce, seed, offset, sample_offset = ctx.args
        n = ctx.needs_input_grad
        gx, ge, gcx, gce, gcn = _affine_backward_torch(gy, x, e, cx_t, cx, ce_t, ce, cn_t, seed,
                                                       offset, sample_offset,
                                                       (n[0], n[1], n[2], n[4], n[6]))
        return gx, ge, gcx, None, gce, None, gcn, None, None, None, None


def _check_schedule(op: str, schedule) -> int:
    tensors = []
    for n in ("betas", "alphas", "alphas_cumprod", "sigmas"):
        v = getattr(schedule, n, None)
        if not isinstance(v, torch.Tensor) or v.dim() != 1:
            raise TypeError(f"{op}: schedule must have 1-D tensors betas, alphas, alphas_cumprod "
                            f"and sigmas (gmkernels.score.DDPMSchedule), got {type(schedule).__name__} "
                            f"with {n}={type(v).__name__}")
        tensors.append(v)
    T = tensors[0].shape[0]
    if T == 0 or any(v.shape[0] != T for v in tensors):
        raise ValueError(f"{op}: schedule tensors must all have the same length T > 0, got lengths "
                         f"{[v.shape[0] for v in tensors]}")
    return T


def ddpm_coefficients(t, schedule, x: torch.Tensor, op: str = "gmkernels.ddpm_step"):
    """(cx, ce, cn) of the DDPM ancestral step at integer step(s) t (see :func:`ddpm_step`):
    floats for an int t, (B,) tensors in x's compute dtype for a (B,) tensor t."""
    T = _check_schedule(op, schedule)
    if isinstance(t, torch.Tensor) and t.dim() > 0:
        rows = _rows_of(x)
        if t.dim() != 1 or t.shape[0] != rows:
            raise ValueError(f"{op}: t must be an int or a per-sample tensor of shape ({rows},), "
                             f"got shape {tuple(t.shape)}")
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex:
            raise TypeError(f"{op}: t must be an integer tensor (int64), got {t.dtype}")
        if not torch.compiler.is_compiling():
            bad = (t < 0) | (t >= T)
            if bool(bad.any()):
                raise ValueError(f"{op}: every t must be in [0, {T}) (the schedule's length), got "
                                 f"{t[bad][:8].tolist()} among its values")
        idx = t.to(device=schedule.betas.device, dtype=torch.int64)
        a, ab, sg = (v.to(torch.float64)[idx] for v in (schedule.alphas, schedule.alphas_cumprod,
                                                        schedule.sigmas))
        sg = torch.where(idx == 0, torch.zeros_like(sg), sg)
        cx = 1 / torch.sqrt(a)
        ce = (1 - a) / (torch.sqrt(1 - ab) * torch.sqrt(a))
        cd = _compute_dtype(x.dtype)
        return tuple(v.to(device=x.device, dtype=cd) for v in (cx, ce, sg))
    if isinstance(t, torch.Tensor):
        if t.dtype.is_floating_point:
            raise TypeError(f"{op}: t must be an int or an integer tensor, got {t.dtype}")
        t = int(t)
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise TypeError(f"{op}: t must be an int or a (B,) int64 tensor, got {type(t).__name__}")
    t = int(t)
    if not 0 <= t < T:
        raise ValueError(f"{op}: t must be in [0, {T}) (the schedule's length), got {t}")
    a = float(schedule.alphas[t])
    ab = float(schedule.alphas_cumprod[t])
    sg = 0.0 if t == 0 else float(schedule.sigmas[t])
    return 1 / math.sqrt(a), (1 - a) / (math.sqrt(1 - ab) * math.sqrt(a)), sg


def ddpm_step(x_t: torch.Tensor, eps_pred: torch.Tensor, t, schedule, *, seed=None,
              offset: int = 0, sample_offset: int = 0, generator=None) -> torch.Tensor:
    """One DDPM ancestral sampling step (Ho et al. 2020, Alg. 2), fused:

        x_{t-1} = (x_t - (1 - α_t) / sqrt(1 - ᾱ_t) · ε_θ) / sqrt(α_t) + σ_t ξ,   ξ = 0 at t = 0

    computed as :func:`affine_noise_step` with per-row c_x = 1/sqrt(α_t),
    c_ε = (1 - α_t) / (sqrt(1 - ᾱ_t) sqrt(α_t)), c_ξ = σ_t (0 where t == 0), gathered from the
    schedule in float64.

    Args:
        x_t: (B, ...) any rank and strides; float32, float64 (half types with float32 math).
        eps_pred: ε_θ(x_t, t), same shape, dtype and device as x_t.
        t: the 0-based step, an int or a per-sample (B,) int64 tensor, 0 <= t < T (t = T - 1 is
            the first sampling step, t = 0 the last).
        schedule: gmkernels.score.DDPMSchedule (or any object with (T,) tensors ``betas,
            alphas, alphas_cumprod, sigmas``).
        seed, offset, sample_offset, generator: the Philox stream (SPEC §0).

    Returns:
        a new contiguous tensor of x_t's shape and dtype, differentiable in x_t and eps_pred.

    Reference: Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models", Alg. 2.

    >>> sched = gmkernels.score.DDPMSchedule.linear(1000)
    >>> x = gmkernels.ddpm_step(x, model(x, 999), 999, sched, seed=0, offset=1)
    """
    op = "gmkernels.ddpm_step"
    check_x_like(op, x_t, "x_t", eps_pred, "eps_pred")
    cx, ce, cn = ddpm_coefficients(t, schedule, x_t, op)
    seed, offset, sample_offset = _stream(op, x_t, seed, offset, sample_offset, generator)
    coeffs = [(v, 0.0) if isinstance(v, torch.Tensor) else (None, v) for v in (cx, ce, cn)]
    return _affine(x_t, eps_pred, coeffs, seed, offset, sample_offset)


# --------------------------------------------------------------------------------------------
# fake kernels and autograd of the new dispatcher ops, each registered only when the loaded
# extension has the op (a build from before issue 3 must still import)

def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


if _op_exists("euler_maruyama_step"):

    @torch.library.register_fake("gmkernels::euler_maruyama_step")
    def _em_fake(x, drift, g_t, g, dt, seed, offset, sample_offset):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

if _op_exists("euler_maruyama_step_backward"):

    @torch.library.register_fake("gmkernels::euler_maruyama_step_backward")
    def _em_bwd_fake(gy, g_t, dt, seed, offset, sample_offset, x_shape, need_g):
        gx = torch.empty_like(gy, memory_format=torch.contiguous_format)
        gd = torch.empty_like(gy, memory_format=torch.contiguous_format)
        if not need_g or g_t is None:
            gg = gy.new_empty((0,), dtype=_acc(gy.dtype))
        elif tuple(g_t.shape) == tuple(x_shape) and len(x_shape) != 1:
            gg = torch.empty_like(gy, memory_format=torch.contiguous_format)
        else:
            gg = gy.new_empty((x_shape[0] if len(x_shape) else 1,), dtype=_acc(gy.dtype))
        return gx, gd, gg

if _op_exists("euler_maruyama_step") and _op_exists("euler_maruyama_step_backward"):

    def _em_setup(ctx, inputs, output):
        x, drift, g_t, g, dt, seed, offset, sample_offset = inputs
        ctx.save_for_backward(g_t)
        ctx.args = (dt, seed, offset, sample_offset, list(x.shape))

    def _em_backward(ctx, gy):
        (g_t,) = ctx.saved_tensors
        dt, seed, offset, sample_offset, shape = ctx.args
        need_g = g_t is not None and ctx.needs_input_grad[2]
        gx, gd, gg = torch.ops.gmkernels.euler_maruyama_step_backward(
            gy, g_t, dt, seed, offset, sample_offset, shape, need_g)
        return gx, gd, (gg.to(g_t.dtype) if need_g else None), None, None, None, None, None

    torch.library.register_autograd("gmkernels::euler_maruyama_step", _em_backward,
                                    setup_context=_em_setup)

if _op_exists("reverse_sde_step"):

    @torch.library.register_fake("gmkernels::reverse_sde_step")
    def _rev_fake(x, score, t_t, t, dt, kind, p0, p1, predictor, pf, seed, offset, sample_offset):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

if _op_exists("reverse_sde_step_backward"):

    @torch.library.register_fake("gmkernels::reverse_sde_step_backward")
    def _rev_bwd_fake(gy, t_t, t, dt, kind, p0, p1, predictor, pf, x_shape):
        return (torch.empty_like(gy, memory_format=torch.contiguous_format),
                torch.empty_like(gy, memory_format=torch.contiguous_format))

if _op_exists("reverse_sde_step") and _op_exists("reverse_sde_step_backward"):

    def _rev_setup(ctx, inputs, output):
        x, score, t_t, t, dt, kind, p0, p1, predictor, pf, seed, offset, sample_offset = inputs
        ctx.save_for_backward(t_t)
        ctx.args = (t, dt, kind, p0, p1, predictor, pf, list(x.shape))

    def _rev_backward(ctx, gy):
        (t_t,) = ctx.saved_tensors
        gx, gs = torch.ops.gmkernels.reverse_sde_step_backward(gy, t_t, *ctx.args)
        return (gx, gs) + (None,) * 11

    torch.library.register_autograd("gmkernels::reverse_sde_step", _rev_backward,
                                    setup_context=_rev_setup)

if _op_exists("langevin_corrector_step"):

    @torch.library.register_fake("gmkernels::langevin_corrector_step")
    def _corr_fake(x, score, a_t, a, snr, seed, offset, sample_offset):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

if _op_exists("affine_noise_step"):

    @torch.library.register_fake("gmkernels::affine_noise_step")
    def _affine_fake(x, e, cx_t, cx, ce_t, ce, cn_t, cn, seed, offset, sample_offset):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

if _op_exists("affine_noise_step_backward"):

    @torch.library.register_fake("gmkernels::affine_noise_step_backward")
    def _affine_bwd_fake(gy, x, e, cx_t, cx, ce_t, ce, seed, offset, sample_offset, need_cx,
                         need_ce, need_cn):
        rows = gy.shape[0] if gy.dim() else 1
        acc = _acc(gy.dtype)
        per_row = lambda need: gy.new_empty((rows if need else 0,), dtype=acc)  # noqa: E731
        return (torch.empty_like(gy, memory_format=torch.contiguous_format),
                torch.empty_like(gy, memory_format=torch.contiguous_format),
                per_row(need_cx), per_row(need_ce), per_row(need_cn))

if _op_exists("affine_noise_step") and _op_exists("affine_noise_step_backward"):

    def _affine_setup(ctx, inputs, output):
        x, e, cx_t, cx, ce_t, ce, cn_t, cn, seed, offset, sample_offset = inputs
        ctx.save_for_backward(x if cx_t is not None else None, e if ce_t is not None else None,
                              cx_t, ce_t, cn_t)
        ctx.args = (cx, ce, seed, offset, sample_offset)

    def _affine_backward(ctx, gy):
        x, e, cx_t, ce_t, cn_t = ctx.saved_tensors
        cx, ce, seed, offset, sample_offset = ctx.args
        n = ctx.needs_input_grad
        need_cx, need_ce, need_cn = (cx_t is not None and n[2], ce_t is not None and n[4],
                                     cn_t is not None and n[6])
        gx, ge, gcx, gce, gcn = torch.ops.gmkernels.affine_noise_step_backward(
            gy, x if need_cx else None, e if need_ce else None, cx_t, cx, ce_t, ce, seed, offset,
            sample_offset, need_cx, need_ce, need_cn)
        return (gx if n[0] else None, ge if n[1] else None,
                gcx.to(cx_t.dtype) if need_cx else None, None,
                gce.to(ce_t.dtype) if need_ce else None, None,
                gcn.to(cn_t.dtype) if need_cn else None, None, None, None, None)

    torch.library.register_autograd("gmkernels::affine_noise_step", _affine_backward,
                                    setup_context=_affine_setup)
