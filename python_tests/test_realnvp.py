"""RealNVP (gmkernels.flows.RealNVP) on the fused coupling op: identity at init, round trip,
logdet against the autograd Jacobian, normalization of log_prob over a 2-D grid, dtypes."""

import math

import pytest
import torch

import gmkernels
from gmkernels.flows import RealNVP
from _helpers import assert_close, tol


def random_flow(dim, n_layers=4, hidden=16, seed=0, dtype=torch.float64, clamp=2.0,
                scale="exp", head_std=0.5):
    """A flow whose conditioner heads are random (a fresh RealNVP is the identity)."""
    torch.manual_seed(seed)
    flow = RealNVP(dim, n_layers, hidden, clamp=clamp, scale=scale).to(dtype)
    with torch.no_grad():
        for net in flow.nets:
            net.head.weight.normal_(0.0, head_std)
            net.head.bias.normal_(0.0, head_std)
    return flow


def test_fresh_flow_is_the_identity():
    flow = RealNVP(3, 4, 8)
    x = torch.randn(10, 3)
    z, ld = flow(x)
    assert torch.equal(z, x) and torch.equal(ld, torch.zeros(10))


@pytest.mark.parametrize("scale", ["exp", "sigmoid"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip(backend, scale, dtype):
    flow = random_flow(5, scale=scale, dtype=dtype)
    x = torch.randn(64, 5, dtype=dtype)
    z, ld = flow(x)
    x2, ld2 = flow.inverse(z)
    assert z.dtype == dtype and ld.shape == (64,)
    assert_close(x2, x, kind="round_trip", what="x round trip")
    assert_close(ld2, -ld, rtol=0, atol=tol("round_trip", dtype)["atol"] * 10,
                 what="logdet round trip")


@pytest.mark.parametrize("scale,clamp", [("exp", 2.0), ("exp", None), ("sigmoid", None)])
def test_logdet_is_slogdet_of_the_jacobian(scale, clamp):
    """log|det dz/dx| of the whole stack (6 layers, D = 5) against the autograd Jacobian."""
    flow = random_flow(5, n_layers=6, scale=scale, clamp=clamp)
    x = torch.randn(4, 5, dtype=torch.float64)
    z, ld = flow(x)
    for b in range(x.shape[0]):
        J = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x[b])
        sign, logabs = torch.linalg.slogdet(J)
        assert sign.item() == 1.0
        assert abs(ld[b].item() - logabs.item()) < 1e-10, (b, ld[b].item(), logabs.item())
    # and the inverse's logdet is log|det dx/dz|
    xi, ldi = flow.inverse(z)
    J = torch.autograd.functional.jacobian(lambda v: flow.inverse(v[None])[0][0], z[0])
    assert abs(ldi[0].item() - torch.linalg.slogdet(J)[1].item()) < 1e-10


def test_log_prob_integrates_to_one():
    """exp(log_prob) over a 2-D grid sums to 1 (a random flow, scales up to e^2 per layer).

    Tolerance: the midpoint rule on a grid of step h has error ~ C h^2 for a smooth density,
    so the estimate I_h differs from I_2h by ~3 C h^2: |I_h - I_2h| bounds the quadrature
    error of I_h (with a factor 3 to spare). The mass outside the box is bounded from samples
    of the flow: with k of N samples outside, (k + 3) / N is a ~95% upper bound (rule of
    three). The sum of the two, plus rounding, is the tolerance."""
    flow = random_flow(2, n_layers=6, hidden=32, seed=3, head_std=0.3)
    L, n = 9.0, 400
    def integral(n):
        h = 2 * L / n
        c = -L + h * (torch.arange(n, dtype=torch.float64) + 0.5)
        X, Y = torch.meshgrid(c, c, indexing="ij")
        with torch.no_grad():
            lp = flow.log_prob(torch.stack([X.flatten(), Y.flatten()], 1))
        return lp.exp().sum().item() * h * h
    I_h, I_2h = integral(n), integral(n // 2)
    N = 20000
    torch.manual_seed(0)
    xs = flow.sample(N)
    k = int((xs.abs() > L).any(1).sum())
    tol = abs(I_h - I_2h) + (k + 3) / N + 1e-9
    assert abs(I_h - 1.0) < tol, (I_h, I_2h, k, tol)
    # the density is not the base's (the check would be vacuous for an identity flow)
    x0 = torch.zeros(1, 2, dtype=torch.float64)
    assert abs(flow.log_prob(x0).item() + math.log(2 * math.pi)) > 1e-2


def test_sample_and_dtypes_and_backward():
    flow = random_flow(3, dtype=torch.float32)
    torch.manual_seed(1)
    a = flow.sample(7)
    torch.manual_seed(1)
    b = flow.sample(7)
    assert a.shape == (7, 3) and a.dtype == torch.float32 and torch.equal(a, b)
    lp = flow.log_prob(a)
    assert lp.shape == (7,) and torch.isfinite(lp).all()
    (-lp.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in flow.parameters())
    with pytest.raises(ValueError, match="x must have shape"):
        flow(torch.randn(4, 2))
    with pytest.raises(ValueError, match="dim must be >= 2"):
        RealNVP(1, 2, 4)


def test_maximum_likelihood_fits_a_gaussian(one_thread):
    """A few hundred Adam steps of maximum likelihood on a correlated Gaussian bring the mean
    NLL close to the target's entropy. Target: N(m, S), S = [[1, .8], [.8, 1]], entropy
    H = 1 + log(2 pi) + 0.5 log det S = 2.327. The test NLL is a mean over 4000 fresh samples
    with standard error std(log p)/sqrt(4000) = 1/sqrt(2)/63 = 0.011 under the target; a fitted
    flow must come within 0.1 (≈ 9 standard errors, plus the remaining fit gap)."""
    torch.manual_seed(0)
    S = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    Lc = torch.linalg.cholesky(S)
    m = torch.tensor([1.0, -2.0])
    draw = lambda n: torch.randn(n, 2) @ Lc.T + m  # noqa: E731
    flow = RealNVP(2, 4, 32, clamp=3.0)
    opt = torch.optim.Adam(flow.parameters(), lr=5e-3)
    # one thread (the fixture): tiny matmuls gain nothing from two, and on a loaded 2-core
    # machine a descheduled OpenMP thread made each step ~30x slower (measured 9 ms vs 330 ms)
    for _ in range(300):
        loss = -flow.log_prob(draw(256)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        nll = -flow.log_prob(draw(4000)).mean().item()
    H = 1 + math.log(2 * math.pi) + 0.5 * math.log(torch.linalg.det(S).item())
    assert abs(nll - H) < 0.1, (nll, H)
