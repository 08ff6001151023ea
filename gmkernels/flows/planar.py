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

from .. import _checks
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
        init_scale: the standard deviation of the initial u and w.

    Works in float32 and float64 on any device (``.to(...)`` as any module; the amortized
    flow follows the dtype / device of ``params``). Every input x or z is (B, D) with the
    dtype and device of the parameters (``u``, or ``params`` when amortized). ``load_state_dict``
    refuses a state whose u, w or b are not finite.

    >>> from gmkernels.flows import PlanarFlow
    >>> flow = PlanarFlow(2, 32)
    >>> flow
    PlanarFlow(dim=2, n_layers=32, amortized=False)
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
        dim = _checks.integer("PlanarFlow", "dim", dim, 1)
        n_layers = _checks.integer("PlanarFlow", "n_layers", n_layers, 0)
        _checks.boolean("PlanarFlow", "amortized", amortized)
        init_scale = _checks.real("PlanarFlow", "init_scale", init_scale, 0.0)
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
        """Per-sample parameter count of the amortized flow: K*(2D + 1).

        >>> gmkernels.flows.PlanarFlow.num_params(2, 8)       # 8 * (2*2 + 1)
        40
        """
        return n_layers * (2 * dim + 1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_layers={self.n_layers}, amortized={self.amortized}"

    # ----------------------------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _checks.finite_state("PlanarFlow.load_state_dict", state_dict, prefix, ("u", "w", "b"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check(self, op: str, name: str, x, params, batch: bool = True,
               required: bool = True) -> None:
        """x (B, D) of the parameters' dtype and device (None only when not ``required``);
        params as the flow needs them."""
        if required:
            _checks.tensor(op, name, x)
        if not self.amortized:
            if params is not None:
                raise ValueError(f"{op}: params must be None for a flow with amortized=False "
                                 f"(it owns u, w and b), got {type(params).__name__}")
            if x is not None:
                _checks.features(op, name, x, self.dim, "the flow's parameters", self.u)
            return
        if params is None:
            raise ValueError(f"{op}: params must be given for a flow with amortized=True: "
                             f"pass the per-sample params (B, {self.n_params})")
        _checks.floating(op, "params", params)
        rows = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() >= 1 and batch else "B"
        if params.dim() != 2 or params.shape[1] != self.n_params or (
                rows != "B" and params.shape[0] != rows):
            raise ValueError(f"{op}: params must have shape (B, K*(2D+1)) = ({rows}, "
                             f"{self.n_params}), got {tuple(params.shape)}")
        if x is not None:
            _checks.features(op, name, x, self.dim, "params", params)

    def _layers(self, params: torch.Tensor | None):
        """(û, w, b) as the op takes them: shared (K, D), (K, D), (K,) or per sample."""
        K, D = self.n_layers, self.dim
        if not self.amortized:
            return planar_u_hat(self.u, self.w), self.w, self.b
        B = params.shape[0]
        u = params[:, :K * D].reshape(B, K, D)
        w = params[:, K * D:2 * K * D].reshape(B, K, D)
        b = params[:, 2 * K * D:]
        return planar_u_hat(u, w), w.contiguous(), b.contiguous()

    def base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I) of each row of z (B, D): (B,).

        >>> flow = gmkernels.flows.PlanarFlow(2, 4)
        >>> flow.base_log_prob(torch.zeros(1, 2))             # -log(2π)
        tensor([-1.8379])
        """
        op = "PlanarFlow.base_log_prob"
        _checks.floating(op, "z", z)
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"{op}: z must have shape (B, {self.dim}), got {tuple(z.shape)}")
        return -0.5 * (z * z).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)

    # ----------------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor, params: torch.Tensor | None = None):
        """``(x, logdet)``: z (B, D) through the K layers; logdet (B,) = log|det ∂x/∂z|.
        ``params`` (B, K*(2D+1)) only for an amortized flow.

        >>> flow = gmkernels.flows.PlanarFlow(2, 4, init_scale=0.5).double()
        >>> z = torch.randn(3, 2, dtype=torch.float64)
        >>> x, logdet = flow(z)
        >>> jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z[0])
        >>> bool(torch.isclose(logdet[0], torch.linalg.slogdet(jac).logabsdet))
        True
        """
        self._check("PlanarFlow.forward", "z", z, params)
        return planar_flow(z, *self._layers(params))

    def sample_with_log_prob(self, n: int | None = None, params: torch.Tensor | None = None,
                             *, generator: torch.Generator | None = None):
        """``(x, log q(x))`` for n fresh samples (n = params.shape[0] when amortized; an int in
        [0, 2^32) otherwise): ``log q(x) = log N(z) - logdet``, exact. Differentiable
        (reparameterized). ``generator``: None or a torch.Generator for z.

        >>> flow = gmkernels.flows.PlanarFlow(2, 4, init_scale=0.5).double()
        >>> x, log_q = flow.sample_with_log_prob(5, generator=torch.Generator().manual_seed(0))
        >>> x.shape, log_q.shape
        (torch.Size([5, 2]), torch.Size([5]))
        >>> bool(torch.allclose(log_q, flow.log_prob(x)))        # the same density
        True
        """
        return self._sample("PlanarFlow.sample_with_log_prob", n, params, generator)

    def _sample(self, op: str, n, params, generator):
        self._check(op, "x", None, params, required=False)
        _checks.generator(op, "generator", generator)
        if params is not None:
            if n is not None and _checks.integer(op, "n", n, 0) != params.shape[0]:
                raise ValueError(f"{op}: n must equal params.shape[0] = {params.shape[0]} "
                                 f"(one sample per row of params), got {n}")
            n = params.shape[0]
        if n is None:
            raise ValueError(f"{op}: n must be an int >= 0 (the number of samples), got None")
        n = _checks.integer(op, "n", n, 0, _checks.U32)
        dtype, device = (params.dtype, params.device) if params is not None else (
            self.u.dtype, self.u.device)
        z = torch.randn(n, self.dim, dtype=dtype, device=device, generator=generator)
        x, logdet = planar_flow(z, *self._layers(params))
        return x, self.base_log_prob(z) - logdet

    def sample(self, n: int | None = None, params: torch.Tensor | None = None, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples x (n, D) (reparameterized: differentiable in the parameters).

        >>> flow = gmkernels.flows.PlanarFlow(2, 4)
        >>> flow.sample(7).shape
        torch.Size([7, 2])
        """
        return self._sample("PlanarFlow.sample", n, params, generator)[0]

    # ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def inverse(self, x: torch.Tensor, params: torch.Tensor | None = None,
                iters: int = 100) -> torch.Tensor:
        """z with forward(z) = x, computed layer by layer backwards. Layer k maps
        z -> z + û tanh(w·z + b); with α = w·z, w·x = α + (û·w) tanh(α + b) is strictly
        increasing in α (û·w > -1) and α lies within |û·w| of w·x, so bisection on that bracket
        finds α (``iters`` halvings, in float64), then z = x - û tanh(α + b). Not
        differentiable (no_grad).

        >>> flow = gmkernels.flows.PlanarFlow(2, 8, init_scale=1.0).double()
        >>> z = torch.randn(100, 2, dtype=torch.float64)
        >>> x, _ = flow(z)
        >>> float((flow.inverse(x) - z).abs().max()) < 1e-10      # the round trip
        True
        """
        op = "PlanarFlow.inverse"
        self._check(op, "x", x, params)
        return self._inverse(x, params, _checks.integer(op, "iters", iters, 1))

    def _inverse(self, x: torch.Tensor, params, iters: int) -> torch.Tensor:
        u_hat, w, b = self._layers(params)
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
        samples the flow just drew, :meth:`sample_with_log_prob` is exact and cheaper.

        >>> flow = gmkernels.flows.PlanarFlow(2, 4, init_scale=0.7).double()
        >>> g = torch.linspace(-8, 8, 321, dtype=torch.float64)      # h = 0.05
        >>> grid = torch.cartesian_prod(g, g)
        >>> with torch.no_grad():
        ...     mass = flow.log_prob(grid).exp().sum() * 0.05 ** 2
        >>> round(float(mass), 3)                                   # q integrates to 1
        1.0
        """
        op = "PlanarFlow.log_prob"
        self._check(op, "x", x, params)
        iters = _checks.integer(op, "iters", iters, 1)
        with torch.no_grad():
            z = self._inverse(x, params, iters)
        _, logdet = planar_flow(z, *self._layers(params))
        return self.base_log_prob(z) - logdet
