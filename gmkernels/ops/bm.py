"""Fully connected Boltzmann machine with ±1 spins (docs/spec.md §2.2): fused Gibbs sweeps and the
exact enumeration oracle.

* :func:`bm_gibbs`: ``n_sweeps`` sequential (or random-scan) Gibbs sweeps of B chains in one op
  call, the local fields kept and updated only on flips;
* :func:`bm_exact`: log Z, the probabilities of all ``2^D`` states and the moments, for
  ``D <= 20``.
"""

from __future__ import annotations

import torch

from .. import _backend, _checks
from .._checks import as_int64_bits
from .._enums import ORDERS
from ..reference import bm as _ref
from ..reference.bm import BMExact, MAX_EXACT_D

__all__ = ["bm_gibbs", "bm_exact", "BMExact", "bm_energy", "ORDERS"]

bm_energy = _ref.bm_energy


def check_couplings(op: str, W: torch.Tensor, b: torch.Tensor, D: int | None = None,
                    values: bool = True) -> None:
    """W (D, D) symmetric with a zero diagonal, b (D,), same dtype and device, both finite.

    Symmetry is checked exactly (``W == W.T``): the fields are initialized from ``y W`` and
    updated with rows of W, which agree only for an exactly symmetric W; ``(A + A.T) / 2`` is
    exactly symmetric in floating point."""
    _checks.tensor(op, "W", W)
    _checks.tensor(op, "b", b)
    if D is None:
        D = W.shape[0] if W.dim() == 2 else -1
    if W.dim() != 2 or W.shape[0] != D or W.shape[1] != D:
        raise ValueError(f"{op}: W must have shape ({D}, {D}), got {tuple(W.shape)}")
    if b.dim() != 1 or b.shape[0] != D:
        raise ValueError(f"{op}: b must have shape ({D},), got {tuple(b.shape)}")
    _checks.floating(op, "W", W)
    _checks.like(op, "W", W, "b", b, shape=False)
    if not values or D == 0:
        return
    _checks.values(op, "W", W, "finite", torch.isfinite,
                   got=lambda w: f"{w[~torch.isfinite(w)][:8].tolist()} among its values")
    _checks.values(op, "W", W, "symmetric (W == W.T exactly; symmetrize with (W + W.T) / 2)",
                   lambda w: w == w.T,
                   got=lambda w: f"max |W - W.T| = {float((w - w.T).abs().max()):g}")
    _checks.values(op, "W", W.diagonal(), "symmetric with a zero diagonal", lambda d: d == 0,
                   got=lambda d: f"the diagonal {d[:8].tolist()}")
    _checks.values(op, "b", b, "finite", torch.isfinite,
                   got=lambda v: f"{v[~torch.isfinite(v)][:8].tolist()} among its values")


def _check_spins(op: str, y: torch.Tensor) -> None:
    if y.dim() != 2:
        raise ValueError(f"{op}: y must be a (B, D) tensor of spins, got shape {tuple(y.shape)}")
    _checks.floating(op, "y", y, (torch.float32, torch.float64))
    _checks.values(op, "y", y, "-1 or +1 (y must hold spins in {-1, +1} only)",
                   lambda v: (v == 1) | (v == -1))


def bm_gibbs(y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, n_sweeps: int, *, beta=1.0,
             order: str = "sequential", seed=None, offset: int = 0, sample_offset: int = 0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """``n_sweeps`` Gibbs sweeps of B independent chains of a fully connected ±1 Boltzmann
    machine, in one op call (docs/spec.md §2.2):

        E(y) = -½ yᵀWy - bᵀy,   P(y) ∝ exp(-β E(y)),
        P(y_i = +1 | y_-i) = σ(2β h_i),   h = W y + b   (y_i = +1 iff u < σ(2β h_i)).

    The local fields ``h`` are computed once (one GEMM) and updated only when a spin flips,
    ``h += 2 y_i W[i, :]``, so a sweep costs O(D · flips) per chain, not O(D²).

    Random stream (docs/spec.md §0): sweep ``s`` uses stream position ``offset + s``; chain ``b`` is
    row ``b + sample_offset``.

    * ``order="sequential"``: sites ``0 .. D-1`` in order; site ``i`` takes the uniform of
      element ``i`` of the row.
    * ``order="random"`` (random scan): a sweep is ``D`` single-site updates; update ``j``
      visits site ``((w >> 8) * D) >> 24 = floor(u' D)``, ``w`` the word of element ``D + j``,
      and decides it with the uniform of element ``j`` (the row has ``2D`` elements).

    So a sampler that calls this repeatedly advances ``offset`` by ``n_sweeps`` per call, and
    chains are reproducible one by one with ``sample_offset``.

    Args:
        y: (B, D) initial spins in {-1, +1}, float32 or float64 (the compute dtype), any strides.
        W: (D, D) couplings, exactly symmetric (``W == W.T``) with a zero diagonal; y's dtype
            and device.
        b: (D,) biases.
        n_sweeps: number of sweeps, in [0, 2^32); the call uses the stream positions
            ``offset .. offset + n_sweeps - 1``, which must end below 2^64: a count or an
            offset past that is refused (``ValueError``), never wrapped.
        beta: inverse temperature 1/T >= 0: a float, or a per-chain (B,) tensor (tempering).
        order: ``"sequential"`` or ``"random"``.
        seed: uint64 Philox key; None draws one from ``generator`` / the default generator.
        offset: uint64 stream position of the first sweep.
        sample_offset: global index of chain 0.

    Returns:
        a new contiguous (B, D) tensor of spins. Not differentiable (a discrete sample):
        inputs that require grad are detached.

    Backends: CPU (parallel over chains, vectorized field updates), CUDA (a block per chain),
    Triton (a tile of chains per program) and the plain-PyTorch reference give the same chains
    for the same seed, bit for bit up to a ``u`` landing within rounding of ``σ(2βh)`` (the
    sigmoid's exp differs in the last ulp between libraries; see python_tests/test_bm_ops.py).

    Reference: Geman & Geman (1984); Ackley, Hinton & Sejnowski (1985), "A learning algorithm for
    Boltzmann machines".

    >>> D = 16; A = torch.randn(D, D) / D ** 0.5; W = (A + A.T) / 2; _ = W.fill_diagonal_(0)
    >>> y0 = torch.ones(128, D)
    >>> y = gmkernels.bm_gibbs(y0, W, torch.zeros(D), 100, beta=0.5, seed=0)
    >>> part = gmkernels.bm_gibbs(y0[32:], W, torch.zeros(D), 100, beta=0.5, seed=0,
    ...                           sample_offset=32)
    >>> torch.equal(y[32:], part), bool((y.abs() == 1).all())    # a shard: the same chains
    (True, True)
    """
    op = "gmkernels.bm_gibbs"
    _checks.tensor(op, "y", y)
    # The values are read here for every backend, so that each mistake raises the same
    # ValueError and message whichever backend runs. The native op reads them again for
    # callers of torch.ops.gmkernels.bm_gibbs: two O(B D + D^2) passes on the CPU, against the
    # O(n_sweeps B D) sweeps they guard (on CUDA, _checks.values leaves the read to the kernel).
    _check_spins(op, y)
    backend = _backend.choose_backend("bm_gibbs", y.device)  # after y's checks: not for meta
    B, D = y.shape
    check_couplings(op, W, b, D)
    _checks.like(op, "y", y, "W", W, shape=False)
    n_sweeps = _checks.integer(op, "n_sweeps", n_sweeps, 0)
    _checks.choice(op, "order", order, ORDERS)
    beta_t, beta_f = _checks.per_sample(op, "beta", beta, y, unit="per-chain")
    if beta_t is not None:
        beta_t, beta_f = beta_t.detach().to(y.dtype), 1.0
    seed, offset, sample_offset = _checks.stream(op, B, seed, offset, sample_offset, generator)
    # sweep s uses offset + s
    _checks.stream_span(op, "n_sweeps", n_sweeps, offset, n_sweeps)
    y, W, b = y.detach(), W.detach(), b.detach()
    if backend == "native":
        return _backend.call_op(torch.ops.gmkernels.bm_gibbs, (), y, W, b, n_sweeps, beta_t,
                                beta_f, ORDERS[order], as_int64_bits(seed),
                                as_int64_bits(offset), sample_offset)
    beta_arg = beta_t if beta_t is not None else beta_f
    if backend == "triton":
        from ..triton import bm as _tri
        return _tri.bm_gibbs(y, W, b, n_sweeps, beta_arg, order, seed, offset, sample_offset)
    return _ref.bm_gibbs(y, W, b, n_sweeps, beta_arg, order, seed, offset, sample_offset)


def _fit_epoch(W, b, vel, chains, data, perm, batch_size: int, n_sweeps: int, order: str,
               lr: float, momentum: float, weight_decay: float, lr_decay: bool, tau: float,
               t0: int, seed: int, offset: int):
    """One epoch of BoltzmannMachine.fit's updates of W, b (and the momenta ``vel`` = (vel_W,
    vel_b)) and the persistent ``chains``, in place, in one op call
    (``torch.ops.gmkernels.bm_fit_epoch_``: the batch loop, the sweeps and the moment GEMMs in
    C++, with no host synchronization). Batch i is ``data[perm[i bs:(i+1) bs]]`` (all of data
    when ``perm`` is None); its sweeps run at stream position ``offset + n_sweeps i``.
    Returns max |<y yᵀ>_batch - <y yᵀ>_chains| of each batch, (n_batches,). The Triton and
    reference backends run the same loop in Python (:func:`gmkernels.reference.bm.bm_fit_epoch_`).
    Not a public function: BoltzmannMachine.fit checks the arguments."""
    backend = _backend.choose_backend("bm_fit_epoch_", W.device)
    if backend == "native":
        return torch.ops.gmkernels.bm_fit_epoch_(
            W, b, *vel, chains, data, perm, batch_size, n_sweeps, ORDERS[order], lr, momentum,
            weight_decay, lr_decay, tau, t0, as_int64_bits(seed), as_int64_bits(offset))
    gibbs = _ref.bm_gibbs
    if backend == "triton":
        from ..triton import bm as _tri
        gibbs = _tri.bm_gibbs
    return _ref.bm_fit_epoch_(W, b, *vel, chains, data, perm, batch_size, n_sweeps, order, lr,
                              momentum, weight_decay, lr_decay, tau, t0, seed, offset,
                              gibbs=gibbs)


if _backend.op_exists("bm_fit_epoch_"):

    @torch.library.register_fake("gmkernels::bm_fit_epoch_")
    def _bm_fit_epoch_fake(W, b, vel_W, vel_b, chains, data, perm, batch_size, n_sweeps, order,
                           lr, momentum, weight_decay, lr_decay, tau, t0, seed, offset):
        n = data.shape[0]
        bs = min(batch_size, n)
        return W.new_empty(((n + bs - 1) // bs,))


if _backend.op_exists("bm_gibbs"):
    @torch.library.register_fake("gmkernels::bm_gibbs")
    def _bm_gibbs_fake(y, W, b, n_sweeps, beta_t, beta, order, seed, offset, sample_offset):
        return torch.empty_like(y, memory_format=torch.contiguous_format)


def bm_exact(W: torch.Tensor, b: torch.Tensor, beta: float = 1.0) -> BMExact:
    """Exact enumeration of a ±1 Boltzmann machine with ``D <= 20`` spins: the test oracle.

    ``P(y) = exp(-β E(y)) / Z`` with ``E(y) = -½ yᵀWy - bᵀy`` (docs/spec.md §2.2), summed over all
    ``2^D`` states in chunks, in float64, log Z by logsumexp.

    Args:
        W: (D, D) symmetric couplings with a zero diagonal (checked as in :func:`bm_gibbs`).
        b: (D,) biases.
        beta: inverse temperature, a finite float >= 0.

    Returns:
        :class:`BMExact` (float64): ``log_z``; ``probs`` (2^D,) with state ``k`` having
        ``y_i = +1`` iff bit ``i`` of ``k`` is set (state 0 is all -1); ``mean`` ⟨y_i⟩ (D,);
        ``second_moment`` ⟨y_i y_j⟩ (D, D); ``mean_energy`` ⟨E⟩;
        ``mean_abs_magnetization`` ⟨|Σ y_i| / D⟩.

    >>> D = 4; W = torch.full((D, D), 0.2, dtype=torch.float64); _ = W.fill_diagonal_(0)
    >>> ex = gmkernels.bm_exact(W, torch.zeros(D, dtype=torch.float64), beta=0.5)
    >>> ex.probs.shape, round(float(ex.probs.sum()), 12)
    (torch.Size([16]), 1.0)
    """
    op = "gmkernels.bm_exact"
    check_couplings(op, W, b)
    D = W.shape[0]
    if D > MAX_EXACT_D:
        raise ValueError(f"{op}: exact enumeration needs D <= {MAX_EXACT_D} (2^D states), got D={D}")
    beta = _checks.real(op, "beta", beta, 0.0)
    return _ref.bm_exact(W, b, beta)
