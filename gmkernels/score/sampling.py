"""Samplers of score-based SDE models (Song et al. 2021) and DDPM (Ho et al. 2020), built on
the fused steps :func:`gmkernels.reverse_sde_step`, :func:`gmkernels.langevin_corrector_step`
and :func:`gmkernels.ddpm_step`.

Randomness: the seed is resolved once; stream positions are fixed by the step index, so a run
is reproducible and a shard of the batch reproduces its rows (the rows are independent),
except through the corrector, whose step size is one for the whole batch:

* :func:`sample`: prior draw at offset 0; step i's predictor at ``1 + i (1 + C)``, its
  corrector j at ``2 + i (1 + C) + j`` (C = n_corrector_steps).
* :func:`ddpm_sample`: prior draw at offset 0; the step from t (T - 1 ... 0) at ``T - t``.
"""

from __future__ import annotations

from typing import Callable

import torch

from .. import _backend, _checks
from .._checks import as_int64_bits
from .._enums import PREDICTORS, SDE_KINDS
from .._progress import progress_bar
from ..ops import sde as _sde
from ..random import normal
from .coefficients import check_schedule, reverse_coefficients, sde_params

__all__ = ["sample", "ddpm_sample"]


def _check_dtype(op, dtype):
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{op}: dtype must be a floating-point dtype, got {dtype}")


def sample(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], sde, shape, *,
           n_steps: int, predictor: str | None = "euler_maruyama", corrector: str | None = None,
           snr: float = 0.16, n_corrector_steps: int = 1, probability_flow: bool = False,
           denoise: bool = True, eps: float = 1e-3, seed=None, generator=None, device=None,
           dtype=torch.float32, progress: bool = False, return_trajectory: bool = False):
    """Sample a score-based SDE model by integrating the reverse SDE (or the probability-flow
    ODE) from t = 1 to t = eps (Song et al. 2021, Alg. 2/3 predictor-corrector sampling):

        x ~ prior;  for i in 0 .. N-1 (t_i = 1 - i h, h = (1 - eps)/N):
            predictor: x <- reverse_sde_step(x, s(x, t_i), t_i, h, sde)       (t_i -> t_i - h)
            corrector (C times): x <- langevin_corrector_step(x, s(x, t_i - h), snr, alpha)

    with alpha = 1 for VE and 1 - β(t) h for VP / sub-VP (the paper's α_i). ``denoise``: the
    last predictor step returns its mean (no noise) and the last step's correctors are skipped
    (noise added after denoising would undo it), as in the paper's released code.

    Args:
        score_fn: ``score_fn(x, t) -> tensor`` like x, with t a (B,) tensor of x's dtype;
            called under ``torch.no_grad()``.
        sde: gmkernels.score.VESDE / VPSDE / subVPSDE (or any object with their attributes
            and ``prior_sampling``).
        shape: (B, ...) of the samples.
        n_steps: N >= 1 predictor steps.
        predictor: "euler_maruyama", "reverse_diffusion" or None (corrector only).
        corrector: "langevin" (:func:`gmkernels.langevin_corrector_step`: one step size for
            the batch from the batch means of the row norms, as in the paper's released code;
            each sample's step so depends on the rest of the batch) or None.
        snr: the corrector's signal-to-noise ratio r > 0.
        n_corrector_steps: C >= 0 corrector steps after each predictor step.
        probability_flow: the predictor takes probability-flow ODE steps (no noise).
        denoise: see above.
        eps: the final time, in (0, 1).
        seed, generator: the Philox seed (None draws one from ``generator``).
        device, dtype: of the samples.
        progress: show a progress bar over the steps (default False, as every loop of
            gmkernels).
        return_trajectory: also return the states after the prior draw and after each step,
            (N + 1, *shape).

    Returns:
        samples of ``shape``, or ``(samples, trajectory)``.

    >>> sde = gmkernels.score.VPSDE()
    >>> x = gmkernels.score.sample(lambda x, t: -x, sde, (4096, 2), n_steps=500, seed=0)
    >>> bool((x.mean(0).abs() < 0.1).all()), bool(((x.var(0) - 1).abs() < 0.1).all())  # N(0, I)
    (True, True)
    """
    op = "gmkernels.score.sample"
    _checks.function(op, "score_fn", score_fn)
    _, p0, p1 = sde_params(op, sde)
    shape = _checks.shape(op, shape, batch=True)
    _checks.rows_limit(op, "shape", shape)
    n_steps = _checks.integer(op, "n_steps", n_steps, 1)
    n_corr = _checks.integer(op, "n_corrector_steps", n_corrector_steps, 0)
    _checks.choice(op, "predictor", predictor, (*PREDICTORS, None))
    _checks.choice(op, "corrector", corrector, ("langevin", None))
    if predictor is None and corrector is None:
        raise ValueError(f"{op}: predictor and corrector cannot both be None")
    snr = _checks.real(op, "snr", snr, 0.0, lo_open=True)
    eps = _checks.real(op, "eps", eps, 0.0, 1.0, lo_open=True, hi_open=True)
    _checks.boolean(op, "probability_flow", probability_flow)
    _checks.boolean(op, "denoise", denoise)
    _check_dtype(op, dtype)
    _checks.generator(op, "generator", generator)
    device = _checks.device(op, "device", device)
    seed, _, _ = _checks.stream(op, shape[0], seed, 0, 0, generator)
    if corrector is None:
        n_corr = 0
    B = shape[0]
    h = (1.0 - eps) / n_steps
    kind = sde.kind
    x = sde.prior_sampling(shape, seed=seed, offset=0, device=device, dtype=dtype)
    traj = None
    if return_trajectory:
        traj = torch.empty((n_steps + 1, *shape), dtype=dtype, device=device)
        traj[0] = x
    # Every argument of the predictor steps is checked here once (t in [eps, 1], dt = h > 0,
    # the sde, the seed and offsets), so on the native backend a step calls the op directly,
    # below autograd: the per-call checks of gmkernels.reverse_sde_step were half of a small
    # step (benchmarks/NOTES.md, issue 10 part 3). The same arguments as that wrapper passes:
    # the results are bit for bit the same. (VP reverse diffusion with beta(t) h >= 1 is left
    # to the wrapper, which refuses it at the first such step.)
    direct = None
    if (predictor is not None
            and _backend.choose_backend("reverse_sde_step", x.device) == "native"
            and not (predictor == "reverse_diffusion" and kind == "vp" and max(p0, p1) * h >= 1)):
        direct = (torch.ops.gmkernels.reverse_sde_step, SDE_KINDS[kind], PREDICTORS[predictor],
                  as_int64_bits(seed))
    with torch.no_grad():
        for i in progress_bar(range(n_steps), progress, f"sample ({kind})"):
            t = 1.0 - i * h
            base = 1 + i * (1 + n_corr)
            last = i == n_steps - 1
            if predictor is not None:
                tv = torch.full((B,), t, dtype=dtype, device=device)
                s = score_fn(x, tv)
                _checks.fn_output(op, "score_fn", s, x)
                if last and denoise and not probability_flow:
                    cx, cs, _ = reverse_coefficients(kind, p0, p1, None, t, h, predictor, False,
                                                     torch.float64, "cpu")
                    x = _sde.affine_noise_step(x, s, float(cx), -float(cs), 0.0, seed=seed,
                                               offset=base)
                elif direct is not None:
                    rev, k, pr, seed64 = direct
                    x = _backend.call_op(rev, (), x, s, None, t, h, k, p0, p1, pr,
                                         probability_flow, seed64, as_int64_bits(base), 0)
                else:
                    x = _sde.reverse_sde_step(x, s, t, h, sde, predictor=predictor,
                                         probability_flow=probability_flow, seed=seed, offset=base)
            if not (last and denoise):
                tn = max(t - h, 0.0)
                alpha = 1.0 if kind == "ve" else max(1.0 - (p0 + tn * (p1 - p0)) * h, 0.0)
                tv = torch.full((B,), tn, dtype=dtype, device=device)
                for j in range(n_corr):
                    s = score_fn(x, tv)
                    _checks.fn_output(op, "score_fn", s, x)
                    x = _sde.langevin_corrector_step(x, s, snr, alpha=alpha, seed=seed,
                                                     offset=base + 1 + j)
            if traj is not None:
                traj[i + 1] = x
    return (x, traj) if return_trajectory else x


def ddpm_sample(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule, shape, *,
                seed=None, generator=None, device=None, dtype=torch.float32,
                progress: bool = False, return_trajectory: bool = False):
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2): x_T ~ N(0, I), then for t = T-1 .. 0
    ``x <- ddpm_step(x, eps_fn(x, t), t, schedule)`` (no noise at t = 0).

    Args:
        eps_fn: ``eps_fn(x, t) -> tensor`` like x, t a (B,) int64 tensor of the 0-based step;
            called under ``torch.no_grad()``.
        schedule: gmkernels.score.DDPMSchedule.
        shape: (B, ...) of the samples.
        seed, generator: the Philox seed; the prior draw uses offset 0, the step from t
            offset T - t.
        device, dtype: of the samples.
        progress: show a progress bar over the steps (default False, as every loop of
            gmkernels).
        return_trajectory: also return all T + 1 states, (T + 1, *shape).

    >>> sched = gmkernels.score.DDPMSchedule.linear(1000)
    >>> model = lambda x, t: torch.zeros_like(x)       # any noise predictor eps(x, t)
    >>> x = gmkernels.score.ddpm_sample(model, sched, (64, 2), seed=0)
    >>> x.shape
    torch.Size([64, 2])
    """
    op = "gmkernels.score.ddpm_sample"
    _checks.function(op, "eps_fn", eps_fn)
    T = check_schedule(op, schedule)
    shape = _checks.shape(op, shape, batch=True)
    _checks.rows_limit(op, "shape", shape)
    _check_dtype(op, dtype)
    _checks.generator(op, "generator", generator)
    device = _checks.device(op, "device", device)
    seed, _, _ = _checks.stream(op, shape[0], seed, 0, 0, generator)
    x = normal(shape, seed, 0, dtype=dtype, device=device)
    traj = None
    if return_trajectory:
        traj = torch.empty((T + 1, *shape), dtype=dtype, device=device)
        traj[0] = x
    with torch.no_grad():
        for k, t in enumerate(progress_bar(range(T - 1, -1, -1), progress, "ddpm")):
            tv = torch.full((shape[0],), t, dtype=torch.int64, device=device)
            e = eps_fn(x, tv)
            _checks.fn_output(op, "eps_fn", e, x)
            x = _sde.ddpm_step(x, e, t, schedule, seed=seed, offset=T - t)
            if traj is not None:
                traj[k + 1] = x
    return (x, traj) if return_trajectory else x
