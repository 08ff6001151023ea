"""The RBM ops (docs/spec.md §2.1) on every backend against the reference and against enumeration:
chains bit for bit, the stationary distribution, AIS vs exact log Z, free energy and its
gradients, opcheck, torch.compile, bad input."""

import itertools
import math

import pytest
import torch

import gmkernels
from gmkernels.reference import random as ref_random
from gmkernels.reference import rbm as ref
from _helpers import assert_close, noncontig


def make_rbm(nv, nh, dtype=torch.float64, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    W = (torch.randn(nv, nh, generator=g, dtype=torch.float64) * scale).to(dtype)
    b = (torch.randn(nv, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    c = (torch.randn(nh, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    return W, b, c


def bits(B, n, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, n, generator=g) < 0.5).to(dtype)


# ------------------------------------------------------------------------------------------
# chains: kernel vs reference
#
# In float64 every backend computes p = 1/(1 + exp(-z)) to within an ulp or two (libm, numpy,
# Triton's exp), and the GEMM is the same torch.mm / at::mm call on the same inputs, so u < p
# (u a multiple of 2^-24) can only flip when p lies within ~1e-16 of a multiple of 2^-24: a
# chance of ~1e-9 per draw. The chains are then equal bit for bit, step after step, and the
# tests require exactly that. In float32 that is not achievable: one ulp of p (6e-8 near 1/2)
# is the spacing of the uniforms, so the C++ polynomial exp and torch.exp disagree on u < p
# for a few draws in 10^7 or more, and from then on the chain differs. For float32 the tests
# hold the probabilities to float32 rounding and the samples equal wherever |u - p| > 1e-5.

SHAPES = [(33, 13, 7), (1, 6, 4), (0, 5, 3), (70, 130, 257), (5, 1, 1)]  # (B, nv, nh)


@pytest.mark.parametrize("B,nv,nh", SHAPES)
@pytest.mark.parametrize("k", [0, 1, 3])
def test_gibbs_matches_reference_float64(backend, B, nv, nh, k):
    W, b, c = make_rbm(nv, nh)
    v0 = bits(B, nv)
    got = gmkernels.rbm_gibbs(v0, W, b, c, k, seed=2**40 + 7, offset=11, sample_offset=3)
    want = ref.rbm_gibbs(v0, W, b, c, k, 1.0, 2**40 + 7, 11, 3)
    for name, g_, w_ in zip(("v_k", "h_k"), got[:2], want[:2]):
        assert torch.equal(g_, w_), f"{name}: {int((g_ != w_).sum())} of {g_.numel()} states differ"
    for name, g_, w_ in zip(("pv_k", "ph_k"), got[2:], want[2:]):
        assert_close(g_, w_, rtol=1e-13, atol=1e-15, what=name)


def test_gibbs_per_chain_beta_and_noncontiguous(backend):
    B, nv, nh = 37, 11, 9
    W, b, c = make_rbm(nv, nh, seed=3)
    Wt = noncontig(W)
    v0 = bits(nv, B).t()                  # non-contiguous v0 (its own draw of bits)
    beta = torch.rand(B, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 2
    got = gmkernels.rbm_gibbs(v0, Wt, b, c, 5, beta=beta, seed=9, offset=2**33 + 1)
    want = ref.rbm_gibbs(v0, W, b, c, 5, beta, 9, 2**33 + 1)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert_close(got[2], want[2], rtol=1e-13, atol=1e-15, what="pv_k")


@pytest.mark.parametrize("beta", [1.0, 0.37])
def test_gibbs_float32_close_to_reference(backend, beta):
    """float32: one half-step (k = 0). Probabilities to float32 rounding; samples equal except
    where the uniform lies within 1e-5 of p (see the comment above)."""
    B, nv, nh = 64, 50, 130
    W, b, c = make_rbm(nv, nh, torch.float32, seed=5, scale=0.5)
    v0 = bits(B, nv, torch.float32)
    v, h, pv, ph = gmkernels.rbm_gibbs(v0, W, b, c, 0, beta=beta, seed=1, offset=4)
    _, hr, _, phr = ref.rbm_gibbs(v0, W, b, c, 0, beta, 1, 4)
    assert torch.equal(v, v0) and torch.equal(pv, v0)
    assert_close(ph, phr, rtol=2e-6, atol=2e-7, what="ph")
    u = ref_random.uniform((B, nh), 1, 4, dtype=torch.float64)
    near = (u - phr.double()).abs() < 1e-5
    assert torch.equal(h[~near], hr[~near]), f"{int((h != hr)[~near].sum())} samples differ"


def test_gibbs_steps_compose_and_shard(device):
    """k steps at offset o == k one-step calls at o, o+2, ...; a shard with sample_offset
    reproduces its rows of the full batch."""
    W, b, c = make_rbm(9, 5, seed=6)
    v0 = bits(40, 9)
    full = gmkernels.rbm_gibbs(v0, W, b, c, 4, seed=3, offset=100)
    v = v0
    for s in range(4):
        v, h, pv, ph = gmkernels.rbm_gibbs(v, W, b, c, 1, seed=3, offset=100 + 2 * s)
    assert torch.equal(full[0], v) and torch.equal(full[1], h)
    shard = gmkernels.rbm_gibbs(v0[17:29], W, b, c, 4, seed=3, offset=100, sample_offset=17)
    # states bit for bit; probabilities to rounding (BLAS may block a 12-row GEMM differently)
    for a, s_ in zip(full[:2], shard[:2]):
        assert torch.equal(a[17:29], s_)
    for a, s_ in zip(full[2:], shard[2:]):
        assert torch.allclose(a[17:29], s_, rtol=1e-13, atol=1e-15)


def test_gibbs_seed_from_generator(device):
    W, b, c = make_rbm(6, 4)
    v0 = bits(8, 6)
    torch.manual_seed(123)
    a = gmkernels.rbm_gibbs(v0, W, b, c, 3)
    torch.manual_seed(123)
    bb = gmkernels.rbm_gibbs(v0, W, b, c, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, bb))
    g1 = torch.Generator().manual_seed(5)
    g2 = torch.Generator().manual_seed(5)
    assert torch.equal(gmkernels.rbm_gibbs(v0, W, b, c, 3, generator=g1)[0],
                       gmkernels.rbm_gibbs(v0, W, b, c, 3, generator=g2)[0])


# ------------------------------------------------------------------------------------------
# statistics against enumeration

def exact_visible(W, b, c, beta=1.0):
    """p(v) of all 2^nv visible states (row i = state with bits of i, unit 0 = lowest bit)."""
    nv = W.shape[0]
    idx = torch.arange(1 << nv).unsqueeze(1)
    V = ((idx >> torch.arange(nv)) & 1).double()
    logp = -beta * ref.rbm_free_energy(V, W, b, c)  # F is linear in (W, b, c): F_beta = beta F
    logp = beta * (V @ b) + ref.softplus(beta * (V @ W + c)).sum(1)
    return V, torch.softmax(logp, 0)


def gibbs_kernel_matrix(V, W, b, c, beta=1.0):
    """T[v, v'] = Σ_h p(h|v) p(v'|h) of one block-Gibbs step, by enumeration over h."""
    nh = W.shape[1]
    idx = torch.arange(1 << nh).unsqueeze(1)
    H = ((idx >> torch.arange(nh)) & 1).double()
    ph = torch.sigmoid(beta * (V @ W + c))                                   # (S, nh)
    p_h_given_v = (H.unsqueeze(0) * ph.unsqueeze(1) + (1 - H.unsqueeze(0)) * (1 - ph.unsqueeze(1))).prod(2)
    pv = torch.sigmoid(beta * (H @ W.t() + b))                               # (2^nh, nv)
    p_v_given_h = (V.unsqueeze(0) * pv.unsqueeze(1) + (1 - V.unsqueeze(0)) * (1 - pv.unsqueeze(1))).prod(2)
    return p_h_given_v @ p_v_given_h


def test_stationary_distribution_6x4(device):
    """N independent chains from uniform random bits, k steps each, vs the exact p(v) over all
    64 visible states; half the chains at beta = 1, half at beta = 0.6 (per-chain beta).

    Bound on the total variation TV = ½ Σ_v |p̂(v) - p(v)| of N i.i.d. samples from a law q:
      * E|p̂(v) - q(v)| <= sqrt(q(v)(1 - q(v)) / N)  (Jensen), so E[TV(p̂, q)] <= ½ Σ_v sqrt(q(1-q)/N);
      * one sample moves TV by at most 1/N, so by McDiarmid P(TV - E TV >= t) <= exp(-2 N t²);
        t = sqrt(ln(1e6) / (2N)) gives a false-failure rate below 1e-6;
      * the chains are independent (one per row) but start away from p: their law after k
        steps is q = p0 T^k with T the exact 64 x 64 Gibbs kernel (computed by enumeration),
        and TV(q, p) is added (the triangle inequality).
    """
    W, b, c = make_rbm(6, 4, seed=11, scale=1.0)
    V, _ = exact_visible(W, b, c)
    N, k = 20000, 30
    v0 = bits(2 * N, 6, seed=12)
    beta = torch.cat([torch.ones(N), torch.full((N,), 0.6)]).double()
    vk = gmkernels.rbm_gibbs(v0, W, b, c, k, beta=beta, seed=99)[0]
    codes = (vk * (1 << torch.arange(6)).double()).sum(1).long()
    p0 = torch.full((64,), 1 / 64, dtype=torch.float64)
    for half, bt in ((slice(0, N), 1.0), (slice(N, 2 * N), 0.6)):
        _, p = exact_visible(W, b, c, bt)
        q = p0 @ torch.linalg.matrix_power(gibbs_kernel_matrix(V, W, b, c, bt), k)
        emp = torch.bincount(codes[half], minlength=64).double() / N
        tv = 0.5 * (emp - p).abs().sum().item()
        mix = 0.5 * (q - p).abs().sum().item()
        bound = 0.5 * torch.sqrt(q * (1 - q) / N).sum().item() + math.sqrt(math.log(1e6) / (2 * N)) + mix
        assert tv < bound, f"beta={bt}: TV = {tv:.4f} >= bound {bound:.4f} (mixing term {mix:.2e})"
        # and the test can fail: a wrong law (beta swapped) is far outside the bound
        _, p_wrong = exact_visible(W, b, c, 1.6 - bt)
        assert 0.5 * (emp - p_wrong).abs().sum().item() > bound


# ------------------------------------------------------------------------------------------
# partition function and free energy

def brute_log_z(W, b, c):
    nv, nh = W.shape
    V = torch.tensor(list(itertools.product([0.0, 1.0], repeat=nv)), dtype=torch.float64)
    H = torch.tensor(list(itertools.product([0.0, 1.0], repeat=nh)), dtype=torch.float64)
    neg_e = (V @ b).unsqueeze(1) + (H @ c).unsqueeze(0) + V @ W.double() @ H.t()
    return torch.logsumexp(neg_e.flatten(), 0)


@pytest.mark.parametrize("nv,nh", [(5, 4), (3, 7), (6, 6), (1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_z_exact_vs_brute_force(device, nv, nh, dtype):
    W, b, c = make_rbm(nv, nh, dtype, seed=nv + nh)
    got = gmkernels.rbm_log_z_exact(W, b, c)
    want = brute_log_z(W.double(), b.double(), c.double())
    assert got.dtype == torch.float64 and got.shape == ()
    assert abs(got.item() - want.item()) < 1e-10 * max(1.0, abs(want.item())), (got.item(), want.item())


def test_log_z_exact_chunked_and_large_weights(device):
    """Several chunks (2^14 states x 600 others > the 2^22-value chunk) vs the one-shot
    reference; and weights large enough that a naive exp would overflow stay finite."""
    W, b, c = make_rbm(600, 14, seed=2, scale=0.3)
    got = gmkernels.rbm_log_z_exact(W, b, c)
    want = ref.rbm_log_z_exact(W, b, c)
    assert abs(got.item() - want.item()) < 1e-9 * abs(want.item()), (got.item(), want.item())
    W, b, c = make_rbm(8, 5, seed=3, scale=300.0)
    got = gmkernels.rbm_log_z_exact(W, b, c)
    assert math.isfinite(got.item())
    assert abs(got.item() - brute_log_z(W, b, c).item()) < 1e-9 * abs(got.item())


def brute_free_energy(v, W, b, c):
    nh = W.shape[1]
    H = torch.tensor(list(itertools.product([0.0, 1.0], repeat=nh)), dtype=torch.float64)
    neg_e = (v @ b).unsqueeze(1) + (H @ c).unsqueeze(0) + v @ W @ H.t()
    return -torch.logsumexp(neg_e, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_free_energy_vs_brute_force(device, dtype):
    W, b, c = make_rbm(7, 5, seed=8, scale=2.0)
    v = bits(19, 7)
    want = brute_free_energy(v, W, b, c)
    got = gmkernels.rbm_free_energy(v.to(dtype), W.to(dtype), b.to(dtype), c.to(dtype))
    assert got.dtype == dtype
    assert_close(got, want, kind="softplus_sum", dtype=dtype, check_dtype=False, what="free energy")
    # extreme pre-activations (|x| ~ 1e4) stay finite and exact
    big = gmkernels.rbm_free_energy(v, W * 1e4, b, c)
    assert torch.isfinite(big).all()
    assert torch.allclose(big, brute_free_energy(v, W * 1e4, b, c), rtol=1e-12)


@pytest.mark.parametrize("B", [0, 1, 23])
def test_free_energy_matches_reference_noncontiguous(device, B):
    W, b, c = make_rbm(13, 9, seed=9)
    v = bits(13, B).t()
    got = gmkernels.rbm_free_energy(v, noncontig(W), b, c)
    want = ref.rbm_free_energy(v, W, b, c)
    assert_close(got, want, rtol=1e-13, atol=1e-13, what="free energy")


def test_free_energy_gradients(device):
    W, b, c = make_rbm(6, 5, seed=10)
    v = torch.rand(7, 6, dtype=torch.float64)  # F is smooth in v: real-valued v for the v-gradient
    args = [t.clone().requires_grad_() for t in (v, W, b, c)]
    w = torch.randn(7, dtype=torch.float64)
    (gmkernels.rbm_free_energy(*args) * w).sum().backward()
    args_r = [t.clone().requires_grad_() for t in (v, W, b, c)]
    (ref.rbm_free_energy(*args_r) * w).sum().backward()
    for name, a, r in zip("vWbc", args, args_r):
        assert_close(a.grad, r.grad, rtol=1e-12, atol=1e-12, what=f"grad {name}")
    assert torch.autograd.gradcheck(gmkernels.rbm_free_energy,
                                    [t.clone().requires_grad_() for t in (v, W, b, c)])


# ------------------------------------------------------------------------------------------
# AIS

def test_ais_default_settings_12_hidden(device):
    """Default settings (100 chains, 10000 betas): within 3 SE and within 0.05 nats of the
    exact log Z on an RBM with 12 hidden units (and 20 visible)."""
    W, b, c = make_rbm(20, 12, seed=21, scale=0.7)
    exact = gmkernels.rbm_log_z_exact(W, b, c).item()
    est, se = gmkernels.rbm_ais(W, b, c, seed=5)
    est, se = est.item(), se.item()
    assert 0 < se < 0.05, se
    assert abs(est - exact) < 3 * se and abs(est - exact) < 0.05, \
        f"AIS {est:.4f} ± {se:.4f} vs exact {exact:.4f} (diff {est - exact:+.4f})"


def test_ais_float32_and_base_rate(device):
    W, b, c = make_rbm(16, 12, torch.float32, seed=22, scale=0.5)
    exact = gmkernels.rbm_log_z_exact(W, b, c).item()
    data = gmkernels.rbm_gibbs(bits(500, 16, torch.float32), W, b, c, 50, seed=1)[0]
    bA = gmkernels.ops.rbm.base_rate_visible_bias(data)
    est, se = gmkernels.rbm_ais(W, b, c, n_chains=200, n_betas=3000, base_visible_bias=bA, seed=6)
    assert abs(est.item() - exact) < 3 * se.item() + 1e-3, (est.item(), se.item(), exact)


def test_ais_matches_reference(backend):
    """Same seed, same chains: the estimate equals the reference's to float64 rounding."""
    W, b, c = make_rbm(10, 6, seed=23)
    betas = torch.linspace(0, 1, 12, dtype=torch.float64) ** 2
    bA = torch.randn(10, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.3
    got = gmkernels.rbm_ais(W, b, c, n_chains=16, betas=betas, base_visible_bias=bA, seed=3, offset=7)
    want = ref.rbm_ais(W, b, c, betas, 16, bA, 3, 7)
    for g_, w_ in zip(got, want):
        assert abs(g_.item() - w_.item()) < 1e-10, (g_.item(), w_.item())


# ------------------------------------------------------------------------------------------
# bad input

def test_bad_input():
    W, b, c = make_rbm(6, 4)
    v0 = bits(5, 6)
    cases = [
        (lambda: gmkernels.rbm_gibbs(v0, W, b, c, -1), ValueError, "k must be >= 0"),
        (lambda: gmkernels.rbm_gibbs(v0, W, b, c, 1.5), TypeError, "k must be an int"),
        (lambda: gmkernels.rbm_gibbs(bits(5, 7), W, b, c, 1), ValueError, "v0 must have shape"),
        (lambda: gmkernels.rbm_gibbs(v0, W, b[:5], c, 1), ValueError, "b must have shape"),
        (lambda: gmkernels.rbm_gibbs(v0, W, b, c[:3], 1), ValueError, "c must have shape"),
        (lambda: gmkernels.rbm_gibbs(v0, W[0], b, c, 1), ValueError, "W must be 2-D"),
        (lambda: gmkernels.rbm_gibbs(v0.float(), W, b, c, 1), TypeError, "v0 must have the dtype"),
        (lambda: gmkernels.rbm_gibbs(v0, W.half(), b, c, 1), TypeError, "W must be float32 or float64"),
        (lambda: gmkernels.rbm_gibbs(v0, W, b, c, 1, beta=torch.ones(4)), ValueError, "beta must be"),
        (lambda: gmkernels.rbm_gibbs(v0, W, b, c, 1, beta=float("nan")), ValueError, "beta must be finite"),
        (lambda: gmkernels.rbm_gibbs(v0, W, b, c, 1, seed=-1), ValueError, "seed"),
        (lambda: gmkernels.rbm_free_energy(bits(5, 3), W, b, c), ValueError, "v must have shape"),
        (lambda: gmkernels.rbm_log_z_exact(torch.zeros(40, 33, dtype=torch.float64),
                                           torch.zeros(40, dtype=torch.float64),
                                           torch.zeros(33, dtype=torch.float64)), ValueError, "<= 32"),
        (lambda: gmkernels.rbm_ais(W, b, c, n_chains=1), ValueError, "n_chains must be >= 2"),
        (lambda: gmkernels.rbm_ais(W, b, c, betas=torch.linspace(0.1, 1, 5)), ValueError, "start at 0"),
        (lambda: gmkernels.rbm_ais(W, b, c, betas=torch.tensor([0.0, 0.7, 0.5, 1.0])), ValueError,
         "nondecreasing"),
        (lambda: gmkernels.rbm_ais(W, b, c, base_visible_bias=torch.zeros(3)), ValueError,
         "base_visible_bias"),
    ]
    for fn, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fn()


def test_bad_input_reaches_the_kernel_checks(device):
    """The C++ checks name the argument too (for callers of torch.ops.gmkernels directly)."""
    W, b, c = make_rbm(6, 4)
    v0 = bits(5, 6)
    with pytest.raises(ValueError, match="k must be >= 0"):
        torch.ops.gmkernels.rbm_gibbs(v0, W, b, c, -2, None, 1.0, 0, 0, 0)
    with pytest.raises(ValueError, match="b must have shape"):
        torch.ops.gmkernels.rbm_gibbs(v0, W, c, c, 1, None, 1.0, 0, 0, 0)
    with pytest.raises(ValueError, match="beta must be a float or a per-sample tensor"):
        torch.ops.gmkernels.rbm_gibbs(v0, W, b, c, 1, torch.ones(3, dtype=torch.float64), 1.0, 0, 0, 0)
    with pytest.raises(ValueError, match="betas must start at 0"):
        torch.ops.gmkernels.rbm_ais(W, b, c, torch.tensor([0.5, 1.0]), 4, None, 0, 0)


# ------------------------------------------------------------------------------------------
# opcheck and torch.compile

def test_opcheck(device):
    W, b, c = make_rbm(7, 5)
    v0 = bits(6, 7)
    beta = torch.rand(6, dtype=torch.float64)
    for args in [(v0, W, b, c, 2, None, 1.0, 3, 4, 0), (v0, W, b, c, 0, beta, 1.0, 3, 4, 2)]:
        torch.library.opcheck(torch.ops.gmkernels.rbm_gibbs, args)
    torch.library.opcheck(torch.ops.gmkernels.rbm_free_energy,
                          (v0.requires_grad_(), W.requires_grad_(), b.requires_grad_(), c))
    torch.library.opcheck(torch.ops.gmkernels.rbm_free_energy_backward,
                          (torch.randn(6, dtype=torch.float64), v0.detach(), W.detach(), b.detach(), c))
    torch.library.opcheck(torch.ops.gmkernels.rbm_log_z_exact, (W.detach(), b.detach(), c))
    torch.library.opcheck(torch.ops.gmkernels.rbm_ais,
                          (W.detach(), b.detach(), c, torch.linspace(0, 1, 5, dtype=torch.float64),
                           4, None, 1, 0))


def test_compile_fullgraph_parity(device):
    W, b, c = make_rbm(9, 6, torch.float32, seed=30)
    v0 = bits(16, 9, torch.float32)
    Wg = W.clone().requires_grad_()

    def step(v0, W):
        v, h, pv, ph = gmkernels.rbm_gibbs(v0, W.detach(), b, c, 3, seed=4, offset=2)
        loss = gmkernels.rbm_free_energy(v0, W, b, c).mean() - gmkernels.rbm_free_energy(v, W, b, c).mean()
        return loss, v, ph

    loss_e, v_e, ph_e = step(v0, Wg)
    (gW_e,) = torch.autograd.grad(loss_e, Wg)
    compiled = torch.compile(step, fullgraph=True)
    loss_c, v_c, ph_c = compiled(v0, Wg)
    (gW_c,) = torch.autograd.grad(loss_c, Wg)
    assert torch.equal(v_c, v_e) and torch.allclose(ph_c, ph_e)
    assert torch.allclose(loss_c, loss_e, rtol=1e-5, atol=1e-5) and torch.allclose(gW_c, gW_e, rtol=1e-5, atol=1e-6)
