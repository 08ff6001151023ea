"""The fused RBM training epoch (torch.ops.gmkernels.rbm_fit_epoch_, RBM.fit's update loop):
every backend against the Python loop of the reference (gmkernels.reference.rbm.rbm_fit_epoch_)
on fresh random data, CD and PCD, ragged last batches, k > 1, weight decay; RBM.fit against
the same loop written out batch by batch with gmkernels.rbm_gibbs (the pre-fusion RBM.fit);
the in-place contract (version counters, requires-grad refused); opcheck."""

import pytest
import torch

import gmkernels
from gmkernels.boltzmann import RBM
from gmkernels.ops import rbm as ops_rbm
from gmkernels.reference import rbm as ref
from _helpers import assert_close


def _problem(N, nv, nh, nc, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    W = (0.3 * torch.randn(nv, nh, generator=g, dtype=torch.float64)).to(dtype)
    b = (0.2 * torch.randn(nv, generator=g, dtype=torch.float64)).to(dtype)
    c = (0.2 * torch.randn(nh, generator=g, dtype=torch.float64)).to(dtype)
    data = (torch.rand(N, nv, generator=g) < 0.4).to(dtype)
    chains = (torch.rand(nc, nv, generator=g) < 0.5).to(dtype)
    perm = torch.randperm(N, generator=g)
    return W, b, c, data, chains, perm


# float64: the GEMMs are the same at::mm calls and the sigmoids agree to an ulp, so a Bernoulli
# draw u < p flips only when p lies within ~1e-16 of a multiple of 2^-24 (see test_rbm_ops.py):
# the chains agree exactly and the parameters to rounding (1e-12 after the ~10 updates here).
@pytest.mark.parametrize("persistent", [True, False])
@pytest.mark.parametrize("N,bs,nv,nh,nc,k,wd", [
    (40, 8, 7, 5, 8, 1, 0.0),      # even batches
    (37, 10, 6, 9, 13, 2, 0.01),   # a ragged last batch, n_chains != batch_size, k = 2, decay
    (5, 64, 3, 2, 4, 1, 0.0),      # batch_size > N: one batch
    (23, 1, 1, 1, 1, 3, 0.1),      # one visible, one hidden unit, batches of one
])
def test_epoch_matches_reference_loop(backend, persistent, N, bs, nv, nh, nc, k, wd):
    W, b, c, data, chains, perm = _problem(N, nv, nh, nc, seed=N + nv)
    got = [t.clone() for t in (W, b, c)] + [torch.zeros_like(t) for t in (W, b, c)] + [chains.clone()]
    want = [t.clone() for t in got]
    seed, offset = 2**40 + 3, 17
    eg = ops_rbm._fit_epoch(*got[:3], got[3:6], got[6], data, perm, bs, k, persistent, 0.05,
                            0.5, wd, seed, offset)
    ew = ref.rbm_fit_epoch_(*want, data, perm, bs, k, persistent, 0.05, 0.5, wd, seed, offset)
    if persistent:
        assert torch.equal(got[6], want[6]), f"{int((got[6] != want[6]).sum())} chain states differ"
    for name, g_, w_ in zip(("W", "b", "c", "vel_W", "vel_b", "vel_c"), got, want):
        assert_close(g_, w_, rtol=1e-12, atol=1e-13, what=name)
    assert eg.dtype == torch.float64 and eg.dim() == 0, (eg.dtype, eg.shape)
    assert_close(eg, ew, rtol=1e-12, atol=1e-14, what="reconstruction error sum")
    # the update moved the parameters (the comparison above is not between two no-ops)
    assert not torch.equal(got[0], W)


def test_epoch_float32_close_to_reference():
    """float32: a draw may flip where |u - p| ~ 1 ulp, so hold the parameters to the size of
    one flip's effect on one update (lr / batch = 0.05 / 16 per entry) rather than exactly."""
    W, b, c, data, chains, perm = _problem(64, 12, 8, 16, seed=5, dtype=torch.float32)
    got = [t.clone() for t in (W, b, c)] + [torch.zeros_like(t) for t in (W, b, c)] + [chains.clone()]
    want = [t.clone() for t in got]
    ops_rbm._fit_epoch(*got[:3], got[3:6], got[6], data, perm, 16, 1, True, 0.05, 0.5, 0.0, 9, 0)
    ref.rbm_fit_epoch_(*want, data, perm, 16, 1, True, 0.05, 0.5, 0.0, 9, 0)
    for name, g_, w_ in zip(("W", "b", "c"), got, want):
        assert_close(g_, w_, rtol=0, atol=0.05 / 16 * 4 + 1e-5, what=name)


def _fit_unfused(rbm, data, *, epochs, lr, k, persistent, batch_size, weight_decay, momentum,
                 seed):
    """RBM.fit's loop as it was before the fusion (one rbm_gibbs call and ~25 ATen calls from
    Python per batch), with the same permutations and stream positions."""
    U64 = 1 << 64
    N = data.shape[0]
    perm_gen = torch.Generator().manual_seed(seed % (1 << 63))
    W, b, c = rbm.W, rbm.b, rbm.c
    chains = None
    if persistent:
        idx = torch.randint(0, N, (batch_size,), generator=perm_gen)
        chains = data[idx].clone()
    vel = [torch.zeros_like(p) for p in (W, b, c)]
    offset, history = 0, []
    with torch.no_grad():
        for _ in range(epochs):
            perm = torch.randperm(N, generator=perm_gen)
            err, nb = 0.0, 0
            for s in range(0, N, batch_size):
                v = data[perm[s:s + batch_size]]
                ph = torch.sigmoid(v @ W + c)
                start = chains if persistent else v
                vk, _, pvk, _ = gmkernels.rbm_gibbs(start, W, b, c, k, seed=seed, offset=offset % U64)
                offset += 2 * k
                if persistent:
                    chains = vk
                else:
                    err += float(((v - pvk) ** 2).mean())
                phk = torch.sigmoid(vk @ W + c)
                gW = v.t() @ ph / v.shape[0] - vk.t() @ phk / vk.shape[0] - weight_decay * W
                gb = v.mean(0) - vk.mean(0)
                gc = ph.mean(0) - phk.mean(0)
                for p, g, vl in zip((W, b, c), (gW, gb, gc), vel):
                    vl.mul_(momentum).add_(g, alpha=lr)
                    p.add_(vl)
                if persistent:
                    err += float(((v - torch.sigmoid(ph @ W.t() + b)) ** 2).mean())
                nb += 1
            history.append(err / nb)
    return history


@pytest.mark.parametrize("persistent", [True, False])
def test_fit_equals_the_unfused_loop(device, persistent):
    """RBM.fit (one fused op call per epoch) gives the parameters and history of the loop it
    replaced, in float64, over 3 epochs with a ragged last batch."""
    g = torch.Generator().manual_seed(11)
    data = (torch.rand(45, 10, generator=g) < 0.3).double()
    kw = dict(epochs=3, lr=0.05, k=2, persistent=persistent, batch_size=8, weight_decay=1e-3,
              momentum=0.5)
    a = RBM(10, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    b_ = RBM(10, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ha = a.fit(data, seed=123, **kw)
    hb = _fit_unfused(b_, data, seed=123, **kw)
    for name in ("W", "b", "c"):
        assert_close(getattr(a, name).detach(), getattr(b_, name).detach(), rtol=1e-12,
                     atol=1e-13, what=name)
    assert_close(torch.tensor(ha), torch.tensor(hb), rtol=1e-12, atol=1e-14, what="history")
    assert int(a.stream[1]) == 2 * 2 * 6 * 3, int(a.stream[1])  # 2k per batch, 6 batches, 3 epochs


def test_inplace_contract():
    W, b, c, data, chains, perm = _problem(20, 5, 4, 4, seed=2)
    args = [W, b, c] + [torch.zeros_like(t) for t in (W, b, c)] + [chains]
    before = [t._version for t in args]
    torch.ops.gmkernels.rbm_fit_epoch_(*args, data, perm, 4, 1, True, 0.1, 0.5, 0.0, 0, 0)
    assert all(t._version > v for t, v in zip(args, before)), [t._version for t in args]
    Wg = W.clone().requires_grad_()
    with pytest.raises(RuntimeError, match="rbm_fit_epoch_: W must not require grad"):
        torch.ops.gmkernels.rbm_fit_epoch_(Wg, *args[1:], data, perm, 4, 1, True, 0.1, 0.5, 0.0, 0, 0)
    with torch.no_grad():  # what RBM.fit does with its parameters
        torch.ops.gmkernels.rbm_fit_epoch_(Wg, *args[1:], data, perm, 4, 1, True, 0.1, 0.5, 0.0, 0, 0)


@pytest.mark.parametrize("change,match", [
    (dict(perm=torch.arange(19)), "perm must be an int64 permutation"),
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(k=0), "k must be >= 1"),
    (dict(chains=torch.zeros(4, 3, dtype=torch.float64)), "chains must have shape"),
    (dict(vel_W=torch.zeros(5, 4)), "vel_W must have the dtype of W"),
    (dict(offset=-1), r"<= 2\^64"),               # not even the first batch's 2k positions
    (dict(offset=-8), "batches must fit the stream"),  # 5 batches need 10 positions, 8 left
])
def test_op_refuses_bad_arguments(change, match):
    W, b, c, data, chains, perm = _problem(20, 5, 4, 4, seed=3)
    a = dict(W=W, b=b, c=c, vel_W=torch.zeros_like(W), vel_b=torch.zeros_like(b),
             vel_c=torch.zeros_like(c), chains=chains, data=data, perm=perm, batch_size=4, k=1,
             persistent=True, lr=0.1, momentum=0.5, weight_decay=0.0, seed=0, offset=0)
    a.update(change)
    with pytest.raises((ValueError, TypeError), match=match):
        torch.ops.gmkernels.rbm_fit_epoch_(*a.values())


def test_opcheck(device):
    W, b, c, data, chains, perm = _problem(12, 5, 4, 4, seed=4)
    perm = perm.to(device)
    args = [t.to(device) for t in (W, b, c)] + [torch.zeros_like(t).to(device) for t in (W, b, c)]
    args += [chains.to(device), data.to(device), perm, 4, 1, True, 0.1, 0.5, 0.01, 5, 6]
    torch.library.opcheck(torch.ops.gmkernels.rbm_fit_epoch_, args)
