"""Plain-PyTorch RBM ops (docs/spec.md §2.1): the test oracle and the fallback.

Same random stream as the kernels (docs/spec.md §0): step ``s`` of :func:`rbm_gibbs` draws its hidden
units at ``offset + 2s`` and its visible units at ``offset + 2s + 1``, rows being chains, and a
unit is on when its uniform ``u < p`` with ``p = 1 / (1 + exp(-z))``, written the same way as
the kernels (``csrc/boltzmann/rbm.h``) so that float64 runs agree state for state.
"""

from __future__ import annotations

import math

import torch

from . import random as _rand

__all__ = ["rbm_gibbs", "rbm_free_energy", "rbm_log_z_exact", "rbm_ais", "default_betas"]


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), stable for any x."""
    return x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))


def sample_layer(pre, bias, beta, seed, offset, sample_offset=0, base=None):
    """One fused pass (rbm.h): z = beta (pre + bias) [+ (1 - beta) base], p = 1/(1 + e^-z),
    s = (u < p). beta: float or (B,) tensor. Returns (s, p)."""
    if isinstance(beta, torch.Tensor):
        beta = beta.to(pre.dtype).unsqueeze(1)
    z = beta * (pre + bias)
    if base is not None:
        z = z + (1 - beta) * base
    p = 1.0 / (1.0 + torch.exp(-z))
    u = _rand.uniform(pre.shape, seed, offset, sample_offset, dtype=pre.dtype, device=pre.device)
    return (u < p).to(pre.dtype), p


def rbm_gibbs(v0, W, b, c, k, beta=1.0, seed=0, offset=0, sample_offset=0):
    """k block-Gibbs steps; returns (v_k, h_k, pv_k, ph_k) (see gmkernels.rbm_gibbs).

    >>> W = torch.randn(6, 4, dtype=torch.float64)
    >>> b, c = torch.zeros(6, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    >>> v0 = torch.zeros(8, 6, dtype=torch.float64)
    >>> ref = gmkernels.reference.rbm.rbm_gibbs(v0, W, b, c, 3, seed=1)
    >>> out = gmkernels.rbm_gibbs(v0, W, b, c, 3, seed=1)
    >>> torch.equal(ref[0], out[0]), torch.equal(ref[1], out[1]), torch.allclose(ref[2], out[2])
    (True, True, True)
    """
    v = v0
    if k == 0:
        h, ph = sample_layer(v @ W, c, beta, seed, offset, sample_offset)
        return v.clone(), h, v.clone(), ph
    for s in range(k):
        h, ph = sample_layer(v @ W, c, beta, seed, offset + 2 * s, sample_offset)
        v, pv = sample_layer(h @ W.t(), b, beta, seed, offset + 2 * s + 1, sample_offset)
    return v, h, pv, ph


def rbm_free_energy(v, W, b, c):
    """F(v) = -bᵀv - Σ_j softplus(c_j + (vW)_j), shape (B,).

    >>> W, b, c = torch.randn(6, 4), torch.randn(6), torch.randn(4)
    >>> v = torch.eye(6)[:3]
    >>> torch.allclose(gmkernels.reference.rbm.rbm_free_energy(v, W, b, c),
    ...                gmkernels.rbm_free_energy(v, W, b, c), atol=1e-5)
    True
    """
    return -(v @ b) - softplus(v @ W + c).sum(1)


def rbm_log_z_exact(W, b, c):
    """log Z by enumerating all 2^n states of the smaller layer at once (float64, 0-d).

    >>> W, b, c = torch.randn(6, 4), torch.randn(6), torch.randn(4)
    >>> torch.allclose(gmkernels.reference.rbm.rbm_log_z_exact(W, b, c),
    ...                gmkernels.rbm_log_z_exact(W, b, c))
    True
    """
    W, b, c = W.double(), b.double(), c.double()
    nv, nh = W.shape
    if nh <= nv:
        n, bias_e, bias_o, Wd = nh, c, b, W.t()
    else:
        n, bias_e, bias_o, Wd = nv, b, c, W
    idx = torch.arange(1 << n, device=W.device).unsqueeze(1)
    states = ((idx >> torch.arange(n, device=W.device)) & 1).double()
    lw = states @ bias_e + softplus(states @ Wd + bias_o).sum(1)
    return torch.logsumexp(lw, 0)


def default_betas(n_betas: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Salakhutdinov & Murray (2008)'s schedule shape scaled to ``n_betas`` points: uniform
    spacing on [0, 0.5], [0.5, 0.9] and [0.9, 1] with 500 : 4000 : 10000 of the points.

    >>> betas = gmkernels.ops.rbm.default_betas(1000)
    >>> len(betas), float(betas[0]), float(betas[-1]), bool((betas[1:] >= betas[:-1]).all())
    (1000, 0.0, 1.0, True)
    """
    if n_betas < 3:
        raise ValueError(f"n_betas must be >= 3, got {n_betas}")
    n1 = max(1, round(n_betas * 500 / 14500))
    n2 = max(1, round(n_betas * 4000 / 14500))
    n3 = max(1, n_betas - n1 - n2 - 1)
    parts = [torch.linspace(0.0, 0.5, n1 + 1, dtype=torch.float64, device=device)[:-1],
             torch.linspace(0.5, 0.9, n2 + 1, dtype=torch.float64, device=device)[:-1],
             torch.linspace(0.9, 1.0, n3 + 1, dtype=torch.float64, device=device)]
    return torch.cat(parts).to(dtype=dtype)


def rbm_ais(W, b, c, betas, n_chains, base_visible_bias=None, seed=0, offset=0, *,
            _sample_layer=sample_layer):
    """AIS estimate of log Z and its standard error (see gmkernels.rbm_ais); float64 0-d each.
    (``_sample_layer``: the fused pass to use; the Triton backend passes its kernel.)

    >>> W = torch.linspace(-0.3, 0.3, 24, dtype=torch.float64).reshape(6, 4)
    >>> b, c = torch.zeros(6, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    >>> betas = gmkernels.ops.rbm.default_betas(300)
    >>> log_z, se = gmkernels.reference.rbm.rbm_ais(W, b, c, betas, 100, seed=0)
    >>> bool(abs(log_z - gmkernels.rbm_log_z_exact(W, b, c)) < 4 * se + 1e-3)
    True
    """
    nv, nh = W.shape
    bA = torch.zeros(nv, dtype=W.dtype, device=W.device) if base_visible_bias is None \
        else base_visible_bias.to(W.dtype)
    bt = [float(x) for x in betas]
    v, _ = _sample_layer(torch.zeros(n_chains, nv, dtype=W.dtype, device=W.device), bA, 1.0,
                        seed, offset)
    logw = torch.zeros(n_chains, dtype=torch.float64, device=W.device)
    db = b.double() - bA.double()
    for k in range(1, len(bt)):
        b1, b0 = bt[k], bt[k - 1]
        pre = v @ W
        if b1 != b0:
            x = pre.double() + c.double()
            logw = logw + (b1 - b0) * (v.double() @ db) + (softplus(x * b1) - softplus(x * b0)).sum(1)
        if k == len(bt) - 1:
            break
        h, _ = _sample_layer(pre, c, b1, seed, offset + 2 * k - 1)
        v, _ = _sample_layer(h @ W.t(), b, b1, seed, offset + 2 * k, base=bA)
    log_za = softplus(bA.double()).sum() + nh * math.log(2.0)
    mx = logw.max()
    w = torch.exp(logw - mx)
    log_z = torch.log(w.mean()) + mx + log_za
    se = w.std() / (w.mean() * math.sqrt(n_chains))
    return log_z, se


def rbm_fit_epoch_(W, b, c, vel_W, vel_b, vel_c, chains, data, perm, batch_size, k, persistent,
                   lr, momentum, weight_decay, seed=0, offset=0, *, gibbs=rbm_gibbs):
    """One epoch of CD-k / PCD-k updates, in place, as the C++ op ``rbm_fit_epoch_``
    (csrc/boltzmann/rbm_ops.h, rbm_fit_epoch_run): batch ``i`` is ``data[perm[i bs:(i+1) bs]]``
    and its k Gibbs steps run at stream position ``offset + 2 k i``. ``gibbs`` is the Gibbs
    sampler to use (this module's, or the Triton backend's). Returns the sum over the batches
    of the mean squared reconstruction error, a float64 0-d tensor.

    >>> g = torch.Generator().manual_seed(0)
    >>> W = 0.1 * torch.randn(6, 4, dtype=torch.float64, generator=g)
    >>> b, c = torch.zeros(6, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    >>> vel = [torch.zeros_like(t) for t in (W, b, c)]
    >>> data = (torch.rand(10, 6, generator=g) < 0.5).double()
    >>> err = gmkernels.reference.rbm.rbm_fit_epoch_(W, b, c, *vel, data[:4].clone(), data,
    ...     torch.randperm(10, generator=g), 4, 1, True, 0.1, 0.5, 0.0, seed=0)
    >>> err.dtype, err.dim()
    (torch.float64, 0)
    """
    N = data.shape[0]
    bs = min(batch_size, N)
    err = torch.zeros((), dtype=torch.float64, device=W.device)
    for i, s in enumerate(range(0, N, bs)):
        v = data[perm[s:s + bs]]
        ph = torch.sigmoid(v @ W + c)
        start = chains if persistent else v
        vk, _, pvk, _ = gibbs(start, W, b, c, k, 1.0, seed, offset + 2 * k * i, 0)
        if persistent:
            chains.copy_(vk)
        else:
            err += ((v - pvk) ** 2).mean()
        phk = torch.sigmoid(vk @ W + c)
        gW = v.t() @ ph / v.shape[0] - vk.t() @ phk / vk.shape[0] - weight_decay * W
        gb = v.mean(0) - vk.mean(0)
        gc = ph.mean(0) - phk.mean(0)
        for p, g, vl in zip((W, b, c), (gW, gb, gc), (vel_W, vel_b, vel_c)):
            vl.mul_(momentum).add_(g, alpha=lr)
            p.add_(vl)
        if persistent:
            err += ((v - torch.sigmoid(ph @ W.t() + b)) ** 2).mean()
    return err
