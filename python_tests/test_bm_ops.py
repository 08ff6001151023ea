"""The fully connected ±1 Boltzmann machine (docs/spec.md §2.2): bm_gibbs on every backend against the
reference chain for chain, its stationary distribution and site rule against exact enumeration
(bm_exact), bad input, opcheck / torch.compile, and the BoltzmannMachine model."""

import itertools
import math

import pytest
import torch

import gmkernels
from gmkernels.boltzmann import BoltzmannMachine
from gmkernels.reference import bm as ref
from conftest import BACKEND_PARAMS
from _device import pair_id

scipy_stats = pytest.importorskip("scipy.stats")


def couplings(D, dtype=torch.float64, seed=0, scale=1.0, dyadic=False):
    """Symmetric W with a zero diagonal and b. dyadic: multiples of 1/8 in [-1/2, 1/2], so every
    field sum is exact in float32 and float64."""
    g = torch.Generator().manual_seed(seed)
    if dyadic:
        A = torch.randint(-4, 5, (D, D), generator=g).to(dtype) / 8
        b = torch.randint(-4, 5, (D,), generator=g).to(dtype) / 8
        W = torch.triu(A, 1)
        W = W + W.T
    else:
        A = torch.randn(D, D, generator=g, dtype=torch.float64) * scale
        W = ((A + A.T) / 2).to(dtype)
        b = (torch.randn(D, generator=g, dtype=torch.float64) * scale * 0.5).to(dtype)
    W.fill_diagonal_(0)
    return W, b


def spins(B, D, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (B, D), generator=g) * 2 - 1).to(dtype)


# --------------------------------------------------------------------------------------------
# Cross-backend chains, bit for bit.
#
# Why exact equality holds: the fields start from the same GEMM (torch.addmm on the CPU in every
# backend) and each flip adds 2 y_new W[i, :], a product that is exact (times +-2), so every
# field update is one IEEE rounding of the same operands in every backend (FMA or not). The only
# step that can differ is the sigmoid's exp (libm, Sleef, numpy differ in the last ulp): a
# decision u < σ(2βh) flips only if the 24-bit uniform u lies between the two backends' values
# of σ, i.e. with probability about 2^-24 per update in float32 (σ's ulp near 1 is 2^-24, the
# spacing of u) and about 2^-53 in float64. These tests make ~10^4 decisions with fixed seeds.

CASES = [(5, 8), (3, 13), (1, 1), (7, 4), (2, 17)]
# The Triton interpreter runs ~40 updates/s: it takes the dyadic machines and the small random
# ones; the native kernels (and the compiled Triton kernels on a GPU) cover every case.
CHAIN_CASES = [pytest.param(bk, B, D, dy, id=f"{pair_id(bk)}-{B}x{D}-{'dyadic' if dy else 'random_W'}")
               for bk in BACKEND_PARAMS for B, D in CASES for dy in (True, False)
               if not (bk[0] == "triton" and bk[1] == "cpu" and not dy and D > 8)]


@pytest.mark.parametrize("backend,B,D,dyadic", CHAIN_CASES, indirect=["backend"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("order", ["sequential", "random"])
def test_chains_match_reference(backend, B, D, dtype, order, dyadic):
    W, b = couplings(D, dtype, seed=D, dyadic=dyadic)
    y0 = spins(B, D, dtype)
    beta = torch.linspace(0.3, 1.5, B, dtype=dtype) if B > 2 else 0.7
    got = gmkernels.bm_gibbs(y0, W, b, 3, beta=beta, order=order, seed=2**40 + 5, offset=3,
                             sample_offset=2)
    want = ref.bm_gibbs(y0, W, b, 3, beta, order, 2**40 + 5, 3, 2)
    assert got.dtype == dtype and got.shape == (B, D) and got.is_contiguous()
    assert torch.equal(got, want), f"{(got != want).sum().item()} of {got.numel()} spins differ"
    assert torch.equal(y0, spins(B, D, dtype)), "the input was modified"


def test_backends_agree_on_a_larger_machine(device):
    """CPU kernel vs reference on D = 64, 256 chains, 3 sweeps (~50k decisions) in float32."""
    W, b = couplings(64, torch.float32, seed=3, scale=64 ** -0.5)
    y0 = spins(256, 64, torch.float32)
    got = gmkernels.bm_gibbs(y0, W, b, 3, beta=1.0, seed=11)
    want = ref.bm_gibbs(y0, W, b, 3, 1.0, "sequential", 11)
    assert torch.equal(got, want), f"{(got != want).any(1).sum().item()} of 256 chains differ"


def test_triton_and_native_same_chains(triton):
    W, b = couplings(19, torch.float32, seed=5)
    y0 = spins(9, 19, torch.float32)
    outs = {}
    for name in ("native", "triton", "reference"):
        with gmkernels.use_backend(name):
            outs[name] = gmkernels.bm_gibbs(y0, W, b, 3, beta=0.8, order="random", seed=99)
    assert torch.equal(outs["native"], outs["triton"])
    assert torch.equal(outs["native"], outs["reference"])


def test_stream_contract(backend):
    """Sweep s uses offset + s (1 + 2 sweeps = 3 sweeps), a chain alone with sample_offset=r is
    row r of the batch, and zero sweeps return a copy."""
    W, b = couplings(6, seed=2)
    y0 = spins(6, 6)
    # (Triton: one order; each interpreted call costs seconds, and both orders share the code.)
    for order in ("random",) if backend == "triton" else ("sequential", "random"):
        full = gmkernels.bm_gibbs(y0, W, b, 3, order=order, seed=7, offset=10)
        half = gmkernels.bm_gibbs(y0, W, b, 1, order=order, seed=7, offset=10)
        rest = gmkernels.bm_gibbs(half, W, b, 2, order=order, seed=7, offset=11)
        assert torch.equal(full, rest)
        one = gmkernels.bm_gibbs(y0[4:5], W, b, 3, order=order, seed=7, offset=10, sample_offset=4)
        assert torch.equal(one, full[4:5])
    z = gmkernels.bm_gibbs(y0, W, b, 0, seed=1)
    assert torch.equal(z, y0) and z.data_ptr() != y0.data_ptr()


def test_empty_and_non_contiguous(backend):
    W, b = couplings(6)
    assert gmkernels.bm_gibbs(torch.empty(0, 6, dtype=torch.float64), W, b, 3, seed=0).shape == (0, 6)
    e = gmkernels.bm_gibbs(torch.empty(4, 0, dtype=torch.float64), torch.empty(0, 0, dtype=torch.float64),
                           torch.empty(0, dtype=torch.float64), 3, seed=0)
    assert e.shape == (4, 0)
    yt = spins(6, 5).T  # (5, 6), non-contiguous
    Wt = W.T            # symmetric: same values, transposed strides
    assert not yt.is_contiguous()
    got = gmkernels.bm_gibbs(yt, Wt, b, 3, seed=4, order="random")
    want = ref.bm_gibbs(yt.contiguous(), W, b, 3, 1.0, "random", 4)
    assert torch.equal(got, want)


def test_seed_none_uses_torch_generator(device):
    W, b = couplings(8)
    y0 = spins(16, 8)
    torch.manual_seed(123)
    a = gmkernels.bm_gibbs(y0, W, b, 3)
    torch.manual_seed(123)
    c = gmkernels.bm_gibbs(y0, W, b, 3)
    g = torch.Generator().manual_seed(123)
    d = gmkernels.bm_gibbs(y0, W, b, 3, generator=g)
    assert torch.equal(a, c) and torch.equal(a, d)


@pytest.mark.parametrize("B,D", [(19, 21), (64, 64)])
def test_cpu_isa_paths_agree(B, D):
    """float32 sequential order on AVX2 runs 8 chains in lockstep (tiles of 8 chains, blocks of 8
    sites) with an exp-free decision: x = 2βh against a band around logit(u), the exact rule
    u < σ(x) inside the band (csrc/boltzmann/bm_avx2.h). It must give the chains of the baseline
    build (the per-chain scalar loop) bit for bit, tails included (B % 8 chains, D % 8 sites),
    and of the reference (up to the ~2^-24-per-update exp difference, see above). β spans 0
    (x = 0: the band around u = 1/2) to 6 (saturated σ). Inside the band (~1e-4 of the updates)
    the exact rule runs; that the band is wide enough is proved for every uniform by
    test_avx2_decision_band_is_exact, not here (outside ~1e-7 of σ(x) = u the approximate
    decision is already right, so a broken fallback would almost never show in a chain)."""
    W, b = couplings(D, torch.float32, seed=D + 1, scale=D ** -0.5)
    y0 = spins(B, D, torch.float32, seed=B)
    beta = torch.linspace(0.0, 6.0, B)
    best = gmkernels._C.set_cpu_isa("auto")
    order = ["baseline", "avx2", "avx512"]
    outs = {}
    try:
        for isa in order[: order.index(best) + 1]:
            assert gmkernels._C.set_cpu_isa(isa) == isa
            with gmkernels.use_backend("native"):
                outs[isa] = gmkernels.bm_gibbs(y0, W, b, 30, beta=beta, seed=2**33 + 7, offset=5)
    finally:
        gmkernels._C.set_cpu_isa("auto")
    for isa, out in outs.items():
        assert torch.equal(out, outs["baseline"]), \
            f"{isa}: {(out != outs['baseline']).sum().item()} spins differ from the baseline build"
    want = ref.bm_gibbs(y0, W, b, 30, beta, "sequential", 2**33 + 7, 5)
    assert torch.equal(outs["baseline"], want)


def test_avx2_decision_band_is_exact(tmp_path):
    """Builds and runs benchmarks/micro/bm_band_check.cpp: for all 2^24 uniforms u, the float32
    x just outside the AVX2 kernel's band around logit(u) must get the exact rule's decision
    (u < 1 / (1 + expf(-x)), monotone in x, so every x further out does too). ~3 s."""
    import os
    import platform
    import subprocess
    from pathlib import Path

    import gmkernels._C as C

    if platform.machine() not in ("x86_64", "AMD64") or C.set_cpu_isa("auto") == "baseline":
        pytest.skip("no AVX2 on this machine: the kernel never takes the banded path here")
    root = Path(__file__).resolve().parents[1]
    exe = tmp_path / "bm_band_check"
    cxx = os.environ.get("CXX", "c++")
    subprocess.run([cxx, "-O2", "-fno-math-errno", "-fno-trapping-math", "-I", str(root / "csrc"),
                    "-I", str(root / "csrc" / "include"),
                    str(root / "benchmarks" / "micro" / "bm_band_check.cpp"), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 failures" in out.stdout, out.stdout


# --------------------------------------------------------------------------------------------
# Statistics against exact enumeration.

def _state_index(y: torch.Tensor) -> torch.Tensor:
    """bm_exact's convention: bit i of the index is set iff y_i = +1."""
    D = y.shape[1]
    return (((y > 0).to(torch.int64)) << torch.arange(D)).sum(1)


def _tv_bound(p: torch.Tensor, N: int, fail: float = 1e-6) -> float:
    """Bound on TV(empirical, p) for N independent draws from p, exceeded with prob < fail:
    E[TV] = ½ Σ E|n_k/N - p_k| <= ½ Σ sqrt(p_k (1 - p_k) / N) (Jensen), and TV moves by at most
    1/N when one draw changes, so McDiarmid gives P(TV - E[TV] >= t) <= exp(-2 N t²), i.e.
    t = sqrt(ln(1/fail) / (2N))."""
    mean_bound = 0.5 * torch.sqrt(p * (1 - p) / N).sum().item()
    return mean_bound + math.sqrt(math.log(1 / fail) / (2 * N))


def _chi2_pvalue(counts: torch.Tensor, p: torch.Tensor) -> tuple[float, float, int]:
    """Pearson χ² of the counts against N p, states with N p < 5 pooled into one bin."""
    N = counts.sum().item()
    exp = p * N
    big = exp >= 5
    obs = torch.cat([counts[big].double(), counts[~big].double().sum().view(1)])
    e = torch.cat([exp[big], exp[~big].sum().view(1)])
    if e[-1] < 5:  # pool too small to be its own bin: merge it with the smallest big bin
        obs, e = obs[:-1].clone(), e[:-1].clone()
        j = int(torch.argmin(e))
        obs[j] += counts[~big].sum()
        e[j] += exp[~big].sum()
    x2 = float(((obs - e) ** 2 / e).sum())
    df = len(e) - 1
    return x2, float(scipy_stats.chi2.sf(x2, df)), df


@pytest.mark.parametrize("order", ["sequential", "random"])
@pytest.mark.parametrize("beta", [1.0, 0.4])
def test_stationary_distribution_matches_exact(device, order, beta):
    """D = 8 with random couplings: the final states of N independent chains (distinct rows of
    the stream, so independent) after a burn-in of 60 sweeps from uniform random spins are N
    independent draws from the chain's 60-step law; with couplings of this size (|W_ij| ~ 0.35,
    spectral gap of the sweep far above 0.1) 60 sweeps leave a bias far below the sampling error,
    so their histogram over the 256 states must pass TV and χ² tests against bm_exact."""
    D, N = 8, 20000
    W, b = couplings(D, torch.float64, seed=42, scale=0.5)
    ex = gmkernels.bm_exact(W, b, beta)
    y0 = spins(N, D, seed=9)
    y = gmkernels.bm_gibbs(y0, W, b, 60, beta=beta, order=order, seed=2024)
    counts = torch.bincount(_state_index(y), minlength=1 << D)
    emp = counts.double() / N
    tv = 0.5 * (emp - ex.probs).abs().sum().item()
    bound = _tv_bound(ex.probs, N)
    assert tv < bound, f"TV = {tv:.4f} >= bound {bound:.4f} (N = {N}, beta = {beta}, {order})"
    x2, pval, df = _chi2_pvalue(counts, ex.probs)
    assert pval > 1e-6, f"chi2 = {x2:.1f} on {df} df, p = {pval:.2e} (beta = {beta}, {order})"
    # a wrong rule (σ(βh) instead of σ(2βh)) is far outside these bounds:
    wrong = gmkernels.bm_exact(W, b, beta / 2).probs
    assert 0.5 * (emp - wrong).abs().sum().item() > bound


def test_triton_stationary_distribution(triton):
    """The same check on the Triton kernel (the interpreter here, compiled on a GPU) at one
    setting, with N = 3000 chains and 12 sweeps (the interpreter is slow; these weak couplings
    mix in a few sweeps, and the reference and native chains are tied to it bit for bit
    above)."""
    D, N = 8, 3000
    W, b = couplings(D, torch.float32, seed=42, scale=0.5)
    ex = gmkernels.bm_exact(W, b, 1.0)
    y0 = spins(N, D, torch.float32, seed=9)
    with gmkernels.use_backend("triton"):
        y = gmkernels.bm_gibbs(y0, W, b, 12, order="random", seed=77)
    emp = torch.bincount(_state_index(y), minlength=1 << D).double() / N
    tv = 0.5 * (emp - ex.probs).abs().sum().item()
    bound = _tv_bound(ex.probs, N)
    assert tv < bound, f"triton: TV = {tv:.4f} >= {bound:.4f}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_single_site_conditional(device, dtype):
    """One sweep from a fixed state: site 0 is updated first, given the initial state, so across
    N identical chains the fraction with y_0 = +1 estimates σ(2β h_0) exactly, h = Wy + b.
    Per-chain β in four groups of 10000 chains; each fraction must lie within 5 binomial standard
    errors sqrt(p(1-p)/n) of σ(2β h_0) (two-sided failure probability 6e-7 per group)."""
    D, n = 6, 10000
    W, b = couplings(D, dtype, seed=8)
    y_fixed = spins(1, D, dtype, seed=3)
    h0 = (W[0] @ y_fixed[0] + b[0]).double().item()
    betas = torch.tensor([0.0, 0.3, 1.0, 2.5], dtype=dtype)
    beta = betas.repeat_interleave(n)
    y = gmkernels.bm_gibbs(y_fixed.expand(4 * n, D), W, b, 1, beta=beta, seed=31)
    up = (y[:, 0] > 0).double().view(4, n).mean(1)
    for k, bt in enumerate(betas.tolist()):
        p = 1 / (1 + math.exp(-2 * bt * h0))
        se = math.sqrt(max(p * (1 - p), 1e-12) / n)
        assert abs(up[k].item() - p) <= 5 * se + 1e-12, (
            f"beta={bt}: P(y0=+1) empirical {up[k].item():.4f}, exact {p:.4f}, SE {se:.4f}")
    # the flip frequency of site 0 is the same statement: P(flip) = P(y0_new != y0_old)
    flips = (y[:, 0] != y_fixed[0, 0]).double().view(4, n).mean(1)
    p_up = torch.tensor([1 / (1 + math.exp(-2 * bt * h0)) for bt in betas.tolist()], dtype=torch.float64)
    want_flip = 1 - p_up if y_fixed[0, 0] > 0 else p_up
    assert torch.allclose(flips, want_flip, atol=5 * 0.005), (flips, want_flip)


def test_bm_exact_against_brute_force(device):
    D = 4
    W, b = couplings(D, seed=12)
    beta = 0.7
    ex = gmkernels.bm_exact(W, b, beta)
    weights, ys = [], []
    for k in range(1 << D):
        y = torch.tensor([1.0 if (k >> i) & 1 else -1.0 for i in range(D)], dtype=torch.float64)
        e = -0.5 * y @ W @ y - b @ y
        weights.append(math.exp(-beta * e.item()))
        ys.append(y)
    Z = sum(weights)
    p = torch.tensor(weights, dtype=torch.float64) / Z
    Y = torch.stack(ys)
    assert abs(ex.log_z.item() - math.log(Z)) < 1e-12
    assert torch.allclose(ex.probs, p, rtol=1e-12, atol=0)
    assert torch.allclose(ex.mean, p @ Y, atol=1e-12)
    assert torch.allclose(ex.second_moment, (Y * p[:, None]).T @ Y, atol=1e-12)
    assert torch.allclose(ex.second_moment.diagonal(), torch.ones(D, dtype=torch.float64))
    E = torch.tensor([(-0.5 * y @ W @ y - b @ y).item() for y in ys], dtype=torch.float64)
    assert abs(ex.mean_energy.item() - (p @ E).item()) < 1e-12
    # chunking does not change anything
    D2 = 12
    W2, b2 = couplings(D2, seed=1, scale=0.3)
    a = ref.bm_exact(W2, b2, 1.3, chunk=1 << 12)
    c = ref.bm_exact(W2, b2, 1.3, chunk=1 << 5)
    assert torch.allclose(a.log_z, c.log_z, rtol=1e-14) and torch.allclose(a.probs, c.probs, rtol=1e-12)


def test_bm_exact_limits():
    with pytest.raises(ValueError, match="D <= 20"):
        gmkernels.bm_exact(torch.zeros(21, 21), torch.zeros(21))
    with pytest.raises(ValueError, match="beta"):
        gmkernels.bm_exact(torch.zeros(3, 3), torch.zeros(3), beta=-1.0)
    ex = gmkernels.bm_exact(torch.zeros(3, 3), torch.zeros(3), beta=0.0)
    assert abs(ex.log_z.item() - 3 * math.log(2)) < 1e-12


# --------------------------------------------------------------------------------------------
# Bad input: each gets an error that names the argument.

def test_bad_input(backend):
    W, b = couplings(5)
    y = spins(4, 5)
    bad = [
        (dict(W=W + torch.triu(torch.ones(5, 5, dtype=torch.float64), 1) * 1e-3), "symmetric"),
        (dict(W=W + torch.eye(5, dtype=torch.float64)), "zero diagonal"),
        (dict(W=W.where(W == 0, torch.tensor(float("nan"), dtype=torch.float64))), "W must be finite"),
        (dict(y=y * 0.5), "y must hold spins"),
        (dict(y=torch.zeros(4, 5, dtype=torch.float64)), "y must hold spins"),
        (dict(y=y[:, :4]), "W must have shape"),
        (dict(y=y[0]), "y must be a"),
        (dict(b=b[:3]), "b must have shape"),
        (dict(b=b.float()), "dtype"),
        (dict(W=W.float()), "dtype"),
        (dict(y=y.long()), "float32 or float64"),
        (dict(n_sweeps=-1), "n_sweeps"),
        (dict(order="diagonal"), "order"),
        (dict(beta=-1.0), "beta"),
        (dict(beta=float("inf")), "beta"),
        (dict(beta=torch.ones(3, dtype=torch.float64)), "beta"),
        (dict(beta=torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=torch.float64)), "beta"),
        (dict(seed=-1), "seed"),
        (dict(sample_offset=2**32), "sample_offset"),
    ]
    for change, msg in bad:
        args = dict(y=y, W=W, b=b, n_sweeps=2, order="sequential", beta=1.0, seed=0, sample_offset=0)
        args.update(change)
        with pytest.raises((ValueError, TypeError, RuntimeError), match=msg):
            gmkernels.bm_gibbs(args["y"], args["W"], args["b"], args["n_sweeps"], beta=args["beta"],
                               order=args["order"], seed=args["seed"], sample_offset=args["sample_offset"])


def test_native_op_checks_values_itself(device):
    """torch.ops.gmkernels.bm_gibbs called directly (no Python wrapper) rejects bad values."""
    W, b = couplings(5)
    y = spins(4, 5)
    op = torch.ops.gmkernels.bm_gibbs
    with pytest.raises(ValueError, match="W must be symmetric"):
        op(y, W + torch.triu(torch.ones_like(W), 1), b, 1, None, 1.0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="zero diagonal"):
        op(y, W + torch.eye(5, dtype=W.dtype), b, 1, None, 1.0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="y must hold spins"):
        op(y * 2, W, b, 1, None, 1.0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="order"):
        op(y, W, b, 1, None, 1.0, 2, 0, 0, 0)
    with pytest.raises(ValueError, match="n_sweeps"):
        op(y, W, b, -2, None, 1.0, 0, 0, 0, 0)


# --------------------------------------------------------------------------------------------
# Dispatcher integration.

def test_opcheck(device):
    W, b = couplings(7, torch.float32)
    y = spins(5, 7, torch.float32)
    torch.library.opcheck(torch.ops.gmkernels.bm_gibbs, (y, W, b, 3, None, 0.9, 0, 5, 1, 0))
    torch.library.opcheck(torch.ops.gmkernels.bm_gibbs,
                          (y, W, b, 2, torch.rand(5), 1.0, 1, 5, 1, 3))


def test_torch_compile_fullgraph(device):
    W, b = couplings(9, torch.float32)
    y = spins(6, 9, torch.float32)

    def f(y, W, b):
        return gmkernels.bm_gibbs(y, W, b, 3, beta=0.5, order="random", seed=3, offset=1) * 2

    got = torch.compile(f, fullgraph=True)(y, W, b)
    assert torch.equal(got, f(y, W, b))


# --------------------------------------------------------------------------------------------
# The model layer.

def test_boltzmann_machine_fit_matches_data_moments():
    """Maximum likelihood for an exponential family matches the data's sufficient statistics:
    the fitted model's exact ⟨y_i y_j⟩ and ⟨y_i⟩ must equal the data's. Data: N = 5000 exact
    draws from a random D = 5 machine. The fit's residual error is the persistent chains' Monte
    Carlo noise in the last (small-step) updates: each model moment is estimated from 2000
    chains with SE <= 1/sqrt(2000) = 0.022 per step, and the decayed steps average it down,
    so 0.05 (over 2 per-step SEs) bounds the mismatch; the untrained machine (W = 0) misses the
    data correlations by over 0.25. Also, the MLE beats the true parameters on the training data,
    so the fitted log-likelihood must be at least the true one's minus a small slack."""
    D, N = 5, 5000
    Wt, bt = couplings(D, torch.float64, seed=21, scale=0.6)
    ex = gmkernels.bm_exact(Wt, bt)
    g = torch.Generator().manual_seed(0)
    idx = torch.multinomial(ex.probs, N, replacement=True, generator=g)
    data = ref.states(D)[idx]
    c_data = data.T @ data / N
    m_data = data.mean(0)
    assert (c_data - torch.eye(D, dtype=torch.float64)).abs().max() > 0.25
    bm = BoltzmannMachine(D, dtype=torch.float64)
    hist = bm.fit(data, epochs=300, lr=0.1, n_chains=2000, n_sweeps=1, seed=5)
    assert len(hist) == 300
    assert torch.equal(bm.W, bm.W.T) and bool((bm.W.diagonal() == 0).all())
    fx = bm.exact()
    err_c = (fx.second_moment - c_data).abs().max().item()
    err_m = (fx.mean - m_data).abs().max().item()
    assert err_c < 0.05 and err_m < 0.05, f"moment mismatch: corr {err_c:.4f}, mean {err_m:.4f}"
    ll_fit = bm.log_prob(data).mean().item()
    ll_true = (-ref.bm_energy(data, Wt, bt) - ex.log_z).mean().item()
    assert ll_fit > ll_true - 0.01, f"fitted log-lik {ll_fit:.4f} vs true {ll_true:.4f}"
    # samples from the fitted machine follow its exact distribution's moments
    y = bm.sample(4000, n_sweeps=30, seed=1)
    assert (y.mean(0) - fx.mean).abs().max() < 5 / math.sqrt(4000)


def test_boltzmann_machine_bad_input_and_state_dict():
    bm = BoltzmannMachine(4)
    with pytest.raises(ValueError, match="spins"):
        bm.fit(torch.zeros(10, 4), epochs=1)
    with pytest.raises(ValueError, match="data"):
        bm.fit(torch.ones(10, 3), epochs=1)
    bm.fit(torch.ones(10, 4), epochs=2, n_chains=8, seed=0)
    sd = bm.state_dict()
    bm2 = BoltzmannMachine(4)
    bm2.load_state_dict(sd)
    assert torch.equal(bm2.W, bm.W) and torch.equal(bm2.chains, bm.chains)
    assert torch.equal(bm2.stream, bm.stream)
