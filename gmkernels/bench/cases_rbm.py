"""Benchmark cases of the rbm family: k-step block Gibbs, AIS and exact log Z.

``rbm_gibbs``, k = 10 steps of a 784 x 500 RBM on B = 1024 chains (float32). Providers:

* ``eager``: the loop a user writes in plain PyTorch, one step =
  ``h = (torch.rand_like(ph) < (ph := torch.sigmoid(v @ W + c))).float()`` and the same for v;
* ``compile``: ``eager`` under ``torch.compile`` (the loop unrolled into one graph);
* ``gmkernels``: :func:`gmkernels.rbm_gibbs` (one op call; GEMMs by BLAS, one fused pass per
  half-step);
* ``floor``: the same GEMMs alone, ``torch.mm(v, W, out=...)`` / ``torch.mm(h, W.t(), out=...)``
  2k times into preallocated buffers: what any implementation that keeps BLAS must pay.

``rbm_ais`` and ``rbm_log_z_exact`` at their default sizes (gmkernels only; the quick suite
has smaller versions): AIS with 100 chains and 10000 betas on the 784 x 500 RBM; exact log Z
of a 784 x 20 RBM (2^20 hidden states).
"""

from __future__ import annotations

import itertools

import torch

from .. import rbm_ais, rbm_gibbs, rbm_log_z_exact
from .registry import Case, ProviderUnavailable, register, require_fused, warm_compile

SEED = 20240605
K = 10


def gibbs_eager(v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, k: int):
    """k block-Gibbs steps as written by hand in plain PyTorch."""
    for _ in range(k):
        ph = torch.sigmoid(v @ W + c)
        h = (torch.rand_like(ph) < ph).to(v.dtype)
        pv = torch.sigmoid(h @ W.t() + b)
        v = (torch.rand_like(pv) < pv).to(v.dtype)
    return v, h, pv, ph


def gibbs_eager_bernoulli(v, W, b, c, k: int):
    """The same loop with torch.bernoulli for the draws (timed in NOTES, not a registry
    provider: the registry's provider names are fixed)."""
    for _ in range(k):
        ph = torch.sigmoid(v @ W + c)
        h = torch.bernoulli(ph)
        pv = torch.sigmoid(h @ W.t() + b)
        v = torch.bernoulli(pv)
    return v, h, pv, ph


def _setup(case: Case, device: torch.device) -> dict:
    B, nv, nh = case.shape[:3]
    gen = torch.Generator(device="cpu").manual_seed(0)
    W = (torch.randn(nv, nh, generator=gen) * 0.05).to(case.dtype).to(device)
    b = (torch.randn(nv, generator=gen) * 0.1).to(case.dtype).to(device)
    c = (torch.randn(nh, generator=gen) * 0.1).to(case.dtype).to(device)
    v0 = (torch.rand(B, nv, generator=gen) < 0.5).to(case.dtype).to(device)
    return {"v0": v0, "W": W, "b": b, "c": c}


def _eager(inp):
    a = (inp["v0"], inp["W"], inp["b"], inp["c"])
    return lambda: gibbs_eager(*a, K)


def _compile(inp):
    return warm_compile(gibbs_eager, inp["v0"], inp["W"], inp["b"], inp["c"], K)


def _gmkernels(inp):
    v0, W, b, c = inp["v0"], inp["W"], inp["b"], inp["c"]
    require_fused("rbm_gibbs", v0.device)
    step = itertools.count()
    return lambda: rbm_gibbs(v0, W, b, c, K, seed=SEED, offset=2 * K * next(step))


def _floor(inp):
    v0, W = inp["v0"], inp["W"]
    h = torch.empty(v0.shape[0], W.shape[1], dtype=v0.dtype, device=v0.device)
    v = torch.empty_like(v0)
    Wt = W.t()

    def run():
        x = v0
        for _ in range(K):
            torch.mm(x, W, out=h)
            torch.mm(h, Wt, out=v)
            x = v
        return v
    return run


register(Case(family="rbm", op="rbm_gibbs", shape=(1024, 784, 500), dtype=torch.float32,
              setup=_setup,
              providers={"eager": _eager, "compile": _compile,
                         "gmkernels": _gmkernels, "floor": _floor},
              suites=frozenset({"quick", "full"}),
              note=f"shape = (chains, n_visible, n_hidden), k = {K} steps per call; floor = the "
                   f"{2 * K} GEMMs alone"))
register(Case(family="rbm", op="rbm_gibbs", shape=(64, 64, 32), dtype=torch.float32,
              setup=_setup,
              providers={"eager": _eager, "gmkernels": _gmkernels, "floor": _floor},
              suites=frozenset({"quick", "full"}),
              note="a small RBM (digits-sized): per-call overhead and the fused pass dominate"))


def _ais_provider(n_betas: int):
    def build(inp):
        W, b, c = inp["W"], inp["b"], inp["c"]
        require_fused("rbm_ais", W.device)
        return lambda: rbm_ais(W, b, c, n_chains=inp["v0"].shape[0], n_betas=n_betas, seed=SEED)
    # shape = (chains, n_visible, n_hidden, n_betas)
    return build


def _logz(inp):
    W, b, c = inp["W"], inp["b"], inp["c"]
    require_fused("rbm_log_z_exact", W.device)
    return lambda: rbm_log_z_exact(W, b, c)


register(Case(family="rbm", op="rbm_ais", shape=(100, 784, 500, 1000), dtype=torch.float32,
              setup=_setup, providers={"gmkernels": _ais_provider(1000)},
              suites=frozenset({"quick"}),
              note="quick: 100 chains, 1000 betas (the default is 10000: --full)"))
register(Case(family="rbm", op="rbm_ais", shape=(100, 784, 500, 10000), dtype=torch.float32,
              setup=_setup, providers={"gmkernels": _ais_provider(10000)},
              suites=frozenset({"full"}), note="defaults: 100 chains, 10000 betas"))
register(Case(family="rbm", op="rbm_log_z_exact", shape=(1, 784, 16), dtype=torch.float32,
              setup=_setup, providers={"gmkernels": _logz}, suites=frozenset({"quick"}),
              note="2^16 hidden states, float64 accumulation"))
register(Case(family="rbm", op="rbm_log_z_exact", shape=(1, 784, 20), dtype=torch.float32,
              setup=_setup, providers={"gmkernels": _logz}, suites=frozenset({"full"}),
              note="2^20 hidden states, float64 accumulation"))


# --------------------------------------------------------------------------------------------
# RBM.fit end to end: what a new user runs first (issue 10). The 8x8 digits of scikit-learn
# (1797 x 64, shipped with it: nothing downloads), binarised at 8/16; 64 hidden units, PCD-1,
# lr 0.05, batches of 20, 20 epochs, no momentum or weight decay (scikit-learn's BernoulliRBM
# has neither). One timed call = one whole fit from a fresh model.
FIT = dict(n_hidden=64, lr=0.05, batch_size=20, epochs=20)


def _digits(case: Case, device: torch.device) -> dict:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # scikit-learn is in requirements-dev.txt; a bare install lacks it
        raise ProviderUnavailable(f"scikit-learn is not installed ({e})") from e
    X = (load_digits().data / 16.0 > 0.5).astype("float32")
    return {"X": X, "data": torch.from_numpy(X).to(case.dtype).to(device)}


def fit_eager(data: torch.Tensor, n_hidden: int, lr: float, batch_size: int, epochs: int,
              generator: torch.Generator):
    """PCD-1 as a user writes it in plain PyTorch (torch.bernoulli draws, one Python iteration
    and ~20 tensor ops per batch)."""
    N, nv = data.shape
    W = 0.01 * torch.randn(nv, n_hidden, generator=generator).to(data)
    b, c = data.new_zeros(nv), data.new_zeros(n_hidden)
    chains = data[torch.randint(0, N, (batch_size,), generator=generator)].clone()
    for _ in range(epochs):
        perm = torch.randperm(N, generator=generator)
        for s in range(0, N, batch_size):
            v = data[perm[s:s + batch_size]]
            ph = torch.sigmoid(v @ W + c)
            h = torch.bernoulli(torch.sigmoid(chains @ W + c))
            chains = torch.bernoulli(torch.sigmoid(h @ W.t() + b))
            phk = torch.sigmoid(chains @ W + c)
            W += lr * (v.t() @ ph / v.shape[0] - chains.t() @ phk / chains.shape[0])
            b += lr * (v.mean(0) - chains.mean(0))
            c += lr * (ph.mean(0) - phk.mean(0))
    return W


def _fit_eager(inp, fit=FIT):
    data = inp["data"]
    gen = torch.Generator().manual_seed(SEED)
    return lambda: fit_eager(data, generator=gen, **fit)


def _fit_gmkernels(inp, fit=FIT):
    from ..boltzmann import RBM
    data = inp["data"]
    require_fused("rbm_fit_epoch_", data.device)
    seeds = itertools.count(SEED)

    def run():
        rbm = RBM(data.shape[1], fit["n_hidden"], dtype=data.dtype, device=data.device,
                  generator=torch.Generator().manual_seed(0))
        return rbm.fit(data, epochs=fit["epochs"], lr=fit["lr"], k=1, persistent=True,
                       batch_size=fit["batch_size"], momentum=0.0, seed=next(seeds))
    return run


def _fit_sklearn(inp):
    from sklearn.neural_network import BernoulliRBM
    X = inp["X"]
    seeds = itertools.count(SEED)
    return lambda: BernoulliRBM(n_components=FIT["n_hidden"], learning_rate=FIT["lr"],
                                batch_size=FIT["batch_size"], n_iter=FIT["epochs"],
                                random_state=next(seeds) % (1 << 31)).fit(X)


register(Case(family="rbm", op="RBM.fit", shape=(1797, 64, 64), dtype=torch.float32,
              setup=_digits,
              providers={"eager": _fit_eager, "gmkernels": _fit_gmkernels, "peer": _fit_sklearn},
              suites=frozenset({"quick", "full"}),
              note="a whole fit on the binarised 8x8 digits: (N, n_visible, n_hidden), PCD-1, "
                   "lr 0.05, batch 20, 20 epochs; peer = scikit-learn's BernoulliRBM (NumPy), "
                   "eager = the same loop in plain PyTorch; gmkernels = RBM.fit (one fused op "
                   "call per epoch)"))


# MNIST-sized: random binary data (N = 2000, 784 visible, p = 0.2), 500 hidden, PCD-1, batches of
# 100, one epoch per call. floor = the GEMMs one PCD-1 update needs (data and chain
# pre-activations, the Gibbs step's two, the two statistics, the reconstruction), into
# preallocated buffers, per batch: what any implementation that keeps BLAS must pay.
FIT_BIG = dict(n_hidden=500, lr=0.05, batch_size=100, epochs=1)


def _big_data(case: Case, device: torch.device) -> dict:
    N, nv = case.shape[:2]
    gen = torch.Generator().manual_seed(0)
    return {"data": (torch.rand(N, nv, generator=gen) < 0.2).to(case.dtype).to(device)}


def _fit_big_floor(inp):
    data = inp["data"]
    N, nv = data.shape
    nh, bs = FIT_BIG["n_hidden"], FIT_BIG["batch_size"]
    W = 0.01 * torch.randn(nv, nh, generator=torch.Generator().manual_seed(0)).to(data)
    h, hk = data.new_empty(bs, nh), data.new_empty(bs, nh)
    v, gW = data.new_empty(bs, nv), data.new_empty(nv, nh)
    Wt = W.t()

    def run():
        for s in range(0, N, bs):
            x = data[s:s + bs]
            torch.mm(x, W, out=h)       # data pre-activations
            torch.mm(x, W, out=hk)      # chain hidden half
            torch.mm(hk, Wt, out=v)     # chain visible half
            torch.mm(v, W, out=hk)      # chain statistics
            torch.mm(x.t(), h, out=gW)  # positive statistics
            torch.mm(v.t(), hk, out=gW)  # negative statistics
            torch.mm(h, Wt, out=v)      # reconstruction
        return gW
    return run


register(Case(family="rbm", op="RBM.fit", shape=(2000, 784, 500), dtype=torch.float32,
              setup=_big_data,
              providers={"eager": lambda inp: _fit_eager(inp, FIT_BIG),
                         "gmkernels": lambda inp: _fit_gmkernels(inp, FIT_BIG),
                         "floor": _fit_big_floor},
              suites=frozenset({"full"}),
              note="one epoch of PCD-1 on MNIST-sized random data, batches of 100; floor = the "
                   "7 GEMMs per batch alone"))
