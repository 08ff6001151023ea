"""The fused affine coupling transform (docs/spec.md §1.2) on every backend against the reference:
values and logdet, round trips, the Jacobian's log-determinant, gradients (reference autograd
and gradcheck), opcheck, torch.compile, extremes, the MAF/IAF use with mask = 0, bad input."""

import math

import pytest
import torch

import gmkernels
from gmkernels.reference import coupling as ref
from _helpers import assert_close, tol

# Values: tolerance kind "transcendental" (_helpers.TOLERANCES): the kernels' exp/tanh/log
# are ~1-2 ulp polynomials (the reference uses torch's).

# (scale, clamp): every kernel variant (the direction is a separate parameter)
VARIANTS = [("exp", None), ("exp", 3.0), ("sigmoid", None), ("sigmoid", 2.0)]


def _mask(kind: str, shape, gen):
    """A mask of `kind` for x of `shape`: half / checkerboard / channel / per-sample / scalar."""
    if kind == "half":      # (D,) first half passes
        d = shape[-1]
        return torch.arange(d) < d // 2
    if kind == "alt_row":   # (1, D) float 0/1, alternating
        return (torch.arange(shape[-1]) % 2).to(torch.float32)[None]
    if kind == "checker":   # (1, 1, H, W)
        h, w = shape[-2:]
        return ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2 == 0)[None, None]
    if kind == "channel":   # (1, C, 1, 1) int
        c = shape[1]
        return (torch.arange(c) < (c + 1) // 2).to(torch.int64)[None, :, None, None]
    if kind == "per_sample":  # x's full shape: varies over the batch
        return torch.rand(shape, generator=gen) < 0.5
    if kind == "scalar0":
        return torch.tensor(0.0)
    raise AssertionError(kind)


CASES = [((5, 3), "half"), ((7, 8), "alt_row"), ((0, 4), "half"), ((3, 0), "half"),
         ((4, 3, 5, 6), "checker"), ((4, 3, 5, 6), "channel"), ((6, 5), "per_sample"),
         ((9,), "per_sample"), ((3, 20000), "half"), ((2, 7), "scalar0"),
         # CPU paths: short rows in tiles of 2048 // M rows (two tiles, the last one partial),
         # with a shared and a per-sample mask; long rows of one chunk; rows of 2 chunks above
         ((700, 3), "half"), ((700, 3), "per_sample"), ((5, 300), "alt_row")]


def make(shape, dtype, seed=0, s_scale=2.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    s = s_scale * torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.randn(shape, generator=g, dtype=torch.float64)
    return x.to(dtype), s.to(dtype), t.to(dtype), g


def ref64(x, s, t, mask, **kw):
    """The reference in float64 on the same (rounded) inputs."""
    return ref.affine_coupling(x.double(), s.double(), t.double(), mask, **kw)


def check_close(got, want, dtype, M, what):
    y, ld = got
    wy, wld = want
    assert y.shape == wy.shape and y.dtype == dtype and ld.dtype == dtype
    assert ld.shape == (y.shape[0],)
    t = tol("transcendental", dtype)
    assert_close(y, wy, **t, check_dtype=False, what=f"{what} y")
    # logdet: a sum of M terms, each with the per-element error above
    assert_close(ld, wld, rtol=t["rtol"], atol=t["atol"] * max(1, M), check_dtype=False,
                 what=f"{what} logdet")


# The 8 kernel variants (scale, clamp, direction), dealt out over the cases so that each
# variant meets several shapes and masks without the full product (the Triton interpreter
# costs ~0.1 s a call on this machine).
COMBOS = [(sc, c, inv) for inv in (False, True) for sc, c in VARIANTS]


def dealt(cases, per_case=2):
    out = []
    for i, case in enumerate(cases):
        for j in range(per_case):
            out.append((*case, *COMBOS[(i * per_case + j) % len(COMBOS)]))
    return out


@pytest.mark.parametrize("shape,mkind,scale,clamp,inverse", dealt(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference(backend, shape, mkind, dtype, scale, clamp, inverse):
    x, s, t, g = make(shape, dtype)
    mask = _mask(mkind, shape, g)
    got = gmkernels.affine_coupling(x, s, t, mask, inverse=inverse, scale=scale, clamp=clamp)
    want = ref64(x, s, t, mask, inverse=inverse, scale=scale, clamp=clamp)
    M = math.prod(shape[1:])
    check_close(got, want, dtype, M, f"{backend} {shape} {mkind} {scale} {clamp} inv={inverse}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous_inputs(backend, dtype):
    g = torch.Generator().manual_seed(3)
    # channels-last images and a transposed (B, D) view
    x, s, t = (torch.randn(4, 3, 5, 6, generator=g, dtype=dtype)
               .contiguous(memory_format=torch.channels_last) for _ in range(3))
    mask = _mask("checker", x.shape, g)
    assert not x.is_contiguous()
    got = gmkernels.affine_coupling(x, s, t, mask, clamp=2.0)
    check_close(got, ref64(x, s, t, mask, clamp=2.0), dtype, 90, "channels_last")
    x2, s2, t2 = (torch.randn(9, 5, generator=g, dtype=dtype).t() for _ in range(3))
    m2 = torch.tensor([1, 0, 0, 1, 0, 1, 0, 1, 1], dtype=torch.bool)  # (D,) = (9,)
    got = gmkernels.affine_coupling(x2, s2, t2, m2, inverse=True, scale="sigmoid")
    check_close(got, ref64(x2, s2, t2, m2, inverse=True, scale="sigmoid"), dtype, 9, "transposed")
    # a strided (expanded) mask
    m3 = torch.tensor([True, False]).repeat(3)[::2].expand(5, 3)  # all True, stride 0 rows
    x3, s3, t3 = (torch.randn(5, 3, generator=g, dtype=dtype) for _ in range(3))
    got = gmkernels.affine_coupling(x3, s3, t3, m3)
    check_close(got, ref64(x3, s3, t3, m3), dtype, 3, "expanded mask")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_use_float32_math(backend, dtype):
    x, s, t, g = make((6, 4, 8, 8), dtype, s_scale=1.0)
    mask = _mask("checker", x.shape, g)
    y, ld = gmkernels.affine_coupling(x, s, t, mask, clamp=2.0)
    wy, wld = ref.affine_coupling(x.float(), s.float(), t.float(), mask, clamp=2.0)
    assert y.dtype == dtype and ld.dtype == dtype
    assert_close(y, wy, kind="half_transcendental", dtype=dtype, check_dtype=False, what="y")
    assert_close(ld, wld.to(dtype), rtol=1e-2, atol=0.25, what="logdet")


@pytest.mark.parametrize("scale,clamp", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip(backend, scale, clamp, dtype):
    x, s, t, g = make((33, 10), dtype)
    mask = _mask("half", x.shape, g)
    y, ld = gmkernels.affine_coupling(x, s, t, mask, scale=scale, clamp=clamp)
    x2, ld2 = gmkernels.affine_coupling(y, s, t, mask, inverse=True, scale=scale, clamp=clamp)
    # y = x e^l + t with e^l up to e^6 (unclamped, |s| <~ 6): x comes back to ~1e-7 * |t|e^|l|
    assert_close(x2, x, kind="round_trip", what="x round trip")
    assert_close(ld2, -ld, rtol=0, atol=tol("round_trip", dtype)["atol"] * 10,
                 what="logdet round trip")
    assert torch.equal(x2[:, :5], x[:, :5])  # pass half: exact


def test_pass_elements_are_exact_whatever_s_holds(backend):
    """Where mask = 1 the output is x bit for bit and nothing enters the logdet, even for an s
    whose exp overflows (a formula mask*x + (1-mask)*(...) would give inf*0 = NaN there)."""
    x, s, t, g = make((8, 6), torch.float32)
    mask = _mask("half", x.shape, g)
    s[:, :3] = torch.tensor([1e30, -1e30, 3e38])
    t[:, :3] = 1e30
    for inverse in (False, True):
        for scale in ("exp", "sigmoid"):
            y, ld = gmkernels.affine_coupling(x, s, t, mask, inverse=inverse, scale=scale)
            assert torch.equal(y[:, :3], x[:, :3])
            want = ref64(x[:, 3:], s[:, 3:], t[:, 3:], 0, inverse=inverse, scale=scale)
            check_close((y[:, 3:], ld), want, torch.float32, 3, f"{scale} inv={inverse}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clamp", [None, 5.0])
@pytest.mark.parametrize("scale", ["exp", "sigmoid"])
def test_extreme_log_scales_stay_finite(backend, dtype, clamp, scale):
    """s = +-80 with and without the clamp: outputs, logdet and gradients finite and equal to
    the float64 reference. float32: e^80 = 5.5e34 < 3.4e38, so x e^s is finite for |x| < 6e3."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 16, generator=g, dtype=dtype)
    t = torch.randn(4, 16, generator=g, dtype=dtype)
    s = torch.full((4, 16), 80.0, dtype=dtype)
    s[1::2] = -80.0
    mask = _mask("alt_row", x.shape, g)
    for inverse in (False, True):
        xs, ss, ts = (v.clone().requires_grad_() for v in (x, s, t))
        y, ld = gmkernels.affine_coupling(xs, ss, ts, mask, inverse=inverse, scale=scale,
                                          clamp=clamp)
        assert torch.isfinite(y).all() and torch.isfinite(ld).all(), (inverse, y, ld)
        check_close((y.detach(), ld.detach()), ref64(x, s, t, mask, inverse=inverse, scale=scale,
                                                     clamp=clamp), dtype, 16, f"inv={inverse}")
        # gradients of a bounded loss (weights 1e-30 keep the e^80-sized terms finite in fp32)
        (y.sum() * 1e-30 + ld.sum()).backward()
        for v in (xs, ss, ts):
            assert torch.isfinite(v.grad).all(), (inverse, v.grad)


def test_maf_inverse_and_iaf_forward_are_mask_zero(backend):
    """MAF's inverse u = (x - mu) exp(-alpha), logdet -sum(alpha) (Papamakarios et al. 2017),
    and IAF's forward z = x exp(s) + m, logdet sum(s) (Kingma et al. 2016): mask = 0."""
    x, alpha, mu, _ = make((10, 7), torch.float64)
    u, ld = gmkernels.affine_coupling(x, alpha, mu, 0, inverse=True)
    assert_close(u, (x - mu) * torch.exp(-alpha), rtol=1e-12, atol=1e-12, what="MAF u")
    assert_close(ld, -alpha.sum(1), rtol=1e-12, atol=1e-12, what="MAF logdet")
    z, ld = gmkernels.affine_coupling(x, alpha, mu, torch.zeros(7))
    assert_close(z, x * torch.exp(alpha) + mu, rtol=1e-12, atol=1e-12, what="IAF z")
    assert_close(ld, alpha.sum(1), rtol=1e-12, atol=1e-12, what="IAF logdet")


@pytest.mark.parametrize("scale,clamp", VARIANTS)
@pytest.mark.parametrize("inverse", [False, True])
def test_logdet_is_slogdet_of_the_jacobian(device, scale, clamp, inverse):
    """A whole coupling layer, s and t computed from the pass part of x by a fixed nonlinear
    map: the op's logdet equals slogdet of the autograd Jacobian of x -> y (float64, D = 6)."""
    g = torch.Generator().manual_seed(11)
    D = 6
    mask = torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool)
    W1 = torch.randn(D, D, generator=g, dtype=torch.float64)
    W2 = torch.randn(D, D, generator=g, dtype=torch.float64)
    x = torch.randn(3, D, generator=g, dtype=torch.float64)

    def layer(v):  # one sample (D,) -> ((D,), logdet)
        xm = v * mask
        s, t = torch.tanh(xm @ W1) * 2.0, torch.sin(xm @ W2)
        y, ld = gmkernels.affine_coupling(v[None], s[None], t[None], mask, inverse=inverse,
                                          scale=scale, clamp=clamp)
        return y[0], ld[0]

    for b in range(x.shape[0]):
        J = torch.autograd.functional.jacobian(lambda v: layer(v)[0], x[b])
        sign, logabs = torch.linalg.slogdet(J)
        ld = layer(x[b])[1]
        assert sign.item() == 1.0
        assert abs(ld.item() - logabs.item()) < 1e-10, (ld.item(), logabs.item())


GRAD_CASES = [((5, 6), "half"), ((2, 3, 4, 4), "checker"), ((3, 4, 2, 2), "channel"),
              ((4, 5), "per_sample"), ((3, 20000), "half")]


@pytest.mark.parametrize("shape,mkind,scale,clamp,inverse", dealt(GRAD_CASES))
def test_gradients_match_reference(backend, shape, mkind, scale, clamp, inverse):
    x, s, t, g = make(shape, torch.float64)
    mask = _mask(mkind, shape, g)
    wy = torch.randn(shape, generator=g, dtype=torch.float64)
    wl = torch.randn(shape[0], generator=g, dtype=torch.float64)

    def grads(fn):
        xs, ss, ts = (v.clone().requires_grad_() for v in (x, s, t))
        y, ld = fn(xs, ss, ts, mask, inverse=inverse, scale=scale, clamp=clamp)
        ((y * wy).sum() + (ld * wl).sum()).backward()
        return xs.grad, ss.grad, ts.grad

    got, want = grads(gmkernels.affine_coupling), grads(ref.affine_coupling)
    for name, a, b in zip("xst", got, want):
        assert_close(a, b, kind="grad", what=f"grad {name}")


@pytest.mark.parametrize("scale,clamp", VARIANTS)
@pytest.mark.parametrize("inverse", [False, True])
def test_gradcheck(backend, scale, clamp, inverse):
    x, s, t, g = make((3, 2, 2, 3), torch.float64, s_scale=1.0)
    mask = _mask("checker", x.shape, g)
    inputs = tuple(v.clone().requires_grad_() for v in (x, s, t))
    fn = lambda a, b, c: gmkernels.affine_coupling(a, b, c, mask, inverse=inverse,  # noqa: E731
                                                   scale=scale, clamp=clamp)
    # fast_mode (random projections, a few calls) under the Triton interpreter, where every
    # call costs ~0.1 s; the full check on the native kernels
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=backend == "triton")


def test_only_logdet_or_only_y_used(backend):
    """Backward with one output unused (its gradient arrives as None / zeros)."""
    x, s, t, g = make((4, 6), torch.float64)
    mask = _mask("half", x.shape, g)
    for pick in (0, 1):
        ss = s.clone().requires_grad_()
        out = gmkernels.affine_coupling(x, ss, t, mask)[pick].sum()
        (gs,) = torch.autograd.grad(out, ss)
        ss2 = s.clone().requires_grad_()
        (ws,) = torch.autograd.grad(ref.affine_coupling(x, ss2, t, mask)[pick].sum(), ss2)
        assert_close(gs, ws, rtol=1e-12, atol=1e-12, what=f"output {pick} only: grad s")


def test_opcheck(device):
    g = torch.Generator().manual_seed(2)
    for shape, mkind, inverse, scale, clamp in [((4, 6), "half", False, 0, None),
                                                ((2, 3, 4, 4), "checker", True, 1, 2.5),
                                                ((3, 5), "per_sample", False, 0, 3.0)]:
        x, s, t = (torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
                   for _ in range(3))
        mask = _mask(mkind, shape, g)
        torch.library.opcheck(torch.ops.gmkernels.affine_coupling,
                              (x, s, t, mask, inverse, scale, clamp))
        gy = torch.randn(shape, generator=g, dtype=torch.float64)
        gl = torch.randn(shape[0], generator=g, dtype=torch.float64)
        torch.library.opcheck(torch.ops.gmkernels.affine_coupling_backward,
                              (gy, gl, x.detach(), s.detach(), t.detach(), mask, inverse, scale,
                               clamp))


def test_compile_parity(device):
    """The op traces under torch.compile(fullgraph=True), forward and backward."""
    x, s, t, g = make((16, 3, 4, 4), torch.float32)
    mask = _mask("checker", x.shape, g)

    def step(x, s, t):
        y, ld = gmkernels.affine_coupling(x, torch.tanh(s), t, mask, clamp=2.0)
        return (y * y).sum() - ld.sum()

    fc = torch.compile(step, fullgraph=True)
    ins = [v.clone().requires_grad_() for v in (x, s, t)]
    ins_c = [v.clone().requires_grad_() for v in (x, s, t)]
    out, out_c = step(*ins), fc(*ins_c)
    out.backward()
    out_c.backward()
    assert_close(out_c, out, rtol=1e-5, atol=1e-8, what="compiled loss")
    for name, a, b in zip("xst", ins, ins_c):
        assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-5, what=f"compiled grad {name}")


def test_every_cpu_simd_path_gives_the_same_values():
    from gmkernels import _C
    best = _C.set_cpu_isa("auto")
    order = ["baseline", "avx2", "avx512"]
    x, s, t, g = make((37, 45), torch.float32)
    mask = _mask("half", x.shape, g)
    try:
        for isa in order[: order.index(best) + 1]:
            assert _C.set_cpu_isa(isa) == isa
            with gmkernels.use_backend("native"):
                for scale, clamp in VARIANTS:
                    got = gmkernels.affine_coupling(x, s, t, mask, scale=scale, clamp=clamp)
                    check_close(got, ref64(x, s, t, mask, scale=scale, clamp=clamp),
                                torch.float32, 45, f"{isa} {scale} {clamp}")
    finally:
        _C.set_cpu_isa("auto")


def test_bad_input():
    x = torch.randn(4, 6)
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    m = torch.ones(6, dtype=torch.bool)
    f = gmkernels.affine_coupling
    with pytest.raises(ValueError, match="s must have the shape of x"):
        f(x, s[:, :3], t, m)
    with pytest.raises(TypeError, match="t must have the dtype of x"):
        f(x, s, t.double(), m)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        f(x.long(), s, t, m)
    with pytest.raises(ValueError, match="rank >= 1"):
        f(x[0, 0], s[0, 0], t[0, 0], m)
    with pytest.raises(ValueError, match="mask of shape .* not broadcastable"):
        f(x, s, t, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="every mask must be 0 or 1"):
        f(x, s, t, torch.full((6,), 0.5))
    with pytest.raises(ValueError, match="mask must be 0, 1"):
        f(x, s, t, 2)
    with pytest.raises(ValueError, match="scale must be one of"):
        f(x, s, t, m, scale="softplus")
    for c in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="clamp must be None or a finite float > 0"):
            f(x, s, t, m, clamp=c)
    # the dispatcher op checks too (errors name the argument)
    with pytest.raises(ValueError, match="scale must be 0"):
        torch.ops.gmkernels.affine_coupling(x, s, t, m, False, 7, None)
    with pytest.raises(ValueError, match="mask of shape"):
        torch.ops.gmkernels.affine_coupling(x, s, t, torch.ones(3, 6), False, 0, None)
    with pytest.raises(ValueError, match="grad_logdet must have shape"):
        torch.ops.gmkernels.affine_coupling_backward(x, torch.ones(3), x, s, t, m, False, 0, None)
