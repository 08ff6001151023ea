"""Plain-PyTorch fully connected Boltzmann machine (docs/spec.md §2.2): the test oracle of
``bm_gibbs`` (a loop over sweeps and sites, vectorized over chains; also the benchmark's
``eager`` provider) and the exact enumeration ``bm_exact``.

Spins ``y ∈ {-1, +1}^D``, ``E(y) = -½ yᵀWy - bᵀy``, ``P(y) ∝ exp(-β E(y))``; site rule
``P(y_i = +1 | y_-i) = σ(2β h_i)`` with the local fields ``h = Wy + b``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import random as _rand

__all__ = ["bm_gibbs", "bm_exact", "BMExact", "bm_energy", "MAX_EXACT_D"]

TWO_POW_M24 = 2.0 ** -24
MAX_EXACT_D = 20


def _beta_vector(beta, B: int, dtype, device) -> torch.Tensor:
    if isinstance(beta, torch.Tensor):
        return beta.to(dtype=dtype, device=device).expand(B) if beta.dim() == 0 else beta.to(dtype)
    return torch.full((B,), float(beta), dtype=dtype, device=device)


def bm_gibbs(y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, n_sweeps: int, beta=1.0,
             order: str = "sequential", seed: int = 0, offset: int = 0,
             sample_offset: int = 0) -> torch.Tensor:
    """``n_sweeps`` Gibbs sweeps of the B chains (rows of ``y``), the stream as in
    :func:`gmkernels.bm_gibbs`: sweep ``s`` reads the row of ``D`` (sequential) or ``2D``
    (random scan) Philox words of chain ``b`` at ``offset + s``; element ``j`` decides update
    ``j``, element ``D + j`` picks its site in random scan, ``((w >> 8) * D) >> 24``.

    The fields start as ``y W + b`` (one GEMM, as the kernels) and move by ``2 y_new W[i]`` on a
    flip; chains that keep their spin add an exact zero, so the fields stay bit-identical to
    the kernels'.

    >>> D = 6; A = torch.randn(D, D, dtype=torch.float64); W = ((A + A.T) / 2).fill_diagonal_(0)
    >>> y0, b = torch.ones(16, D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
    >>> torch.equal(gmkernels.reference.bm.bm_gibbs(y0, W, b, 5, 0.5, seed=3),
    ...             gmkernels.bm_gibbs(y0, W, b, 5, beta=0.5, seed=3))
    True
    """
    B, D = y.shape
    dtype, device = y.dtype, y.device
    y = y.detach().clone(memory_format=torch.contiguous_format)
    W = W.detach().contiguous()
    h = torch.addmm(b.detach(), y, W)
    bt = _beta_vector(beta, B, dtype, device)
    random_scan = order == "random"
    M = 2 * D if random_scan else D
    rows = torch.arange(B, device=device)
    for s in range(n_sweeps):
        words = _rand.uint32((B, M), seed, offset + s, sample_offset, device=device)
        u = ((words[:, :D] >> 8).to(dtype)) * TWO_POW_M24  # exact: 24-bit integers times 2^-24
        sites = ((words[:, D:] >> 8) * D) >> 24 if random_scan else None
        for j in range(D):
            if random_scan:
                i = sites[:, j]
                hi, yi = h[rows, i], y[rows, i]
            else:
                hi, yi = h[:, j], y[:, j]
            p = 1.0 / (1.0 + torch.exp(-(2.0 * (bt * hi))))
            yn = torch.where(u[:, j] < p, 1.0, -1.0).to(dtype)
            delta = torch.where(yn != yi, 2.0 * yn, torch.zeros_like(yn))
            if random_scan:
                h = h + delta[:, None] * W[i]
                y[rows, i] = yn
            else:
                h = h + delta[:, None] * W[j][None, :]
                y[:, j] = yn
    return y


def bm_energy(y: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``E(y) = -½ yᵀWy - bᵀy`` for each row of ``y`` (``(..., D)`` -> ``(...)``).

    >>> W, b = torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([0.5, 0.0])
    >>> gmkernels.ops.bm.bm_energy(torch.tensor([[1.0, 1.0], [1.0, -1.0]]), W, b)
    tensor([-1.5000,  0.5000])
    """
    return -0.5 * ((y @ W) * y).sum(-1) - y @ b


class BMExact(NamedTuple):
    """Exact quantities of a Boltzmann machine at inverse temperature β, all float64.

    Fields:
        log_z: 0-d tensor, ``log Σ_y exp(-β E(y))``.
        probs: ``(2^D,)`` probabilities; state ``k`` has ``y_i = +1`` iff bit ``i`` of ``k`` is
            set (``(k >> i) & 1``), so state 0 is all ``-1``.
        mean: ``(D,)`` ``⟨y_i⟩``.
        second_moment: ``(D, D)`` ``⟨y_i y_j⟩`` (ones on the diagonal).
        mean_energy: 0-d tensor, ``⟨E⟩``.
        mean_abs_magnetization: 0-d tensor, ``⟨|Σ_i y_i| / D⟩``.

    >>> ex = gmkernels.bm_exact(torch.zeros(3, 3), torch.zeros(3))       # 8 equally likely states
    >>> torch.allclose(ex.probs, torch.full((8,), 1 / 8, dtype=torch.float64))
    True
    >>> ex.log_z.dtype, ex.mean.shape, ex.second_moment.shape
    (torch.float64, torch.Size([3]), torch.Size([3, 3]))
    """
    log_z: torch.Tensor
    probs: torch.Tensor
    mean: torch.Tensor
    second_moment: torch.Tensor
    mean_energy: torch.Tensor
    mean_abs_magnetization: torch.Tensor

    def __repr__(self) -> str:
        # a summary: the fields' tensors (probs has 2^D entries) are read as attributes
        D = self.mean.shape[0]
        return (f"BMExact(D={D}, log_z={float(self.log_z):.6g}, "
                f"mean_energy={float(self.mean_energy):.6g}, "
                f"mean_abs_magnetization={float(self.mean_abs_magnetization):.6g}, "
                f"probs: ({self.probs.shape[0]},), mean: ({D},), second_moment: ({D}, {D}))")


def states(D: int, start: int = 0, stop: int | None = None, device=None) -> torch.Tensor:
    """States ``start .. stop-1`` as a float64 ``(n, D)`` ±1 tensor (bit ``i`` of ``k`` set ⇔
    ``y_i = +1``)."""
    stop = (1 << D) if stop is None else stop
    k = torch.arange(start, stop, dtype=torch.int64, device=device)
    bits = (k[:, None] >> torch.arange(D, dtype=torch.int64, device=device)) & 1
    return bits.to(torch.float64) * 2.0 - 1.0


def bm_exact(W: torch.Tensor, b: torch.Tensor, beta: float = 1.0, chunk: int = 1 << 15) -> BMExact:
    """Exact enumeration over all ``2^D`` states in float64, in chunks of ``chunk`` states
    (log Z by logsumexp). For ``D <= 20`` (checked by the public op).

    >>> W, b = torch.zeros(2, 2, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    >>> ex = gmkernels.reference.bm.bm_exact(W, b)    # W = 0: independent spins, <y_i> = tanh(b_i)
    >>> torch.allclose(ex.mean, torch.tanh(b)), round(float(ex.probs.sum()), 12)
    (True, 1.0)
    """
    D = W.shape[0]
    W = W.detach().to(torch.float64)
    b = b.detach().to(torch.float64)
    beta = float(beta)
    n = 1 << D
    logits = torch.empty(n, dtype=torch.float64, device=W.device)
    energies = torch.empty(n, dtype=torch.float64, device=W.device)
    for s in range(0, n, chunk):
        ys = states(D, s, min(n, s + chunk), device=W.device)
        e = bm_energy(ys, W, b)
        energies[s:s + len(ys)] = e
        logits[s:s + len(ys)] = -beta * e
    log_z = torch.logsumexp(logits, 0)
    probs = torch.exp(logits - log_z)
    mean = torch.zeros(D, dtype=torch.float64, device=W.device)
    second = torch.zeros(D, D, dtype=torch.float64, device=W.device)
    mag = torch.zeros((), dtype=torch.float64, device=W.device)
    for s in range(0, n, chunk):
        ys = states(D, s, min(n, s + chunk), device=W.device)
        p = probs[s:s + len(ys)]
        mean += p @ ys
        second += (ys * p[:, None]).T @ ys
        mag += p @ (ys.sum(1).abs() / max(D, 1))
    return BMExact(log_z, probs, mean, second, probs @ energies, mag)


def bm_fit_epoch_(W, b, vel_W, vel_b, chains, data, perm, batch_size, n_sweeps, order, lr,
                  momentum, weight_decay, lr_decay, tau, t0, seed=0, offset=0, *,
                  gibbs=bm_gibbs):
    """One epoch of BoltzmannMachine.fit, in place, as the C++ op ``bm_fit_epoch_``
    (csrc/boltzmann/bm_ops.h): batch ``i`` (``data[perm[i bs:(i+1) bs]]``, or all of data when
    ``perm`` is None) advances the chains by ``n_sweeps`` sweeps at stream position
    ``offset + n_sweeps i``, then updates W, b and their momenta. ``order`` is the name
    ("sequential" / "random"); ``gibbs`` the sampler to use (this module's or the Triton
    backend's). Returns max |<y yᵀ>_batch - <y yᵀ>_chains| of each batch, (n_batches,).

    >>> g = torch.Generator().manual_seed(0)
    >>> W, b = torch.zeros(3, 3), torch.zeros(3)
    >>> vel = [torch.zeros_like(W), torch.zeros_like(b)]
    >>> data = torch.tensor([[1., 1., 1.], [-1., -1., -1.]]).repeat(4, 1)
    >>> chains = data[:4].clone()
    >>> worst = gmkernels.reference.bm.bm_fit_epoch_(W, b, *vel, chains, data, None, 8, 1,
    ...     "sequential", 0.1, 0.5, 0.0, False, 1.0, 0, seed=0)
    >>> worst.shape, bool(torch.equal(W, W.T))
    (torch.Size([1]), True)
    """
    N = data.shape[0]
    bs = min(batch_size, N)
    n_batches = (N + bs - 1) // bs
    worst = W.new_empty(n_batches)
    nc = chains.shape[0]
    for i in range(n_batches):
        s = i * bs
        batch = data[s:s + bs] if perm is None else data[perm[s:s + bs]]
        chains.copy_(gibbs(chains, W, b, n_sweeps, 1.0, order, seed, offset + n_sweeps * i, 0))
        diff = batch.T @ batch / batch.shape[0] - chains.T @ chains / nc
        worst[i] = diff.abs().max()
        gW = diff - weight_decay * W
        gW.fill_diagonal_(0)
        gb = batch.mean(0) - chains.mean(0)
        vel_W.mul_(momentum).add_(gW)
        vel_b.mul_(momentum).add_(gb)
        step = lr / (1 + (t0 + i) / tau) if lr_decay else lr
        W.add_(step * vel_W)
        b.add_(step * vel_b)
        W.copy_((W + W.T) / 2)
        W.fill_diagonal_(0)
    return worst
