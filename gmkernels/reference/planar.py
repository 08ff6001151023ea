"""Reference planar flow (docs/spec.md §1.1, Rezende & Mohamed 2015) in plain PyTorch: a loop over the
K layers exactly as a user would write it. Autograd comes from PyTorch, so this is also the
oracle for the gradients of the fused op."""

from __future__ import annotations

import torch


__all__ = ["planar_flow", "planar_u_hat"]


def planar_flow(z: torch.Tensor, u_hat: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
    """``(z_K, logdet)`` of K planar layers ``z <- z + û_k tanh(w_k·z + b_k)``.

    z (B, D); u_hat, w (K, D) and b (K,) shared, or (B, K, D) and (B, K) per sample.
    logdet (B,) = sum_k log|1 + (1 - tanh²(a_k)) û_k·w_k|.

    >>> u, w = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    >>> b, z = torch.randn(3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    >>> u_hat = gmkernels.planar_u_hat(u, w)
    >>> (zr, ldr), (zf, ldf) = (gmkernels.reference.planar.planar_flow(z, u_hat, w, b),
    ...                         gmkernels.planar_flow(z, u_hat, w, b))
    >>> torch.allclose(zr, zf), torch.allclose(ldr, ldf)
    (True, True)
    """
    per_sample = u_hat.dim() == 3
    K = u_hat.shape[1] if per_sample else u_hat.shape[0]
    logdet = z.new_zeros(z.shape[0])
    for k in range(K):
        if per_sample:
            uk, wk, bk = u_hat[:, k], w[:, k], b[:, k]
            a = (z * wk).sum(-1) + bk
            uw = (uk * wk).sum(-1)
        else:
            uk, wk, bk = u_hat[k], w[k], b[k]
            a = z @ wk + bk
            uw = uk @ wk
        h = torch.tanh(a)
        y = (1 - h * h) * uw
        logdet = logdet + torch.log(torch.abs(1 + y))
        z = z + (uk if per_sample else uk.expand_as(z)) * h.unsqueeze(-1)
    return z, logdet


def planar_u_hat(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The paper's formula as written (Rezende & Mohamed 2015, appendix A.1), unguarded:
    ``û = u + (m(w·u) - w·u) w / ||w||²``, ``m(x) = -1 + softplus(x)``. NaN for w = 0; see
    :func:`gmkernels.planar_u_hat` for the stable version used by the model layer.

    >>> u, w = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    >>> u_hat = gmkernels.reference.planar.planar_u_hat(u, w)   # u_hat.w = -1 + softplus(w.u)
    >>> torch.allclose((u_hat * w).sum(-1), torch.nn.functional.softplus((w * u).sum(-1)) - 1)
    True
    """
    wu = (w * u).sum(-1, keepdim=True)
    m = -1 + torch.nn.functional.softplus(wu)
    return u + (m - wu) * w / (w * w).sum(-1, keepdim=True)
