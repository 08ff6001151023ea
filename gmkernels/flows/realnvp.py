"""RealNVP (Dinh, Sohl-Dickstein & Bengio 2017) on vectors, built on the fused
:func:`gmkernels.affine_coupling` op.

Each layer keeps the elements where its mask is 1 and transforms the others with
``y = x * exp(l) + t``, where ``(s, t) = net(x * mask)`` and ``l = c * tanh(s / c)`` (soft clamp,
fused in the kernel). Masks alternate between the even and the odd coordinates, so every
coordinate is transformed by every other layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _checks
from .._enums import SCALES
from ..ops.coupling import affine_coupling

__all__ = ["RealNVP"]


class _CouplingNet(nn.Module):
    """MLP conditioner: x * mask -> (s, t). The last layer starts at zero (s = t = 0), so a
    fresh flow is the identity and training starts from the base distribution."""

    def __init__(self, dim: int, hidden: int, n_hidden: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        width = dim
        for _ in range(n_hidden):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.head(self.body(x)).chunk(2, dim=-1)
        return s, t


class RealNVP(nn.Module):
    """A stack of affine coupling layers with a standard-normal base distribution.

    Args:
        dim: data dimension D >= 2.
        n_layers: number of coupling layers (use an even number so that both halves of the
            masks are transformed equally often).
        hidden: width of the conditioner MLPs (two hidden layers each, SiLU).
        clamp: soft clamp ``c * tanh(s / c)`` of the log-scale (None: no clamp). Keeps
            early training from blowing up; 5 bounds each layer's scale to [e^-5, e^5].
        scale: ``"exp"`` (RealNVP) or ``"sigmoid"`` (nflows' bounded scale).

    Shapes: x and z are (B, D), with the dtype and device of the module's parameters.
    ``forward`` maps data to latent (x -> z) and returns ``log|det dz/dx|``; ``inverse`` maps
    z -> x and returns ``log|det dx/dz|``. Works in float32 and float64 on any device (cast and
    move it like any module). ``load_state_dict`` refuses a state with a non-finite tensor.

    >>> flow = gmkernels.flows.RealNVP(2, 8, 64)
    >>> print(repr(flow).splitlines()[1].strip())          # the hyper-parameters
    dim=2, n_layers=8, hidden=64, clamp=5.0, scale='exp'
    >>> x = torch.randn(256, 2)                  # a data batch
    >>> loss = -flow.log_prob(x).mean()          # maximum likelihood
    >>> loss.backward()
    >>> xs = flow.sample(1000)
    >>> xs.shape
    torch.Size([1000, 2])
    """

    def __init__(self, dim: int, n_layers: int, hidden: int, *, clamp: float | None = 5.0,
                 scale: str = "exp"):
        super().__init__()
        dim = _checks.integer("RealNVP", "dim", dim)
        if dim < 2:
            raise ValueError(f"RealNVP: dim must be >= 2 (a coupling layer needs a part to "
                             f"condition on), got {dim}")
        n_layers = _checks.integer("RealNVP", "n_layers", n_layers, 1)
        hidden = _checks.integer("RealNVP", "hidden", hidden, 1)
        if clamp is not None:
            clamp = _checks.real("RealNVP", "clamp", clamp, 0.0, lo_open=True)
        _checks.choice("RealNVP", "scale", scale, SCALES)
        self.dim, self.n_layers, self.hidden = dim, n_layers, hidden
        self.clamp, self.scale = clamp, scale
        self.nets = nn.ModuleList(_CouplingNet(dim, hidden) for _ in range(n_layers))
        idx = torch.arange(dim)
        masks = torch.stack([(idx + k) % 2 == 0 for k in range(n_layers)])
        self.register_buffer("masks", masks)  # (n_layers, D) bool, 1 = pass through

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_layers={self.n_layers}, hidden={self.hidden}, "
                f"clamp={self.clamp}, scale={self.scale!r}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the whole module's floating tensors (its conditioners' too) under this prefix
        names = [k[len(prefix):] for k in state_dict if k.startswith(prefix)]
        _checks.finite_state("RealNVP.load_state_dict", state_dict, prefix, names)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _param(self) -> torch.Tensor:
        return self.nets[0].head.weight

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data -> latent: returns ``(z, log|det dz/dx|)``, shapes (B, D) and (B,).

        >>> flow = gmkernels.flows.RealNVP(2, 4, 16).double()
        >>> _ = [torch.nn.init.normal_(p, std=0.3) for p in flow.parameters()]  # not the identity
        >>> x = torch.randn(3, 2, dtype=torch.float64)
        >>> z, logdet = flow(x)
        >>> jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x[0])
        >>> bool(torch.isclose(logdet[0], torch.linalg.slogdet(jac).logabsdet))
        True
        """
        self._check_input("RealNVP.forward", "x", x)
        return self._forward(x)

    def _check_input(self, op: str, name: str, x) -> None:
        _checks.features(op, name, x, self.dim, "the flow's parameters", self._param())

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for net, mask in zip(self.nets, self.masks):
            s, t = net(x * mask)
            x, ld = affine_coupling(x, s, t, mask, scale=self.scale, clamp=self.clamp)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent -> data: returns ``(x, log|det dx/dz|)``, shapes (B, D) and (B,).

        >>> flow = gmkernels.flows.RealNVP(2, 4, 16)
        >>> _ = [torch.nn.init.normal_(p, std=0.3) for p in flow.parameters()]
        >>> x = torch.randn(5, 2)
        >>> z, ld = flow(x)
        >>> x2, ld_inv = flow.inverse(z)
        >>> bool(torch.allclose(x2, x, atol=1e-5)), bool(torch.allclose(ld_inv, -ld, atol=1e-5))
        (True, True)
        """
        self._check_input("RealNVP.inverse", "z", z)
        logdet = z.new_zeros(z.shape[0])
        for net, mask in zip(reversed(self.nets), reversed(self.masks)):
            s, t = net(z * mask)  # the pass part is unchanged by the layer: same s, t
            z, ld = affine_coupling(z, s, t, mask, inverse=True, scale=self.scale,
                                    clamp=self.clamp)
            logdet = logdet + ld
        return z, logdet

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = log N(z; 0, I) + log|det dz/dx|``, shape (B,).

        >>> flow = gmkernels.flows.RealNVP(2, 2, 8)          # fresh: the identity, p = N(0, I)
        >>> flow.log_prob(torch.zeros(1, 2))                # -log(2π)
        tensor([-1.8379], grad_fn=<AddBackward0>)
        """
        self._check_input("RealNVP.log_prob", "x", x)
        z, logdet = self._forward(x)
        return -0.5 * (z * z).sum(1) - 0.5 * self.dim * math.log(2 * math.pi) + logdet

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples x = inverse(z), z ~ N(0, I) drawn from ``generator`` (default: torch's
        global one, so torch.manual_seed reproduces them). Shape (n, D), the module's dtype and
        device; n an int in [0, 2^32).

        >>> flow = gmkernels.flows.RealNVP(2, 2, 8)          # fresh: the identity
        >>> xs = flow.sample(20000, generator=torch.Generator().manual_seed(0))
        >>> bool((xs.mean(0).abs() < 0.05).all()), bool(((xs.var(0) - 1).abs() < 0.05).all())
        (True, True)
        """
        n = _checks.integer("RealNVP.sample", "n", n, 0, _checks.U32)
        _checks.generator("RealNVP.sample", "generator", generator)
        p = self._param()
        z = torch.randn(n, self.dim, generator=generator, dtype=p.dtype, device=p.device)
        return self.inverse(z)[0]
