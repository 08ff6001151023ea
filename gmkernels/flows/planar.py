"""Planar flow (Rezende & Mohamed 2015, "Variational Inference with Normalizing Flows") as a
drop-in ``nn.Module`` on top of the fused :func:`gmkernels.planar_flow` op.

A planar flow is a variational posterior: sample ``z ~ N(0, I)``, push it through K planar
layers, and the density of the result follows from the log-det the op returns,
``log q(x) = log N(z; 0, I) - logdet``. Planar layers have no closed-form inverse, so
:meth:`PlanarFlow.log_prob` of an arbitrary ``x`` inverts each layer numerically (a
one-dimensional monotone equation, solved by bisection); for samples the flow produced,
:meth:`PlanarFlow.sample_with_log_prob` gives ``log q`` directly and exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.planar import planar_flow, planar_u_hat

__all__ = ["PlanarFlow"]


class PlanarFlow(nn.Module):
    """K planar layers ``z <- z + û_k tanh(w_k·z + b_k)`` over a standard-normal base in ``dim``
    dimensions, with ``û_k = planar_u_hat(u_k, w_k)`` so every layer is invertible.

    Args:
        dim: D, the dimension.
        n_layers: K.
        amortized: False: the flow owns its parameters u, w (K, D) and b (K,).
            True: it owns none; every call takes per-sample parameters ``params`` of shape
            (B, K*(2D + 1)), laid out ``[u (K*D) | w (K*D) | b (K)]`` per row (what a VAE
            encoder head of :attr:`n_params` outputs emits; Rezende & Mohamed §4.2), and
            ``û`` is formed per sample.

    Works in float32 and float64 on any device (``.to(...)`` as any module; the amortized
    flow follows the dtype / device of ``params``).

    >>> from gmkernels.flows import PlanarFlow
    >>> flow = PlanarFlow(2, 32)
    >>> log_target = lambda x: -0.5 * (x ** 2).sum(-1)     # any unnormalized log density
    >>> x, log_q = flow.sample_with_log_prob(1024)        # reverse-KL / ELBO training
    >>> loss = (log_q - log_target(x)).mean()
    >>> enc = torch.nn.Linear(784, PlanarFlow.num_params(16, 8))  # amortized: (B, K*(2D+1))
    >>> h, z0 = torch.randn(32, 784), torch.randn(32, 16)          # encoder features, base draws
    >>> flow = PlanarFlow(16, 8, amortized=True); x, logdet = flow(z0, enc(h))
    >>> x.shape, logdet.shape
    (torch.Size([32, 16]), torch.Size([32]))
    """

    def __init__(self, dim: int, n_layers: int, *, amortized: bool = False,
                 init_scale: float = 0.1):
        super().__init__()
        if dim < 1 or n_layers < 0:
            raise ValueError(f"PlanarFlow: need dim >= 1 and n_layers >= 0, got {dim}, {n_layers}")
        self.dim = dim
        self.n_layers = n_layers
        self.amortized = amortized
        self.n_params = self.num_params(dim, n_layers)
        if not amortized:
            self.u = nn.Parameter(init_scale * torch.randn(n_layers, dim))
            self.w = nn.Parameter(init_scale * torch.randn(n_layers, dim))
            self.b = nn.Parameter(torch.zeros(n_layers))

    @staticmethod
    def num_params(dim: int, n_layers: int) -> int:
        """Per-sample parameter count of the amortized flow: K*(2D + 1)."""
        return n_layers * (2 * dim + 1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_layers={self.n_layers}, amortized={self.amortized}"

    # ----------------------------------------------------------------------------------------
    def _layers(self, params: torch.Tensor | None, batch: int | None = None):
        """(û, w, b) as the op takes them: shared (K, D), (K, D), (K,) or per sample."""
        K, D = self.n_layers, self.dim
        if not self.amortized:
            if params is not None:
                raise ValueError("PlanarFlow: params is only for amortized=True flows")
            return planar_u_hat(self.u, self.w), self.w, self.b
        if params is None:
            raise ValueError("PlanarFlow(amortized=True): pass the per-sample params "
                             f"(B, {self.n_params})")
        if params.dim() != 2 or params.shape[1] != self.n_params or (
                batch is not None and params.shape[0] != batch):
            raise ValueError(f"PlanarFlow: params must be (B, K*(2D+1)) = "
                             f"({batch if batch is not None else 'B'}, {self.n_params}), got "
                             f"{tuple(params.shape)}")
        B = params.shape[0]
        u = params[:, :K * D].reshape(B, K, D)
        w = params[:, K * D:2 * K * D].reshape(B, K, D)
        b = params[:, 2 * K * D:]
        return planar_u_hat(u, w), w.contiguous(), b.contiguous()

    def _like(self, params):
        if params is not None:
            return params.dtype, params.device
        if self.amortized:
            raise ValueError("PlanarFlow(amortized=True): pass the per-sample params "
                             f"(B, {self.n_params})")
        return self.u.dtype, self.u.device

    def base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I), (B,)."""
        return -0.5 * (z * z).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)

    # ----------------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor, params: torch.Tensor | None = None):
        """``(x, logdet)``: z (B, D) through the K layers; logdet (B,) = log|det ∂x/∂z|.
        ``params`` (B, K*(2D+1)) only for an amortized flow."""
        u_hat, w, b = self._layers(params, z.shape[0])
        return planar_flow(z, u_hat, w, b)

    def sample_with_log_prob(self, n: int | None = None, params: torch.Tensor | None = None,
                             *, generator: torch.Generator | None = None):
        """``(x, log q(x))`` for n fresh samples (n = params.shape[0] when amortized):
        ``log q(x) = log N(z) - logdet``, exact. Differentiable (reparameterized)."""
        if params is not None:
            n = params.shape[0] if n is None else n
        if n is None:
            raise ValueError("PlanarFlow.sample_with_log_prob: give n (or params when amortized)")
        dtype, device = self._like(params)
        z = torch.randn(n, self.dim, dtype=dtype, device=device, generator=generator)
        x, logdet = self(z, params)
        return x, self.base_log_prob(z) - logdet

    def sample(self, n: int | None = None, params: torch.Tensor | None = None, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples x (n, D) (reparameterized: differentiable in the parameters)."""
        return self.sample_with_log_prob(n, params, generator=generator)[0]

    # ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def inverse(self, x: torch.Tensor, params: torch.Tensor | None = None,
                iters: int = 100) -> torch.Tensor:
        """z with forward(z) = x, computed layer by layer backwards. Layer k maps
        z -> z + û tanh(w·z + b); with α = w·z, w·x = α + (û·w) tanh(α + b) is strictly
        increasing in α (û·w > -1) and α lies within |û·w| of w·x, so bisection on that bracket
        finds α (``iters`` halvings, in float64), then z = x - û tanh(α + b). Not
        differentiable (no_grad)."""
        u_hat, w, b = self._layers(params, x.shape[0])
        ps = u_hat.dim() == 3
        y = x.double()
        for k in reversed(range(self.n_layers)):
            uk = (u_hat[:, k] if ps else u_hat[k]).double()
            wk = (w[:, k] if ps else w[k]).double()
            bk = (b[:, k] if ps else b[k]).double()
            uw = (uk * wk).sum(-1)
            wx = (y * wk).sum(-1)
            lo = wx - uw.abs() - 1e-12
            hi = wx + uw.abs() + 1e-12
            for _ in range(iters):
                mid = 0.5 * (lo + hi)
                up = mid + uw * torch.tanh(mid + bk) > wx
                hi = torch.where(up, mid, hi)
                lo = torch.where(up, lo, mid)
            alpha = 0.5 * (lo + hi)
            y = y - (uk if ps else uk.expand_as(y)) * torch.tanh(alpha + bk).unsqueeze(-1)
        return y.to(x.dtype)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor | None = None, *,
                 iters: int = 100) -> torch.Tensor:
        """log q(x), (B,), for any x: z = inverse(x) (numerical, no gradient through the
        inversion), then log N(z) - logdet(z), differentiable in the flow's parameters. For
        samples the flow just drew, :meth:`sample_with_log_prob` is exact and cheaper."""
        z = self.inverse(x, params, iters=iters)
        _, logdet = self(z, params)
        return self.base_log_prob(z) - logdet
