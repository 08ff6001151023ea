"""Fused stochastic steps (docs/spec.md §3): the Langevin update and the SDE sampler steps.

Each public op is a ``torch.ops.gmkernels.*`` dispatcher op with argument checks
(:mod:`gmkernels._checks`), seed handling and backend choice in front of it; its fake kernel
(``torch.compile``) and autograd are registered right after its wrapper:

* ``langevin_step`` / ``langevin_step_``: ``clamp(x + a g + c xi)`` (docs/spec.md §3.1);
* ``euler_maruyama_step``: ``x + drift dt + diffusion sqrt|dt| xi`` (docs/spec.md §3.3);
* ``reverse_sde_step``: one reverse-time step of a VE / VP / sub-VP SDE (Song et al. 2021);
* ``langevin_corrector_step``: the predictor-corrector sampler's corrector (Song et al. 2021);
* ``affine_noise_step``: ``cx x - ce e + cn xi``, and ``ddpm_step`` on top of it (Ho et al. 2020).

Backends: "native" (csrc/sde), "triton" (:mod:`gmkernels.triton.sde`, which also holds the
autograd of its kernels) and "reference" (:mod:`gmkernels.reference.sde`). The SDE and DDPM
coefficient maths is in :mod:`gmkernels.score.coefficients`.
"""

from __future__ import annotations

import torch

from .. import _autograd, _backend, _checks
from .._checks import as_int64_bits, rows_of
from .._enums import PREDICTORS, SDE_KINDS
from ..reference import sde as _ref
from ..reference.random import row_view
from ..score.coefficients import ddpm_coefficients, sde_params  # noqa: F401  (sde_params: public)

__all__ = ["langevin_step", "langevin_step_", "euler_maruyama_step", "reverse_sde_step",
           "langevin_corrector_step", "affine_noise_step", "ddpm_step"]

_choose = _backend.choose_backend
_op_exists = _backend.op_exists


def _call(name: str, tensors, *args):
    return _backend.call_op(getattr(torch.ops.gmkernels, name), tensors, *args)


def _stream(op, x, seed, offset, sample_offset, generator):
    return _checks.stream(op, row_view(x.shape)[0], seed, offset, sample_offset, generator)


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _like_x(op, x, name, other, other_name):
    _checks.floating(op, name, x)
    _checks.like(op, name, x, other_name, other)


# --------------------------------------------------------------------------------------------
# langevin_step, langevin_step_

def _prepare(op, x, grad, step_size, noise_scale, seed, offset, sample_offset, generator, clamp):
    _like_x(op, x, "x", grad, "grad")
    a_t, a = _checks.per_sample(op, "step_size", step_size, x)
    c_t, c = _checks.per_sample(op, "noise_scale", noise_scale, x)
    lo, hi = _checks.clamp_pair(op, clamp)
    seed, offset, sample_offset = _stream(op, x, seed, offset, sample_offset, generator)
    return a_t, a, c_t, c, lo, hi, seed, offset, sample_offset


def langevin_step(x: torch.Tensor, grad: torch.Tensor, step_size, noise_scale, *, seed=None,
                  offset: int = 0, sample_offset: int = 0, generator=None,
                  clamp=None) -> torch.Tensor:
    """One fused Langevin / SGLD update (docs/spec.md §3.1), in one pass over memory:

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
    regenerated in the backward from the seed, not stored). Double backward
    (``create_graph=True``, e.g. a loss on a gradient through the chain) is supported: that
    backward is a composite of differentiable torch ops (the same closed form, the noise drawn
    from the same stream) instead of the fused backward op.

    >>> x0 = torch.randn(8, 2)
    >>> x = x0
    >>> for step in range(10):                          # grad = -x: the score of N(0, I)
    ...     x = gmkernels.langevin_step(x, -x, 0.01, (2 * 0.01) ** 0.5, seed=0, offset=step)
    >>> again = x0
    >>> for step in range(10):
    ...     again = gmkernels.langevin_step(again, -again, 0.01, 0.02 ** 0.5, seed=0, offset=step)
    >>> torch.equal(x, again)                           # same seed and offsets: the same chain
    True
    >>> half = gmkernels.langevin_step(x0[4:], -x0[4:], 0.01, 0.1, seed=0, sample_offset=4)
    >>> torch.equal(half, gmkernels.langevin_step(x0, -x0, 0.01, 0.1, seed=0)[4:])   # a shard
    True
    """
    op = "gmkernels.langevin_step"
    a_t, a, c_t, c, lo, hi, seed, offset, sample_offset = _prepare(
        op, x, grad, step_size, noise_scale, seed, offset, sample_offset, generator, clamp)
    backend = _choose("langevin_step", x.device)
    if backend == "native":
        return _backend.call_op(torch.ops.gmkernels.langevin_step, (x, grad, a_t, c_t),
                                x, grad, a_t, a, c_t, c, as_int64_bits(seed),
                                as_int64_bits(offset), sample_offset, lo, hi)
    clamp = None if lo is None else (lo, hi)
    if backend == "triton":
        from ..triton import sde as _tri
        return _tri.Langevin.apply(x, grad, a_t, a, c_t, c, seed, offset, sample_offset, clamp)
    return _ref.langevin_step(x, grad, a if a_t is None else a_t, c if c_t is None else c_t,
                              seed, offset, sample_offset, clamp)


if _op_exists("langevin_step") and _op_exists("langevin_step_backward"):

    @torch.library.register_fake("gmkernels::langevin_step")
    def _langevin_fake(x, grad, a_t, a, c_t, c, seed, offset, sample_offset, lo, hi):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

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
        if _autograd.wants_graph(gy, grad, a_t):  # create_graph: the composite backward
            gx, gg, ga, gc = _autograd.langevin_grads(gy, out, grad, a_t, a, seed, offset,
                                                      sample_offset, lo, hi, need_a, need_c)
        else:
            gx, gg, ga, gc = torch.ops.gmkernels.langevin_step_backward(
                gy, out, grad, a_t, a, seed, offset, sample_offset, lo, hi, need_a, need_c)
        return (gx, gg, ga.to(a_t.dtype) if need_a else None, None,
                gc.to(c_t.dtype) if need_c else None, None, None, None, None, None, None)

    torch.library.register_autograd("gmkernels::langevin_step", _backward,
                                    setup_context=_setup_context)


def langevin_step_(x: torch.Tensor, grad: torch.Tensor, step_size, noise_scale, *, seed=None,
                   offset: int = 0, sample_offset: int = 0, generator=None,
                   clamp=None) -> torch.Tensor:
    """In-place :func:`langevin_step`: overwrites and returns ``x`` (for sampler loops, where
    a fresh output per step is an allocation and a cache miss). Not differentiable: use
    :func:`langevin_step` under autograd.

    Like torch's in-place ops, it bumps ``x._version``, so a backward that saved ``x`` (or a
    tensor ``x`` is a view of) raises instead of reading the new values. ``x`` may have any
    strides that do not overlap themselves (``x[:, ::2]``, ``x.t()``); an expanded tensor or an
    ``as_strided`` view whose elements share memory raises ``ValueError``. ``grad`` and the
    per-sample coefficients may share memory with ``x`` (``grad`` may be ``x`` itself): they
    are read as they were before the step, on every backend.

    >>> x = torch.randn(8, 2)
    >>> y = gmkernels.langevin_step(x, -x, 0.01, 0.1, seed=0)
    >>> v = x._version
    >>> gmkernels.langevin_step_(x, -x, 0.01, 0.1, seed=0) is x and torch.allclose(x, y)
    True
    >>> x._version > v                                  # autograd sees the write
    True
    >>> gmkernels.langevin_step_(torch.zeros(4, 1).expand(4, 3), torch.zeros(4, 3), 0.1, 0.1, seed=0)
    Traceback (most recent call last):
        ...
    ValueError: gmkernels.langevin_step_: x must not have overlapping memory (an expanded tensor or a view with overlapping strides), got shape (4, 3) with strides (1, 0); call .contiguous() / .clone() first
    """
    op = "gmkernels.langevin_step_"
    _checks.tensor(op, "x", x)
    _checks.tensor(op, "grad", grad)
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad
                                       for t in (x, grad, step_size, noise_scale)):
        raise RuntimeError(f"{op}: in-place step on tensors that require grad; use "
                           "gmkernels.langevin_step (out of place) for autograd, or torch.no_grad()")
    a_t, a, c_t, c, lo, hi, seed, offset, sample_offset = _prepare(
        op, x, grad, step_size, noise_scale, seed, offset, sample_offset, generator, clamp)
    _checks.writable(op, "x", x)
    backend = _choose("langevin_step_", x.device)
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


if _op_exists("langevin_step_"):

    # The schema returns nothing (x is marked written, `Tensor(a!) x`), so the fake does too.
    # The version counter and the refusal of inputs that require grad are C++ kernels of the
    # op (csrc/include/gmk/inplace.h), so direct torch.ops callers get them as well.
    @torch.library.register_fake("gmkernels::langevin_step_")
    def _langevin_inplace_fake(x, grad, a_t, a, c_t, c, seed, offset, sample_offset, lo, hi):
        return None


# --------------------------------------------------------------------------------------------
# euler_maruyama_step

def _check_diffusion(op: str, diffusion, x: torch.Tensor):
    """diffusion: a finite float, a per-sample (B,) tensor, or a tensor of x's shape.
    Returns (tensor or None, float)."""
    if isinstance(diffusion, torch.Tensor) and diffusion.dim() > 0:
        rows = rows_of(x)
        if not (diffusion.dim() == 1 and diffusion.shape[0] == rows) and diffusion.shape != x.shape:
            raise ValueError(f"{op}: diffusion must be a float, a per-sample tensor of shape "
                             f"({rows},) or a tensor of x's shape {tuple(x.shape)}, got shape "
                             f"{tuple(diffusion.shape)}")
        _checks.same_device(op, "diffusion", diffusion, "x", x)
        _checks.floating(op, "diffusion", diffusion)
        if diffusion.shape == x.shape and x.dim() != 1 and diffusion.dtype != x.dtype:
            raise TypeError(f"{op}: a full diffusion tensor must have x's dtype ({x.dtype}), "
                            f"got {diffusion.dtype}")
        _checks.values(op, "diffusion", diffusion, "finite", torch.isfinite)
        return diffusion, 0.0
    return None, _checks.real(op, "diffusion", diffusion)


def euler_maruyama_step(x: torch.Tensor, drift: torch.Tensor, diffusion, dt: float, *, seed=None,
                        offset: int = 0, sample_offset: int = 0, generator=None) -> torch.Tensor:
    """One Euler–Maruyama step of ``dx = f dt + g dw`` in one fused pass (docs/spec.md §3.3):

        out = x + drift * dt + diffusion * sqrt(|dt|) * xi,
        xi  = gmkernels.random.normal(x.shape, seed, offset, sample_offset)

    A negative ``dt`` steps backwards in time (reverse-time SDEs), with the same noise scale.

    Args:
        x: (B, ...) any rank and strides; float32, float64 (half types with float32 math).
        drift: f(x, t), same shape, dtype and device as x (differentiable).
        diffusion: g: a float, a per-sample (B,) tensor, or a tensor of x's shape
            (differentiable when a tensor). For a 1-D x the (B,) tensor is both.
        dt: nonzero finite float.
        seed, offset, sample_offset, generator: the Philox stream (docs/spec.md §0); ``seed=None``
            draws one from ``generator`` / torch's default generator.

    Returns:
        a new contiguous tensor of x's shape and dtype.

    Gradients: d/dx = 1, d/ddrift = dt, d/ddiffusion = sqrt|dt| xi (summed over each row for a
    per-sample diffusion; the noise is regenerated, not stored). Double backward
    (``create_graph=True``) is supported: that backward is a composite of differentiable torch
    ops (the same closed form) instead of the fused backward op.

    Reference: Kloeden & Platen, "Numerical Solution of Stochastic Differential Equations"
    (1992), §9.1; Song et al. 2021, "Score-Based Generative Modeling through SDEs".

    >>> x = torch.randn(4096, 2) * 3                 # Ornstein-Uhlenbeck dx = -x dt + sqrt(2) dw
    >>> for k in range(500):                          # to t = 5: the variance 9 relaxes to ~1
    ...     x = gmkernels.euler_maruyama_step(x, -x, 2 ** 0.5, 0.01, seed=0, offset=k)
    >>> bool(0.9 < x.var() < 1.1)
    True
    """
    op = "gmkernels.euler_maruyama_step"
    _like_x(op, x, "x", drift, "drift")
    g_t, g = _check_diffusion(op, diffusion, x)
    dt = _checks.real(op, "dt", dt, nonzero=True)
    seed, offset, sample_offset = _stream(op, x, seed, offset, sample_offset, generator)
    backend = _choose("euler_maruyama_step", x.device)
    if backend == "native":
        return _call("euler_maruyama_step", (x, drift, g_t), x, drift, g_t, g, dt,
                     as_int64_bits(seed), as_int64_bits(offset), sample_offset)
    if backend == "triton":
        from ..triton import sde as _tri
        return _tri.EulerMaruyama.apply(x, drift, g_t, g, dt, seed, offset, sample_offset)
    return _ref.euler_maruyama_step(x, drift, g if g_t is None else g_t, dt, seed, offset,
                                    sample_offset)


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
        if _autograd.wants_graph(gy):  # create_graph: the composite backward
            gx, gd, gg = _autograd.euler_maruyama_grads(gy, g_t, dt, seed, offset, sample_offset,
                                                        need_g)
        else:
            gx, gd, gg = torch.ops.gmkernels.euler_maruyama_step_backward(
                gy, g_t, dt, seed, offset, sample_offset, shape, need_g)
        return gx, gd, (gg.to(g_t.dtype) if need_g else None), None, None, None, None, None

    torch.library.register_autograd("gmkernels::euler_maruyama_step", _em_backward,
                                    setup_context=_em_setup)


# --------------------------------------------------------------------------------------------
# reverse_sde_step

def reverse_sde_step(x: torch.Tensor, score: torch.Tensor, t, dt: float, sde, *,
                     predictor: str = "euler_maruyama", probability_flow: bool = False,
                     seed=None, offset: int = 0, sample_offset: int = 0,
                     generator=None) -> torch.Tensor:
    """One reverse-time step of a VE / VP / sub-VP SDE from t to t - dt, fused (docs/spec.md §3.3):

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
        seed, offset, sample_offset, generator: the Philox stream (docs/spec.md §0).

    Returns:
        a new contiguous tensor of x's shape and dtype.

    Gradients: d/dx and d/dscore are the step's per-row coefficients of x and the score (the
    step is linear in both); t gets none. Double backward (``create_graph=True``, e.g. through
    a score network differentiated twice) is supported: that backward is a composite of
    differentiable torch ops (the same closed form) instead of the fused backward op.

    Reference: Song et al. 2021, "Score-Based Generative Modeling through Stochastic
    Differential Equations" (ICLR), eqs. (6), (13) and App. E.

    >>> sde = gmkernels.score.VPSDE()
    >>> x = torch.randn(512, 2)
    >>> y = gmkernels.reverse_sde_step(x, -x, 1.0, 1e-3, sde, seed=0, offset=1)   # N(0, I) score
    >>> # the ODE step, x - (f - g^2 s / 2) dt = x - (-beta x / 2 + beta x / 2) dt, leaves x be
    >>> ode = gmkernels.reverse_sde_step(x, -x, 1.0, 1e-3, sde, probability_flow=True)
    >>> y.shape, torch.allclose(ode, x)
    (torch.Size([512, 2]), True)
    """
    op = "gmkernels.reverse_sde_step"
    _like_x(op, x, "x", score, "score")
    kind, p0, p1 = sde_params(op, sde)
    _checks.choice(op, "predictor", predictor, PREDICTORS)
    _checks.boolean(op, "probability_flow", probability_flow)
    t_t, t = _checks.per_sample(op, "t", t, x, 0.0, 1.0)
    if t_t is not None:
        t_t = t_t.detach()
    dt = _checks.real(op, "dt", dt, 0.0, lo_open=True)
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
        from ..triton import sde as _tri
        return _tri.ReverseSde.apply(x, score, t_t, t, dt, k, p0, p1, pr, probability_flow, seed,
                                     offset, sample_offset)
    return _ref.reverse_sde_step(x, score, t if t_t is None else t_t, dt, kind, p0, p1, predictor,
                                 probability_flow, seed, offset, sample_offset)


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
        if _autograd.wants_graph(gy):  # create_graph: the composite backward
            gx, gs = _autograd.reverse_sde_grads(gy, t_t, *ctx.args[:-1])
        else:
            gx, gs = torch.ops.gmkernels.reverse_sde_step_backward(gy, t_t, *ctx.args)
        return (gx, gs) + (None,) * 11

    torch.library.register_autograd("gmkernels::reverse_sde_step", _rev_backward,
                                    setup_context=_rev_setup)


# --------------------------------------------------------------------------------------------
# langevin_corrector_step

def langevin_corrector_step(x: torch.Tensor, score: torch.Tensor, snr: float, *, alpha=1.0,
                            seed=None, offset: int = 0, sample_offset: int = 0,
                            generator=None) -> torch.Tensor:
    """The Langevin corrector of predictor-corrector sampling (Song et al. 2021, Alg. 4/5), with
    the step size of the paper's released code (score_sde_pytorch's ``LangevinCorrector``): one
    signal-to-noise ratio for the whole batch, from the batch means of the row norms,

        n = mean_r ||xi_r||,   g = mean_r ||s_r||,   eps_r = 2 alpha_r (snr n / g)²,
        out = x + eps_r s + sqrt(2 eps_r) xi,

    norms over each row (all of a sample's elements), xi = gmkernels.random.normal(x.shape,
    seed, offset, sample_offset): the same xi in the norms and the update. Two passes in one
    op: the row norms and their means (on the device, no host synchronisation), then the update.

    The batch rule makes each row's result depend on the other rows of the batch (through n
    and g): a shard of the batch (``sample_offset``) draws the same noise for its rows, but
    gets another step size. A per-row rule eps_r = 2 alpha_r (snr ||xi_r|| / ||s_r||)² would
    avoid that, but it is heavy-tailed in low dimensions (||s_r|| of a sample near a mode is
    near 0) and biased even at D = 16; it is not offered.

    Guards: eps = 0 (out = x, unchanged) when g == 0 (an all-zero score) or when eps_r > 2^120
    (a score so small that the ratio overflows), so finite input never gives inf or NaN. A NaN
    in any row of the score makes g NaN and so every row of the output NaN; an inf makes g inf,
    so eps = 0: x comes back, with NaN in the inf row (0 * inf).

    Args:
        x: (B, ...) any rank and strides; float32, float64 (half types with float32 math).
        score: s(x, t), same shape, dtype and device as x.
        snr: the target signal-to-noise ratio r > 0 (0.16 for VE on CIFAR-10 in the paper).
        alpha: a float or per-sample (B,) tensor >= 0; 1 for VE, α_i = 1 - β_i for VP.
        seed, offset, sample_offset, generator: the Philox stream (docs/spec.md §0).

    Returns:
        a new contiguous tensor of x's shape and dtype. Not differentiable (the step size
        depends on the score's norm; a sampler has no use for it): inputs that require grad
        under grad mode raise.

    Reference: Song et al. 2021, "Score-Based Generative Modeling through Stochastic
    Differential Equations", Algorithms 4 and 5, and their released code
    (github.com/yang-song/score_sde_pytorch, sampling.py, LangevinCorrector).

    >>> x = torch.randn(512, 2) * 3
    >>> y = gmkernels.langevin_corrector_step(x, -x / 9, 0.16, seed=0, offset=2)
    >>> xi = gmkernels.random.normal(x.shape, seed=0, offset=2)   # one step size for the batch:
    >>> eps = 2 * (0.16 * xi.norm(dim=1).mean() / (x / 9).norm(dim=1).mean()) ** 2
    >>> torch.allclose(y, x + eps * (-x / 9) + (2 * eps).sqrt() * xi, atol=1e-5)
    True
    """
    op = "gmkernels.langevin_corrector_step"
    _like_x(op, x, "x", score, "score")
    snr = _checks.real(op, "snr", snr, 0.0, lo_open=True)
    a_t, a = _checks.per_sample(op, "alpha", alpha, x)
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


if _op_exists("langevin_corrector_step"):

    @torch.library.register_fake("gmkernels::langevin_corrector_step")
    def _corr_fake(x, score, a_t, a, snr, seed, offset, sample_offset):
        return torch.empty_like(x, memory_format=torch.contiguous_format)


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
        seed, offset, sample_offset, generator: the Philox stream (docs/spec.md §0).

    Returns:
        a new contiguous tensor of x's shape and dtype.

    Gradients: flow to x, e and the tensor coefficients (d/dcn is the row sum of xi,
    regenerated). Double backward (``create_graph=True``) is supported: that backward is a
    composite of differentiable torch ops (the same closed form, the noise drawn from the same
    stream) instead of the fused backward op.

    >>> x, eps = torch.randn(8, 2), torch.randn(8, 2)
    >>> y = gmkernels.affine_noise_step(x, eps, 1.01, 0.02, 0.1, seed=0)
    >>> xi = gmkernels.random.normal(x.shape, seed=0)
    >>> torch.allclose(y, 1.01 * x - 0.02 * eps + 0.1 * xi, atol=1e-6)
    True
    """
    op = "gmkernels.affine_noise_step"
    _like_x(op, x, "x", e, "e")
    coeffs = [_checks.per_sample(op, n, v, x, None)
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
        from ..triton import sde as _tri
        return _tri.AffineNoise.apply(x, e, cx_t, cx, ce_t, ce, cn_t, cn, seed, offset, sample_offset)
    pick = lambda t, f: f if t is None else t  # noqa: E731
    return _ref.affine_noise_step(x, e, pick(cx_t, cx), pick(ce_t, ce), pick(cn_t, cn), seed,
                                  offset, sample_offset)


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
        if _autograd.wants_graph(gy, x, e, cx_t, ce_t):  # create_graph: the composite backward
            gx, ge, gcx, gce, gcn = _autograd.affine_noise_grads(
                gy, x, e, cx_t, cx, ce_t, ce, cn_t, seed, offset, sample_offset,
                (n[0], n[1], need_cx, need_ce, need_cn))
        else:
            gx, ge, gcx, gce, gcn = torch.ops.gmkernels.affine_noise_step_backward(
                gy, x if need_cx else None, e if need_ce else None, cx_t, cx, ce_t, ce, seed,
                offset, sample_offset, need_cx, need_ce, need_cn)
        return (gx if n[0] else None, ge if n[1] else None,
                gcx.to(cx_t.dtype) if need_cx else None, None,
                gce.to(ce_t.dtype) if need_ce else None, None,
                gcn.to(cn_t.dtype) if need_cn else None, None, None, None, None)

    torch.library.register_autograd("gmkernels::affine_noise_step", _affine_backward,
                                    setup_context=_affine_setup)


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
        seed, offset, sample_offset, generator: the Philox stream (docs/spec.md §0).

    Returns:
        a new contiguous tensor of x_t's shape and dtype.

    Gradients: flow to x_t and eps_pred (:func:`affine_noise_step`'s), double backward
    (``create_graph=True``) included, by its composite backward.

    Reference: Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models", Alg. 2.

    >>> sched = gmkernels.score.DDPMSchedule.linear(1000)
    >>> model = lambda x, t: torch.zeros_like(x)       # any noise predictor eps(x, t)
    >>> x = torch.randn(16, 2)
    >>> y = gmkernels.ddpm_step(x, model(x, 999), 999, sched, seed=0, offset=1)
    >>> a, abar = sched.alphas[999], sched.alphas_cumprod[999]  # Ho et al.'s step, written out
    >>> xi = gmkernels.random.normal(x.shape, seed=0, offset=1)
    >>> torch.allclose(y, (x / a.sqrt() + sched.sigmas[999] * xi).float(), atol=1e-5)
    True
    """
    op = "gmkernels.ddpm_step"
    _like_x(op, x_t, "x_t", eps_pred, "eps_pred")
    cx, ce, cn = ddpm_coefficients(t, schedule, x_t, op)
    seed, offset, sample_offset = _stream(op, x_t, seed, offset, sample_offset, generator)
    coeffs = [(v, 0.0) if isinstance(v, torch.Tensor) else (None, v) for v in (cx, ce, cn)]
    return _affine(x_t, eps_pred, coeffs, seed, offset, sample_offset)
