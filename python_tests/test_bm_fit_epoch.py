"""The fused Boltzmann-machine training epoch (torch.ops.gmkernels.bm_fit_epoch_, the update
loop of BoltzmannMachine.fit): every backend against the Python loop of the reference
(gmkernels.reference.bm.bm_fit_epoch_) on fresh random data, with and without a permutation,
ragged last batches, both scan orders, lr decay, weight decay and D = 1, 2; the fit against the
loop it replaced; the in-place contract; opcheck."""

import pytest
import torch

import gmkernels
from gmkernels.boltzmann import BoltzmannMachine
from gmkernels.ops import bm as ops_bm
from gmkernels.reference import bm as ref
from _helpers import assert_close


def _problem(N, D, nc, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    A = 0.3 * torch.randn(D, D, generator=g, dtype=torch.float64)
    W = ((A + A.T) / 2).fill_diagonal_(0).to(dtype)
    b = (0.2 * torch.randn(D, generator=g, dtype=torch.float64)).to(dtype)
    data = (torch.randint(0, 2, (N, D), generator=g) * 2 - 1).to(dtype)
    chains = (torch.randint(0, 2, (nc, D), generator=g) * 2 - 1).to(dtype)
    perm = torch.randperm(N, generator=g)
    return W, b, data, chains, perm


# float64: the sweeps read fields computed by the same at::addmm on the same values, and a flip
# u < p can only differ where p lies within ~1e-16 of a uniform (see test_bm_ops.py), so the
# chains agree exactly and the parameters to rounding.
@pytest.mark.parametrize("N,bs,D,nc,sweeps,order,permuted,wd,decay", [
    (40, 8, 6, 10, 1, "sequential", True, 0.0, False),
    (37, 10, 5, 7, 2, "random", True, 0.01, True),     # ragged last batch, decay, random scan
    (12, 12, 3, 4, 1, "sequential", False, 0.0, True),  # full batch: no permutation
    (9, 4, 1, 3, 3, "sequential", True, 0.1, False),    # D = 1: W is 0, only b learns
    (15, 6, 2, 5, 1, "random", True, 0.0, False),       # D = 2
])
def test_epoch_matches_reference_loop(backend, N, bs, D, nc, sweeps, order, permuted, wd, decay):
    W, b, data, chains, perm = _problem(N, D, nc, seed=N + D)
    perm = perm if permuted else None
    got = [W.clone(), b.clone(), torch.zeros_like(W), torch.zeros_like(b), chains.clone()]
    want = [t.clone() for t in got]
    seed, offset, tau, t0 = 2**40 + 5, 9, 3.0, 4
    wg = ops_bm._fit_epoch(*got[:2], got[2:4], got[4], data, perm, bs, sweeps, order, 0.1, 0.5,
                           wd, decay, tau, t0, seed, offset)
    ww = ref.bm_fit_epoch_(*want, data, perm, bs, sweeps, order, 0.1, 0.5, wd, decay, tau, t0,
                           seed, offset)
    assert torch.equal(got[4], want[4]), f"{int((got[4] != want[4]).sum())} chain spins differ"
    for name, g_, w_ in zip(("W", "b", "vel_W", "vel_b"), got, want):
        assert_close(g_, w_, rtol=1e-12, atol=1e-13, what=name)
    assert_close(wg, ww, rtol=1e-12, atol=1e-13, what="per-batch moment mismatch")
    assert torch.equal(got[0], got[0].T) and not got[0].diagonal().any(), "W lost its symmetry"
    assert not torch.equal(got[1], b), "b did not move: the comparison is between no-ops"


def _fit_unfused(bm, data, *, epochs, lr, n_chains, n_sweeps, batch_size, weight_decay,
                 momentum, seed, order="sequential"):
    """BoltzmannMachine.fit's loop before the fusion (bm_gibbs and ~15 ATen calls from Python
    per batch, a host read per batch), with the same permutations and stream positions."""
    N = data.shape[0]
    bs = batch_size
    steps = (N + bs - 1) // bs
    gen = torch.Generator().manual_seed(seed % (1 << 63))
    idx = torch.randint(0, N, (n_chains,), generator=gen)
    chains = data[idx].clone()
    tau = max(1.0, epochs * steps / 10)
    W, b = bm.W, bm.b
    vW, vb = torch.zeros_like(W), torch.zeros_like(b)
    offset, t, history = 0, 0, []
    with torch.no_grad():
        for _ in range(epochs):
            perm = torch.randperm(N, generator=gen) if bs < N else None
            worst = 0.0
            for k in range(steps):
                batch = data if perm is None else data[perm[k * bs:(k + 1) * bs]]
                chains = gmkernels.bm_gibbs(chains, W, b, n_sweeps, order=order, seed=seed,
                                            offset=offset)
                offset += n_sweeps
                c_data = batch.T @ batch / batch.shape[0]
                c_model = chains.T @ chains / n_chains
                gW = c_data - c_model - weight_decay * W
                gW.fill_diagonal_(0)
                gb = batch.mean(0) - chains.mean(0)
                step = lr / (1 + t / tau)
                vW.mul_(momentum).add_(gW)
                vb.mul_(momentum).add_(gb)
                W.add_(step * vW)
                b.add_(step * vb)
                W.copy_((W + W.T) / 2)
                W.fill_diagonal_(0)
                worst = max(worst, float((c_data - c_model).abs().max()))
                t += 1
            history.append(worst)
    return history


def test_fit_equals_the_unfused_loop(device):
    g = torch.Generator().manual_seed(3)
    data = (torch.randint(0, 2, (50, 6), generator=g) * 2 - 1).double()
    kw = dict(epochs=3, lr=0.05, n_chains=20, n_sweeps=2, batch_size=16, weight_decay=1e-3,
              momentum=0.5)
    a = BoltzmannMachine(6, dtype=torch.float64)
    b_ = BoltzmannMachine(6, dtype=torch.float64)
    ha = a.fit(data, seed=77, lr_decay=True, **kw)
    hb = _fit_unfused(b_, data, seed=77, **kw)
    for name in ("W", "b"):
        assert_close(getattr(a, name).detach(), getattr(b_, name).detach(), rtol=1e-12,
                     atol=1e-13, what=name)
    assert_close(torch.tensor(ha), torch.tensor(hb), rtol=1e-12, atol=1e-13, what="history")
    assert int(a.stream[1]) == 2 * 4 * 3, int(a.stream[1])  # n_sweeps per batch, 4 batches


def test_inplace_contract_and_bad_arguments():
    W, b, data, chains, perm = _problem(20, 4, 5, seed=2)
    args = [W, b, torch.zeros_like(W), torch.zeros_like(b), chains]
    tail = [data, perm, 4, 1, 0, 0.1, 0.5, 0.0, False, 1.0, 0, 0, 0]
    before = [t._version for t in args]
    torch.ops.gmkernels.bm_fit_epoch_(*args, *tail)
    assert all(t._version > v for t, v in zip(args, before)), [t._version for t in args]
    with pytest.raises(RuntimeError, match="bm_fit_epoch_: b must not require grad"):
        torch.ops.gmkernels.bm_fit_epoch_(W, b.clone().requires_grad_(), *args[2:], *tail)
    bad = W.clone()
    bad[0, 1] += 1
    with pytest.raises(ValueError, match="W must be symmetric"):
        torch.ops.gmkernels.bm_fit_epoch_(bad, *args[1:], *tail)
    with pytest.raises(ValueError, match="perm must be None or an int64 permutation"):
        torch.ops.gmkernels.bm_fit_epoch_(*args, data, perm[:5], *tail[2:])
    with pytest.raises(ValueError, match="data must have shape"):
        torch.ops.gmkernels.bm_fit_epoch_(*args, data[:, :3], perm, *tail[2:])
    with pytest.raises(ValueError, match="must fit the stream"):
        torch.ops.gmkernels.bm_fit_epoch_(*args, *tail[:-1], -1)


def test_opcheck(device):
    W, b, data, chains, perm = _problem(12, 5, 4, seed=4)
    args = [t.to(device) for t in (W, b, torch.zeros_like(W), torch.zeros_like(b), chains, data,
                                   perm)]
    for p in (args[6], None):
        torch.library.opcheck(torch.ops.gmkernels.bm_fit_epoch_,
                              args[:6] + [p, 4, 1, 1, 0.1, 0.5, 0.01, True, 2.0, 3, 5, 6])
