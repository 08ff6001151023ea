"""A binary restricted Boltzmann machine on the fused RBM ops (docs/spec.md §2.1).

Training by contrastive divergence (CD-k, Hinton 2002) or persistent contrastive divergence
(PCD, Tieleman 2008); the k Gibbs steps of each update are one :func:`gmkernels.rbm_gibbs`
call. Likelihoods by exact enumeration (small models) or annealed importance sampling
(Salakhutdinov & Murray 2008).

>>> import math
>>> from gmkernels.boltzmann import RBM
>>> rbm = RBM(16, 8)
>>> data = (torch.rand(256, 16) < 0.3).float()
>>> history = rbm.fit(data, epochs=2, lr=0.05, k=1, persistent=True, batch_size=64, seed=0)
>>> ll = rbm.log_likelihood(data, method="exact").mean()   # 2^8 hidden states
>>> bool(ll > 16 * math.log(0.5))            # better than the uniform model already
True
"""

from __future__ import annotations

import torch
from torch import nn

from .. import _checks
from .._checks import U32, U64, as_int64_bits, resolve_seed
from .._progress import progress_bar
from ..ops import rbm as _ops

__all__ = ["RBM"]


class RBM(nn.Module):
    """Binary RBM, ``E(v, h) = -bᵀv - cᵀh - vᵀWh``, ``W`` of shape (n_visible, n_hidden).

    Parameters ``W``, ``b`` (visible biases), ``c`` (hidden biases). Buffers (all in the state
    dict, so a saved model resumes where it stopped): ``base_visible_bias`` (the logits of the
    training data's marginals, set by :meth:`fit`, used as the AIS base model), ``chains``
    (the persistent chains of :meth:`fit`, (n_chains, n_visible); empty before the first PCD
    fit) and ``stream`` (their Philox seed and next offset; seed -1 before the first fit).

    Inputs: every v is (B, n_visible) with the dtype and device of ``W`` and values in [0, 1]
    (binary data in {0, 1}; probabilities work where the method says so). A value outside
    [0, 1], a NaN, or a checkpoint with non-finite parameters is refused with a ``ValueError``
    naming it (values are read for CPU tensors).

    Randomness: every sampling call takes ``seed`` (None: drawn from ``generator`` / torch's
    default generator, so ``torch.manual_seed`` reproduces a run).

    >>> rbm = gmkernels.boltzmann.RBM(6, 4, generator=torch.Generator().manual_seed(0))
    >>> rbm
    RBM(n_visible=6, n_hidden=4)
    >>> v = rbm.sample(32, k=10, seed=0)                  # (32, 6) samples in {0, 1}
    >>> v.shape, rbm.hidden_probs(v).shape
    (torch.Size([32, 6]), torch.Size([32, 4]))
    >>> states = torch.tensor([[(i >> j) & 1 for j in range(6)] for i in range(64)]).float()
    >>> round(float(rbm.log_likelihood(states, method="exact").exp().sum()), 6)  # p sums to 1
    1.0
    """

    def __init__(self, n_visible: int, n_hidden: int, *, init_std: float = 0.01,
                 dtype: torch.dtype = torch.float32, device=None, generator=None):
        super().__init__()
        n_visible = _checks.integer("RBM", "n_visible", n_visible, 1)
        n_hidden = _checks.integer("RBM", "n_hidden", n_hidden, 1)
        init_std = _checks.real("RBM", "init_std", init_std, 0.0)
        _checks.generator("RBM", "generator", generator)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"RBM: dtype must be float32 or float64, got {dtype}")
        W = torch.randn(n_visible, n_hidden, dtype=dtype, generator=generator) * init_std
        self.W = nn.Parameter(W.to(device))
        self.b = nn.Parameter(torch.zeros(n_visible, dtype=dtype, device=device))
        self.c = nn.Parameter(torch.zeros(n_hidden, dtype=dtype, device=device))
        self.register_buffer("base_visible_bias", torch.zeros(n_visible, dtype=dtype, device=device))
        self.register_buffer("chains", torch.empty(0, n_visible, dtype=dtype, device=device))
        # (seed, next offset) of the persistent chains' stream; -1: not started.
        self.register_buffer("stream", torch.tensor([-1, 0], dtype=torch.int64))

    @staticmethod
    def _check_state(op: str, state: dict, prefix: str = "") -> None:
        """A checkpoint's values: finite parameters and base biases, chains in [0, 1]."""
        _checks.finite_state(op, state, prefix, ("W", "b", "c", "base_visible_bias"))
        chains = state.get(prefix + "chains")
        if isinstance(chains, torch.Tensor) and chains.dtype.is_floating_point:
            _checks.values(op, "chains", chains.detach().cpu(), "in [0, 1]",
                           lambda t: (t >= 0) & (t <= 1))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._check_state("RBM.load_state_dict", state_dict, prefix)
        # The persistent chains' count is not fixed by the model: take the saved buffer's shape.
        saved = state_dict.get(prefix + "chains")
        if isinstance(saved, torch.Tensor) and saved.dim() == 2:
            self.chains = torch.empty(saved.shape, dtype=self.W.dtype, device=self.W.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def n_visible(self) -> int:
        return self.W.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.W.shape[1]

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}"

    def _check_v(self, op: str, name: str, v, binary: bool = False) -> None:
        _checks.features(op, name, v, self.n_visible, "W", self.W)
        if binary:
            _checks.values(op, name, v, "0 or 1", lambda t: (t == 0) | (t == 1))
        else:
            _checks.values(op, name, v, "in [0, 1]", lambda t: (t >= 0) & (t <= 1))

    # ------------------------------------------------------------------ energies
    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """(B,) free energies ``F(v) = -bᵀv - Σ_j softplus(c_j + (vW)_j)`` (differentiable);
        v (B, n_visible) in [0, 1].

        >>> rbm = gmkernels.boltzmann.RBM(3, 2)
        >>> with torch.no_grad():
        ...     _ = rbm.W.zero_()
        >>> rbm.free_energy(torch.ones(1, 3))                 # -2 softplus(0) = -2 log 2
        tensor([-1.3863], grad_fn=<...>)
        """
        self._check_v("RBM.free_energy", "v", v)
        return _ops.rbm_free_energy(v, self.W, self.b, self.c)

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """p(h_j = 1 | v) = σ(c_j + (vW)_j) for each row of v (B, n_visible), in [0, 1]:
        (B, n_hidden).

        >>> rbm = gmkernels.boltzmann.RBM(3, 2)
        >>> with torch.no_grad():
        ...     _ = rbm.W.zero_()
        >>> rbm.hidden_probs(torch.ones(1, 3))                # σ(0) = 1/2
        tensor([[0.5000, 0.5000]], grad_fn=<SigmoidBackward0>)
        """
        self._check_v("RBM.hidden_probs", "v", v)
        return torch.sigmoid(v @ self.W + self.c)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, k: int = 1000, init: torch.Tensor | None = None, *, beta=1.0,
               seed=None, generator=None, return_probs: bool = False) -> torch.Tensor:
        """``n`` visible samples after ``k`` block-Gibbs steps from ``init`` ((n, n_visible) in
        [0, 1]; None: uniform random bits). Returns (n, n_visible) samples, or their last
        visible probabilities when ``return_probs`` (smoother pictures).

        ``init`` must have exactly ``n`` rows (one chain per sample), ``n < 2^32`` (the rows of
        the stream); ``beta`` is a float or a per-chain (n,) tensor; the chains draw at stream
        positions ``1 .. 2k`` of ``seed``, and ``k < 2^32`` (:func:`gmkernels.rbm_gibbs`'s
        limit: a larger count is refused, not run for hours).

        >>> rbm = gmkernels.boltzmann.RBM(4, 3)
        >>> with torch.no_grad():
        ...     _ = rbm.b.fill_(2.0)                           # p(v_i = 1) ≈ σ(2) = 0.88
        >>> v = rbm.sample(4000, k=5, seed=0)
        >>> bool(abs(float(v.mean()) - 0.881) < 0.02)
        True
        """
        op = "RBM.sample"
        n = _checks.integer(op, "n", n, 0, U32)
        k = _checks.integer(op, "k", k, 0, U32)  # offsets 1 .. 2k (gmkernels.rbm_gibbs's limit)
        _checks.boolean(op, "return_probs", return_probs)
        _checks.generator(op, "generator", generator)
        if init is not None:
            self._check_v(op, "init", init)
            if init.shape[0] != n:
                raise ValueError(f"{op}: init must have n = {n} rows, got {init.shape[0]}")
        seed, _, _ = _checks.stream(op, n, seed, 1, 0, generator)
        if init is None:
            u = torch.rand(n, self.n_visible, generator=torch.Generator().manual_seed(seed % (1 << 63)))
            init = (u < 0.5).to(self.W.dtype).to(self.W.device)
        beta_t, beta_f = _checks.per_sample(op, "beta", beta, init, None, unit="per-chain")
        v, _, pv, _ = _ops.rbm_gibbs(init, self.W, self.b, self.c, k,
                                     beta=beta_f if beta_t is None else beta_t, seed=seed, offset=1)
        return pv if return_probs else v

    # ------------------------------------------------------------------ training
    def fit(self, data: torch.Tensor, *, epochs: int = 10, lr: float = 0.05, k: int = 1,
            persistent: bool = True, batch_size: int = 64, weight_decay: float = 0.0,
            momentum: float = 0.5, n_chains: int | None = None, progress: bool = False,
            seed=None, generator=None) -> list[float]:
        """Train by CD-k (``persistent=False``: chains start at the batch) or PCD-k (chains
        persist across updates and :meth:`fit` calls; ``n_chains`` of them, default
        ``batch_size``). Gradient ascent on the log-likelihood with the usual estimates
        (hidden probabilities on both sides, Hinton 2010's guide):

            ΔW ∝ <v σ(vW + c)ᵀ>_data - <v σ(vW + c)ᵀ>_model - weight_decay W,

        with momentum. Each epoch is one op call (``torch.ops.gmkernels.rbm_fit_epoch_``): the
        minibatch loop, the Gibbs chains, the statistics and the updates run in C++ (or on the
        GPU) with the reconstruction error kept on the device, read once per epoch.

        The chains and their stream position are buffers (``chains``, ``stream``): a later
        call, or a model reloaded from its state dict, continues them on fresh noise. ``seed``
        (or, on the first call, one drawn from ``generator`` when None) restarts the stream.

        Args:
            data: (N, n_visible), N >= 1, W's dtype and device, values in [0, 1]: binary data,
                or probabilities (the gradient estimates take v as the data's expectation;
                Hinton 2010, §3.2). Anything else (2, -1, NaN) is refused.
            epochs, k (>= 1, < 2^32), batch_size (>= 1), n_chains (>= 1, < 2^32): ints.
            lr: finite, > 0. weight_decay: finite, >= 0. momentum: in [0, 1).
            seed: None or an int in [0, 2^64); every update takes 2k stream positions, and
                they must fit: ``offset + 2 k · batches · epochs <= 2^64``.
            progress: show a progress bar over the epochs (default False, as every loop
                of gmkernels).
        Returns:
            the per-epoch mean squared reconstruction error (a progress signal, not the
            objective).

        >>> rbm = gmkernels.boltzmann.RBM(6, 4, generator=torch.Generator().manual_seed(0))
        >>> data = torch.tensor([[1., 1., 1., 0., 0., 0.], [0., 0., 0., 1., 1., 1.]]).repeat(64, 1)
        >>> history = rbm.fit(data, epochs=30, lr=0.1, seed=0)
        >>> history[-1] < history[0]                           # reconstructions improve
        True
        >>> rbm.chains.shape, int(rbm.stream[1])              # 64 chains, 2 offsets per update
        (torch.Size([64, 6]), 120)
        """
        op = "RBM.fit"
        self._check_v(op, "data", data)
        k = _checks.integer(op, "k", k, 1, U32)  # gmkernels.rbm_gibbs's limit
        batch_size = _checks.integer(op, "batch_size", batch_size, 1)
        epochs = _checks.integer(op, "epochs", epochs, 0)
        lr = _checks.real(op, "lr", lr, 0.0, lo_open=True)
        weight_decay = _checks.real(op, "weight_decay", weight_decay, 0.0)
        momentum = _checks.real(op, "momentum", momentum, 0.0, 1.0, hi_open=True)
        _checks.boolean(op, "persistent", persistent)
        _checks.boolean(op, "progress", progress)
        N = data.shape[0]
        if N == 0:
            raise ValueError(f"{op}: data must have at least one row, got shape {tuple(data.shape)}")
        nc = batch_size if n_chains is None else _checks.integer(op, "n_chains", n_chains, 1, U32)
        _checks.generator(op, "generator", generator)
        if seed is not None:
            _checks.check_stream_args(op, seed, 0, 0, nc)
        W, b, c = self.W, self.b, self.c
        with torch.no_grad():
            # not started: the buffer's initial [-1, 0] (a seed >= 2^63 is stored as a negative
            # int64, so the sign alone does not say it)
            restart = seed is not None or (int(self.stream[0]) == -1 and int(self.stream[1]) == 0)
            offset = 0 if restart else int(self.stream[1]) % U64
            total = 2 * k * ((N + batch_size - 1) // batch_size) * epochs
            if offset + total > U64:
                raise ValueError(f"{op}: k, epochs and the batches must fit the stream: offset + "
                                 f"2 k * batches * epochs <= 2^64, got {offset} + {total}")
            if restart:
                self.stream[0] = as_int64_bits(resolve_seed(seed, generator))
                self.stream[1] = 0
            seed = int(self.stream[0]) % U64
            # permutations and chain starts from (seed, offset): a resumed fit draws new ones
            perm_gen = torch.Generator().manual_seed((seed + offset * 0x9E3779B97F4A7C15) % (1 << 63))
            self.base_visible_bias.copy_(_ops.base_rate_visible_bias(data).to(W.dtype))
            if persistent and self.chains.shape != (nc, self.n_visible):
                idx = torch.randint(0, N, (nc,), generator=perm_gen)
                self.chains = data[idx.to(data.device)].clone()
        vel = [torch.zeros_like(p) for p in (W, b, c)]
        if persistent and not self.chains.is_contiguous():
            self.chains = self.chains.contiguous()
        chains = self.chains if persistent else W.new_empty((0, self.n_visible))
        nb = (N + batch_size - 1) // batch_size
        history = []
        for _ in progress_bar(range(epochs), progress, "RBM.fit", leave=True):
            perm = torch.randperm(N, generator=perm_gen).to(data.device)
            with torch.no_grad():
                # the epoch's batches in one op call (C++ loop, no host sync per batch)
                err = _ops._fit_epoch(W, b, c, vel, chains, data, perm, batch_size, k,
                                      persistent, lr, momentum, weight_decay, seed, offset)
            offset += 2 * k * nb
            self.stream[1] = as_int64_bits(offset % U64)
            history.append(float(err) / nb)
        return history

    # ------------------------------------------------------------------ likelihoods
    @torch.no_grad()
    def log_partition(self, method: str = "ais", *, n_chains: int = 100, n_betas: int = 10000,
                      seed=None, generator=None) -> tuple[float, float]:
        """(log Z, its standard error): ``"exact"`` (enumeration, min layer <= 32; SE 0) or
        ``"ais"`` (:func:`gmkernels.rbm_ais` from the base-rate model of the training data).

        >>> rbm = gmkernels.boltzmann.RBM(8, 4, init_std=0.5, generator=torch.Generator().manual_seed(0))
        >>> exact, _ = rbm.log_partition("exact")
        >>> ais, se = rbm.log_partition("ais", n_chains=100, n_betas=1000, seed=0)
        >>> abs(ais - exact) < 3 * se + 0.02                    # AIS agrees within its error
        True
        """
        op = "RBM.log_partition"
        _checks.choice(op, "method", method, ("ais", "exact"))
        n_chains = _checks.integer(op, "n_chains", n_chains, 2, U32)
        n_betas = _checks.integer(op, "n_betas", n_betas, 3, U32)  # gmkernels.rbm_ais's limit
        _checks.generator(op, "generator", generator)
        if seed is not None:
            _checks.check_stream_args(op, seed, 0, 0, n_chains)
        if method == "exact":
            return float(_ops.rbm_log_z_exact(self.W, self.b, self.c)), 0.0
        lz, se = _ops.rbm_ais(self.W, self.b, self.c, n_chains=n_chains, n_betas=n_betas,
                              base_visible_bias=self.base_visible_bias, seed=seed,
                              generator=generator)
        return float(lz), float(se)

    @torch.no_grad()
    def log_likelihood(self, v: torch.Tensor, method: str = "ais", **kwargs) -> torch.Tensor:
        """(B,) log-likelihoods ``-F(v) - log Z`` (float64) of v (B, n_visible) in {0, 1},
        log Z by ``method`` ("ais" or "exact"; keyword arguments go to :meth:`log_partition`).
        The AIS standard error of log Z, common to every row, is kept in
        ``self.last_log_z = (log_z, std_err)``.

        >>> rbm = gmkernels.boltzmann.RBM(5, 3, init_std=1.0, generator=torch.Generator().manual_seed(0))
        >>> states = torch.tensor([[(i >> j) & 1 for j in range(5)] for i in range(32)]).float()
        >>> round(float(rbm.log_likelihood(states, method="exact").exp().sum()), 5)  # sums to 1
        1.0
        """
        self._check_v("RBM.log_likelihood", "v", v)
        _checks.choice("RBM.log_likelihood", "method", method, ("ais", "exact"))
        lz, se = self.log_partition(method, **kwargs)
        self.last_log_z = (lz, se)
        return -self.free_energy(v).double() - lz

    @torch.no_grad()
    def pseudo_likelihood(self, v: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """(B,) exact pseudo-log-likelihoods ``Σ_i log p(v_i | v_-i)`` (Besag 1975) of binary
        v (B, n_visible) in {0, 1}, with ``log p(v_i | v_-i) = -softplus(F(v) - F(v with unit
        i flipped))`` over every visible unit (sklearn's BernoulliRBM flips one random unit and
        scales by n_visible); ``chunk`` units at a time.

        >>> rbm = gmkernels.boltzmann.RBM(4, 2)
        >>> with torch.no_grad():
        ...     _ = rbm.W.zero_()                              # independent fair units
        >>> rbm.pseudo_likelihood(torch.ones(1, 4))           # 4 log(1/2)
        tensor([-2.7726], dtype=torch.float64)
        """
        op = "RBM.pseudo_likelihood"
        self._check_v(op, "v", v, binary=True)
        chunk = _checks.integer(op, "chunk", chunk, 1)
        pre = v @ self.W + self.c                        # (B, nh)
        sp0 = _softplus(pre).sum(1)                      # (B,)
        out = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
        sgn = 1 - 2 * v                                  # +1: unit turns on when flipped
        for i0 in range(0, self.n_visible, chunk):
            s = sgn[:, i0:i0 + chunk]                    # (B, m)
            pre_f = pre.unsqueeze(1) + s.unsqueeze(2) * self.W[i0:i0 + chunk].unsqueeze(0)
            # F(v) - F(v_flip) = b_i s_i + Σ_j [softplus(pre_f) - softplus(pre)]
            d = s * self.b[i0:i0 + chunk] + _softplus(pre_f).sum(2) - sp0.unsqueeze(1)
            out -= _softplus(d).double().sum(1)
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Writes the state dict (W, b, c, base_visible_bias, chains, stream) with torch.save.

        >>> import os, tempfile
        >>> rbm = gmkernels.boltzmann.RBM(6, 4)
        >>> _ = rbm.fit((torch.rand(64, 6) < 0.5).float(), epochs=1, seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "rbm.pt")
        >>> rbm.save(path)
        >>> again = gmkernels.boltzmann.RBM.load(path)
        >>> torch.equal(again.chains, rbm.chains), torch.equal(again.stream, rbm.stream)
        (True, True)
        """
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path, map_location=None) -> "RBM":
        """An RBM from :meth:`save`'s file, read with ``weights_only=True`` (no pickled code);
        its persistent chains resume. (See :meth:`save` for an example.) A file whose
        parameters are not finite, or whose chains are not in [0, 1], is refused with a
        ``ValueError`` (so is ``load_state_dict`` of such a state).

        >>> rbm = gmkernels.boltzmann.RBM(3, 2)
        >>> import io; buf = io.BytesIO(); rbm.save(buf); _ = buf.seek(0)
        >>> gmkernels.boltzmann.RBM.load(buf)
        RBM(n_visible=3, n_hidden=2)
        """
        op = "RBM.load"
        sd = torch.load(path, map_location=map_location, weights_only=True)
        W = sd.get("W") if isinstance(sd, dict) else None
        if not (isinstance(W, torch.Tensor) and W.dim() == 2 and W.dtype in (torch.float32,
                                                                             torch.float64)):
            got = (f"W of shape {tuple(W.shape)} ({W.dtype})" if isinstance(W, torch.Tensor)
                   else f"a {type(sd).__name__}" + (" without W" if isinstance(sd, dict) else ""))
            raise ValueError(f"{op}: the file must hold an RBM state dict with W a 2-D float32 or "
                             f"float64 tensor (n_visible, n_hidden), got {got}")
        cls._check_state(op, sd)
        nv, nh = W.shape
        m = cls(nv, nh, dtype=sd["W"].dtype, device=sd["W"].device)
        # files written before the chains were buffers: start without chains
        sd.setdefault("chains", m.chains)
        sd.setdefault("stream", m.stream)
        m.load_state_dict(sd)
        return m


def _softplus(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))

