"""Score-based SDE samplers (gmkernels.score.sample, ddpm_sample), the forward SDEs and the
denoising score matching loss, checked statistically against exact answers.

Statistical tests use fixed seeds (so they are deterministic) and tolerances of k standard
errors, the SE derived in each test's comment; failure messages print the numbers. They run on
the default backend (native when built).
"""

import math

import pytest
import torch

import gmkernels
from gmkernels.score import (DDPMSchedule, VESDE, VPSDE, subVPSDE, ddpm_sample,
                             denoising_score_matching_loss, sample)


# Sampler steps on (4000, 2) tensors: OpenMP fork-join costs more than the work on the 2-core
# dev box (conftest.one_thread); results do not depend on the thread count.
pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------
# Ornstein-Uhlenbeck with the generic Euler-Maruyama step

def test_ornstein_uhlenbeck_euler_maruyama_moments_and_bias():
    # dx = -θ x dt + σ dw, x(0) = x0, T = 1: exact law N(x0 e^{-θT}, σ²(1 - e^{-2θT}) / (2θ)).
    # EM with step h is the AR(1) chain x' = (1 - θh) x + σ sqrt(h) ξ, whose law after K = T/h
    # steps is exactly N(x0 ρ^K, σ² h (1 - ρ^{2K}) / (1 - ρ²)), ρ = 1 - θh. So we check
    # (a) the sample mean and variance of n·d iid scalars against the EM law: SE(mean) =
    #     sqrt(v/N), SE(var) = v sqrt(2/(N-1)) (normal data), k = 5 on each of 8 statistics;
    # (b) the weak error against the exact SDE law, x0 (ρ^K - e^{-θT}) = -0.173, -0.084,
    #     -0.041, -0.021 for h = 0.2, 0.1, 0.05, 0.025 (O(h)), is seen: the empirical |mean
    #     error| decreases with h and is > 10 SE at h = 0.2 (predicted 70 SE).
    theta, sigma, x0, T = 2.0, 1.0, 3.0, 1.0
    n, d = 20000, 2
    N = n * d
    m_exact = x0 * math.exp(-theta * T)
    v_exact = sigma ** 2 * (1 - math.exp(-2 * theta * T)) / (2 * theta)
    errs = []
    for h in (0.2, 0.1, 0.05, 0.025):
        K = round(T / h)
        x = torch.full((n, d), x0, dtype=torch.float64)
        for k in range(K):
            x = gmkernels.euler_maruyama_step(x, -theta * x, sigma, h, seed=11, offset=k)
        rho = 1 - theta * h
        m_em = x0 * rho ** K
        v_em = sigma ** 2 * h * (1 - rho ** (2 * K)) / (1 - rho ** 2)
        m_hat, v_hat = x.mean().item(), x.var().item()
        z_m = (m_hat - m_em) / math.sqrt(v_em / N)
        z_v = (v_hat - v_em) / (v_em * math.sqrt(2 / (N - 1)))
        msg = (f"h={h}: mean {m_hat:.5f} vs EM law {m_em:.5f} (z {z_m:.2f}), var {v_hat:.5f} vs "
               f"{v_em:.5f} (z {z_v:.2f}); exact SDE law mean {m_exact:.5f}, var {v_exact:.5f}")
        print(msg)
        assert abs(z_m) < 5 and abs(z_v) < 5, msg
        errs.append((abs(m_hat - m_exact), math.sqrt(v_em / N)))
    assert all(a[0] > b[0] for a, b in zip(errs, errs[1:])), f"|mean error| by h: {errs}"
    assert errs[0][0] > 10 * errs[0][1], f"the O(h) bias at h = 0.2 is not visible: {errs[0]}"


# --------------------------------------------------------------------------------------------
# a 2-D Gaussian mixture whose perturbed scores are known in closed form

W = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
M = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
S = torch.tensor([0.5, 0.4, 0.6], dtype=torch.float64)          # isotropic component stds


def perturbed(sde, t):
    """(a, v): x_t = a x_0 + sqrt(v) z, per row of t (B,)."""
    t = t.double()
    mean_coef, std = sde.marginal_prob(torch.ones_like(t), t)
    return mean_coef, std ** 2


def mixture_score(sde):
    """∇log p_t for p_0 = Σ w_k N(m_k, s_k² I): p_t = Σ w_k N(a m_k, (a² s_k² + v) I)."""
    def score(x, t):
        a, v = perturbed(sde, t)
        mu = a[:, None, None] * M[None]                          # (B, K, 2)
        var = a[:, None] ** 2 * S[None] ** 2 + v[:, None]        # (B, K)
        dlt = x.double()[:, None, :] - mu
        logp = torch.log(W)[None] - (dlt * dlt).sum(-1) / (2 * var) - torch.log(var)
        r = torch.softmax(logp, dim=1)
        return (-(r[..., None] * dlt / var[..., None]).sum(1)).to(x.dtype)
    return score


def mixture_z_scores(x):
    """z-scores of the recovered weights, means and covariances, (3, 6) rows per component:
    [weight, mean_x, mean_y, var_x, var_y, cov_xy]. Samples go to the nearest mean (the modes
    are >= 4.2 apart and s_k <= 0.6: a misassignment needs a > 3.5 s deviation, rate < 3e-4).
    SEs for n samples, n_k in component k: weight sqrt(w(1-w)/n) (binomial); mean s_k/sqrt(n_k);
    variance s_k² sqrt(2/n_k) and covariance s_k²/sqrt(n_k) (Isserlis, normal data)."""
    x = x.double()
    n = x.shape[0]
    k = torch.cdist(x, M).argmin(1)
    rows = []
    for j in range(3):
        xk = x[k == j]
        nk, w, s2 = xk.shape[0], W[j].item(), S[j].item() ** 2
        c = torch.cov(xk.T)
        rows.append([(nk / n - w) / math.sqrt(w * (1 - w) / n)]
                    + ((xk.mean(0) - M[j]) / math.sqrt(s2 / nk)).tolist()
                    + ((torch.diagonal(c) - s2) / (s2 * math.sqrt(2 / nk))).tolist()
                    + [c[0, 1].item() / (s2 / math.sqrt(nk))])
    return torch.tensor(rows)


# Each sampler is checked on 18 statistics at k = 5 SE (P(|Z| > 5) = 5.7e-7 each; 8 samplers:
# a family-wise false alarm rate ~1e-4 for an exact sampler). The step counts keep the
# discretization bias well inside that (measured, n = 4000, seeds 1 and 2: max |z| <= 2.8 for
# EM, reverse diffusion and PC with 500 steps; the probability-flow ODE, which cannot forget
# an initial error, had max |z| 5.3 / 3.7 / 2.3 / 2.0 at 250 / 500 / 1000 / 2000 steps, so it
# gets 1000). sigma_max = 50 for VE: with sigma_max = 10 the prior N(0, 100 I) misses p_1's
# mean (-0.6, 0.6) by 0.06 sd, which the deterministic ODE carries to the samples (z 5.3).
SAMPLERS = {
    "euler_maruyama": (500, dict()),
    "reverse_diffusion": (500, dict(predictor="reverse_diffusion")),
    "pc": (500, dict(corrector="langevin", snr=0.16)),
    "probability_flow": (1000, dict(probability_flow=True)),
}
N_MIX = 4000


@pytest.mark.parametrize("sde_name", ["ve", "vp"])
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_sample_recovers_gaussian_mixture(sde_name, sampler):
    sde = VESDE(0.01, 50.0) if sde_name == "ve" else VPSDE(0.1, 20.0)
    n_steps, kw = SAMPLERS[sampler]
    x = sample(mixture_score(sde), sde, (N_MIX, 2), n_steps=n_steps, seed=1, **kw)
    assert x.shape == (N_MIX, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    z = mixture_z_scores(x)
    msg = (f"{sde_name} {sampler}: z-scores per component [w, mean_x, mean_y, var_x, var_y, "
           f"cov_xy]:\n{z}")
    print(msg)
    assert z.abs().max() < 5, msg


# --------------------------------------------------------------------------------------------
# DDPM with the exact noise predictor of Gaussian data

@pytest.mark.parametrize("sigma", ["beta", "posterior"])
def test_ddpm_sample_gaussian_data(sigma):
    # Data N(m, diag(s²)). x_t = sqrt(ᾱ) x_0 + sqrt(1-ᾱ) ε, so E[ε | x_t] = sqrt(1-ᾱ)(x_t -
    # sqrt(ᾱ) m) / (ᾱ s² + 1 - ᾱ), linear in x_t: each ancestral step is x' = A x + b + σ_t ξ
    # per coordinate and the sampler's output law is exactly N(μ_0, v_0) from μ' = A μ + b,
    # v' = A² v + σ_t² starting at N(0, 1). We check (a) samples against that law (SE as in
    # the OU test, k = 5 on 4 statistics) and (b) that law against the data: with T = 1000 the
    # recursion's mean is m to < 1e-3 and its variance s² within 3% (computed: -0.0/+0.3%
    # for sigma="beta", -1.6%/-0.7% for "posterior", whose smaller noise undershoots).
    sched = DDPMSchedule.linear(1000, sigma=sigma)
    m = torch.tensor([0.5, -1.0], dtype=torch.float64)
    s2 = torch.tensor([0.25, 2.25], dtype=torch.float64)

    def eps_fn(x, t):
        ab = sched.alphas_cumprod[t.cpu()].to(torch.float64)[:, None]
        return (torch.sqrt(1 - ab) * (x.double() - torch.sqrt(ab) * m) / (ab * s2 + 1 - ab)).to(x.dtype)

    mu, v = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    for t in range(sched.T - 1, -1, -1):
        a, ab = sched.alphas[t], sched.alphas_cumprod[t]
        cx, ce = 1 / math.sqrt(a), (1 - a) / math.sqrt((1 - ab) * a)
        k = math.sqrt(1 - ab) / (ab * s2 + 1 - ab)
        A, b = cx - ce * k, ce * k * math.sqrt(ab) * m
        mu, v = A * mu + b, A * A * v + (sched.sigmas[t] ** 2 if t > 0 else 0.0)
    law_msg = f"recursion law mean {mu.tolist()} var {v.tolist()} vs data {m.tolist()} {s2.tolist()}"
    assert (mu - m).abs().max() < 1e-3 and ((v / s2 - 1).abs().max() < 0.03), law_msg

    n = 20000
    print(law_msg)
    x = ddpm_sample(eps_fn, sched, (n, 2), seed=5, dtype=torch.float64)
    z_m = (x.mean(0) - mu) / torch.sqrt(v / n)
    z_v = (x.var(0) - v) / (v * math.sqrt(2 / (n - 1)))
    msg = f"ddpm ({sigma}): z(mean) {z_m.tolist()}, z(var) {z_v.tolist()}; {law_msg}"
    print(msg)
    assert z_m.abs().max() < 5 and z_v.abs().max() < 5, msg


# --------------------------------------------------------------------------------------------
# SDE objects, loss, reproducibility, bad input

@pytest.mark.parametrize("sde", [VESDE(0.01, 50.0), VPSDE(0.1, 20.0), subVPSDE(0.1, 20.0)])
def test_sde_objects(sde):
    x0 = torch.randn(6, 3, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64)
    xt, z = sde.perturb(x0, t, seed=3, offset=2)
    mean, std = sde.marginal_prob(x0, t)
    assert torch.allclose(xt, mean + std * z)
    assert torch.equal(z, gmkernels.random.normal(x0.shape, 3, 2, dtype=torch.float64))
    f, g = sde.sde(x0, t)
    assert f.shape == x0.shape
    # the marginal variance solves dV/dt = 2 c V + g² for f = c x (x0 = 0; VE's V = σ(t)²)
    eps = 1e-6
    var = lambda u: sde.marginal_prob(torch.zeros(6, 1, dtype=torch.float64), u)[1].reshape(-1) ** 2  # noqa: E731
    dV = (var(t + eps) - var(t - eps)) / (2 * eps)
    c = f[:, :1] / x0[:, :1] if sde.kind != "ve" else torch.zeros(6, 1, dtype=torch.float64)
    rhs = 2 * c.reshape(-1) * var(t) + g.reshape(-1) ** 2
    assert torch.allclose(dV, rhs, rtol=1e-5, atol=1e-6), (dV, rhs)
    p = sde.prior_sampling((5, 2), seed=1)
    assert p.shape == (5, 2) and torch.allclose(p, sde.prior_std() * gmkernels.random.normal((5, 2), 1))


def test_denoising_score_matching_loss():
    x = torch.randn(64, 2, dtype=torch.float64)
    sde = VESDE(0.01, 10.0)
    model = torch.nn.Linear(2, 2).double()
    score_fn = lambda xt, t: model(xt) / sde.sigma(t)[:, None]  # noqa: E731
    loss = denoising_score_matching_loss(score_fn, x, sde, seed=7, eps=1e-5)
    # by hand from the documented stream positions
    u = gmkernels.random.uniform((64,), 7, 0, dtype=torch.float64)
    t = 1e-5 + (1 - 1e-5) * u
    z = gmkernels.random.normal(x.shape, 7, 1, dtype=torch.float64)
    sig = sde.sigma(t)[:, None]
    want = ((score_fn(x + sig * z, t) * sig + z) ** 2).sum(1).mean()
    assert torch.allclose(loss, want), (loss, want)
    loss.backward()
    assert model.weight.grad is not None and torch.isfinite(model.weight.grad).all()
    # NCSN form with a list of sigmas, unweighted
    sigmas = torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64)
    l2 = denoising_score_matching_loss(lambda xt, s: -xt, x, sigmas, weighting="none", seed=2)
    u = gmkernels.random.uniform((64,), 2, 0, dtype=torch.float64)
    sg = sigmas[(u * 3).long()][:, None]
    z = gmkernels.random.normal(x.shape, 2, 1, dtype=torch.float64)
    assert torch.allclose(l2, ((-(x + sg * z) + z / sg) ** 2).sum(1).mean())


def test_sample_reproducible_and_trajectory():
    sde = VPSDE()
    score = lambda x, t: -x  # noqa: E731
    a = sample(score, sde, (64, 3), n_steps=20, corrector="langevin", seed=3)
    b, traj = sample(score, sde, (64, 3), n_steps=20, corrector="langevin", seed=3,
                     return_trajectory=True)
    assert torch.equal(a, b) and traj.shape == (21, 64, 3) and torch.equal(traj[-1], b)
    assert torch.equal(traj[0], sde.prior_sampling((64, 3), seed=3))
    c = sample(score, sde, (64, 3), n_steps=20, corrector="langevin", seed=4)
    assert (a != c).float().mean() > 0.9
    torch.manual_seed(0)
    d = sample(score, sde, (64, 3), n_steps=5)
    torch.manual_seed(0)
    assert torch.equal(d, sample(score, sde, (64, 3), n_steps=5))
    S = DDPMSchedule.cosine(50)
    e1 = ddpm_sample(lambda x, t: torch.zeros_like(x), S, (8, 2), seed=1)
    e2, tr = ddpm_sample(lambda x, t: torch.zeros_like(x), S, (8, 2), seed=1, return_trajectory=True)
    assert torch.equal(e1, e2) and tr.shape == (51, 8, 2)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(n_steps=0), ValueError, "n_steps must be >= 1"),
    (dict(n_steps=5, predictor="heun"), ValueError, "predictor must be one of"),
    (dict(n_steps=5, corrector="ald"), ValueError, "corrector must be"),
    (dict(n_steps=5, corrector="langevin_batch"), ValueError, "corrector must be"),  # dropped
    (dict(n_steps=5, predictor=None), ValueError, "cannot both be None"),
    (dict(n_steps=5, snr=0.0), ValueError, "snr must be"),
    (dict(n_steps=5, eps=1.5), ValueError, r"eps must be in \(0, 1\)"),
    (dict(n_steps=5, sde=object()), TypeError, "sde must have an attribute kind"),
    (dict(n_steps=5, score_fn=lambda x, t: x[:, :1]), ValueError, "score_fn must return a tensor of x's shape"),
    (dict(n_steps=5, shape=()), ValueError, r"shape must be \(B, ...\)"),
])
def test_sample_bad_input(kwargs, exc, match):
    args = dict(score_fn=lambda x, t: -x, sde=VESDE(), shape=(4, 2))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sample(args.pop("score_fn"), args.pop("sde"), args.pop("shape"), seed=0, **args)


def test_other_bad_input():
    with pytest.raises(TypeError, match="schedule must have 1-D tensors"):
        ddpm_sample(lambda x, t: x, object(), (4, 2), seed=0)
    with pytest.raises(ValueError, match="eps_fn must return"):
        ddpm_sample(lambda x, t: x.double(), DDPMSchedule.linear(5), (4, 2), seed=0)
    with pytest.raises(ValueError, match="weighting must be"):
        denoising_score_matching_loss(lambda x, t: x, torch.zeros(4, 2), VESDE(), weighting="l2")
    with pytest.raises(ValueError, match="sigmas must be finite and > 0"):
        denoising_score_matching_loss(lambda x, t: x, torch.zeros(4, 2), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="score_fn must return a tensor of x's shape"):
        denoising_score_matching_loss(lambda x, t: x[:, 0], torch.zeros(4, 2), VPSDE(), seed=0)


@pytest.mark.parametrize("kind,predictor,pf", [("vp", "euler_maruyama", False),
                                               ("ve", "reverse_diffusion", False),
                                               ("subvp", "euler_maruyama", True)])
def test_sample_equals_the_loop_of_public_steps(kind, predictor, pf):
    """sample() calls the native op directly (its arguments checked once): the result must be
    bit for bit the loop of public gmkernels.reverse_sde_step calls it stands for."""
    from gmkernels.random import normal
    sde = {"vp": VPSDE(0.1, 20), "ve": VESDE(0.01, 5), "subvp": subVPSDE(0.1, 20)}[kind]
    fn = lambda x, t: -x / (1 + t[:, None])  # noqa: E731
    n, shape, seed = 40, (33, 3), 7
    got = sample(fn, sde, shape, n_steps=n, predictor=predictor, probability_flow=pf,
                 denoise=False, seed=seed)
    x = sde.prior_sampling(shape, seed=seed, offset=0)
    h = (1.0 - 1e-3) / n
    for i in range(n):
        t = 1.0 - i * h
        s = fn(x, torch.full((shape[0],), t))
        x = gmkernels.reverse_sde_step(x, s, t, h, sde, predictor=predictor,
                                       probability_flow=pf, seed=seed, offset=1 + i)
    assert torch.equal(got, x), float((got - x).abs().max())
