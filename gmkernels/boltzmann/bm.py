"""A fully connected Boltzmann machine with ±1 spins (docs/spec.md §2.2), trained by maximum likelihood
with persistent Gibbs chains (the "stochastic maximum likelihood" of Younes 1989 / Tieleman
2008, with the Boltzmann learning rule of Ackley, Hinton & Sejnowski 1985):

    ∂ log L / ∂W_ij = ⟨y_i y_j⟩_data - ⟨y_i y_j⟩_model,   ∂ log L / ∂b_i = ⟨y_i⟩_data - ⟨y_i⟩_model.

The model expectations come from persistent chains advanced by :func:`gmkernels.bm_gibbs`
between updates; for small ``d`` everything is also available exactly (:meth:`exact`).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import _checks
from .._checks import U32, U64, as_int64_bits, resolve_seed
from .._enums import ORDERS
from .._progress import progress_bar
from ..ops import bm as _ops_bm
from ..ops.bm import bm_energy, bm_exact, bm_gibbs, check_couplings  # noqa: F401

__all__ = ["BoltzmannMachine"]


class BoltzmannMachine(nn.Module):
    """Fully connected ±1 Boltzmann machine ``P(y) ∝ exp(½ yᵀWy + bᵀy)`` on ``d`` spins.

    Parameters: ``W`` (d, d), kept exactly symmetric with a zero diagonal (every update is
    symmetrized), and ``b`` (d,). Buffers: the persistent chains of :meth:`fit` and the
    stream position they have used, so a saved model resumes its chains.

    Inputs: every y is (N, d) with the dtype and device of ``W`` and spins in {-1, +1};
    anything else (a 0, a NaN) is refused with a ``ValueError`` naming it, and so is a
    checkpoint (``load_state_dict``) whose W is not finite, symmetric with a zero diagonal, or
    whose chains are not spins.

    >>> bm = gmkernels.boltzmann.BoltzmannMachine(8)
    >>> bm
    BoltzmannMachine(d=8, dtype=torch.float32)
    >>> data = torch.ones(64, 8); data[::2] = -1    # (N, 8) in {-1, +1}: two states
    >>> history = bm.fit(data, epochs=20, lr=0.05, n_chains=100, seed=0)
    >>> y = bm.sample(1000, n_sweeps=50, seed=0)
    >>> ex = bm.exact()                           # log Z, probabilities, moments (d <= 20)
    >>> bool(ex.second_moment[0, 1] > 0.5)         # the spins learned to align
    True
    """

    def __init__(self, d: int, *, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        d = _checks.integer("BoltzmannMachine", "d", d, 1)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"BoltzmannMachine: dtype must be float32 or float64, got {dtype}")
        self.d = d
        self.W = nn.Parameter(torch.zeros(d, d, dtype=dtype, device=device))
        self.b = nn.Parameter(torch.zeros(d, dtype=dtype, device=device))
        self.register_buffer("chains", torch.empty(0, d, dtype=dtype, device=device))
        # (seed, next offset) of the persistent chains' stream; -1: not started.
        self.register_buffer("stream", torch.tensor([-1, 0], dtype=torch.int64))

    def extra_repr(self) -> str:
        return f"d={self.d}, dtype={self.W.dtype}"

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        op = "BoltzmannMachine.load_state_dict"
        W, b = state_dict.get(prefix + "W"), state_dict.get(prefix + "b")
        if isinstance(W, torch.Tensor) and isinstance(b, torch.Tensor):
            check_couplings(op, W.detach().cpu(), b.detach().cpu())
        chains = state_dict.get(prefix + "chains")
        if isinstance(chains, torch.Tensor) and chains.dtype.is_floating_point:
            _checks.values(op, "chains", chains.detach().cpu(), "-1 or +1 (spins)",
                           lambda v: (v == 1) | (v == -1))
        # The persistent chains' count is not fixed by the model: take the saved buffer's shape.
        saved = state_dict.get(prefix + "chains")
        if isinstance(saved, torch.Tensor):
            self.chains = torch.empty(saved.shape, dtype=self.W.dtype, device=self.W.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ helpers
    @torch.no_grad()
    def _symmetrize_(self) -> None:
        self.W.copy_((self.W + self.W.T) / 2)
        self.W.fill_diagonal_(0)

    def _check_data(self, op: str, name: str, y) -> torch.Tensor:
        _checks.features(op, name, y, self.d, "W", self.W)
        _checks.values(op, name, y, "-1 or +1 (spins)", lambda v: (v == 1) | (v == -1))
        return y

    def energy(self, y: torch.Tensor) -> torch.Tensor:
        """``E(y) = -½ yᵀWy - bᵀy`` per row of ``y`` (N, d) in {-1, +1}: (N,).

        >>> bm = gmkernels.boltzmann.BoltzmannMachine(2)
        >>> with torch.no_grad():
        ...     _ = bm.W.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
        >>> bm.energy(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))   # -W_12 y_1 y_2
        tensor([-1.,  1.], grad_fn=<...>)
        """
        self._check_data("BoltzmannMachine.energy", "y", y)
        return bm_energy(y, self.W, self.b)

    def _random_spins(self, n: int, generator) -> torch.Tensor:
        bits = torch.randint(0, 2, (n, self.d), generator=generator, dtype=torch.int64)
        return (bits * 2 - 1).to(dtype=self.W.dtype, device=self.W.device)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, n_sweeps: int = 100, *, init: torch.Tensor | None = None, beta=1.0,
               order: str = "sequential", seed=None, offset: int = 0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples: ``n`` chains started at ``init`` (n, d) (default: uniform random spins
        drawn from ``seed``) run for ``n_sweeps`` sweeps of :func:`gmkernels.bm_gibbs`. ``seed``
        None draws one from ``generator`` (or torch's default generator), so the same seed
        gives the same samples.

        ``init`` must have exactly ``n`` rows (``n < 2^32``, the rows of the stream), ``beta``
        is a float or a per-chain (n,) tensor >= 0, and the sweeps (``n_sweeps < 2^32``) use
        stream positions ``offset .. offset + n_sweeps - 1``, which must fit below 2^64.

        >>> bm = gmkernels.boltzmann.BoltzmannMachine(3)
        >>> with torch.no_grad():
        ...     _ = bm.b.fill_(1.0)                            # independent spins, ⟨y_i⟩ = tanh(1)
        >>> y = bm.sample(4000, n_sweeps=5, seed=0)
        >>> bool(abs(float(y.mean()) - 0.7616) < 0.03)
        True
        """
        op = "BoltzmannMachine.sample"
        n = _checks.integer(op, "n", n, 0, U32)
        n_sweeps = _checks.integer(op, "n_sweeps", n_sweeps, 0, U32)  # gmkernels.bm_gibbs's limit
        _checks.choice(op, "order", order, ORDERS)
        _checks.generator(op, "generator", generator)
        if init is not None:
            self._check_data(op, "init", init)
            if init.shape[0] != n:
                raise ValueError(f"{op}: init must have n = {n} rows, got {init.shape[0]}")
        seed, offset, _ = _checks.stream(op, n, seed, offset, 0, generator)
        if offset + n_sweeps > U64:
            raise ValueError(f"{op}: offset + n_sweeps must be <= 2^64 (sweep s uses offset + s), "
                             f"got {offset} + {n_sweeps}")
        y = self._random_spins(n, torch.Generator().manual_seed(seed % (1 << 63))) \
            if init is None else init
        beta_t, beta_f = _checks.per_sample(op, "beta", beta, y, unit="per-chain")
        return bm_gibbs(y, self.W.detach(), self.b.detach(), n_sweeps,
                        beta=beta_f if beta_t is None else beta_t, order=order, seed=seed,
                        offset=offset)

    # ------------------------------------------------------------------ exact (small d)
    @torch.no_grad()
    def exact(self, beta: float = 1.0):
        """:func:`gmkernels.bm_exact` of this machine (d <= 20): log Z, probabilities of all
        states, ⟨y⟩, ⟨y yᵀ⟩, ⟨E⟩.

        >>> ex = gmkernels.boltzmann.BoltzmannMachine(3).exact()   # W = 0, b = 0: uniform
        >>> round(float(ex.log_z), 6), round(float(ex.probs.sum()), 12)  # log 2^3; they sum to 1
        (2.079442, 1.0)
        """
        beta = _checks.real("BoltzmannMachine.exact", "beta", beta, 0.0)
        return bm_exact(self.W.detach(), self.b.detach(), beta)

    @torch.no_grad()
    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """Exact ``log P(y)`` per row of y (N, d) in {-1, +1} (d <= 20), float64.

        >>> bm = gmkernels.boltzmann.BoltzmannMachine(2)
        >>> bm.log_prob(torch.tensor([[1.0, -1.0]]))              # uniform: log 1/4
        tensor([-1.3863], dtype=torch.float64)
        """
        y = self._check_data("BoltzmannMachine.log_prob", "y", y)
        return -self.energy(y).double() - self.exact().log_z

    # ------------------------------------------------------------------ learning
    @torch.no_grad()
    def fit(self, data: torch.Tensor, *, epochs: int = 100, lr: float = 0.05,
            n_chains: int = 1000, n_sweeps: int = 1, batch_size: int | None = None,
            weight_decay: float = 0.0, momentum: float = 0.0, lr_decay: bool = True,
            order: str = "sequential", seed=None, generator: torch.Generator | None = None,
            progress: bool = False) -> list[float]:
        """Maximum likelihood with persistent chains (docs/spec.md §2.2 learning rule).

        Each step takes a mini-batch (all of ``data`` when ``batch_size`` is None), advances the
        ``n_chains`` persistent chains by ``n_sweeps`` sweeps, and moves ``W`` and ``b`` by ``lr``
        times ``⟨y yᵀ⟩_data - ⟨y yᵀ⟩_chains - weight_decay W`` (and the bias analogue), with
        optional momentum; ``W`` stays symmetric with a zero diagonal. With ``lr_decay`` the
        step size follows ``lr / (1 + t / τ)``, τ a tenth of the steps (Robbins-Monro), so the
        parameters settle instead of jittering at the chains' noise level. Each epoch is one op
        call (``torch.ops.gmkernels.bm_fit_epoch_``: the batch loop, sweeps and updates in C++,
        the moment mismatch read once per epoch).

        The chains persist across calls (buffer ``chains``); their stream is ``seed`` (drawn
        from ``generator`` on the first call when None) at consecutive offsets. The chains'
        starting points and the mini-batch permutations are drawn from a generator seeded by
        (seed, offset), so the same seed gives the same fit whatever torch's global generator
        holds.

        Args:
            data: (N, d) spins in {-1, +1}, N >= 1, W's dtype.
            epochs, n_chains (< 2^32), n_sweeps, batch_size: ints >= 1.
            lr: finite, > 0. weight_decay: finite, >= 0. momentum: in [0, 1).
            seed: None or an int in [0, 2^64); the sweeps must fit the stream:
                ``offset + n_sweeps · steps <= 2^64``.
            progress: show a progress bar over the epochs (default False, as every loop
                of gmkernels).
        Returns:
            per epoch, the max-abs moment mismatch ``max |⟨y_i y_j⟩_data - ⟨y_i y_j⟩_chains|``.

        >>> bm = gmkernels.boltzmann.BoltzmannMachine(2)
        >>> data = torch.tensor([[1.0, 1.0], [-1.0, -1.0]]).repeat(50, 1)   # aligned spins
        >>> history = bm.fit(data, epochs=50, lr=0.1, n_chains=200, seed=0)
        >>> bool(bm.W[0, 1] > 0.5), bm.chains.shape                # a positive coupling
        (True, torch.Size([200, 2]))
        """
        op = "BoltzmannMachine.fit"
        data = self._check_data(op, "data", data)
        N = data.shape[0]
        if N == 0:
            raise ValueError(f"{op}: data must have at least one row, got shape {tuple(data.shape)}")
        _checks.boolean(op, "progress", progress)
        _checks.boolean(op, "lr_decay", lr_decay)
        epochs = _checks.integer(op, "epochs", epochs, 1)
        n_chains = _checks.integer(op, "n_chains", n_chains, 1, U32)
        n_sweeps = _checks.integer(op, "n_sweeps", n_sweeps, 1, U32)  # gmkernels.bm_gibbs's limit
        lr = _checks.real(op, "lr", lr, 0.0, lo_open=True)
        weight_decay = _checks.real(op, "weight_decay", weight_decay, 0.0)
        momentum = _checks.real(op, "momentum", momentum, 0.0, 1.0, hi_open=True)
        _checks.choice(op, "order", order, ORDERS)
        _checks.generator(op, "generator", generator)
        bs = N if batch_size is None else _checks.integer(op, "batch_size", batch_size, 1)
        if seed is not None:
            _checks.check_stream_args(op, seed, 0, 0, n_chains)
        steps_per_epoch = (N + bs - 1) // bs
        # not started: the buffer's initial [-1, 0] (a seed >= 2^63 is stored as a negative int64)
        restart = seed is not None or (int(self.stream[0]) == -1 and int(self.stream[1]) == 0)
        offset = 0 if restart else int(self.stream[1]) % U64
        if offset + n_sweeps * steps_per_epoch * epochs > U64:
            raise ValueError(f"{op}: n_sweeps, epochs and the batches must fit the stream: offset + "
                             f"n_sweeps * batches * epochs <= 2^64, got {offset} + "
                             f"{n_sweeps * steps_per_epoch * epochs}")
        self._symmetrize_()
        if restart:
            self.stream[0] = as_int64_bits(resolve_seed(seed, generator))
            self.stream[1] = 0
        seed_u = int(self.stream[0]) % U64
        # chain starts and permutations from (seed, offset), never from torch's global generator
        gen = torch.Generator().manual_seed((seed_u + offset * 0x9E3779B97F4A7C15) % (1 << 63))
        if self.chains.shape[0] != n_chains:
            idx = torch.randint(0, N, (n_chains,), generator=gen)
            self.chains = data[idx.to(data.device)].clone()  # start the chains at data points
        tau = max(1.0, epochs * steps_per_epoch / 10)
        vel = [torch.zeros_like(self.W), torch.zeros_like(self.b)]
        if not self.chains.is_contiguous():
            self.chains = self.chains.contiguous()
        history = []
        t = 0
        for _ in progress_bar(range(epochs), progress, "BoltzmannMachine.fit", leave=True):
            perm = torch.randperm(N, generator=gen).to(data.device) if bs < N else None
            with torch.no_grad():
                # the epoch's batches in one op call (C++ loop, no host sync per batch)
                worst = _ops_bm._fit_epoch(self.W, self.b, vel, self.chains, data, perm, bs,
                                           n_sweeps, order, lr, momentum, weight_decay,
                                           lr_decay, tau, t, seed_u, offset)
            offset += n_sweeps * steps_per_epoch
            self.stream[1] = as_int64_bits(offset % U64)
            t += steps_per_epoch
            history.append(float(worst.max()))
        return history
