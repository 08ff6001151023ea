"""Langevin samplers (docs/spec.md §3.1) built on the fused in-place step :func:`gmkernels.langevin_step_`.

Three conventions of the one update ``x <- x + a * g + c * xi`` (``xi ~ N(0, I)`` from the
Philox stream of docs/spec.md §0):

* :func:`langevin_sample`: unadjusted Langevin (ULA) on a score ``s = ∇log p``:
  ``a = ε, c = sqrt(2ε)``.
* :func:`annealed_langevin_sample`: annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) on a
  noise-conditional score ``s(x, σ)``: level ``i`` runs T steps with ``α_i = ε σ_i² / σ_L²``,
  ``a = α_i / 2, c = sqrt(α_i)``.
* :func:`sgld_sample`: Langevin on an energy (Welling & Teh 2011; Du & Mordatch 2019):
  ``g = -∇E``, ``a = λ/2, c = sqrt(λ)`` (or a smaller ``c`` of your choice), optional clamp.

Randomness: the seed is resolved once (``seed=None`` draws it from ``generator`` or torch's
default generator, so ``torch.manual_seed`` makes a run reproducible) and step ``k`` of a run
draws its noise at stream position ``offset + k``. Rows are independent chains; with
``sample_offset=b`` a shard of a batch reproduces rows ``b, b+1, ...`` of the full run.
Two runs that must have independent noise need different seeds or non-overlapping offset
ranges (a run of K steps uses ``offset, ..., offset + K - 1``).

The caller's ``x0`` is never modified: the samplers work on a contiguous copy.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .. import _checks
from .._checks import U64
from .._progress import progress_bar
from ..ops import sde as _sde
from ..reference.random import row_view

__all__ = ["langevin_sample", "annealed_langevin_sample", "sgld_sample"]


# --------------------------------------------------------------------------------------------
# argument checks

def _check_x0(op: str, x0) -> None:
    _checks.floating(op, "x0", x0)
    if x0.dim() < 1:
        raise ValueError(f"{op}: x0 must have a batch dimension (B, ...), got a 0-d tensor")


def _check_rate(op: str, name: str, v, x0: torch.Tensor, *, positive: bool = True):
    """A step parameter: a finite float (> 0, or >= 0 when not ``positive``), or a per-sample
    (B,) floating tensor on x0's device. Returns a float or a detached tensor."""
    v_t, v_f = _checks.per_sample(op, name, v, x0, 0.0, lo_open=positive)
    return v_f if v_t is None else v_t.detach()


def _sqrt(v):
    return v.sqrt() if isinstance(v, torch.Tensor) else math.sqrt(v)


def _check_sigmas(op: str, sigmas) -> list[float]:
    if isinstance(sigmas, torch.Tensor):
        if sigmas.dim() != 1:
            raise ValueError(f"{op}: sigmas must be 1-D, got shape {tuple(sigmas.shape)}")
        sigmas = sigmas.detach().cpu().tolist()
    try:
        s = [float(v) for v in sigmas]
    except (TypeError, ValueError):
        raise TypeError(f"{op}: sigmas must be a 1-D sequence or tensor of floats, got "
                        f"{sigmas!r}") from None
    if not s:
        raise ValueError(f"{op}: sigmas must hold at least one noise level, got none")
    if not all(math.isfinite(v) and v > 0 for v in s):
        raise ValueError(f"{op}: sigmas must be finite and > 0, got {s}")
    if any(b >= a for a, b in zip(s, s[1:])):
        raise ValueError(f"{op}: sigmas must be strictly decreasing (sigma_1 > ... > sigma_L), "
                         f"got {s}")
    return s


def _check_stream(op, x0, seed, offset, sample_offset, generator, total_steps):
    """Resolves the seed once and checks that offsets offset .. offset + total_steps - 1 fit."""
    seed, offset, sample_offset = _checks.stream(op, row_view(x0.shape)[0], seed, offset,
                                                 sample_offset, generator)
    if offset + total_steps > U64:
        raise ValueError(f"{op}: offset + number of steps must be <= 2^64 (step k uses offset + k), "
                         f"got offset={offset} with {total_steps} steps")
    return seed, offset, sample_offset


class _Recorder:
    """Holds the working copy and, when asked, the trajectory (n_entries, *x0.shape)."""

    def __init__(self, x0: torch.Tensor, n_entries: int, record: bool):
        self.x = x0.detach().clone(memory_format=torch.contiguous_format)
        self.traj = None
        self.k = 0
        if record:
            self.traj = torch.empty((n_entries, *x0.shape), dtype=x0.dtype, device=x0.device)
            self.push()

    def push(self) -> None:
        if self.traj is not None:
            self.traj[self.k].copy_(self.x)
            self.k += 1

    def result(self, return_trajectory: bool):
        return (self.x, self.traj) if return_trajectory else self.x


def _energy_grad(op: str, energy_fn, x: torch.Tensor) -> torch.Tensor:
    """∇_x sum(energy_fn(x)), computed with autograd whatever the caller's grad mode: under
    ``torch.no_grad()`` and under ``torch.inference_mode()`` too (x is then an inference tensor,
    which autograd cannot record: the gradient is taken on a normal copy, outside inference
    mode)."""
    with torch.inference_mode(False), torch.enable_grad():
        xr = (x.clone() if x.is_inference() else x.detach()).requires_grad_(True)
        try:
            energy = energy_fn(xr)
        except RuntimeError as e:
            if "nference tensor" not in str(e):
                raise
            raise RuntimeError(f"{op}: energy_fn failed under torch.inference_mode(): {e}. The "
                               "sampler takes the gradient outside inference mode, but tensors "
                               "that energy_fn uses and that were created inside it cannot take "
                               "part in autograd; create them outside inference mode, or call "
                               "the sampler under torch.no_grad() instead") from e
        if not isinstance(energy, torch.Tensor):
            raise TypeError(f"{op}: energy_fn must return a tensor, got {type(energy).__name__}")
        if not energy.requires_grad:
            raise ValueError(f"{op}: energy_fn must return a tensor computed from x with autograd "
                             "(not detached, nor under torch.no_grad() inside energy_fn), got one "
                             "that does not depend on x")
        (g,) = torch.autograd.grad(energy.sum(), xr, allow_unused=True)
    if g is None:
        raise ValueError(f"{op}: energy_fn must return a tensor computed from x, got one that "
                         "does not depend on x")
    return g


# --------------------------------------------------------------------------------------------
# samplers

def langevin_sample(score_fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor,
                    n_steps: int, step_size, *, seed=None, offset: int = 0,
                    generator: torch.Generator | None = None, sample_offset: int = 0,
                    progress: bool = False, return_trajectory: bool = False, clamp=None):
    """Unadjusted Langevin algorithm (ULA) on a score (docs/spec.md §3.1):

        x_{k+1} = clamp(x_k + ε s(x_k) + sqrt(2ε) ξ_k),   ξ_k ~ N(0, I),   s = ∇_x log p,

    whose stationary law tends to p as ε -> 0 (the bias is O(ε); e.g. for a Gaussian target
    N(μ, Σ) the chain's stationary covariance is Σ (I - ε Σ^{-1}/2)^{-1}, not Σ). There is no
    Metropolis correction (Roberts & Tweedie 1996, "Exponential convergence of Langevin
    distributions and their discrete approximations").

    Args:
        score_fn: ``score_fn(x) -> tensor`` of x's shape, dtype and device; called under
            ``torch.no_grad()`` (for a score that needs autograd, e.g. the gradient of a log
            density, use :func:`sgld_sample` on the energy ``-log p``).
        x0: (B, ...) initial states, one chain per row, any floating dtype and strides. Not
            modified.
        n_steps: number of steps K >= 0.
        step_size: ε > 0, a float or a per-sample (B,) tensor.
        seed: uint64 Philox key; None draws one (once) from ``generator`` / torch's default
            generator. Step k draws its noise at stream position ``offset + k``.
        offset: stream position of step 0 (uint64).
        generator: torch.Generator to draw the seed from when ``seed`` is None.
        sample_offset: global index of row 0 (a shard of a batch reproduces the full batch).
        progress: show a progress bar over the steps (default False, as every loop of
            gmkernels: samplers and ``fit`` methods alike).
        return_trajectory: also return every state.
        clamp: None or (lo, hi): clip x after each step.

    Returns:
        samples (B, ...) after K steps, or ``(samples, trajectory)`` with trajectory of shape
        (K + 1, B, ...): x0 then the state after each step (``trajectory[-1]`` is samples).
        Memory: K + 1 copies of x0.

    >>> mu = torch.tensor([1.0, -1.0])
    >>> x = gmkernels.score.langevin_sample(lambda x: mu - x, torch.zeros(4096, 2), 500, 0.05,
    ...                                     seed=0)          # ~ N(mu, I / (1 - 0.05/2))
    >>> bool(((x.mean(0) - mu).abs() < 0.1).all()), bool(((x.var(0) - 1.026).abs() < 0.1).all())
    (True, True)
    """
    op = "gmkernels.score.langevin_sample"
    _checks.function(op, "score_fn", score_fn)
    _check_x0(op, x0)
    n_steps = _checks.integer(op, "n_steps", n_steps, 0)
    eps = _check_rate(op, "step_size", step_size, x0)
    _checks.clamp_pair(op, clamp)
    seed, offset, sample_offset = _check_stream(op, x0, seed, offset, sample_offset, generator,
                                                n_steps)
    noise = _sqrt(2 * eps)
    rec = _Recorder(x0, n_steps + 1, return_trajectory)
    x = rec.x
    with torch.no_grad():
        for k in progress_bar(range(n_steps), progress, "langevin"):
            g = score_fn(x)
            _checks.fn_output(op, "score_fn", g, x)
            _sde.langevin_step_(x, g, eps, noise, seed=seed, offset=offset + k,
                           sample_offset=sample_offset, clamp=clamp)
            rec.push()
    return rec.result(return_trajectory)


def annealed_langevin_sample(score_fn: Callable[[torch.Tensor, float], torch.Tensor],
                             x0: torch.Tensor, sigmas: Sequence[float] | torch.Tensor, *,
                             n_steps_each: int = 100, eps=2e-5, seed=None, offset: int = 0,
                             generator: torch.Generator | None = None, sample_offset: int = 0,
                             progress: bool = False, return_trajectory: bool = False,
                             clamp=None, denoise: bool = False):
    """Annealed Langevin dynamics (Song & Ermon 2019, "Generative Modeling by Estimating
    Gradients of the Data Distribution", Alg. 1; docs/spec.md §3.1): for levels σ_1 > ... > σ_L,

        α_i = ε σ_i² / σ_L²
        repeat T times:  x <- clamp(x + (α_i / 2) s(x, σ_i) + sqrt(α_i) ξ),   ξ ~ N(0, I)

    where s(x, σ) ≈ ∇_x log p_σ(x) is the score of the data convolved with N(0, σ² I). Large
    σ first lets chains cross between modes (so the mass of each mode comes out right, which
    plain Langevin from a poor start gets wrong); the small ones then sharpen the samples.
    With ``denoise=True`` a final step ``x <- x + σ_L² s(x, σ_L)`` (Tweedie's formula, the
    practice of Song & Ermon 2020, "Improved Techniques for Training Score-Based Generative
    Models") removes the last level's noise.

    The paper uses geometric σ's, T = 100 and ε = 2e-5 with σ_L = 0.01 (CIFAR-10); ε must be
    scaled with σ_L² (the step at the last level is ε itself).

    Args:
        score_fn: ``score_fn(x, sigma) -> tensor`` of x's shape, dtype and device, with
            ``sigma`` a Python float (the same for the whole batch); called under
            ``torch.no_grad()``.
        x0: (B, ...) initial states (the paper: uniform noise), not modified.
        sigmas: (L,) noise levels, positive and strictly decreasing; a sequence or a 1-D tensor.
        n_steps_each: T >= 0, steps per level.
        eps: ε > 0, a float or a per-sample (B,) tensor.
        seed, offset, generator, sample_offset: as in :func:`langevin_sample`. One global
            step counter across levels: step t of level i (0-based) uses stream position
            ``offset + i * T + t``.
        progress: one progress bar over all L·T steps, showing the current σ (default False).
        return_trajectory: also return every state.
        clamp: None or (lo, hi): clip x after each step (and after the denoising step).
        denoise: apply the final denoising step.

    Returns:
        samples (B, ...), or ``(samples, trajectory)`` with trajectory of shape
        (L·T + 1 + denoise, B, ...): x0, the state after each Langevin step (level by level),
        and, when ``denoise``, the denoised samples; ``trajectory[-1]`` is always samples.

    >>> sigmas = torch.logspace(1, -2, 10).tolist()            # 10 ... 0.01
    >>> x = gmkernels.score.annealed_langevin_sample(
    ...     lambda x, s: -x / (1 + s * s), torch.rand(4096, 2) * 2 - 1, sigmas,
    ...     n_steps_each=100, eps=2e-5, seed=0, denoise=True)  # N(0, I) data
    >>> bool((x.mean(0).abs() < 0.1).all()), bool(((x.var(0) - 1).abs() < 0.2).all())
    (True, True)
    """
    op = "gmkernels.score.annealed_langevin_sample"
    _checks.function(op, "score_fn", score_fn)
    _check_x0(op, x0)
    sig = _check_sigmas(op, sigmas)
    T = _checks.integer(op, "n_steps_each", n_steps_each, 0)
    eps = _check_rate(op, "eps", eps, x0)
    _checks.boolean(op, "denoise", denoise)
    lo, hi = _checks.clamp_pair(op, clamp)
    L = len(sig)
    seed, offset, sample_offset = _check_stream(op, x0, seed, offset, sample_offset, generator,
                                                L * T)
    rec = _Recorder(x0, L * T + 1 + int(denoise), return_trajectory)
    x = rec.x
    sig_L2 = sig[-1] ** 2
    with torch.no_grad(), progress_bar(None, progress, "annealed langevin", total=L * T) as bar:
        for i, sigma in enumerate(sig):
            alpha = eps * (sigma * sigma / sig_L2)
            a, c = alpha / 2, _sqrt(alpha)
            if progress:
                bar.set_postfix(sigma=f"{sigma:.3g}", refresh=False)
            for t in range(T):
                g = score_fn(x, sigma)
                _checks.fn_output(op, "score_fn", g, x)
                _sde.langevin_step_(x, g, a, c, seed=seed, offset=offset + i * T + t,
                               sample_offset=sample_offset, clamp=clamp)
                rec.push()
                bar.update()
        if denoise:
            g = score_fn(x, sig[-1])
            _checks.fn_output(op, "score_fn", g, x)
            x.add_(g, alpha=sig_L2)
            if clamp is not None:
                x.clamp_(lo, hi)
            rec.push()
    return rec.result(return_trajectory)


def sgld_sample(energy_fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor,
                n_steps: int, step_size, *, noise_scale=None, clamp=None, seed=None,
                offset: int = 0, generator: torch.Generator | None = None,
                sample_offset: int = 0, progress: bool = False,
                return_trajectory: bool = False):
    """Langevin sampling of an energy-based model p(x) ∝ exp(-E(x)) (SGLD, Welling & Teh 2011,
    "Bayesian Learning via Stochastic Gradient Langevin Dynamics"; as an EBM sampler, Du &
    Mordatch 2019, "Implicit Generation and Generalization in Energy-Based Models"; docs/spec.md §3.1):

        x_{k+1} = clamp(x_k - (λ/2) ∇_x E(x_k) + c ξ_k),   c = sqrt(λ) by default,

    which is :func:`langevin_sample` with ε = λ/2 when c = sqrt(λ). The gradient comes from
    ``torch.autograd.grad`` of ``E.sum()`` with respect to a detached copy of x (no gradient
    reaches the parameters of ``energy_fn``; it works inside ``torch.no_grad()`` and
    ``torch.inference_mode()`` too). Du &
    Mordatch use a noise much smaller than sqrt(λ) in practice (e.g. λ/2 = 10, c = 0.005 on
    images in [0, 1]): pass it as ``noise_scale``; the chain then no longer samples exp(-E)
    exactly but a sharper law.

    Args:
        energy_fn: ``energy_fn(x) -> E`` with per-sample energies (B,) (or any tensor whose
            sum is the total energy); the energies of different rows must not interact (no
            batch norm in training mode).
        x0: (B, ...) initial states, not modified.
        n_steps: number of steps K >= 0.
        step_size: λ > 0, a float or a per-sample (B,) tensor (the drift is λ/2 · (-∇E)).
        noise_scale: c >= 0 (float or (B,) tensor), default sqrt(λ); 0 gives gradient descent.
        clamp: None or (lo, hi): clip x to the data range after each step.
        seed, offset, generator, sample_offset, progress: as in :func:`langevin_sample`
            (step k uses stream position ``offset + k``; progress default False).
        return_trajectory: also return every state, (K + 1, B, ...) with x0 first.

    Returns:
        samples (B, ...) (detached), or ``(samples, trajectory)``.

    >>> energy = lambda x: 0.5 * (x ** 2).sum(dim=1)
    >>> x = gmkernels.score.sgld_sample(energy, torch.rand(256, 2), 200, 0.1, seed=0,
    ...                                 noise_scale=0.01, clamp=(-1.0, 1.0))
    >>> float(x.std()) < 0.05               # near the minimum at 0, within the small noise
    True
    """
    op = "gmkernels.score.sgld_sample"
    _checks.function(op, "energy_fn", energy_fn)
    _check_x0(op, x0)
    n_steps = _checks.integer(op, "n_steps", n_steps, 0)
    lam = _check_rate(op, "step_size", step_size, x0)
    noise = _sqrt(lam) if noise_scale is None else _check_rate(op, "noise_scale", noise_scale,
                                                                x0, positive=False)
    _checks.clamp_pair(op, clamp)
    seed, offset, sample_offset = _check_stream(op, x0, seed, offset, sample_offset, generator,
                                                n_steps)
    a = lam / 2
    rec = _Recorder(x0, n_steps + 1, return_trajectory)
    x = rec.x
    for k in progress_bar(range(n_steps), progress, "sgld"):
        g = _energy_grad(op, energy_fn, x)
        with torch.no_grad():
            _checks.fn_output(op, "the gradient of energy_fn", g, x)
            # out of place: autograd may hand back an expanded (stride-0) gradient
            _sde.langevin_step_(x, torch.neg(g), a, noise, seed=seed, offset=offset + k,
                           sample_offset=sample_offset, clamp=clamp)
            rec.push()
    return rec.result(return_trajectory)
