"""The Triton backend against the reference (and the native kernels), run in the Triton
interpreter on CPU tensors: the random fills word for word, the normals to rounding, row
invariance, and the fused Langevin step forward and backward.

The compiled (PTX) side of the same kernels is test_triton_compile.py.
"""

import os

# @triton.jit reads TRITON_INTERPRET when the kernel modules are imported; conftest.py sets it
# for the session too, this keeps the module runnable on its own.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

import gmkernels  # noqa: E402
from gmkernels import _backend  # noqa: E402
from gmkernels.reference import random as ref  # noqa: E402
from gmkernels.reference import sde as ref_sde  # noqa: E402
from conftest import report  # noqa: E402

if not _backend.triton_interpret():
    pytest.skip("the Triton backend on CPU tensors needs TRITON_INTERPRET=1 (set to "
                f"{os.environ.get('TRITON_INTERPRET')!r})", allow_module_level=True)

from gmkernels.triton import random as tri_random  # noqa: E402
from gmkernels.triton import sde as tri_sde  # noqa: E402

SHAPES = [(), (5,), (3, 7), (2, 3, 5), (0, 4), (129, 3), (4, 1031)]
# (seed, offset, sample_offset): zero, words >= 2^31 in every half, >= 2^32, and the tops.
STREAMS = [(0, 0, 0), (0x89ABCDEF, 0x80000001, 2**31 + 3), (2**32 + 5, 2**40 + 17, 1000),
           (2**64 - 1, 2**64 - 1, 2**32 - 200)]
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
# float32 normals: tl.log/cos/sin (numpy in the interpreter, libdevice on GPU) and torch's
# Sleef differ in the last ulp; |n| <= sqrt(-2 ln 2^-24) = 5.77 where an ulp is 4.8e-7.
NORMAL_TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


@pytest.fixture(autouse=True)
def triton_backend():
    with gmkernels.use_backend("triton"):
        yield


def random_streams(n, seed=0):
    """n further (seed, offset, sample_offset) triples drawn over the whole uint64 range."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        s, o = (int(v) % 2**64 for v in torch.randint(-2**63, 2**63 - 1, (2,), generator=g))
        out.append((s, o, int(torch.randint(0, 2**31, (1,), generator=g))))
    return out


# --------------------------------------------------------------------------------------------
# random fills

@pytest.mark.parametrize("shape", SHAPES)
def test_uint32_words_identical(shape):
    for seed, offset, so in STREAMS + random_streams(2):
        got = gmkernels.random.uint32(shape, seed, offset, so)
        want = ref.uint32(shape, seed, offset, so)
        assert got.shape == want.shape and got.dtype == torch.int64, (got.shape, got.dtype)
        assert torch.equal(got, want), f"stream {(seed, offset, so)}: {report(got, want)}"


def test_uint32_words_equal_native():
    # The C++ kernel and the reference agree already; this pins Triton to the C++ directly.
    shape, stream = (37, 45), (2**63 + 99, 2**35 + 1, 12)
    got = gmkernels.random.uint32(shape, *stream)
    with gmkernels.use_backend("native"):
        want = gmkernels.random.uint32(shape, *stream)
    assert torch.equal(got, want), report(got, want)


@pytest.mark.parametrize("shape", SHAPES)
def test_uniform_and_rademacher_identical(shape):
    stream = STREAMS[1]
    for dtype in FLOATS:
        got = gmkernels.random.uniform(shape, *stream, dtype=dtype)
        want = ref.uniform(shape, *stream, dtype=dtype)
        assert got.dtype == dtype and torch.equal(got, want), \
            f"uniform {dtype}: {report(got, want)}"
        got = gmkernels.random.rademacher(shape, *stream, dtype=dtype)
        want = ref.rademacher(shape, *stream, dtype=dtype)
        assert torch.equal(got, want), f"rademacher {dtype}: {report(got, want)}"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normal_matches_reference(shape, dtype):
    for stream in STREAMS[1:3]:
        got = gmkernels.random.normal(shape, *stream, dtype=dtype)
        want = ref.normal(shape, *stream, dtype=dtype)
        assert got.shape == want.shape and got.dtype == dtype
        assert torch.allclose(got, want, rtol=0, atol=NORMAL_TOL[dtype]), \
            f"{dtype} stream {stream}: {report(got, want)}"


def test_normal_many_draws():
    # 2^16 normals: much of the range of the Box-Muller radius and angle, several programs.
    got = gmkernels.random.normal((16, 4096), 2**62 + 1, 9)
    want = ref.normal((16, 4096), 2**62 + 1, 9)
    assert torch.allclose(got, want, rtol=0, atol=1e-6), report(got, want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_round_the_float32_draws(dtype):
    # Rounded to nearest even like torch's .to(dtype): the interpreter's own float32 ->
    # bfloat16 cast truncates, which the kernels work around (gmkernels.triton._philox.cast_to).
    for draw in ("uniform", "normal"):
        got = getattr(gmkernels.random, draw)((33, 17), 4, 2, dtype=dtype)
        want = getattr(ref, draw)((33, 17), 4, 2, dtype=torch.float32).to(dtype)
        assert got.dtype == dtype and torch.equal(got, want), f"{draw}: {report(got, want)}"


@pytest.mark.parametrize("shape", [(), (5,), (3, 7), (129, 3), (4, 1031)])
def test_bernoulli_identical(shape):
    p = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    p.view(-1)[:3] = torch.tensor([0.0, 1.0, 0.5])[: p.numel()]
    for dtype in FLOATS:
        got = gmkernels.random.bernoulli(p.to(dtype), 2**33 + 77, 3, 2)
        want = ref.bernoulli(p.to(dtype), 2**33 + 77, 3, 2)
        assert got.dtype == dtype and torch.equal(got, want), f"{dtype}: {report(got, want)}"


@pytest.mark.parametrize("shape", [(6, 5), (300, 2), (5, 300), (4, 3, 3)])
def test_row_invariance(shape):
    seed, offset = 2**40 + 11, 2**32 + 4
    full = gmkernels.random.normal(shape, seed, offset)
    words = gmkernels.random.uint32(shape, seed, offset)
    for b in range(0, shape[0], max(1, shape[0] // 3)):
        one = gmkernels.random.normal((1,) + shape[1:], seed, offset, b)
        assert torch.equal(one[0], full[b]), f"row {b}: {report(one[0], full[b])}"
        shard = gmkernels.random.uint32((2,) + shape[1:], seed, offset, b)
        assert torch.equal(shard[0], words[b]), f"row {b}: {report(shard[0], words[b])}"


def test_non_contiguous_out_and_p():
    out = torch.empty(9, 130).t()  # (130, 9), column-major
    tri_random.fill_(out, "normal", 5, 1, 0)
    want = ref.normal((130, 9), 5, 1)
    assert torch.allclose(out, want, rtol=0, atol=1e-6), report(out, want)
    out = torch.empty(9, 130, dtype=torch.int64)[:, ::2]
    tri_random.fill_(out, "uint32", 5, 1, 0)
    want = ref.uint32((9, 65), 5, 1)
    assert torch.equal(out, want), report(out, want)
    p = torch.rand(9, 130).t()
    got, want = tri_random.bernoulli(p, 3, 0, 0), ref.bernoulli(p.contiguous(), 3)
    assert got.is_contiguous() and torch.equal(got, want), report(got, want)


def test_fill_rejects_bad_dtype_and_draw():
    with pytest.raises(TypeError, match="int64"):
        tri_random.fill_(torch.empty(3), "uint32", 0)
    with pytest.raises(TypeError, match="draw='normal'"):
        tri_random.fill_(torch.empty(3, dtype=torch.int32), "normal", 0)
    with pytest.raises(ValueError, match="draw must be one of"):
        tri_random.fill_(torch.empty(3), "gamma", 0)


# --------------------------------------------------------------------------------------------
# langevin_step

# Forward: the noise differs by <= NORMAL_TOL and the sums by a rounding or two.
FWD_TOL = {torch.float32: dict(rtol=1e-6, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}
# Backward: gx, gg are exact products; the per-row sums are summed in another order.
SUM_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _inputs(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    grad = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    rows = shape[0] if len(shape) else 1
    a_t = (torch.rand(rows, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    c_t = (torch.rand(rows, generator=g, dtype=torch.float64) + 0.1).to(dtype)
    return x, grad, a_t, c_t


def _close(got, want, tol, what):
    assert got.shape == want.shape and got.dtype == want.dtype, \
        f"{what}: got {tuple(got.shape)} {got.dtype}, want {tuple(want.shape)} {want.dtype}"
    assert torch.allclose(got, want, **tol), f"{what}: {report(got, want)}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (6, 4, 33), (2, 1031), (0, 3)])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("clamp", [None, (-0.75, 0.5)])
def test_langevin_forward_matches_reference(dtype, shape, per_sample, clamp):
    x, grad, a_t, c_t = _inputs(shape, dtype)
    a, c = (a_t, c_t) if per_sample and len(shape) else (0.05, 0.3)
    stream = (2**63 + 5, 2**33 + 1, 7)
    got = gmkernels.langevin_step(x, grad, a, c, seed=stream[0], offset=stream[1],
                                  sample_offset=stream[2], clamp=clamp)
    want = ref_sde.langevin_step(x, grad, a, c, *stream, clamp)
    assert got.is_contiguous()
    _close(got, want, FWD_TOL[dtype], f"{dtype} {shape} per_sample={per_sample} clamp={clamp}")


def test_langevin_forward_non_contiguous_and_inplace():
    base, gbase, a_t, c_t = _inputs((40, 9), torch.float32)
    x, grad = base.t(), gbase.t()[:, :]  # (9, 40), column-major
    a_t, c_t = a_t[:9], c_t[:9]
    got = gmkernels.langevin_step(x, grad, a_t, c_t, seed=3, offset=2, clamp=(-1.0, 1.0))
    want = ref_sde.langevin_step(x.contiguous(), grad.contiguous(), a_t, c_t, 3, 2, 0, (-1.0, 1.0))
    _close(got, want, FWD_TOL[torch.float32], "non-contiguous x")
    y = x.clone()
    gmkernels.langevin_step_(y, grad, a_t, c_t, seed=3, offset=2, clamp=(-1.0, 1.0))
    assert torch.equal(y, got), report(y, got)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("clamp", [None, (-0.5, 0.7)])
def test_langevin_matches_native(dtype, clamp):
    """Forward and backward against the C++ op, including the half types, where the clamp
    mask on the saved (rounded) output is part of the semantics."""
    x, grad, a_t, c_t = _inputs((6, 3, 5), dtype, seed=1)
    lo, hi = clamp if clamp else (None, None)
    cd = torch.float64 if dtype == torch.float64 else torch.float32
    y = tri_sde.langevin_step_fwd(x, grad, a_t, 0.0, c_t, 0.0, 11, 3, 2, clamp)
    yn = torch.ops.gmkernels.langevin_step(x, grad, a_t.to(cd), 0.0, c_t.to(cd), 0.0, 11, 3, 2,
                                           lo, hi)
    # one rounding of the result in the storage dtype apart (the noise differs in the last ulp)
    ulp = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}.get(dtype, 0.0)
    _close(y, yn, dict(rtol=ulp, atol=FWD_TOL[cd]["atol"]), f"forward {dtype}")
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    got = tri_sde.langevin_step_bwd(gy, yn, grad, a_t, 0.0, 11, 3, 2, clamp, True, True)
    want = torch.ops.gmkernels.langevin_step_backward(gy, yn, grad, a_t.to(cd), 0.0, 11, 3, 2,
                                                      lo, hi, True, True)
    for name, gt, wt in zip(("gx", "gg"), got[:2], want[:2]):
        assert torch.equal(gt, wt), f"{name} {dtype}: {report(gt, wt)}"
    for name, gt, wt in zip(("ga", "gc"), got[2:], want[2:]):
        _close(gt, wt, SUM_TOL[cd], f"{name} {dtype}")


ARG_NAMES = ("x", "grad", "step_size", "noise_scale")


def _grads(step, x, grad, a, c, stream, clamp, gy):
    """d/d(each tensor among x, grad, a, c) of ``step(x, grad, a, c)`` against gy, by autograd;
    returns (names, grads)."""
    names = [n for n, t in zip(ARG_NAMES, (x, grad, a, c)) if isinstance(t, torch.Tensor)]
    leaves = [t.detach().clone().requires_grad_() for t in (x, grad, a, c)
              if isinstance(t, torch.Tensor)]
    it = iter(leaves)
    args = [next(it) if isinstance(t, torch.Tensor) else t for t in (x, grad, a, c)]
    return names, torch.autograd.grad(step(*args, stream, clamp), leaves, gy)


def _ops_step(x, grad, a, c, stream, clamp):
    return gmkernels.langevin_step(x, grad, a, c, seed=stream[0], offset=stream[1],
                                   sample_offset=stream[2], clamp=clamp)


def _ref_step(x, grad, a, c, stream, clamp):
    return ref_sde.langevin_step(x, grad, a, c, *stream, clamp)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (5,), (4, 3, 7), (3, 1031)])
@pytest.mark.parametrize("clamp", [None, (-0.6, 0.6)])
@pytest.mark.parametrize("params", ["floats", "per_sample_a", "per_sample_c", "per_sample_both"])
def test_langevin_backward_matches_reference_autograd(dtype, shape, clamp, params):
    x, grad, a_t, c_t = _inputs(shape, dtype, seed=3)
    a = a_t if params in ("per_sample_a", "per_sample_both") else 0.05
    c = c_t if params in ("per_sample_c", "per_sample_both") else 0.3
    stream = (2**64 - 3, 2**32 + 9, 5)
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=dtype)
    names, got = _grads(_ops_step, x, grad, a, c, stream, clamp, gy)
    _, want = _grads(_ref_step, x, grad, a, c, stream, clamp, gy)
    assert len(got) == len(want) == len(names), (names, len(got), len(want))
    for name, gt, wt in zip(names, got, want):
        tol = FWD_TOL[dtype] if name in ("x", "grad") else SUM_TOL[dtype]
        _close(gt, wt, tol, f"d/d{name} {dtype} {shape} clamp={clamp}")


def test_langevin_backward_empty_and_flags():
    out = torch.empty(0, 4)
    gx, gg, ga, gc = tri_sde.langevin_step_bwd(out, out, out, torch.empty(0), 0.1, 1, 0, 0,
                                               None, True, True)
    assert gx.shape == (0, 4) and ga.shape == (0,) and gc.shape == (0,)
    y = torch.randn(3, 2)
    gx, gg, ga, gc = tri_sde.langevin_step_bwd(y, y, y, None, 0.5, 1, 0, 0, None, False, False)
    assert ga.shape == (0,) and gc.shape == (0,) and ga.dtype == torch.float32
    assert torch.equal(gx, y) and torch.equal(gg, y * 0.5), report(gg, y * 0.5)
