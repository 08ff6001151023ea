"""Forward SDEs of score-based generative modeling (Song et al. 2021; docs/spec.md §3.2).

``dx = f(x, t) dt + g(t) dw`` on t in [0, T = 1]:

* :class:`VESDE` (variance exploding, NCSN/SMLD): σ(t) = σ_min (σ_max/σ_min)^t, f = 0,
  g² = 2 σ(t)² ln(σ_max/σ_min); x_t = x_0 + σ(t) z; prior N(0, σ_max² I).
* :class:`VPSDE` (variance preserving, DDPM): β(t) = β_min + t (β_max - β_min), f = -β x / 2,
  g = sqrt(β); x_t = x_0 e^{-∫β/2} + sqrt(1 - e^{-∫β}) z; prior N(0, I).
* :class:`subVPSDE`: f as VP, g² = β (1 - e^{-2∫β}); std 1 - e^{-∫β}; prior N(0, I).

∫_0^t β = β_min t + t² (β_max - β_min) / 2. The objects carry ``kind`` and their parameters,
which is what the fused :func:`gmkernels.reverse_sde_step` reads.

Reference: Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole 2021, "Score-Based Generative
Modeling through Stochastic Differential Equations" (ICLR), §3.4 and App. B.
"""

from __future__ import annotations

import math

import torch

from .. import _checks
from .. import random as _random

__all__ = ["VESDE", "VPSDE", "subVPSDE"]


def _pos(cls: str, name: str, v, allow_zero=False) -> float:
    return _checks.real(cls, name, v, 0.0, lo_open=not allow_zero)


def _time(t, x: torch.Tensor):
    """t (float or (B,) tensor) as a tensor that broadcasts against x's rows."""
    if isinstance(t, torch.Tensor):
        t = t.to(device=x.device, dtype=x.dtype if x.dtype.is_floating_point else torch.float32)
        if t.dim() == 1 and x.dim() > 1:
            t = t.reshape((-1,) + (1,) * (x.dim() - 1))
        return t
    return torch.tensor(float(t), device=x.device,
                        dtype=x.dtype if x.dtype.is_floating_point else torch.float32)


class _SDE:
    kind: str = ""
    T: float = 1.0

    def marginal_prob(self, x0: torch.Tensor, t):
        """(mean, std) of the perturbation kernel p_t(x | x0); t a float or (B,) tensor (std
        then broadcasts against x0's rows).

        >>> sde = gmkernels.score.VPSDE()
        >>> x0 = torch.ones(4, 2)
        >>> mean, std = sde.marginal_prob(x0, 0.3)
        >>> bool(torch.allclose(std ** 2 + (mean / x0) ** 2, torch.ones(4, 2)))  # variance preserved
        True
        """
        raise NotImplementedError

    def sde(self, x: torch.Tensor, t):
        """(f(x, t), g(t)) with g broadcast against x's rows.

        >>> f, g = gmkernels.score.VESDE(0.01, 50.0).sde(torch.zeros(3, 2), 0.5)
        >>> bool((f == 0).all()), round(float(g), 4)   # σ(0.5) sqrt(2 ln(σ_max/σ_min))
        (True, 2.9184)
        """
        raise NotImplementedError

    def prior_std(self) -> float:
        """The standard deviation of the prior p_T = N(0, prior_std² I)."""
        raise NotImplementedError

    def prior_sampling(self, shape, *, seed=None, offset: int = 0, generator=None, device=None,
                       dtype=torch.float32) -> torch.Tensor:
        """A draw from the prior p_T: ``prior_std * gmkernels.random.normal(shape, seed, offset)``.

        >>> x = gmkernels.score.VESDE(0.01, 50.0).prior_sampling((20000, 2), seed=0)
        >>> bool(abs(float(x.std()) - 50.0) < 1.0)              # N(0, σ_max² I)
        True
        """
        op = f"{type(self).__name__}.prior_sampling"
        shape = _checks.shape(op, shape)
        _checks.rows_limit(op, "shape", shape)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"{op}: dtype must be a floating-point dtype, got {dtype}")
        device = _checks.device(op, "device", device)
        _checks.generator(op, "generator", generator)
        seed, offset, _ = _checks.stream(op, shape[0] if shape else 1, seed, offset, 0, generator)
        z = _random.normal(shape, seed, offset, dtype=dtype, device=device)
        return z * self.prior_std() if self.prior_std() != 1.0 else z

    def perturb(self, x0: torch.Tensor, t, *, seed=None, offset: int = 0, sample_offset: int = 0,
                generator=None):
        """(x_t, z): x_t = mean + std * z from the perturbation kernel, z the standard normal
        noise used (``gmkernels.random.normal(x0.shape, seed, offset, sample_offset)``).
        x0: a floating tensor (B, ...); t: a float in [0, 1] or a per-sample (B,) tensor.

        >>> sde = gmkernels.score.VPSDE()
        >>> x0 = torch.randn(8, 2)
        >>> x_t, z = sde.perturb(x0, 0.3, seed=0)
        >>> mean, std = sde.marginal_prob(x0, 0.3)
        >>> bool(torch.allclose(x_t, mean + std * z))
        True
        """
        op = f"{type(self).__name__}.perturb"
        _checks.floating(op, "x0", x0)
        t_t, t_f = _checks.per_sample(op, "t", t, x0, 0.0, 1.0)
        _checks.generator(op, "generator", generator)
        seed, offset, sample_offset = _checks.stream(op, _checks.rows_of(x0), seed, offset,
                                                     sample_offset, generator)
        z = _random.normal(x0.shape, seed, offset, sample_offset, dtype=x0.dtype, device=x0.device)
        mean, std = self.marginal_prob(x0, t_f if t_t is None else t_t)
        return mean + std * z, z


class VESDE(_SDE):
    """Variance-exploding SDE: σ(t) = σ_min (σ_max/σ_min)^t, dx = sqrt(dσ²/dt) dw.

    >>> sde = gmkernels.score.VESDE(sigma_min=0.01, sigma_max=50.0)
    >>> x0 = torch.randn(8, 2)
    >>> mean, std = sde.marginal_prob(x0, torch.rand(len(x0)))
    >>> std.shape, sde.prior_std()
    (torch.Size([8, 1]), 50.0)
    """

    kind = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        self.sigma_min = _pos("VESDE", "sigma_min", sigma_min)
        self.sigma_max = _pos("VESDE", "sigma_max", sigma_max)
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"VESDE: sigma_min must be < sigma_max, got {sigma_min}, {sigma_max}")

    def sigma(self, t):
        """σ(t) = σ_min (σ_max/σ_min)^t, the marginal std at time t (a float or a tensor).

        >>> gmkernels.score.VESDE(0.01, 50.0).sigma(1.0)
        50.0...
        """
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x, t):
        sigma = self.sigma(_time(t, x))
        g = sigma * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))
        return torch.zeros_like(x), g

    def marginal_prob(self, x0, t):
        return x0, self.sigma(_time(t, x0))

    def prior_std(self):
        """σ_max: the prior is N(0, σ_max² I).

        >>> gmkernels.score.VESDE(0.01, 50.0).prior_std()
        50.0
        """
        return self.sigma_max

    def __repr__(self):
        return f"VESDE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


class VPSDE(_SDE):
    """Variance-preserving SDE: β(t) = β_min + t (β_max - β_min), dx = -β x / 2 dt + sqrt(β) dw.

    >>> sde = gmkernels.score.VPSDE(beta_min=0.1, beta_max=20.0)
    >>> mean, std = sde.marginal_prob(torch.ones(4, 2), 1.0)   # close to the prior N(0, I)
    >>> round(float(std), 4)
    1.0
    """

    kind = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        name = type(self).__name__
        self.beta_min = _pos(name, "beta_min", beta_min, allow_zero=True)
        self.beta_max = _pos(name, "beta_max", beta_max)

    def beta(self, t):
        """β(t) = β_min + t (β_max - β_min), the noise rate at time t (a float or a tensor).

        >>> gmkernels.score.VPSDE(0.1, 20.0).beta(0.5)
        10.04999...
        """
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def int_beta(self, t):
        """∫_0^t β(u) du = β_min t + t² (β_max - β_min) / 2.

        >>> round(gmkernels.score.VPSDE(0.1, 20.0).int_beta(1.0), 6)   # 0.1 + 19.9 / 2
        10.05
        """
        return self.beta_min * t + 0.5 * t * t * (self.beta_max - self.beta_min)

    def sde(self, x, t):
        tt = _time(t, x)
        beta = self.beta(tt)
        return -0.5 * beta * x, torch.sqrt(beta)

    def marginal_prob(self, x0, t):
        ib = self.int_beta(_time(t, x0))
        return torch.exp(-0.5 * ib) * x0, torch.sqrt(-torch.expm1(-ib))

    def prior_std(self):
        """1: the prior is N(0, I).

        >>> gmkernels.score.VPSDE().prior_std()
        1.0
        """
        return 1.0

    def __repr__(self):
        return f"{type(self).__name__}(beta_min={self.beta_min}, beta_max={self.beta_max})"


class subVPSDE(VPSDE):
    """Sub-VP SDE: f = -β x / 2, g² = β (1 - e^{-2∫β}); its variance stays below the VP one.

    >>> sde = gmkernels.score.subVPSDE()
    >>> x_t, z = sde.perturb(torch.zeros(4, 2), 0.5, seed=0)
    >>> x_t.shape
    torch.Size([4, 2])
    """

    kind = "subvp"

    def sde(self, x, t):
        tt = _time(t, x)
        beta = self.beta(tt)
        return -0.5 * beta * x, torch.sqrt(beta * -torch.expm1(-2 * self.int_beta(tt)))

    def marginal_prob(self, x0, t):
        ib = self.int_beta(_time(t, x0))
        return torch.exp(-0.5 * ib) * x0, -torch.expm1(-ib)
