"""The NaN and range contracts of issue 11 (items 4 and 5), one test per contract, on every
backend where the contract is a backend's: a clear error (``op: argument must be ...``), or a
NaN in exactly the rows (elements) it touches, never a plausible-looking number.

* planar_flow: a NaN row of z gives NaN output and log-det in that row only; a NaN in a shared
  parameter (u_hat, w, b) gives NaN in every row (the op reads no values: no host sync).
* planar_u_hat: û·w > -1 for the values stored in the output dtype (float16, bfloat16,
  |u| ~ 1e30); margin / eps finite and > 0; finite gradients for subnormal w.
* random.bernoulli: p NaN, ±inf or outside [0, 1] refused on the CPU; every kernel writes NaN
  in exactly those elements (what a CUDA p gets, where the wrapper does not read values).
* random.uniform: [0, 1) in float16 / bfloat16 too; the float32 / float64 streams unchanged.
* shapes: float and bool sizes refused by every fill and sampler, not truncated.
* RBM: non-binary data, lr = NaN, NaN checkpoints, init rows.
* counter overflow: step counts >= 2^32 and stream ranges past 2^64 refused by rbm_gibbs,
  rbm_ais, bm_gibbs (wrappers and the C++ ops) and the models; a range ending at 2^64 runs.
"""

import math

import pytest
import torch

import gmkernels
from gmkernels import _backend, score
from gmkernels.boltzmann import RBM, BoltzmannMachine
from gmkernels.reference import planar as ref_planar
from gmkernels.reference import random as ref_random

NAN, INF = float("nan"), float("inf")
U64, U32 = 1 << 64, 1 << 32


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _refused(exc, op, name, fn):
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert msg.startswith(f"{op}: ") and name in msg, msg


# --------------------------------------------------------------------------------------------
# planar_flow: NaN rows

def _planar_params(B, K, D, dtype, per_sample, seed):
    g = _g(seed)
    pshape = (B, K, D) if per_sample else (K, D)
    z = torch.randn(B, D, generator=g, dtype=torch.float64)
    u = torch.randn(pshape, generator=g, dtype=torch.float64)
    w = torch.randn(pshape, generator=g, dtype=torch.float64) / D ** 0.5
    b = torch.randn(pshape[:-1], generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (z, gmkernels.planar_u_hat(u, w), w, b)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("B", [5, 40])  # 40: past the CPU kernel's 32-row tile
def test_planar_flow_nan_row(backend, dtype, per_sample, B):
    z, u, w, b = _planar_params(B, 4, 3, dtype, per_sample, seed=B)
    bad = 3
    z[bad, 1] = NAN
    x, ld = gmkernels.planar_flow(z, u, w, b)
    assert bool(torch.isnan(x[bad]).all()), x[bad]
    assert bool(torch.isnan(ld[bad])), ld[bad]
    rest = [r for r in range(B) if r != bad]
    xr, ldr = ref_planar.planar_flow(*(t.double() for t in (z, u, w, b)))
    assert bool(torch.isfinite(x[rest]).all() and torch.isfinite(ld[rest]).all())
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(x[rest].double(), xr[rest], rtol=tol, atol=tol)
    torch.testing.assert_close(ld[rest].double(), ldr[rest], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["u_hat", "w", "b"])
def test_planar_flow_nan_shared_parameter(backend, dtype, name):
    """Decided: a NaN in a shared parameter is NaN in every row (of the log-det, and of the
    output: at least one element per row), not an error (the op does not read values)."""
    z, u, w, b = _planar_params(6, 3, 4, dtype, False, seed=7)
    t = {"u_hat": u, "w": w, "b": b}[name]
    t.view(-1)[0] = NAN
    x, ld = gmkernels.planar_flow(z, u, w, b)
    assert bool(torch.isnan(ld).all()), ld
    assert bool(torch.isnan(x).any(1).all()), x


@pytest.mark.parametrize("name", ["u_hat", "w", "b"])
def test_planar_flow_nan_per_sample_parameter(backend, name):
    """A per-sample (amortized) parameter belongs to its row: a NaN there is NaN in that
    row only, the other rows as the reference computes them."""
    B, bad = 6, 2
    z, u, w, b = _planar_params(B, 3, 4, torch.float64, True, seed=8)
    t = {"u_hat": u, "w": w, "b": b}[name]
    t[bad].view(-1)[0] = NAN
    x, ld = gmkernels.planar_flow(z, u, w, b)
    assert bool(torch.isnan(ld[bad])) and bool(torch.isnan(x[bad]).any()), (x[bad], ld[bad])
    rest = [r for r in range(B) if r != bad]
    xr, ldr = ref_planar.planar_flow(z, u, w, b)
    torch.testing.assert_close(x[rest], xr[rest], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld[rest], ldr[rest], rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------------------
# planar_u_hat

def _dot64(r, w):
    return (r.double() * w.double()).sum(-1)


@pytest.mark.parametrize("dtype,scale", [(torch.float16, 1.0), (torch.float16, 100.0),
                                         (torch.bfloat16, 1.0), (torch.bfloat16, 1e4),
                                         (torch.float32, 1e30), (torch.float64, 1e30)])
def test_planar_u_hat_invertible_after_rounding(dtype, scale):
    g = _g(3)
    u = (torch.randn(4000, 3, generator=g, dtype=torch.float64) * scale).to(dtype)
    w = torch.randn(4000, 3, generator=g, dtype=torch.float64).to(dtype)
    r = gmkernels.planar_u_hat(u, w)
    assert r.dtype == dtype and r.shape == u.shape and bool(torch.isfinite(r).all())
    d = _dot64(r, w)
    assert float(d.min()) > -1, f"min u_hat.w = {float(d.min())} at row {int(d.argmin())}"
    # as a kernel computes it: in float32 (float64 for float64), in either summation order
    kd = torch.float64 if dtype == torch.float64 else torch.float32
    for prods in ((r.to(kd) * w.to(kd)), (r.to(kd) * w.to(kd)).flip(-1)):
        d_k = prods.sum(-1)
        assert float(d_k.min()) > -1, f"min u_hat.w in {kd} = {float(d_k.min())}"
    # close to the float64 computation of the same (rounded) inputs: the rounding of each
    # element (eps |r|) plus the nudge, at most ~3 eps |r| sqrt(D) + margin / |w| along w
    r64 = gmkernels.planar_u_hat(u.double(), w.double(), margin=1e-3)
    eps = torch.finfo(dtype).eps
    bound = 8 * eps * (r64.abs().amax(-1, keepdim=True) * 3 ** 0.5
                       + 1e-3 / w.double().norm(dim=-1, keepdim=True))
    if dtype in (torch.float16, torch.bfloat16):
        err = (r.double() - r64).abs()
        assert bool((err <= bound).all()), float((err - bound).max())


@pytest.mark.parametrize("margin", [-1.0, 0.0, NAN, INF, -INF, "x"])
def test_planar_u_hat_margin_refused(margin):
    u, w = torch.randn(3, 2, generator=_g(1)), torch.randn(3, 2, generator=_g(2))
    exc = TypeError if isinstance(margin, str) else ValueError
    _refused(exc, "gmkernels.planar_u_hat", "margin",
             lambda: gmkernels.planar_u_hat(u, w, margin=margin))


@pytest.mark.parametrize("dtype,tiny", [(torch.float32, 1e-42), (torch.float32, 1e-39),
                                        (torch.float64, 1e-310)])
def test_planar_u_hat_subnormal_w_gradients(dtype, tiny):
    g = _g(4)
    u = torch.randn(5, 3, generator=g, dtype=dtype).requires_grad_()
    w = (torch.randn(5, 3, generator=g, dtype=dtype).sign() * tiny).requires_grad_()
    r = gmkernels.planar_u_hat(u, w)
    # the correction fades out: û -> u as w -> 0 (|w·u| is ~1e-42, far below the margin)
    torch.testing.assert_close(r.detach(), u.detach())
    gu, gw = torch.autograd.grad((r * torch.randn(5, 3, generator=g, dtype=dtype)).sum(), (u, w))
    assert bool(torch.isfinite(gu).all() and torch.isfinite(gw).all()), (gu, gw)


# --------------------------------------------------------------------------------------------
# random.bernoulli

@pytest.mark.parametrize("bad", [NAN, INF, -INF, 1.5, -0.5])
def test_bernoulli_refuses_invalid_p(backend, bad):
    p = torch.rand(4, 5, generator=_g(5))
    p[2, 3] = bad
    if p.device.type == "cpu":
        _refused(ValueError, "gmkernels.random.bernoulli", "p",
                 lambda: gmkernels.random.bernoulli(p, seed=1))
    else:  # decided: no value read (a sync per call) on CUDA; NaN in exactly that element
        out = gmkernels.random.bernoulli(p, seed=1)
        bad_at = torch.zeros(4, 5, dtype=torch.bool, device=p.device)
        bad_at[2, 3] = True
        assert bool(torch.isnan(out[bad_at]).all() and torch.isfinite(out[~bad_at]).all())


def _bernoulli_kernels():
    """(name, function, device) of every Bernoulli kernel that can run here."""
    cuda = torch.cuda.is_available()
    out = [("reference-cpu", ref_random.bernoulli, "cpu")]
    if gmkernels.extension_available():
        op = lambda p, *s: torch.ops.gmkernels.random_bernoulli(p, *s)  # noqa: E731
        out.append(("native-cpu", op, "cpu"))
        if cuda and _backend.native_has("random_bernoulli", "cuda"):
            out.append(("native-cuda", op, "cuda"))
    if gmkernels.build_info()["triton"]:
        from gmkernels.triton import random as tri
        # on the CPU only in the interpreter (conftest sets TRITON_INTERPRET=1 without a GPU)
        out.append(("triton-" + ("cuda" if cuda else "cpu"), tri.bernoulli,
                    "cuda" if cuda else "cpu"))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("kernel", _bernoulli_kernels(), ids=lambda k: k[0])
def test_bernoulli_kernels_write_nan_for_invalid_p(kernel, dtype):
    """What a CUDA p gets (the wrapper reads no CUDA values): NaN in exactly the invalid
    elements, the valid ones as the reference draws them."""
    name, fn, device = kernel
    g = _g(6)
    p = torch.rand(7, 9, generator=g, dtype=torch.float64).to(dtype)
    bad = torch.rand(7, 9, generator=g) < 0.2
    vals = torch.tensor([NAN, INF, -INF, 1.5, -0.5], dtype=dtype)
    p[bad] = vals[torch.randint(0, 5, (int(bad.sum()),), generator=g)]
    out = fn(p.to(device), 3, 11, 2).cpu()
    assert bool(torch.isnan(out[bad]).all()), out[bad]
    assert bool(((out[~bad] == 0) | (out[~bad] == 1)).all())
    want = ref_random.bernoulli(p.clamp(0, 1).nan_to_num(0.5), 3, 11, 2)
    assert torch.equal(out[~bad], want[~bad]), name


# --------------------------------------------------------------------------------------------
# random.uniform in [0, 1)

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_uniform_low_precision_below_one(backend, dtype):
    # 2^20 draws: the top 2^-12 (float16) / 2^-9 (bfloat16) that used to round to 1.0 hold
    # ~256 / ~2048 of them, so the old code fails with certainty for this seed
    u = gmkernels.random.uniform((1024, 1024), seed=0, dtype=dtype)
    top = 1 - 2.0 ** -(11 if dtype == torch.float16 else 8)
    assert float(u.max()) == top and float(u.min()) >= 0, float(u.max())
    assert torch.equal(u, ref_random.uniform((1024, 1024), 0, dtype=dtype, device=u.device))
    # below the top the values are the float32 stream rounded to nearest
    u32 = gmkernels.random.uniform((1024, 1024), seed=0, dtype=torch.float32)
    assert torch.equal(u, u32.clamp_max(top).to(dtype))
    out = torch.empty(1024, 1024, dtype=dtype, device=u.device)
    assert torch.equal(gmkernels.random.uniform_(out, seed=0), u)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_full_precision_unchanged(backend, dtype):
    shape = (257, 129)
    u = gmkernels.random.uniform(shape, seed=9, offset=4, dtype=dtype)
    words = gmkernels.random.uint32(shape, seed=9, offset=4)
    assert torch.equal(u, ((words >> 8).to(dtype) * 2.0 ** -24))


# --------------------------------------------------------------------------------------------
# shapes: float and bool sizes

_SHAPE_CALLS = {
    "gmkernels.random.uint32": lambda s: gmkernels.random.uint32(s, seed=0),
    "gmkernels.random.uniform": lambda s: gmkernels.random.uniform(s, seed=0),
    "gmkernels.random.normal": lambda s: gmkernels.random.normal(s, seed=0),
    "gmkernels.random.rademacher": lambda s: gmkernels.random.rademacher(s, seed=0),
    "VPSDE.prior_sampling": lambda s: score.VPSDE().prior_sampling(s, seed=0),
    "VESDE.prior_sampling": lambda s: score.VESDE().prior_sampling(s, seed=0),
    "gmkernels.score.sample": lambda s: score.sample(lambda x, t: -x, score.VPSDE(), s,
                                                     n_steps=2, seed=0),
    "gmkernels.score.ddpm_sample": lambda s: score.ddpm_sample(
        lambda x, t: torch.zeros_like(x), score.DDPMSchedule.linear(4), s, seed=0),
}


@pytest.mark.parametrize("op", list(_SHAPE_CALLS))
@pytest.mark.parametrize("shape", [(4, 2.5), (4, 2.0), (4, True), (2.5,)], ids=str)
def test_float_and_bool_sizes_refused(op, shape):
    _refused(TypeError, op, "shape", lambda: _SHAPE_CALLS[op](shape))


@pytest.mark.parametrize("op", list(_SHAPE_CALLS))
def test_integer_sizes_accepted(op):
    a = _SHAPE_CALLS[op]((4, 2))
    b = _SHAPE_CALLS[op]((4, torch.tensor(2)))  # a 0-d integer tensor is an int size
    assert a.shape == (4, 2) and torch.equal(a, b)


# --------------------------------------------------------------------------------------------
# RBM contracts (already kept on main before this change: kept here as regression tests)

def _rbm():
    return RBM(6, 3, generator=_g(0)).double()


def _data():
    return (torch.rand(32, 6, generator=_g(1)) < 0.5).double()


@pytest.mark.parametrize("bad", [2.0, -1.0, NAN])
def test_rbm_fit_refuses_non_binary_data(bad):
    data = _data()
    data[3, 2] = bad
    _refused(ValueError, "RBM.fit", "data", lambda: _rbm().fit(data, epochs=1, seed=0))


def test_rbm_fit_accepts_probabilities():
    data = _data() * 0.5 + 0.25
    hist = _rbm().fit(data, epochs=2, seed=0)
    assert len(hist) == 2 and all(math.isfinite(h) for h in hist)


@pytest.mark.parametrize("lr", [NAN, INF, 0.0, -0.1])
def test_rbm_fit_refuses_bad_lr(lr):
    _refused(ValueError, "RBM.fit", "lr", lambda: _rbm().fit(_data(), lr=lr, epochs=1, seed=0))


@pytest.mark.parametrize("name", ["W", "b", "c"])
def test_rbm_checkpoint_with_nan_refused(name):
    sd = _rbm().state_dict()
    sd[name] = sd[name].clone()
    sd[name].view(-1)[0] = NAN
    _refused(ValueError, "RBM.load_state_dict", name, lambda: _rbm().load_state_dict(sd))


@pytest.mark.parametrize("rows", [3, 6])
def test_rbm_sample_init_rows(rows):
    _refused(ValueError, "RBM.sample", "init",
             lambda: _rbm().sample(5, k=1, init=_data()[:rows], seed=0))


# --------------------------------------------------------------------------------------------
# counter overflow

def _rbm_args():
    g = _g(2)
    v0 = (torch.rand(4, 5, generator=g) < 0.5).double()
    W = torch.randn(5, 3, generator=g, dtype=torch.float64) * 0.3
    return v0, W, torch.zeros(5, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)


@pytest.mark.parametrize("k", [U32, 1 << 62, (1 << 63) - 1])
def test_rbm_gibbs_huge_k_refused(backend, k):
    _refused(ValueError, "gmkernels.rbm_gibbs", "k",
             lambda: gmkernels.rbm_gibbs(*_rbm_args(), k, seed=0))


@pytest.mark.parametrize("k,offset", [(2, U64 - 3), (1, U64 - 1), (5, U64 - 9)])
def test_rbm_gibbs_range_past_2_64_refused(backend, k, offset):
    _refused(ValueError, "gmkernels.rbm_gibbs", "offset",
             lambda: gmkernels.rbm_gibbs(*_rbm_args(), k, seed=0, offset=offset))


@pytest.mark.parametrize("k,offset", [(2, U64 - 4), (0, U64 - 1), (5, U64 - 10)])
def test_rbm_gibbs_range_ending_at_2_64_runs(backend, k, offset):
    got = gmkernels.rbm_gibbs(*_rbm_args(), k, seed=3, offset=offset)
    with gmkernels.use_backend("reference"):
        want = gmkernels.rbm_gibbs(*_rbm_args(), k, seed=3, offset=offset)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_rbm_gibbs_op_refuses_wrapping_range():
    """The C++ op (for callers of torch.ops.gmkernels.* that skip the wrapper)."""
    if not gmkernels.extension_available():
        pytest.fail("the extension did not load")
    v0, W, b, c = _rbm_args()
    op = torch.ops.gmkernels.rbm_gibbs
    for k, off in ((1 << 62, 0), (2, -3)):  # -3: the int64 bits of 2^64 - 3
        with pytest.raises(ValueError, match="gmkernels.rbm_gibbs: "):
            op(v0, W, b, c, k, None, 1.0, 0, off, 0)
    op(v0, W, b, c, 2, None, 1.0, 0, -4, 0)  # ends at 2^64: runs


@pytest.mark.parametrize("kw", [dict(n_betas=U32), dict(n_betas=20, offset=U64 - 38),
                                dict(betas=torch.linspace(0, 1, 5, dtype=torch.float64),
                                     offset=U64 - 8)], ids=["n_betas", "offset", "betas-offset"])
def test_rbm_ais_range_refused(backend, kw):
    _, W, b, c = _rbm_args()
    _refused(ValueError, "gmkernels.rbm_ais", "n_betas" if "n_betas" in kw else "betas",
             lambda: gmkernels.rbm_ais(W, b, c, n_chains=4, seed=0, **kw))


def test_rbm_ais_range_ending_at_2_64_runs(backend):
    _, W, b, c = _rbm_args()
    got = gmkernels.rbm_ais(W, b, c, n_chains=8, n_betas=20, seed=1, offset=U64 - 39)
    with gmkernels.use_backend("reference"):
        want = gmkernels.rbm_ais(W, b, c, n_chains=8, n_betas=20, seed=1, offset=U64 - 39)
    for a, b_ in zip(got, want):
        torch.testing.assert_close(a, b_)


def _bm_args():
    g = _g(3)
    y = (torch.rand(4, 5, generator=g) < 0.5).float() * 2 - 1
    A = torch.randn(5, 5, generator=g) * 0.3
    return y, ((A + A.T) / 2).fill_diagonal_(0), torch.zeros(5)


@pytest.mark.parametrize("n,offset", [(U32, 0), (1 << 62, 0), (3, U64 - 2)])
def test_bm_gibbs_range_refused(backend, n, offset):
    _refused(ValueError, "gmkernels.bm_gibbs", "n_sweeps",
             lambda: gmkernels.bm_gibbs(*_bm_args(), n, seed=0, offset=offset))


def test_bm_gibbs_op_refuses_huge_count():
    if not gmkernels.extension_available():
        pytest.fail("the extension did not load")
    y, W, b = _bm_args()
    with pytest.raises(ValueError, match="gmkernels.bm_gibbs: n_sweeps"):
        torch.ops.gmkernels.bm_gibbs(y, W, b, 1 << 62, None, 1.0, 0, 0, 0, 0)


@pytest.mark.parametrize("call,op,name", [
    (lambda: _rbm().sample(4, k=U32, seed=0), "RBM.sample", "k"),
    (lambda: _rbm().fit(_data(), k=U32, epochs=1, seed=0), "RBM.fit", "k"),
    (lambda: _rbm().log_partition("ais", n_betas=U32, seed=0), "RBM.log_partition", "n_betas"),
    (lambda: BoltzmannMachine(5).sample(4, n_sweeps=U32, seed=0), "BoltzmannMachine.sample",
     "n_sweeps"),
], ids=["RBM.sample", "RBM.fit", "RBM.log_partition", "BoltzmannMachine.sample"])
def test_model_step_counts_refused(call, op, name):
    _refused(ValueError, op, name, call)
