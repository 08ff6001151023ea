"""The fused SDE sampler steps of issue 3 (SPEC §3.3) on every backend against the reference:
values and noise element by element, dtypes, shapes, per-sample times and coefficients,
non-contiguous inputs, gradients (vs the reference's autograd and gradcheck), opcheck and bad
input. The backends are native and triton (when they run here) and "reference", which runs the
public wrapper on the reference path (checks the wrapper's argument handling and dispatch)."""

import math

import pytest
import torch

import gmkernels
from gmkernels.ops import sde as ops_sde
from gmkernels.reference import sde as ref
from gmkernels.score import DDPMSchedule, VESDE, VPSDE, subVPSDE
from conftest import BACKENDS, report

# float32: the kernels may compute the per-row coefficients (σ(t)², β(t), sqrt) in float32
# while the reference computes them in float64 and rounds once; a few ulps of a coefficient of
# size O(10) times |score| = O(3) gives ~1e-5 absolute.
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-11, atol=1e-11)}

SHAPES = [(7,), (2, 3, 4, 5), (130, 33)]
SDES = {"ve": VESDE(0.01, 10.0), "vp": VPSDE(0.1, 20.0), "subvp": subVPSDE(0.1, 20.0)}
SEED, OFF, SOFF = 2**40 + 3, 5, 2


@pytest.fixture(params=BACKENDS + ["reference"])
def backend(request):
    """native / triton (what runs here) and the wrapper's reference path."""
    with gmkernels.use_backend(request.param):
        yield request.param


def make(shape, dtype, n=2, seed=0, noncontig=False, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        t64 = torch.randn(shape, generator=g, dtype=torch.float64) * scale
        if noncontig:
            t = torch.empty(tuple(reversed(shape)), dtype=dtype).permute(*reversed(range(len(shape))))
            t.copy_(t64)
            out.append(t)
        else:
            out.append(t64.to(dtype))
    return out


def per_row(shape, dtype, lo=0.0, hi=1.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(shape[0], generator=g, dtype=torch.float64)).to(dtype)


def close(got, want, dtype, what=""):
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype)
    assert torch.allclose(got, want, **TOL[dtype]), f"{what}: {report(got, want)}"


# ---------------------------------------------------------------------------------------------
# values vs reference

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("diff_kind", ["float", "per_sample", "full"])
def test_euler_maruyama_matches_reference(backend, shape, dtype, diff_kind):
    x, f = make(shape, dtype)
    g = {"float": 0.7, "per_sample": per_row(shape, dtype, 0.1, 2.0),
         "full": make(shape, dtype, 1, seed=3)[0].abs()}[diff_kind]
    for dt in (0.01, -0.03):          # negative: backwards in time, same noise scale
        got = gmkernels.euler_maruyama_step(x, f, g, dt, seed=SEED, offset=OFF, sample_offset=SOFF)
        want = ref.euler_maruyama_step(x, f, g, dt, SEED, OFF, SOFF)
        close(got, want, dtype, f"EM {diff_kind} dt={dt}")


@pytest.mark.parametrize("kind", ["ve", "vp", "subvp"])
@pytest.mark.parametrize("predictor", ["euler_maruyama", "reverse_diffusion"])
@pytest.mark.parametrize("t_kind", ["float", "per_sample"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reverse_sde_step_matches_reference(backend, kind, predictor, t_kind, dtype):
    shape = (5, 3, 4) if t_kind == "float" else (7, 6)
    x, s = make(shape, dtype)
    # per-sample t includes the ends 0 and 1 (VE reverse_diffusion clips t - dt at 0)
    t = 0.63 if t_kind == "float" else torch.cat([torch.tensor([0.0, 1.0, 0.004]),
                                                  per_row(shape, torch.float64)])[:shape[0]].to(dtype)
    sde = SDES[kind]
    dt = 0.01
    p0, p1 = ops_sde.sde_params("test", sde)[1:]
    for pf in (False, True):
        got = gmkernels.reverse_sde_step(x, s, t, dt, sde, predictor=predictor,
                                         probability_flow=pf, seed=SEED, offset=OFF,
                                         sample_offset=SOFF)
        want = ref.reverse_sde_step(x, s, t, dt, kind, p0, p1, predictor, pf, SEED, OFF, SOFF)
        close(got, want, dtype, f"{kind} {predictor} pf={pf} t={t_kind}")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha_kind", ["float", "per_sample"])
def test_langevin_corrector_matches_reference(backend, shape, dtype, alpha_kind):
    x, s = make(shape, dtype)
    s[0].zero_()                                    # a zero score row: eps = 0, x unchanged
    alpha = 0.9 if alpha_kind == "float" else per_row(shape, dtype, 0.5, 1.0)
    got = gmkernels.langevin_corrector_step(x, s, 0.16, alpha=alpha, seed=SEED, offset=OFF,
                                            sample_offset=SOFF)
    want = ref.langevin_corrector_step(x, s, 0.16, alpha, SEED, OFF, SOFF)
    close(got, want, dtype, f"corrector alpha={alpha_kind}")
    assert torch.equal(got[0], x[0]), "a row with a zero score must be left unchanged"
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("coef_kind", ["float", "per_sample", "mixed"])
def test_affine_noise_step_matches_reference(backend, shape, dtype, coef_kind):
    x, e = make(shape, dtype)
    if coef_kind == "float":
        c = (1.01, 0.05, 0.3)
    elif coef_kind == "per_sample":
        c = tuple(per_row(shape, dtype, -1.0, 2.0, seed=k) for k in range(3))
    else:
        c = (per_row(shape, dtype, 0.5, 2.0), -0.2, per_row(shape, dtype, 0.0, 1.0, seed=5))
    got = gmkernels.affine_noise_step(x, e, *c, seed=SEED, offset=OFF, sample_offset=SOFF)
    want = ref.affine_noise_step(x, e, *c, SEED, OFF, SOFF)
    close(got, want, dtype, f"affine {coef_kind}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sched", ["linear", "cosine_posterior"])
def test_ddpm_step_is_ho_et_al_alg2(backend, dtype, sched):
    S = DDPMSchedule.linear(100) if sched == "linear" else DDPMSchedule.cosine(100, sigma="posterior")
    x, e = make((6, 3, 2), dtype)
    xi = gmkernels.random.normal(x.shape, SEED, OFF, dtype=torch.float64)
    for t in [99, 50, 1, 0]:
        got = gmkernels.ddpm_step(x, e, t, S, seed=SEED, offset=OFF)
        a, ab, sg = S.alphas[t], S.alphas_cumprod[t], (S.sigmas[t] if t > 0 else 0.0)
        want = ((x.double() - (1 - a) / torch.sqrt(1 - ab) * e.double()) / torch.sqrt(a) + sg * xi)
        close(got, want.to(dtype), dtype, f"ddpm t={t}")
    # per-sample t, with t = 0 rows getting no noise
    tv = torch.tensor([0, 99, 3, 0, 57, 1])
    got = gmkernels.ddpm_step(x, e, tv, S, seed=SEED, offset=OFF)
    for r, t in enumerate(tv.tolist()):
        row = gmkernels.ddpm_step(x[r:r + 1], e[r:r + 1], t, S, seed=SEED, offset=OFF, sample_offset=r)
        close(got[r:r + 1], row, dtype, f"ddpm per-sample row {r}")


def test_noise_is_the_random_normal_stream(backend):
    x = torch.zeros(64, 33, dtype=torch.float64)
    xi = gmkernels.random.normal(x.shape, 77, 12, 5, dtype=torch.float64)
    y = gmkernels.euler_maruyama_step(x, x, 1.0, 1.0, seed=77, offset=12, sample_offset=5)
    assert torch.allclose(y, xi, atol=1e-12), "EM: " + report(y, xi)
    y = gmkernels.affine_noise_step(x, x, 0.0, 0.0, 1.0, seed=77, offset=12, sample_offset=5)
    assert torch.allclose(y, xi, atol=1e-12), "affine: " + report(y, xi)
    # reverse EM on VP at t = 0 with beta_min = 1: g² = 1, so out = x + sqrt(dt) xi
    y = gmkernels.reverse_sde_step(x, x, 0.0, 0.25, VPSDE(1.0, 3.0), seed=77, offset=12, sample_offset=5)
    assert torch.allclose(y, 0.5 * xi, atol=1e-12), "reverse: " + report(y, 0.5 * xi)
    # probability flow draws no noise
    y = gmkernels.reverse_sde_step(x, x, 0.5, 0.25, VPSDE(), probability_flow=True, seed=77)
    assert torch.equal(y, x)


def test_sharding_and_seeds(backend):
    x, s = make((12, 9), torch.float32)
    t = per_row((12,), torch.float32)
    full = gmkernels.reverse_sde_step(x, s, t, 0.01, SDES["ve"], seed=5, offset=3)
    for lo, hi in [(0, 5), (5, 12)]:
        part = gmkernels.reverse_sde_step(x[lo:hi], s[lo:hi], t[lo:hi], 0.01, SDES["ve"], seed=5,
                                          offset=3, sample_offset=lo)
        assert torch.equal(part, full[lo:hi]), f"rows {lo}:{hi}"
    torch.manual_seed(0)
    r1 = gmkernels.langevin_corrector_step(x, s, 0.1)
    torch.manual_seed(0)
    assert torch.equal(r1, gmkernels.langevin_corrector_step(x, s, 0.1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous_inputs(backend, dtype):
    shape = (6, 5, 4)
    x, s = make(shape, dtype, noncontig=True)
    assert not x.is_contiguous() and not s.is_contiguous()
    xc, sc = x.contiguous(), s.contiguous()
    t = per_row(shape, dtype)
    pairs = [
        (gmkernels.euler_maruyama_step(x, s, s, 0.1, seed=9), ref.euler_maruyama_step(xc, sc, sc, 0.1, 9)),
        (gmkernels.reverse_sde_step(x, s, t, 0.01, SDES["vp"], predictor="reverse_diffusion", seed=9),
         ref.reverse_sde_step(xc, sc, t, 0.01, "vp", 0.1, 20.0, "reverse_diffusion", False, 9)),
        (gmkernels.langevin_corrector_step(x, s, 0.2, seed=9), ref.langevin_corrector_step(xc, sc, 0.2, 1.0, 9)),
        (gmkernels.affine_noise_step(x, s, t, 0.3, 0.1, seed=9), ref.affine_noise_step(xc, sc, t, 0.3, 0.1, 9)),
    ]
    for k, (got, want) in enumerate(pairs):
        close(got, want, dtype, f"op {k}")


def test_empty_batch(backend):
    x = torch.zeros(0, 3)
    assert gmkernels.euler_maruyama_step(x, x, 1.0, 0.1, seed=0).shape == (0, 3)
    assert gmkernels.reverse_sde_step(x, x, 0.5, 0.1, SDES["ve"], seed=0).shape == (0, 3)
    assert gmkernels.langevin_corrector_step(x, x, 0.1, seed=0).shape == (0, 3)
    assert gmkernels.affine_noise_step(x, x, 1.0, 1.0, 1.0, seed=0).shape == (0, 3)


# ---------------------------------------------------------------------------------------------
# gradients

# gradcheck evaluates the forward ~2 * (number of input elements) times: under the Triton
# interpreter that was 10-15 s per test (measured), so it runs on native and the reference; the
# Triton backend's gradients (closed form in torch ops) are compared with the reference's
# autograd in the same tests.
def _gradcheck(backend, fn, args):
    if backend != "triton":
        assert torch.autograd.gradcheck(fn, args)


def _grads(fn, leaves, w):
    y = fn(*leaves)
    return torch.autograd.grad((y * w).sum(), leaves)


@pytest.mark.parametrize("diff_kind", ["per_sample", "full"])
@pytest.mark.parametrize("shape", [(6, 5), (4, 2, 3)])
def test_euler_maruyama_gradients(backend, diff_kind, shape):
    x, f = make(shape, torch.float64)
    g = per_row(shape, torch.float64) if diff_kind == "per_sample" else make(shape, torch.float64, 1, 4)[0]
    w = make(shape, torch.float64, 1, seed=7)[0]
    got = _grads(lambda x, f, g: gmkernels.euler_maruyama_step(x, f, g, -0.2, seed=3, offset=1),
                 [t.clone().requires_grad_() for t in (x, f, g)], w)
    want = _grads(lambda x, f, g: ref.euler_maruyama_step(x, f, g, -0.2, 3, 1),
                  [t.clone().requires_grad_() for t in (x, f, g)], w)
    for name, a, b in zip(["x", "drift", "diffusion"], got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10), f"d/d{name}: {report(a, b)}"
    args = [t.clone().requires_grad_() for t in (x, f, g)]
    _gradcheck(backend, lambda x, f, g: gmkernels.euler_maruyama_step(x, f, g, 0.3, seed=2), args)


@pytest.mark.parametrize("kind", ["ve", "vp", "subvp"])
@pytest.mark.parametrize("predictor", ["euler_maruyama", "reverse_diffusion"])
def test_reverse_sde_step_gradients(backend, kind, predictor):
    shape = (5, 4)
    x, s = make(shape, torch.float64)
    t = per_row(shape, torch.float64)
    w = make(shape, torch.float64, 1, seed=7)[0]
    sde = SDES[kind]
    p0, p1 = ops_sde.sde_params("test", sde)[1:]
    for pf in (False, True):
        fn = lambda x, s: gmkernels.reverse_sde_step(x, s, t, 0.02, sde, predictor=predictor,  # noqa: E731
                                                     probability_flow=pf, seed=3, offset=1)
        got = _grads(fn, [x.clone().requires_grad_(), s.clone().requires_grad_()], w)
        want = _grads(lambda x, s: ref.reverse_sde_step(x, s, t, 0.02, kind, p0, p1, predictor, pf,
                                                        3, 1),
                      [x.clone().requires_grad_(), s.clone().requires_grad_()], w)
        for name, a, b in zip(["x", "score"], got, want):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-10), f"pf={pf} d/d{name}: {report(a, b)}"
    _gradcheck(backend, fn, [x.clone().requires_grad_(), s.clone().requires_grad_()])


def test_affine_noise_step_gradients(backend):
    shape = (5, 2, 3)
    x, e = make(shape, torch.float64)
    cs = [per_row(shape, torch.float64, 0.2, 1.5, seed=k) for k in range(3)]
    w = make(shape, torch.float64, 1, seed=7)[0]
    fn = lambda x, e, a, b, c: gmkernels.affine_noise_step(x, e, a, b, c, seed=4, offset=2)  # noqa: E731
    got = _grads(fn, [t.clone().requires_grad_() for t in (x, e, *cs)], w)
    want = _grads(lambda x, e, a, b, c: ref.affine_noise_step(x, e, a, b, c, 4, 2),
                  [t.clone().requires_grad_() for t in (x, e, *cs)], w)
    for name, a, b in zip(["x", "e", "cx", "ce", "cn"], got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10), f"d/d{name}: {report(a, b)}"
    _gradcheck(backend, fn, [t.clone().requires_grad_() for t in (x, e, *cs)])
    # ddpm_step is differentiable in x_t and eps_pred
    S = DDPMSchedule.linear(20)
    xr, er = x.clone().requires_grad_(), e.clone().requires_grad_()
    gx, ge = torch.autograd.grad(gmkernels.ddpm_step(xr, er, 7, S, seed=1).sum(), [xr, er])
    a, ab = S.alphas[7], S.alphas_cumprod[7]
    assert torch.allclose(gx, torch.full_like(gx, 1 / math.sqrt(a)), rtol=1e-12)
    assert torch.allclose(ge, torch.full_like(ge, -(1 - a) / math.sqrt((1 - ab) * a)), rtol=1e-12)


def test_corrector_refuses_autograd(backend):
    x = torch.zeros(3, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable"):
        gmkernels.langevin_corrector_step(x, torch.ones(3, 2), 0.1, seed=0)
    with torch.no_grad():
        gmkernels.langevin_corrector_step(x, torch.ones(3, 2), 0.1, seed=0)


# ---------------------------------------------------------------------------------------------
# opcheck of the dispatcher ops (run whenever the extension has them)

def _needs(op):
    return pytest.mark.skipif(not ops_sde._op_exists(op),
                              reason=f"the loaded extension has no gmkernels::{op} (rebuild it)")


@_needs("euler_maruyama_step")
@pytest.mark.parametrize("diff_kind,requires_grad", [("float", False), ("per_sample", True),
                                                     ("full", True)])
def test_opcheck_euler_maruyama(diff_kind, requires_grad):
    x, f = make((6, 5), torch.float32)
    g_t = {"float": None, "per_sample": per_row((6,), torch.float32), "full": f.abs()}[diff_kind]
    if requires_grad:
        for t in (x, f, g_t):
            if t is not None:
                t.requires_grad_()
    torch.library.opcheck(torch.ops.gmkernels.euler_maruyama_step, (x, f, g_t, 0.5, -0.1, 3, 2**33, 1))


@_needs("euler_maruyama_step_backward")
def test_opcheck_euler_maruyama_backward():
    gy = torch.randn(6, 5)
    for g_t, need in [(None, False), (torch.rand(6), True), (torch.rand(6, 5), True)]:
        torch.library.opcheck(torch.ops.gmkernels.euler_maruyama_step_backward,
                              (gy, g_t, 0.1, 3, 1, 0, [6, 5], need))


@_needs("reverse_sde_step")
@pytest.mark.parametrize("kind,predictor,per_sample,pf", [(0, 0, False, False), (1, 1, True, False),
                                                         (2, 1, False, True), (0, 1, True, False)])
def test_opcheck_reverse_sde_step(kind, predictor, per_sample, pf):
    x, s = make((6, 5), torch.float32)
    x.requires_grad_()
    s.requires_grad_()
    t_t = per_row((6,), torch.float32) if per_sample else None
    p0, p1 = (0.01, 10.0) if kind == 0 else (0.1, 20.0)
    torch.library.opcheck(torch.ops.gmkernels.reverse_sde_step,
                          (x, s, t_t, 0.4, 0.01, kind, p0, p1, predictor, pf, 3, 2, 1))


@_needs("reverse_sde_step_backward")
def test_opcheck_reverse_sde_step_backward():
    gy = torch.randn(6, 5)
    torch.library.opcheck(torch.ops.gmkernels.reverse_sde_step_backward,
                          (gy, per_row((6,), torch.float32), 0.0, 0.01, 1, 0.1, 20.0, 1, False, [6, 5]))
    torch.library.opcheck(torch.ops.gmkernels.reverse_sde_step_backward,
                          (gy, None, 0.5, 0.01, 0, 0.01, 10.0, 0, True, [6, 5]))


@_needs("langevin_corrector_step")
@pytest.mark.parametrize("per_sample", [False, True])
def test_opcheck_langevin_corrector(per_sample):
    x, s = make((6, 5), torch.float32)
    a_t = per_row((6,), torch.float32) if per_sample else None
    torch.library.opcheck(torch.ops.gmkernels.langevin_corrector_step, (x, s, a_t, 1.0, 0.16, 3, 1, 0))


@_needs("affine_noise_step")
@pytest.mark.parametrize("per_sample,requires_grad", [(False, False), (True, True)])
def test_opcheck_affine_noise_step(per_sample, requires_grad):
    x, e = make((6, 5), torch.float32)
    cs = [per_row((6,), torch.float32, seed=k) if per_sample else None for k in range(3)]
    if requires_grad:
        for t in (x, e, *cs):
            if t is not None:
                t.requires_grad_()
    torch.library.opcheck(torch.ops.gmkernels.affine_noise_step,
                          (x, e, cs[0], 1.1, cs[1], 0.2, cs[2], 0.3, 3, 2**40, 1))


@_needs("affine_noise_step_backward")
def test_opcheck_affine_noise_step_backward():
    gy, x, e = make((6, 5), torch.float32, n=3)
    cx_t, ce_t = per_row((6,), torch.float32), per_row((6,), torch.float32, seed=2)
    torch.library.opcheck(torch.ops.gmkernels.affine_noise_step_backward,
                          (gy, x, e, cx_t, 1.0, ce_t, 0.5, 3, 1, 0, True, True, True))
    torch.library.opcheck(torch.ops.gmkernels.affine_noise_step_backward,
                          (gy, None, None, None, 1.0, None, 0.5, 3, 1, 0, False, False, False))


# ---------------------------------------------------------------------------------------------
# bad input

X = torch.zeros(3, 2)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: gmkernels.euler_maruyama_step(X, torch.zeros(3, 3), 1.0, 0.1), ValueError, "drift must have the shape of x"),
    (lambda: gmkernels.euler_maruyama_step(X, X, 1.0, 0.0), ValueError, "dt must be nonzero"),
    (lambda: gmkernels.euler_maruyama_step(X, X, 1.0, math.inf), ValueError, "dt must be finite"),
    (lambda: gmkernels.euler_maruyama_step(X, X, 1.0, math.nan), ValueError, "dt must be finite"),
    (lambda: gmkernels.euler_maruyama_step(X, X, torch.ones(4), 0.1), ValueError, r"diffusion must be a float, a per-sample tensor of shape \(3,\)"),
    (lambda: gmkernels.euler_maruyama_step(X, X, math.nan, 0.1), ValueError, "diffusion must be finite"),
    (lambda: gmkernels.euler_maruyama_step(X, X, torch.ones(3, 2, dtype=torch.float64), 0.1), TypeError, "diffusion tensor must have x's dtype"),
    (lambda: gmkernels.euler_maruyama_step(X, X, 1.0, 0.1, seed=-1), ValueError, "seed must be in"),
    (lambda: gmkernels.reverse_sde_step(X, X, 1.5, 0.1, VESDE()), ValueError, r"t must be in \[0, 1\]"),
    (lambda: gmkernels.reverse_sde_step(X, X, -0.1, 0.1, VESDE()), ValueError, r"t must be in \[0, 1\]"),
    (lambda: gmkernels.reverse_sde_step(X, X, torch.tensor([0.5, 1.2, 0.1]), 0.1, VESDE()), ValueError, r"every t must be in \[0, 1\]"),
    (lambda: gmkernels.reverse_sde_step(X, X, torch.ones(2), 0.1, VESDE()), ValueError, r"t must be a float or a per-sample tensor of shape \(3,\)"),
    (lambda: gmkernels.reverse_sde_step(X, X, 0.5, 0.0, VESDE()), ValueError, "dt must be > 0"),
    (lambda: gmkernels.reverse_sde_step(X, X, 0.5, -0.1, VESDE()), ValueError, "dt must be > 0"),
    (lambda: gmkernels.reverse_sde_step(X, X, 0.5, math.nan, VESDE()), ValueError, "dt must be finite"),
    (lambda: gmkernels.reverse_sde_step(X, X, 0.5, 0.1, object()), TypeError, "sde must have an attribute kind"),
    (lambda: gmkernels.reverse_sde_step(X, X, 0.5, 0.1, "vp"), TypeError, "sde must have an attribute kind"),
    (lambda: gmkernels.reverse_sde_step(X, X, 0.5, 0.1, VESDE(), predictor="heun"), ValueError, "predictor must be one of"),
    (lambda: gmkernels.reverse_sde_step(X, X, 0.5, 0.1, VPSDE(), predictor="reverse_diffusion"), ValueError, r"beta\(t\) \* dt < 1"),
    (lambda: gmkernels.reverse_sde_step(X, X.double(), 0.5, 0.1, VESDE()), TypeError, "score must have the dtype of x"),
    (lambda: gmkernels.langevin_corrector_step(X, X, 0.0), ValueError, "snr must be > 0"),
    (lambda: gmkernels.langevin_corrector_step(X, X, 0.1, alpha=torch.ones(2)), ValueError, r"alpha must be a float or a per-sample tensor of shape \(3,\)"),
    (lambda: gmkernels.langevin_corrector_step(X, X, 0.1, alpha=-1.0), ValueError, "alpha must be finite and >= 0"),
    (lambda: gmkernels.affine_noise_step(X, X, 1.0, math.inf, 0.0), ValueError, "ce must be finite"),
    (lambda: gmkernels.affine_noise_step(X, X, torch.ones(5), 1.0, 0.0), ValueError, r"cx must be a float or a per-sample tensor of shape \(3,\)"),
    (lambda: gmkernels.ddpm_step(X, X, 10, DDPMSchedule.linear(10)), ValueError, r"t must be in \[0, 10\)"),
    (lambda: gmkernels.ddpm_step(X, X, -1, DDPMSchedule.linear(10)), ValueError, r"t must be in \[0, 10\)"),
    (lambda: gmkernels.ddpm_step(X, X, torch.tensor([0, 3, 10]), DDPMSchedule.linear(10)), ValueError, r"every t must be in \[0, 10\)"),
    (lambda: gmkernels.ddpm_step(X, X, torch.tensor([0, 3]), DDPMSchedule.linear(10)), ValueError, r"per-sample tensor of shape \(3,\)"),
    (lambda: gmkernels.ddpm_step(X, X, torch.tensor([0.0, 3.0, 1.0]), DDPMSchedule.linear(10)), TypeError, "integer tensor"),
    (lambda: gmkernels.ddpm_step(X, X, 2.5, DDPMSchedule.linear(10)), TypeError, "t must be an int"),
    (lambda: gmkernels.ddpm_step(X, X, 2, object()), TypeError, "schedule must have 1-D tensors"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_bad_schedule_lengths():
    S = DDPMSchedule.linear(10)
    S.sigmas = S.sigmas[:5]
    with pytest.raises(ValueError, match="same length"):
        gmkernels.ddpm_step(X, X, 2, S, seed=0)
    with pytest.raises(ValueError, match=r"betas must be in \(0, 1\)|every beta"):
        DDPMSchedule(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="sigma must be"):
        DDPMSchedule.linear(10, sigma="ddim")


def test_bad_sde_parameters():
    class Bad:
        kind = "ve"
        sigma_min, sigma_max = 5.0, 1.0
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        gmkernels.reverse_sde_step(X, X, 0.5, 0.1, Bad())

    class NoBeta:
        kind = "vp"
    with pytest.raises(TypeError, match="has no beta_min"):
        gmkernels.reverse_sde_step(X, X, 0.5, 0.1, NoBeta())
    with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
        VESDE(10.0, 1.0)
    with pytest.raises(ValueError, match="beta_max must be > 0"):
        VPSDE(0.1, -1.0)


@pytest.mark.slow
@_needs("reverse_sde_step")
def test_compile_fullgraph_parity():
    def step(x, s, t, c):
        y = gmkernels.reverse_sde_step(x, s, t, 0.01, SDES["vp"], seed=7, offset=4)
        z = gmkernels.affine_noise_step(y, s, c, 0.1, 0.2, seed=7, offset=5)
        w = gmkernels.euler_maruyama_step(z, -z, c, 0.01, seed=7, offset=6)
        return (w * w).sum(), w

    x, s = make((16, 9), torch.float32)
    t = per_row((16,), torch.float32)
    c = torch.rand(16, requires_grad=True)
    loss_c, y_c = torch.compile(step, fullgraph=True)(x, s, t, c)
    loss_e, y_e = step(x, s, t, c)
    assert torch.allclose(y_c, y_e, atol=1e-6), report(y_c, y_e)
    (gc_c,) = torch.autograd.grad(loss_c, c)
    (gc_e,) = torch.autograd.grad(loss_e, c)
    assert torch.allclose(gc_c, gc_e, rtol=1e-5, atol=1e-5), report(gc_c, gc_e)
