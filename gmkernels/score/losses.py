"""Training objectives of score models."""

from __future__ import annotations

import torch

from .. import _checks
from .. import random as _random
from .. import trace as _trace
from .coefficients import sde_params

__all__ = ["denoising_score_matching_loss", "sliced_score_matching_loss", "score_matching_loss"]


def denoising_score_matching_loss(score_fn, x: torch.Tensor, sde_or_sigmas, *,
                                  weighting: str = "sigma2", eps: float = 1e-5, seed=None,
                                  offset: int = 0, generator=None) -> torch.Tensor:
    """Denoising score matching (Vincent 2011; Song & Ermon 2019; Song et al. 2021 eq. 7;
    docs/spec.md §4): perturb the data, regress the score on the perturbation's score:

        x̃ = mean(x, t) + σ z,   loss = mean over the batch of λ(σ) ||s(x̃, t) + z / σ||²

    (squared norm summed over the non-batch dims), λ(σ) = σ² (``weighting="sigma2"``, which
    makes every noise level contribute O(1)) or 1 (``"none"``).

    * With an SDE (gmkernels.score.VESDE / VPSDE / subVPSDE): t ~ U(eps, 1) per sample,
      (mean, σ) = sde.marginal_prob(x, t), and ``score_fn(x̃, t)`` with t a (B,) tensor.
    * With a 1-D tensor of noise levels σ_1 .. σ_L (NCSN): σ drawn uniformly from the list per
      sample, x̃ = x + σ z, and ``score_fn(x̃, sigma)`` with sigma a (B,) tensor.

    Randomness: t (or the level) from ``gmkernels.random.uniform((B,), seed, offset)``, z from
    ``gmkernels.random.normal(x.shape, seed, offset + 1)``; ``seed=None`` draws one from
    ``generator``. The loss is differentiable in score_fn's parameters.

    Args:
        score_fn: the model, ``score_fn(x̃, t_or_sigma) -> tensor`` like x.
        x: (B, ...) data batch, floating point, B >= 1.
        sde_or_sigmas: an SDE object or a 1-D tensor of positive noise levels.
        weighting: "sigma2" or "none".
        eps: smallest t for an SDE, in (0, 1) (the marginal std vanishes at t = 0).
        seed, offset, generator: the Philox stream; the loss uses offsets ``offset`` and
            ``offset + 1``.

    Returns:
        a 0-d tensor.

    >>> model = torch.nn.Linear(2, 2)
    >>> score_fn = lambda x, t: model(x) / t[:, None]     # any model s(x, t)
    >>> batch = torch.randn(64, 2)
    >>> loss = gmkernels.score.denoising_score_matching_loss(
    ...     score_fn, batch, gmkernels.score.VESDE(0.01, 10.0), seed=0)
    >>> loss.backward(); model.weight.grad.shape
    torch.Size([2, 2])
    """
    op = "gmkernels.score.denoising_score_matching_loss"
    _checks.function(op, "score_fn", score_fn)
    _checks.floating(op, "x", x)
    if x.dim() < 1:
        raise ValueError(f"{op}: x must have a batch dimension (B, ...), got a 0-d tensor")
    if x.shape[0] == 0:
        raise ValueError(f"{op}: x must have at least one row (the loss is a mean over the "
                         f"batch), got shape {tuple(x.shape)}")
    _checks.choice(op, "weighting", weighting, ("sigma2", "none"))
    _checks.generator(op, "generator", generator)
    seed, offset, _ = _checks.stream(op, x.shape[0], seed, offset, 0, generator)
    if offset + 2 > _checks.U64:
        raise ValueError(f"{op}: offset must be <= 2^64 - 2 (the loss draws at offset and "
                         f"offset + 1), got {offset}")
    B = x.shape[0]
    u = _random.uniform((B,), seed, offset, dtype=torch.float64, device=x.device)
    z = _random.normal(x.shape, seed, offset + 1, dtype=x.dtype, device=x.device)
    view = (B,) + (1,) * (x.dim() - 1)
    if isinstance(sde_or_sigmas, torch.Tensor):
        sig = sde_or_sigmas
        _checks.floating(op, "sigmas", sig)
        if sig.dim() != 1 or sig.numel() == 0:
            raise ValueError(f"{op}: sigmas must be a non-empty 1-D tensor, got shape "
                             f"{tuple(sig.shape)}")
        _checks.values(op, "sigmas", sig, "finite and > 0", lambda v: torch.isfinite(v) & (v > 0))
        idx = torch.clamp((u * sig.numel()).long(), max=sig.numel() - 1)
        cond = sig.to(device=x.device, dtype=x.dtype)[idx.to(sig.device) if sig.device != x.device else idx]
        std = cond.reshape(view)
        xt = x + std * z
    else:
        sde_params(op, sde_or_sigmas)
        eps = _checks.real(op, "eps", eps, 0.0, 1.0, lo_open=True, hi_open=True)
        cond = (eps + (1 - eps) * u).to(x.dtype)
        mean, std = sde_or_sigmas.marginal_prob(x, cond)
        std = std.reshape(view) if std.dim() else std
        xt = mean + std * z
    s = score_fn(xt, cond)
    _checks.fn_output(op, "score_fn", s, x)
    if weighting == "sigma2":
        r = s * std + z                       # σ² ||s + z/σ||² = ||σ s + z||²
    else:
        r = s + z / std
    return (r * r).reshape(B, -1).sum(dim=1).mean()


def _loss_x(op: str, x) -> None:
    _checks.floating(op, "x", x)
    if x.dim() < 2 or x.numel() == 0:
        raise ValueError(f"{op}: x must have shape (B, ...) with B >= 1 rows of at least one "
                         f"feature (the loss is a mean over the batch), got shape {tuple(x.shape)}")


def sliced_score_matching_loss(score_fn, x: torch.Tensor, n_projections: int = 1, *,
                               variance_reduction: bool = True, probe: str = "rademacher",
                               mode: str = "vjp", seed=None, offset: int = 0,
                               generator=None) -> torch.Tensor:
    """Sliced score matching (Song, Garg, Shi & Ermon 2019, "Sliced Score Matching"; docs/spec.md
    §4): Hyvärinen's objective with the Jacobian trace replaced by random projections,

        SSM:     mean over the batch and the M projections of vᵀ (∂s/∂x) v + ½ (vᵀ s(x))²
        SSM-VR:  mean of vᵀ (∂s/∂x) v + ½ ||s(x)||²          (``variance_reduction=True``)

    With ``E[v vᵀ] = I`` both have the expectation of :func:`score_matching_loss`, so their
    gradients are unbiased for its gradient; VR integrates the second term exactly. The M
    products ``vᵀ J v`` come from one batched pass (``gmkernels.trace``, with the graph kept
    for training).

    Args:
        score_fn: the model, ``score_fn(x) -> tensor`` like x, acting row by row (wrap a
            conditional model as ``lambda x: model(x, sigma)``).
        x: (B, ...) data batch, floating point, B >= 1, D = ``x[0].numel()`` features.
        n_projections: M >= 1, projections per sample.
        variance_reduction: SSM-VR (True) or SSM.
        probe: ``"rademacher"``, ``"gaussian"`` (the paper's) or ``"sphere"``
            (see :mod:`gmkernels.trace`).
        mode: ``"vjp"`` or ``"jvp"``, how ``J v`` is computed.
        seed, offset, generator: the Philox stream of the projections,
            ``gmkernels.trace.probes(x, M, probe=probe, seed=seed, offset=offset)``;
            ``seed=None`` draws one from ``generator``.

    Returns:
        a 0-d tensor, differentiable in score_fn's parameters.

    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    >>> loss = gmkernels.score.sliced_score_matching_loss(model, torch.randn(64, 2), 4, seed=0)
    >>> loss.backward(); model[0].weight.grad.shape
    torch.Size([16, 2])
    """
    op = "gmkernels.score.sliced_score_matching_loss"
    _checks.function(op, "score_fn", score_fn)
    _loss_x(op, x)
    M = _checks.integer(op, "n_projections", n_projections, 1, _checks.U32)
    _checks.boolean(op, "variance_reduction", variance_reduction)
    _checks.choice(op, "probe", probe, _trace.PROBES)
    _checks.choice(op, "mode", mode, _trace.MODES)
    _checks.generator(op, "generator", generator)
    seed, offset, _ = _checks.stream(op, x.shape[0], seed, offset, 0, generator)
    B = x.shape[0]
    ctx, x = _trace._outside_inference(x)
    with ctx:
        V = _trace.probes(x, M, probe=probe, seed=seed, offset=offset).reshape(M, B, -1)
        return _ssm(op, score_fn, x, V, mode, variance_reduction)


def _ssm(op, score_fn, x, V, mode, variance_reduction):
    B = x.shape[0]
    A = _trace._Operator(op, score_fn, x, mode, True, "score_fn")
    vjv = (V * A.apply(V)).sum(-1)                       # (M, B): vᵀ J v
    s = A.y.reshape(B, -1)
    if variance_reduction:
        quad = 0.5 * (s * s).sum(-1)                     # (B,)
    else:
        quad = 0.5 * ((V * s).sum(-1) ** 2).mean(0)      # mean over M of ½ (vᵀ s)²
    return (vjv.mean(0) + quad).mean()


def score_matching_loss(score_fn, x: torch.Tensor, *, mode: str = "vjp") -> torch.Tensor:
    """Exact (implicit) score matching (Hyvärinen 2005, "Estimation of non-normalized statistical
    models by score matching"; docs/spec.md §4): the mean over the batch of

        ½ ||s(x)||² + Tr(∂s/∂x)

    with the trace from D batched basis-vector products (``gmkernels.trace``,
    ``method="exact"``): for small D, and the oracle of :func:`sliced_score_matching_loss`.
    It equals the Fisher divergence ½ E||s - ∇log p||² up to a constant in the model.

    Args:
        score_fn: ``score_fn(x) -> tensor`` like x, acting row by row.
        x: (B, ...) data batch, floating point, B >= 1.
        mode: ``"vjp"`` or ``"jvp"``.

    Returns:
        a 0-d tensor, differentiable in score_fn's parameters.

    >>> x = torch.randn(1000, 3, dtype=torch.float64)
    >>> loss = gmkernels.score.score_matching_loss(lambda x: -x, x)   # the N(0, I) score
    >>> bool(abs(loss - (0.5 * (x * x).sum(1).mean() - 3)) < 1e-12)
    True
    """
    op = "gmkernels.score.score_matching_loss"
    _checks.function(op, "score_fn", score_fn)
    _loss_x(op, x)
    _checks.choice(op, "mode", mode, _trace.MODES)
    B = x.shape[0]
    ctx, x = _trace._outside_inference(x)
    with ctx:
        A = _trace._Operator(op, score_fn, x, mode, True, "score_fn")
        tr = _trace._exact(A, B, x[0].numel(), x.dtype, x.device)
        s = A.y.reshape(B, -1)
        return (0.5 * (s * s).sum(-1) + tr).mean()
