"""Reference stochastic steps (SPEC §3) in plain PyTorch. Autograd comes from PyTorch itself,
so these are also the oracle for the gradients of the fused ops."""

from __future__ import annotations

import torch

from .random import compute_dtype, normal


def per_sample(v, x: torch.Tensor, dtype) -> torch.Tensor | float:
    """A float, or a (B,) tensor viewed as (B, 1, ..., 1) to broadcast over x's other dims."""
    if isinstance(v, torch.Tensor):
        return v.to(dtype).reshape((-1,) + (1,) * max(x.dim() - 1, 0)) if x.dim() else v.to(dtype).reshape(())
    return float(v)


def langevin_step(x: torch.Tensor, grad: torch.Tensor, step_size, noise_scale, seed: int,
                  offset: int = 0, sample_offset: int = 0, clamp=None) -> torch.Tensor:
    """``clamp(x + step_size * grad + noise_scale * xi)`` with ``xi = normal(x.shape, seed,
    offset, sample_offset)``, computed in float32 (float64 for float64 inputs)."""
    cd = compute_dtype(x.dtype)
    xi = normal(x.shape, seed, offset, sample_offset, dtype=cd, device=x.device)
    y = x.to(cd) + per_sample(step_size, x, cd) * grad.to(cd) + per_sample(noise_scale, x, cd) * xi
    if clamp is not None:
        y = y.clamp(float(clamp[0]), float(clamp[1]))
    return y.to(x.dtype)
