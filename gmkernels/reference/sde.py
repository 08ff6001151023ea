"""Reference stochastic steps (docs/spec.md §3) in plain PyTorch. Autograd comes from PyTorch itself,
so these are also the oracle for the gradients of the fused ops."""

from __future__ import annotations

import math

import torch

from .random import compute_dtype, normal


__all__ = ["langevin_step", "euler_maruyama_step", "reverse_sde_step", "langevin_corrector_step",
           "affine_noise_step"]


# langevin_corrector_step: a step size above this counts as no step (eps = 0), so that a score
# of tiny but nonzero norm gives x back rather than inf (csrc/sde/sde.h kCorrectorMaxStep).
CORRECTOR_MAX_STEP = 2.0 ** 120


def per_sample(v, x: torch.Tensor, dtype) -> torch.Tensor | float:
    """A float, or a (B,) tensor viewed as (B, 1, ..., 1) to broadcast over x's other dims."""
    if isinstance(v, torch.Tensor):
        return v.to(dtype).reshape((-1,) + (1,) * max(x.dim() - 1, 0)) if x.dim() else v.to(dtype).reshape(())
    return float(v)


def langevin_step(x: torch.Tensor, grad: torch.Tensor, step_size, noise_scale, seed: int,
                  offset: int = 0, sample_offset: int = 0, clamp=None) -> torch.Tensor:
    """``clamp(x + step_size * grad + noise_scale * xi)`` with ``xi = normal(x.shape, seed,
    offset, sample_offset)``, computed in float32 (float64 for float64 inputs).

    >>> x = torch.randn(8, 2)
    >>> torch.allclose(gmkernels.reference.sde.langevin_step(x, -x, 0.01, 0.1, seed=0),
    ...                gmkernels.langevin_step(x, -x, 0.01, 0.1, seed=0), atol=1e-6)
    True
    """
    cd = compute_dtype(x.dtype)
    xi = normal(x.shape, seed, offset, sample_offset, dtype=cd, device=x.device)
    y = x.to(cd) + per_sample(step_size, x, cd) * grad.to(cd) + per_sample(noise_scale, x, cd) * xi
    if clamp is not None:
        y = y.clamp(float(clamp[0]), float(clamp[1]))
    return y.to(x.dtype)


# --------------------------------------------------------------------------------------------
# SDE steps (docs/spec.md §3.2-3.3). Every step below is affine in x (and the score) with per-row
# coefficients; the references spell out the formulas of the paper rather than that form.

def _rows(x: torch.Tensor) -> int:
    return x.shape[0] if x.dim() else 1


def _full_or_row(v, x: torch.Tensor, dtype):
    """A float, a (B,) tensor (broadcast over the row) or a tensor of x's shape."""
    if isinstance(v, torch.Tensor) and v.shape == x.shape and x.dim() != 1:
        return v.to(dtype)
    return per_sample(v, x, dtype)


def euler_maruyama_step(x: torch.Tensor, drift: torch.Tensor, diffusion, dt: float, seed: int,
                        offset: int = 0, sample_offset: int = 0) -> torch.Tensor:
    """``x + drift * dt + diffusion * sqrt(|dt|) * xi``; diffusion a float, a (B,) tensor or a
    tensor of x's shape; xi = normal(x.shape, seed, offset, sample_offset).

    >>> x = torch.randn(8, 2)
    >>> torch.allclose(gmkernels.reference.sde.euler_maruyama_step(x, -x, 1.5, 0.01, seed=0),
    ...                gmkernels.euler_maruyama_step(x, -x, 1.5, 0.01, seed=0), atol=1e-6)
    True
    """
    cd = compute_dtype(x.dtype)
    xi = normal(x.shape, seed, offset, sample_offset, dtype=cd, device=x.device)
    g = _full_or_row(diffusion, x, cd)
    y = x.to(cd) + drift.to(cd) * float(dt) + g * math.sqrt(abs(float(dt))) * xi
    return y.to(x.dtype)


def sde_f_coeff_g2(kind: str, p0: float, p1: float, t):
    """(c, g2) with f(x, t) = c * x and g(t)^2 for the SDE ``kind`` at time(s) t (float or tensor)."""
    tt = t if isinstance(t, torch.Tensor) else torch.tensor(float(t), dtype=torch.float64)
    if kind == "ve":
        sigma = p0 * (p1 / p0) ** tt
        return torch.zeros_like(tt), 2 * sigma * sigma * math.log(p1 / p0)
    beta = p0 + tt * (p1 - p0)
    if kind == "vp":
        return -0.5 * beta, beta
    if kind == "subvp":
        return -0.5 * beta, beta * (1 - torch.exp(-2 * (p0 * tt + 0.5 * tt * tt * (p1 - p0))))
    raise ValueError(f"unknown SDE kind {kind!r}")


def reverse_sde_step(x: torch.Tensor, score: torch.Tensor, t, dt: float, kind: str, p0: float,
                     p1: float, predictor: str = "euler_maruyama", probability_flow: bool = False,
                     seed: int = 0, offset: int = 0, sample_offset: int = 0) -> torch.Tensor:
    """One reverse-time step from t to t - dt (docs/spec.md §3.3), t a float or (B,).

    euler_maruyama:    x - (f - g2 s) dt + sqrt(g2 dt) xi;  probability flow: x - (f - g2 s / 2) dt
    reverse_diffusion: x - (F - G2 s) + sqrt(G2) xi;        probability flow: x - (F - G2 s / 2)
      VE: F = 0, G2 = sigma(t)^2 - sigma(max(t - dt, 0))^2
      VP: F = (sqrt(1 - beta(t) dt) - 1) x, G2 = beta(t) dt;  subVP: F = f dt, G2 = g2 dt

    >>> sde = gmkernels.score.VPSDE()
    >>> x = torch.randn(8, 2)
    >>> ref = gmkernels.reference.sde.reverse_sde_step(x, -x, 0.5, 0.01, "vp", sde.beta_min,
    ...                                                sde.beta_max, seed=0)
    >>> torch.allclose(ref, gmkernels.reverse_sde_step(x, -x, 0.5, 0.01, sde, seed=0), atol=1e-5)
    True
    """
    cd = compute_dtype(x.dtype)
    dt = float(dt)
    tt = (t.to(torch.float64) if isinstance(t, torch.Tensor)
          else torch.tensor(float(t), dtype=torch.float64)).to(x.device)
    xc, s = x.to(cd), score.to(cd)
    c, g2 = sde_f_coeff_g2(kind, p0, p1, tt)
    if predictor == "euler_maruyama":
        f = per_sample(c, x, cd) * xc
        G2 = per_sample(g2 * dt, x, cd)
        F = f * dt
    elif predictor == "reverse_diffusion":
        if kind == "ve":
            sig = lambda u: p0 * (p1 / p0) ** u  # noqa: E731
            G2 = per_sample(sig(tt) ** 2 - sig(torch.clamp(tt - dt, min=0.0)) ** 2, x, cd)
            F = torch.zeros_like(xc)
        elif kind == "vp":
            beta_d = (p0 + tt * (p1 - p0)) * dt
            F = per_sample(torch.sqrt(1 - beta_d) - 1, x, cd) * xc
            G2 = per_sample(beta_d, x, cd)
        else:
            F = per_sample(c * dt, x, cd) * xc
            G2 = per_sample(g2 * dt, x, cd)
    else:
        raise ValueError(f"unknown predictor {predictor!r}")
    if probability_flow:
        y = xc - (F - 0.5 * G2 * s)
    else:
        xi = normal(x.shape, seed, offset, sample_offset, dtype=cd, device=x.device)
        y = xc - (F - G2 * s) + torch.sqrt(G2) * xi
    return y.to(x.dtype)


def langevin_corrector_step(x: torch.Tensor, score: torch.Tensor, snr: float, alpha=1.0,
                            seed: int = 0, offset: int = 0, sample_offset: int = 0) -> torch.Tensor:
    """Song et al. 2021 Alg. 4/5 corrector with the released code's batch step size:
    n = mean_r ||xi_r||, g = mean_r ||s_r|| (norms over each row), eps_r = 2 alpha_r (snr n / g)^2,
    out = x + eps_r s + sqrt(2 eps_r) xi; eps_r = 0 (out = x) where g = 0 or eps_r > 2^120.
    A NaN in the score makes g NaN and so every row NaN.

    >>> x = torch.randn(8, 2)
    >>> torch.allclose(gmkernels.reference.sde.langevin_corrector_step(x, -x, 0.16, seed=0),
    ...                gmkernels.langevin_corrector_step(x, -x, 0.16, seed=0), atol=1e-5)
    True
    """
    cd = compute_dtype(x.dtype)
    xi = normal(x.shape, seed, offset, sample_offset, dtype=cd, device=x.device)
    rows = _rows(x)
    s = score.to(cd)
    M = x.numel() // max(rows, 1)
    nn = xi.reshape(rows, M).norm(dim=1).mean()      # NaN for an empty batch: nothing uses it
    gn = s.reshape(rows, M).norm(dim=1).mean()
    a = alpha.to(cd) if isinstance(alpha, torch.Tensor) else float(alpha)
    ratio = snr * nn / torch.where(gn == 0, torch.ones_like(gn), gn)
    eps = 2 * a * ratio * ratio * torch.ones(rows, dtype=cd, device=x.device)
    eps = torch.where((gn == 0) | (eps > CORRECTOR_MAX_STEP), torch.zeros_like(eps), eps)
    e = per_sample(eps, x, cd) if x.dim() else eps.reshape(())
    return (x.to(cd) + e * s + torch.sqrt(2 * e) * xi).to(x.dtype)


def affine_noise_step(x: torch.Tensor, e: torch.Tensor, cx, ce, cn, seed: int = 0,
                      offset: int = 0, sample_offset: int = 0) -> torch.Tensor:
    """``cx * x - ce * e + cn * xi`` with each coefficient a float or a (B,) tensor.

    >>> x, e = torch.randn(8, 2), torch.randn(8, 2)
    >>> torch.allclose(gmkernels.reference.sde.affine_noise_step(x, e, 1.01, 0.02, 0.1, seed=0),
    ...                gmkernels.affine_noise_step(x, e, 1.01, 0.02, 0.1, seed=0), atol=1e-6)
    True
    """
    cd = compute_dtype(x.dtype)
    xi = normal(x.shape, seed, offset, sample_offset, dtype=cd, device=x.device)
    y = per_sample(cx, x, cd) * x.to(cd) - per_sample(ce, x, cd) * e.to(cd) + per_sample(cn, x, cd) * xi
    return y.to(x.dtype)
