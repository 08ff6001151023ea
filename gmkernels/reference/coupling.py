"""Plain-PyTorch affine coupling transform (docs/spec.md §1.2): the test oracle and the fallback.

Per element, with ``pass = mask != 0`` and ``s' = clamp * tanh(s / clamp)`` when clamped:

* ``scale="exp"``:     ``l = s'``
* ``scale="sigmoid"``: ``l = log(sigmoid(s' + 2) + 1e-3)`` (nflows' AffineCouplingTransform)
* forward ``y = x * e^l + t``, inverse ``y = (x - t) * e^-l``; ``y = x`` where pass;
* ``logdet = sum over non-batch dims of (1 - mask) * l``, negated for the inverse.
"""

from __future__ import annotations

import torch

__all__ = ["affine_coupling"]

SCALES = ("exp", "sigmoid")
SIGMOID_EPS = 1e-3


def log_scale(s: torch.Tensor, scale: str = "exp", clamp: float | None = None) -> torch.Tensor:
    """The log-scale ``l`` of the network output ``s`` (after the optional soft clamp)."""
    if clamp is not None:
        s = clamp * torch.tanh(s / clamp)
    if scale == "exp":
        return s
    if scale == "sigmoid":
        return torch.log(torch.sigmoid(s + 2.0) + SIGMOID_EPS)
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")


def row_sum(v: torch.Tensor) -> torch.Tensor:
    """Sum over every dim but the first: (B, ...) -> (B,)."""
    return v.flatten(1).sum(1) if v.dim() > 1 else v


def affine_coupling(x: torch.Tensor, s: torch.Tensor, t: torch.Tensor, mask, *,
                    inverse: bool = False, scale: str = "exp",
                    clamp: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(y, logdet)``; see the module docstring. ``mask`` broadcasts to x.

    >>> x, s, t = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    >>> y, logdet = gmkernels.reference.coupling.affine_coupling(x, s, t, torch.tensor([1, 0, 0]))
    >>> torch.equal(y[:, 0], x[:, 0]), torch.allclose(logdet, s[:, 1:].sum(1))
    (True, True)
    """
    passed = torch.as_tensor(mask, device=x.device) != 0
    if clamp is not None:
        s = clamp * torch.tanh(s / clamp)
    if scale == "exp":
        l = s
        f = torch.exp(-s) if inverse else torch.exp(s)  # e^-s directly, never 1 / e^s
    elif scale == "sigmoid":
        sc = torch.sigmoid(s + 2.0) + SIGMOID_EPS
        l = torch.log(sc)
        f = 1.0 / sc if inverse else sc
    else:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    y = (x - t) * f if inverse else x * f + t
    y = torch.where(passed, x, y)
    ld = row_sum(torch.where(passed, torch.zeros((), dtype=l.dtype, device=l.device), l))
    return y, (-ld if inverse else ld)
