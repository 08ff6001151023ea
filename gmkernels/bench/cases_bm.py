"""Benchmark cases of the bm family, the fully connected ±1 Boltzmann machine: ``bm_gibbs``,
B chains of D spins, ``n_sweeps`` sequential sweeps in one call.

The machine: Sherrington-Kirkpatrick couplings ``W = (A + Aᵀ)/2 / sqrt(D)``, ``A_ij ~ N(0, 1)``,
zero diagonal, ``b = 0``, ``β = 1``, chains from uniform random spins: a standard hard case
(T = 1 is the SK critical temperature), about a fifth to a third of the site updates flip.

Providers (the ``shape`` of a case is ``(B, D)``; every provider does the same n_sweeps, which
is 10 for the target case (B, D) = (1024, 256) and 1 for D = 1024, where the eager
loop takes seconds a sweep):

* ``eager``: :func:`gmkernels.reference.bm.bm_gibbs`, the plain-PyTorch loop over sweeps and
  sites, vectorized over the chains (per site: a column of the fields, a sigmoid, a compare,
  and ``h += delta[:, None] * W[i]``, an O(B D) update whether or not anything flipped); its
  uniforms come from the reference Philox (one (B, D) draw per sweep, a small share of the time);
* ``compile``: the same loop with the per-site update under ``torch.compile`` (the whole
  D x n_sweeps loop cannot be traced into one graph in reasonable time; the site index is passed
  as tensors so one graph serves all sites);
* ``gmkernels``: :func:`gmkernels.bm_gibbs`.

Expectations (written before measuring): one site update costs a Philox quarter-call, a
sigmoid and, when the spin flips (probability q), D multiply-adds on the chain's field vector
(2 flops and 8 bytes of W from L1/L2 per field in float32). At D = 256, q ≈ 0.3: ~80 fields
updated per site update, ~10 AVX2 FMA vectors, plus ~30 cycles for exp/Philox/branch: about
50-60 cycles per site update, so ~1e8 site updates/s per core and 1.5-2e8/s on 2 cores. The
eager loop does O(B D) memory work per site whatever flips: (1024 x 256 x 4 B) read + written
twice per site, ~0.3-0.5 ms per site, ~100 ms per sweep: the fused kernel should be ~50-100x
faster. At D = 1024 the kernel's per-flip work is 4x larger (and W, 4 MiB, leaves L2), so site
updates/s drop ~3-4x; the eager loop's per-site cost grows 4x too.
"""

from __future__ import annotations

import torch

from .. import bm_gibbs
from ..reference import bm as _ref
from ..reference import random as _rand
from .registry import Case, compiled, register, require_fused, warm_compile

SEED = 20240531


def _setup(case: Case, device: torch.device) -> dict:
    B, D = case.shape
    g = torch.Generator().manual_seed(0)
    A = torch.randn(D, D, generator=g, dtype=torch.float64)
    W = ((A + A.T) / 2 / D ** 0.5).to(case.dtype)
    W.fill_diagonal_(0)
    y = (torch.randint(0, 2, (B, D), generator=g) * 2 - 1).to(case.dtype)
    return {"y": y.to(device), "W": W.to(device), "b": torch.zeros(D, dtype=case.dtype, device=device),
            "n_sweeps": N_SWEEPS[case.shape]}


def _site(h, hi, yi, ui, w_row, beta):
    p = 1.0 / (1.0 + torch.exp(-(2.0 * (beta * hi))))
    yn = torch.where(ui < p, 1.0, -1.0).to(h.dtype)
    delta = torch.where(yn != yi, 2.0 * yn, torch.zeros_like(yn))
    return h + delta[:, None] * w_row[None, :], yn


def bm_gibbs_compiled_sites(y, W, b, n_sweeps, beta, seed, offset=0):
    """The reference loop with the per-site update compiled (the ``compile`` provider)."""
    site = compiled(_site)
    B, D = y.shape
    y = y.clone()
    h = torch.addmm(b, y, W)
    bt = torch.full((B,), float(beta), dtype=y.dtype, device=y.device)
    for s in range(n_sweeps):
        words = _rand.uint32((B, D), seed, offset + s, 0, device=y.device)
        u = ((words >> 8).to(y.dtype)) * 2.0 ** -24
        for j in range(D):
            h, yn = site(h, h[:, j], y[:, j], u[:, j], W[j], bt)
            y[:, j] = yn
    return y


def _eager(inp):
    y, W, b, n = inp["y"], inp["W"], inp["b"], inp["n_sweeps"]
    return lambda: _ref.bm_gibbs(y, W, b, n, 1.0, "sequential", SEED, 0, 0)


def _compile(inp):
    y, W, b, n = inp["y"], inp["W"], inp["b"], inp["n_sweeps"]
    # warm: compile the site update once (one graph: shapes do not depend on the site)
    warm_compile(_site, torch.addmm(b, y, W), y[:, 0], y[:, 0], y[:, 0], W[0],
                 torch.ones(y.shape[0], dtype=y.dtype, device=y.device))
    return lambda: bm_gibbs_compiled_sites(y, W, b, n, 1.0, SEED)


def _gmkernels(inp):
    y, W, b, n = inp["y"], inp["W"], inp["b"], inp["n_sweeps"]
    require_fused("bm_gibbs", y.device)
    step = iter(range(0, 1 << 62, n))  # a sampler gives each call its own offsets
    return lambda: bm_gibbs(y, W, b, n, seed=SEED, offset=next(step))


PROVIDERS = {"eager": _eager, "compile": _compile, "gmkernels": _gmkernels}

# n_sweeps per case shape (Case has no free-form field; the shape (B, D) keys it).
N_SWEEPS: dict[tuple[int, int], int] = {}


def _bm(B, D, n_sweeps, suites, note, providers=PROVIDERS):
    N_SWEEPS[(B, D)] = n_sweeps
    register(Case(family="bm", op="bm_gibbs", shape=(B, D), dtype=torch.float32,
                  setup=_setup, providers=providers, suites=frozenset(suites),
                  note=f"{n_sweeps} sequential sweeps, SK couplings at T = 1; {note}"))


# The targets: D = 256, B = 1024, 10 sweeps (>= 100x eager, >= 2e8 site updates/s) and
# D = 1024 (measured). The eager loop takes about 2 s per sweep at (1024, 256) here (a loaded
# 2-core machine), so the registered cases time ONE sweep per call for every provider (the ratio
# per sweep; gmkernels' per-call set-up, the checks and the field GEMM, is then counted once per
# sweep, which only lowers its ratio); the 10-sweep gmkernels time is in benchmarks/NOTES.md.
# The compile provider runs on the small full-suite case only (its per-site Python loop is as
# slow as eager's, and its first compile costs ~10 s).
_bm(1024, 256, 10, {"quick", "full"}, "target case, 10 sweeps per call (2.6e6 site updates)",
    providers={"eager": _eager, "gmkernels": _gmkernels})
_bm(1024, 1024, 1, {"full"}, "D = 1024, 1 sweep per call (1.0e6 site updates)",
    providers={"eager": _eager, "gmkernels": _gmkernels})
_bm(256, 64, 10, {"full"}, "small machine, 10 sweeps: per-call overhead visible")


# --------------------------------------------------------------------------------------------
# BoltzmannMachine.fit end to end (issue 10): the binarised 8x8 digits of scikit-learn as ±1
# spins (1797 x 64), 100 persistent chains, 1 sweep per batch, batches of 100, 5 epochs, lr
# 0.05, momentum 0.5. One timed call = one whole fit from a fresh model. eager = the same
# algorithm as a user writes it in plain PyTorch (the reference loop over sweeps and sites for
# the chains, then the moment updates; ~20 tensor ops per batch plus D per sweep).
BM_FIT = dict(n_chains=100, n_sweeps=1, batch_size=100, epochs=5, lr=0.05, momentum=0.5)


def _digit_spins(case: Case, device: torch.device) -> dict:
    from .cases_rbm import _digits
    return {"data": _digits(case, device)["data"] * 2 - 1}


def bm_fit_eager(data, n_chains, n_sweeps, batch_size, epochs, lr, momentum):
    N, D = data.shape
    g = torch.Generator().manual_seed(0)
    W, b = data.new_zeros(D, D), data.new_zeros(D)
    vW, vb = torch.zeros_like(W), torch.zeros_like(b)
    chains = data[torch.randint(0, N, (n_chains,), generator=g)].clone()
    sweep = 0
    for _ in range(epochs):
        perm = torch.randperm(N, generator=g)
        for s in range(0, N, batch_size):
            y = data[perm[s:s + batch_size]]
            chains = _ref.bm_gibbs(chains, W, b, n_sweeps, seed=1, offset=sweep)
            sweep += n_sweeps
            gW = y.T @ y / y.shape[0] - chains.T @ chains / n_chains
            gW.fill_diagonal_(0)
            vW.mul_(momentum).add_(gW)
            vb.mul_(momentum).add_(y.mean(0) - chains.mean(0))
            W += lr * vW
            b += lr * vb
            W.copy_((W + W.T) / 2)
    return W


def _bm_fit_eager(inp):
    data = inp["data"]
    return lambda: bm_fit_eager(data, **BM_FIT)


def _bm_fit_gmkernels(inp):
    from ..boltzmann import BoltzmannMachine
    data = inp["data"]
    require_fused("bm_fit_epoch_", data.device)

    def run():
        bm = BoltzmannMachine(data.shape[1], dtype=data.dtype, device=data.device)
        return bm.fit(data, seed=0, **BM_FIT)
    return run


register(Case(family="bm", op="BoltzmannMachine.fit", shape=(1797, 64), dtype=torch.float32,
              setup=_digit_spins, providers={"eager": _bm_fit_eager, "gmkernels": _bm_fit_gmkernels},
              suites=frozenset({"quick", "full"}),
              note="a whole fit on the binarised digits as ±1 spins: (N, D), 100 persistent "
                   "chains, 1 sweep per batch of 100, 5 epochs; gmkernels = BoltzmannMachine.fit "
                   "(one fused op call per epoch)"))
