"""DDPM noise schedules (Ho et al. 2020; Nichol & Dhariwal 2021). The sampling step is
:func:`gmkernels.ddpm_step`; the sampler :func:`gmkernels.score.ddpm_sample`."""

from __future__ import annotations

import math

import torch

from .. import _checks

__all__ = ["DDPMSchedule"]


class DDPMSchedule:
    """A discrete diffusion schedule of T steps, every tensor (T,) float64 (0-based: index t is
    the paper's step t + 1):

    * ``betas`` β_t, ``alphas`` α_t = 1 - β_t, ``alphas_cumprod`` ᾱ_t = Π_{s<=t} α_s;
    * ``sigmas`` σ_t of the ancestral step: ``sigma="beta"`` σ_t² = β_t, or ``"posterior"``
      σ_t² = β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t) (0 at t = 0). Ho et al. report both give
      similar samples; the posterior one is exact when the data is a single point.

    Args:
        betas: (T,) values in (0, 1).
        sigma: "beta" or "posterior".

    >>> from gmkernels.score import DDPMSchedule
    >>> sched = DDPMSchedule.linear(1000)             # Ho et al.: 1e-4 ... 0.02
    >>> sched = DDPMSchedule.cosine(1000)             # Nichol & Dhariwal 2021
    >>> len(sched), bool(sched.alphas_cumprod[-1] < 1e-3)
    (1000, True)
    """

    def __init__(self, betas, sigma: str = "beta"):
        # the tables live on the CPU whatever the default device (as_tensor would follow it)
        try:
            betas = torch.as_tensor(betas, dtype=torch.float64, device="cpu").detach()
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"DDPMSchedule: betas must be a 1-D sequence or tensor of floats, got "
                            f"{type(betas).__name__}") from None
        if betas.dim() != 1 or betas.numel() == 0:
            raise ValueError(f"DDPMSchedule: betas must be a non-empty 1-D sequence, got shape "
                             f"{tuple(betas.shape)}")
        _checks.values("DDPMSchedule", "beta", betas, "in (0, 1)", lambda v: (v > 0) & (v < 1))
        _checks.choice("DDPMSchedule", "sigma", sigma, ("beta", "posterior"))
        self.sigma = sigma
        self.betas = betas
        self.alphas = 1 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        if sigma == "beta":
            self.sigmas = torch.sqrt(betas)
        else:
            # on the schedule's device (the CPU), not the default one: cat needs one device
            prev = torch.cat([torch.ones(1, dtype=torch.float64, device=betas.device),
                              self.alphas_cumprod[:-1]])
            self.sigmas = torch.sqrt(betas * (1 - prev) / (1 - self.alphas_cumprod))

    @property
    def T(self) -> int:
        return self.betas.shape[0]

    def __len__(self) -> int:
        return self.T

    @staticmethod
    def _steps(op: str, T) -> int:
        return _checks.integer(op, "T", T, 1)

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
               sigma: str = "beta") -> "DDPMSchedule":
        """β_t linear from beta_start to beta_end (Ho et al. 2020, T = 1000).

        >>> s = gmkernels.score.DDPMSchedule.linear(1000)
        >>> float(s.betas[0]), float(s.betas[-1])
        (0.0001, 0.02)
        """
        T = cls._steps("DDPMSchedule.linear", T)
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64, device="cpu"), sigma)

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, sigma: str = "beta") -> "DDPMSchedule":
        """ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2), β_t = 1 - ᾱ_t/ᾱ_{t-1} clipped
        to 0.999 (Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", eq. 17).

        >>> s = gmkernels.score.DDPMSchedule.cosine(1000)
        >>> bool(s.alphas_cumprod[-1] < 1e-3), float(s.betas.max())   # the clip at the end
        (True, 0.999)
        """
        T = cls._steps("DDPMSchedule.cosine", T)
        u = torch.arange(T + 1, dtype=torch.float64, device="cpu") / T
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        ab = f / f[0]
        return cls(torch.clamp(1 - ab[1:] / ab[:-1], max=0.999), sigma)

    def __repr__(self):
        return f"DDPMSchedule(T={self.T}, sigma={self.sigma!r})"
