"""Langevin samplers (gmkernels.score.langevin): statistics against exact answers, and the
seed/offset/shape/argument contracts.

Statistical tests use fixed seeds (so they are deterministic) with tolerances k·SE derived
from the standard error of the statistic; every failure message prints the numbers.
"""

import math

import pytest
import torch

import gmkernels
from gmkernels.score import annealed_langevin_sample, langevin_sample, sgld_sample


# The statistical tests run a few hundred steps on tensors of 10^4-10^5 elements, where
# OpenMP's fork-join costs more than the work (conftest.one_thread: measured 4x slower on 2
# threads). The samplers' results do not depend on the thread count (counter-based Philox
# noise, element-wise math), so this changes the time, not what is tested.
pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------
# targets with closed-form scores

MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
SIGMA = torch.tensor([[1.0, 0.5], [0.5, 0.75]], dtype=torch.float64)   # eigenvalues 0.360, 1.390
PREC = torch.linalg.inv(SIGMA)


def gauss_score(x):
    """∇log N(x; MU, SIGMA) = -SIGMA^{-1}(x - MU), rows of x (B, 2)."""
    return (MU.to(x) - x) @ PREC.to(x)       # PREC is symmetric (.to(x): x's dtype and device)


def gauss_energy(x):
    """E(x) = ½ (x - MU)^T SIGMA^{-1} (x - MU) per row, so -∇E is gauss_score."""
    d = x - MU.to(x)
    return 0.5 * ((d @ PREC.to(x)) * d).sum(dim=1)


def ula_stationary_cov(eps):
    """Exact stationary covariance of ULA x' = x + ε s(x) + sqrt(2ε) ξ on N(μ, Σ).

    With e = x - μ and P = Σ^{-1}: e' = (I - εP) e + sqrt(2ε) ξ, so the stationary S solves
    S = (I - εP) S (I - εP) + 2ε I. Try S a function of P (so it commutes with P):
    S (2εP - ε²P²) = 2ε I, i.e. S = (P - εP²/2)^{-1} = Σ (I - εP/2)^{-1}. The Stein equation
    has a unique solution when the spectral radius of I - εP is < 1 (ε < 2 λ_min(Σ)), so this
    is it. The mean stays μ exactly. S - Σ = ε/2 I + O(ε²): the O(ε) bias of ULA.
    """
    return SIGMA @ torch.linalg.inv(torch.eye(2, dtype=torch.float64, device=PREC.device)
                                    - eps * PREC / 2)


def check_gaussian_moments(x, mean, cov, k, what):
    """Sample mean and covariance of x (n, 2) against (mean, cov) within k standard errors.

    For n iid N(m, S) samples: SE(mean_j) = sqrt(S_jj / n); the sample covariance entry has
    Var(ŝ_jk) = (S_jj S_kk + S_jk²) / n (Isserlis; the n-1 vs n correction is O(1/n) smaller).
    """
    x = x.double().cpu()  # the statistics on the host, beside mean and cov
    n = x.shape[0]
    m_hat, c_hat = x.mean(0), torch.cov(x.T)
    se_m = (torch.diagonal(cov) / n).sqrt()
    d = torch.diagonal(cov)
    se_c = ((torch.outer(d, d) + cov ** 2) / n).sqrt()
    z_m = (m_hat - mean) / se_m
    z_c = (c_hat - cov) / se_c
    z_sigma = (c_hat - SIGMA) / se_c             # for the record: distance to the exact target
    msg = (f"{what}: n={n}, k={k}\n mean {m_hat.tolist()} vs {mean.tolist()} (SE {se_m.tolist()}, "
           f"z {z_m.tolist()})\n cov {c_hat.tolist()} vs {cov.tolist()} (SE {se_c.tolist()}, "
           f"z {z_c.tolist()})\n z against Σ itself (no bias correction): {z_sigma.tolist()}")
    assert z_m.abs().max() < k and z_c.abs().max() < k, msg
    return z_m, z_c, z_sigma


# --------------------------------------------------------------------------------------------
# statistics

def test_langevin_gaussian_moments(device):
    # ULA on N(μ, Σ) with a non-diagonal Σ (eigenvalues 0.360 and 1.390), 20000 independent
    # chains started at 0 (far from μ = (1, -2) in Σ's metric), ε = 0.1, K = 150 steps.
    #
    # Mixing: the mean error contracts by (I - εP) per step, slowest factor 1 - ε/1.390 = 0.928:
    # after 150 steps |μ|·0.928^150 = 2.24 · 1.4e-5 = 3e-5, against SE(mean) ≈ 0.007; the
    # covariance transient decays as the square, 1.9e-10. So the final states are n iid draws
    # of the chain's stationary law, N(μ, S_ε) with S_ε from ula_stationary_cov.
    #
    # Bias: S_ε - Σ ≈ [[0.054, -0.003], [-0.003, 0.056]], which is 5.1 and 6.9 SE on the
    # variances at n = 20000: this test can tell S_ε from Σ, so it checks the a = ε,
    # c = sqrt(2ε) convention itself (c = sqrt(ε) would halve S; a biased noise would show).
    # Tolerance: k = 5 SE on each of 5 statistics (P(|Z| > 5) = 5.7e-7 each).
    n, eps, K = 20000, 0.1, 150
    x0 = torch.zeros(n, 2)
    x = langevin_sample(gauss_score, x0, K, eps, seed=1234)
    S = ula_stationary_cov(eps)
    z_m, z_c, z_sigma = check_gaussian_moments(x, MU, S, 5.0, "langevin_sample on N(μ, Σ)")
    print(f"langevin gaussian: z(mean) {z_m.tolist()}, z(cov vs S_eps) {z_c.tolist()}, "
          f"z(cov vs Sigma) {z_sigma.tolist()}")


def test_sgld_quadratic_energy_moments(device):
    # SGLD on E = ½ (x-μ)^T Σ^{-1} (x-μ) with the default noise: a = λ/2, c = sqrt(λ) is ULA
    # with ε = λ/2 on N(μ, Σ), so the stationary law is N(μ, S_{λ/2}) (ula_stationary_cov).
    # λ = 0.2 (ε = 0.1), K = 150, n = 10000: as in test_langevin_gaussian_moments the
    # transient is 3e-5 against SE(mean) ≈ 0.010; S_ε - Σ is 3.6 and 4.9 SE on the variances.
    # k = 5 SE.
    n, lam, K = 10000, 0.2, 150
    x0 = torch.zeros(n, 2)
    x = sgld_sample(gauss_energy, x0, K, lam, seed=99)
    S = ula_stationary_cov(lam / 2)
    z_m, z_c, z_sigma = check_gaussian_moments(x, MU, S, 5.0, "sgld_sample on a quadratic energy")
    print(f"sgld gaussian: z(mean) {z_m.tolist()}, z(cov vs S_eps) {z_c.tolist()}, "
          f"z(cov vs Sigma) {z_sigma.tolist()}")


def test_sgld_equals_langevin_with_half_step(device):
    # Same seed and offsets, so the same noise: SGLD(λ) on E is ULA(ε = λ/2) on -∇E. The
    # gradients differ only by float rounding (autograd vs the closed form), and the chain
    # contracts, so the paths agree to a few float32 ulps of |x| ≈ 3.
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    a = sgld_sample(gauss_energy, x0, 40, 0.2, seed=5, offset=11)
    b = langevin_sample(gauss_score, x0, 40, 0.1, seed=5, offset=11)
    assert torch.allclose(a, b, rtol=0, atol=1e-5), (a - b).abs().max().item()


# Two-component 1-D mixture 0.8·N(-4, 1) + 0.2·N(4, 1). Convolved with N(0, σ²) it stays a
# mixture with the same weights and variances 1 + σ², whose score is
#   s(x, σ) = Σ_k r_k(x) (m_k - x) / (1 + σ²),   r_k ∝ w_k N(x; m_k, 1 + σ²).
MIX_W = torch.tensor([0.8, 0.2])
MIX_M = torch.tensor([-4.0, 4.0])
MIX_S = 1.0


def mixture_score(x, sigma):
    v = MIX_S ** 2 + sigma ** 2
    logits = torch.log(MIX_W.to(x)) - (x - MIX_M.to(x)) ** 2 / (2 * v)  # (B, 2)
    r = torch.softmax(logits, dim=1)
    return (r * (MIX_M.to(x) - x)).sum(dim=1, keepdim=True) / v


def test_annealed_langevin_mixture_weights(device):
    # Annealed Langevin recovers the weights from a poor start: every chain starts in the
    # *minor* mode (x0 ~ N(4, 1)). Plain Langevin from there keeps them (measured, n = 10^4,
    # 1000 steps on the σ = 0.3 score: 98.5% still nearest the minor mode with ε = 0.0135,
    # 91% with ε = 0.1; from uniform noise on [-8, 8]: 48% / 46%, by basin of attraction, not
    # 20%), because the barrier between modes 8 apart is ~8 nats high. The large σ's melt it.
    #
    # Settings: σ geometric 10 -> 0.3 (σ_1 ≈ the distance between modes, Song & Ermon 2020),
    # L = 20 levels, T = 50 steps each, ε = 0.6 σ_L² so α_i = 0.6 σ_i².
    # Statistic: f = fraction of samples nearer the minor component (x > 0); for n iid draws
    # SE = sqrt(w (1 - w) / n) = sqrt(0.16 / 10000) = 0.004; tolerance k = 5 SE = 0.020.
    # Systematic part, measured (3 other seeds, n = 20000 each): f = 0.2054-0.2068, mean
    # 0.2061, so a bias ≈ 0.006 = 1.5 SE here, leaving 3.5 SE of room. It belongs to the
    # algorithm, not the code: chains stop crossing between modes ("freeze") at a level where
    # the noised components still overlap, and ULA widens each level by O(α). It shrinks only
    # slowly with more time (measured: 10 x 100 steps, α = 0.3 σ²: 0.2116; 10 x 200: 0.2061;
    # 20 x 100, α = 0.6 σ²: 0.2056; α = σ², 20 x 50: 0.2108, the ULA bias taking over).
    n = 10000
    sigmas = torch.logspace(1, math.log10(0.3), 20).tolist()
    x0 = 4.0 + gmkernels.random.normal((n, 1), seed=7)
    x = annealed_langevin_sample(mixture_score, x0, sigmas, n_steps_each=50, eps=0.6 * 0.3 ** 2,
                                 seed=2024)
    w = MIX_W[1].item()
    f = (x[:, 0] > 0).double().mean().item()
    se = math.sqrt(w * (1 - w) / n)
    k = 5.0
    left = x[x[:, 0] < 0, 0].double()
    msg = (f"annealed Langevin: fraction nearer the minor mode {f:.4f} vs weight {w:.4f} "
           f"(SE {se:.4f}, z {(f - w) / se:+.2f}, tolerance {k * se:.4f}); major mode: mean "
           f"{left.mean().item():.4f}, variance {left.var().item():.4f}")
    print(msg)
    assert abs(f - w) < k * se, msg
    # and the samples are sharp: the major mode is N(-4, 1 + 0.3²) = N(-4, 1.09) up to ULA's
    # O(α) widening and the last levels' incomplete relaxation (measured: variance 1.10-1.13);
    # loose bounds, 0.05 on the mean (SE 0.012) and 10% on the variance (SE 1.6%).
    assert abs(left.mean().item() + 4) < 0.05 and abs(left.var().item() / 1.09 - 1) < 0.1, msg


# --------------------------------------------------------------------------------------------
# clamp

def test_sgld_clamp_keeps_samples_in_range(device):
    # a linear energy pushes every chain up (its autograd gradient is an expanded constant);
    # the clamp must hold it in [-1, 1] at every step, with noise on.
    x0 = torch.rand(500, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    energy = lambda x: -3.0 * x.sum()
    x, traj = sgld_sample(energy, x0, 30, 0.1, noise_scale=0.3, clamp=(-1.0, 1.0), seed=3,
                          return_trajectory=True)
    assert traj[1:].min() >= -1.0 and traj[1:].max() <= 1.0, (traj.min().item(), traj.max().item())
    assert (x == 1.0).float().mean() > 0.5        # the push is 0.3 per step against noise 0.3


def test_langevin_clamp(device):
    x0 = torch.zeros(200, 2)
    x = langevin_sample(lambda x: torch.full_like(x, 50.0), x0, 5, 0.1, seed=0, clamp=(-0.5, 0.25))
    assert x.min() >= -0.5 and x.max() <= 0.25 and torch.all(x == 0.25)


# --------------------------------------------------------------------------------------------
# reproducibility and the offset contract

def _score3(x):
    return -x


def _score3s(x, sigma):
    return -x / (1 + sigma * sigma)


def _energy3(x):
    return 0.5 * (x ** 2).flatten(1).sum(1)


SAMPLERS = {
    "langevin": lambda x0, **kw: langevin_sample(_score3, x0, 7, 0.05, **kw),
    "annealed": lambda x0, **kw: annealed_langevin_sample(_score3s, x0, [2.0, 1.0, 0.5],
                                                          n_steps_each=3, eps=0.01, **kw),
    "sgld": lambda x0, **kw: sgld_sample(_energy3, x0, 7, 0.05, **kw),
}


def _x0(shape=(6, 3, 2)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(42))


@pytest.mark.parametrize("name", SAMPLERS)
def test_seed_reproducibility(device, name):
    run = SAMPLERS[name]
    x0 = _x0()
    a, b = run(x0, seed=17), run(x0, seed=17)
    assert torch.equal(a, b)
    assert not torch.equal(a, run(x0, seed=18))
    assert not torch.equal(a, run(x0, seed=17, offset=1))
    torch.manual_seed(0)
    c = run(x0)
    torch.manual_seed(0)
    d = run(x0)
    assert torch.equal(c, d)
    # the seed is drawn once, at the start, from the default generator
    torch.manual_seed(0)
    s = gmkernels.random.resolve_seed(None)
    assert torch.equal(c, run(x0, seed=s))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(run(x0, generator=g1), run(x0, generator=g2))


@pytest.mark.parametrize("name", SAMPLERS)
def test_x0_not_modified_and_trajectory(device, name):
    run = SAMPLERS[name]
    x0 = _x0((3, 6, 2)).transpose(1, 2)          # (3, 2, 6), non-contiguous
    keep = x0.clone()
    x, traj = run(x0, seed=1, return_trajectory=True)
    assert torch.equal(x0, keep)
    steps = 9 if name == "annealed" else 7
    assert traj.shape == (steps + 1, 3, 2, 6)
    assert x.shape == x0.shape and x.dtype == x0.dtype
    assert torch.equal(traj[0], x0) and torch.equal(traj[-1], x)
    assert torch.equal(x, run(x0, seed=1))
    assert not x.requires_grad


@pytest.mark.parametrize("name", SAMPLERS)
def test_sample_offset_shards(device, name):
    run = SAMPLERS[name]
    x0 = _x0()
    full = run(x0, seed=8)
    assert torch.equal(run(x0[2:], seed=8, sample_offset=2), full[2:])


def test_langevin_offset_per_step(device):
    # step k uses offset + k: 4 + 3 steps continued from the end equal 7 steps at once
    x0 = _x0()
    full = langevin_sample(_score3, x0, 7, 0.05, seed=4, offset=10)
    part = langevin_sample(_score3, x0, 4, 0.05, seed=4, offset=10)
    part = langevin_sample(_score3, part, 3, 0.05, seed=4, offset=14)
    assert torch.equal(full, part)
    # and one step is the fused op with a = ε, c = sqrt(2ε)
    one = langevin_sample(_score3, x0, 1, 0.05, seed=4, offset=10)
    ref = gmkernels.langevin_step(x0, -x0, 0.05, math.sqrt(0.1), seed=4, offset=10)
    assert torch.equal(one, ref)


def test_sgld_offset_and_noise_scale(device):
    x0 = _x0()
    one = sgld_sample(_energy3, x0, 1, 0.2, noise_scale=0.05, seed=4, offset=3)
    ref = gmkernels.langevin_step(x0, -x0, 0.1, 0.05, seed=4, offset=3)
    assert torch.allclose(one, ref, rtol=0, atol=1e-6)
    # noise_scale = 0 is gradient descent: x <- (1 - λ/2) x
    gd = sgld_sample(_energy3, x0, 5, 0.2, noise_scale=0.0, seed=4)
    assert torch.allclose(gd, x0 * 0.9 ** 5, rtol=1e-5, atol=1e-6)


def test_annealed_levels_and_global_offsets(device):
    # level i, step t: a = α_i/2, c = sqrt(α_i), α_i = ε σ_i²/σ_L², offset + i T + t; so the run
    # is L plain Langevin runs with ε_i = α_i / 2 chained at offsets offset + i T.
    sig, T, eps, off = [3.0, 1.5, 0.5], 4, 0.01, 100
    x0 = _x0()
    got = annealed_langevin_sample(_score3s, x0, sig, n_steps_each=T, eps=eps, seed=6, offset=off)
    x = x0
    for i, s in enumerate(sig):
        alpha = eps * s * s / sig[-1] ** 2
        x = langevin_sample(lambda y, s=s: _score3s(y, s), x, T, alpha / 2, seed=6,
                            offset=off + i * T)
    assert torch.equal(got, x)
    # sigmas as a tensor are the same levels
    got_t = annealed_langevin_sample(_score3s, x0, torch.tensor(sig), n_steps_each=T, eps=eps,
                                     seed=6, offset=off)
    assert torch.equal(got, got_t)


def test_annealed_denoise(device):
    sig = [2.0, 1.0, 0.5]
    x0 = _x0()
    plain = annealed_langevin_sample(_score3s, x0, sig, n_steps_each=3, eps=0.01, seed=2)
    den, traj = annealed_langevin_sample(_score3s, x0, sig, n_steps_each=3, eps=0.01, seed=2,
                                         denoise=True, return_trajectory=True)
    assert torch.allclose(den, plain + 0.25 * _score3s(plain, 0.5))
    assert traj.shape == (3 * 3 + 2, *x0.shape)
    assert torch.equal(traj[-2], plain) and torch.equal(traj[-1], den)


def test_per_sample_step_and_zero_steps(device):
    x0 = _x0()
    a = langevin_sample(_score3, x0, 5, 0.05, seed=1)
    b = langevin_sample(_score3, x0, 5, torch.full((6,), 0.05), seed=1)
    assert torch.allclose(a, b, rtol=0, atol=1e-6)
    z, traj = langevin_sample(_score3, x0, 0, 0.05, seed=1, return_trajectory=True)
    assert torch.equal(z, x0) and z is not x0 and traj.shape == (1, *x0.shape)


def test_float64_and_no_grad_context(device):
    x0 = _x0().double()
    with torch.no_grad():                     # sgld enables grad for its own gradient
        x = sgld_sample(_energy3, x0, 3, 0.1, seed=0)
    assert x.dtype == torch.float64
    y = langevin_sample(_score3, x0, 3, 0.05, seed=0)    # ε = λ/2
    assert torch.allclose(x, y)


# --------------------------------------------------------------------------------------------
# argument checks

S_ARGS = dict(seed=0)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: langevin_sample(_score3, _x0(), -1, 0.1, **S_ARGS), ValueError, "n_steps must be >= 0"),
    (lambda: langevin_sample(_score3, _x0(), 2.0, 0.1, **S_ARGS), TypeError, "n_steps must be an int"),
    (lambda: langevin_sample(_score3, _x0(), True, 0.1, **S_ARGS), TypeError, "n_steps must be an int"),
    (lambda: langevin_sample(_score3, _x0(), 2, 0.0, **S_ARGS), ValueError, "step_size must be finite and > 0"),
    (lambda: langevin_sample(_score3, _x0(), 2, float("nan"), **S_ARGS), ValueError, "step_size"),
    (lambda: langevin_sample(_score3, _x0(), 2, torch.tensor([0.1, -0.1, 0.1, 0.1, 0.1, 0.1]), **S_ARGS),
     ValueError, "every step_size must be finite and > 0"),
    (lambda: langevin_sample(_score3, _x0(), 2, torch.full((5,), 0.1), **S_ARGS), ValueError,
     r"step_size must be a float or a per-sample tensor of shape \(6,\)"),
    (lambda: langevin_sample(_score3, _x0(), 2, "0.1", **S_ARGS), TypeError, "step_size must be a float"),
    (lambda: langevin_sample(_score3, torch.zeros(4, dtype=torch.long), 2, 0.1, **S_ARGS), TypeError,
     "x0 must be a floating-point tensor"),
    (lambda: langevin_sample(_score3, torch.tensor(1.0), 2, 0.1, **S_ARGS), ValueError, "x0 must have a batch"),
    (lambda: langevin_sample(lambda x: x[:, :1], _x0(), 2, 0.1, **S_ARGS), ValueError,
     "score_fn must return a tensor of x's shape"),
    (lambda: langevin_sample(lambda x: x.double(), _x0(), 2, 0.1, **S_ARGS), ValueError, "score_fn must return"),
    (lambda: langevin_sample(_score3, _x0(), 2, 0.1, clamp=(1.0, -1.0), **S_ARGS), ValueError, "clamp"),
    (lambda: langevin_sample(_score3, _x0(), 2, 0.1, seed=0, offset=-1), ValueError, "offset"),
    (lambda: langevin_sample(_score3, _x0(), 2, 0.1, seed=0, offset=2 ** 64 - 1), ValueError,
     "offset \\+ number of steps"),
    (lambda: annealed_langevin_sample(_score3s, _x0(), [1.0, 2.0], **S_ARGS), ValueError, "strictly decreasing"),
    (lambda: annealed_langevin_sample(_score3s, _x0(), [1.0, 1.0], **S_ARGS), ValueError, "strictly decreasing"),
    (lambda: annealed_langevin_sample(_score3s, _x0(), [1.0, -0.5], **S_ARGS), ValueError, "sigmas must be finite and > 0"),
    (lambda: annealed_langevin_sample(_score3s, _x0(), [], **S_ARGS), ValueError, "at least one noise level"),
    (lambda: annealed_langevin_sample(_score3s, _x0(), torch.ones(2, 2), **S_ARGS), ValueError, "sigmas must be 1-D"),
    (lambda: annealed_langevin_sample(_score3s, _x0(), [1.0], eps=0.0, **S_ARGS), ValueError, "eps must be finite and > 0"),
    (lambda: annealed_langevin_sample(_score3s, _x0(), [1.0], n_steps_each=-2, **S_ARGS), ValueError,
     "n_steps_each must be >= 0"),
    (lambda: annealed_langevin_sample(lambda x, s: x[:1], _x0(), [1.0], n_steps_each=1, **S_ARGS), ValueError,
     "score_fn must return"),
    (lambda: sgld_sample(_energy3, _x0(), 2, -0.1, **S_ARGS), ValueError, "step_size must be finite and > 0"),
    (lambda: sgld_sample(_energy3, _x0(), 2, 0.1, noise_scale=-1.0, **S_ARGS), ValueError,
     "noise_scale must be finite and >= 0"),
    (lambda: sgld_sample(lambda x: _energy3(x).detach(), _x0(), 2, 0.1, **S_ARGS), ValueError,
     "energy_fn must return a tensor computed from x with autograd"),
    (lambda: sgld_sample(lambda x: torch.zeros(6, requires_grad=True), _x0(), 2, 0.1, **S_ARGS), ValueError,
     "energy_fn must return a tensor computed from x, got one that does not depend on x"),
    (lambda: sgld_sample(lambda x: 1.0, _x0(), 2, 0.1, **S_ARGS), TypeError, "energy_fn must return a tensor"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
