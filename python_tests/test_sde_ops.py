"""The fused Langevin step (SPEC §3.1) on every backend against the reference: values, noise,
gradients, opcheck, torch.compile, reproducibility and bad input."""

import math

import pytest
import torch

import gmkernels
from gmkernels.reference import random as ref_random
from gmkernels.reference import sde as ref
from conftest import report

TOL = {torch.float32: dict(rtol=1e-6, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-12),
       torch.float16: dict(rtol=1e-3, atol=1e-3), torch.bfloat16: dict(rtol=8e-3, atol=8e-3)}

SHAPES = [(), (1,), (7,), (5, 3), (2, 3, 4, 5), (0, 3), (3, 0), (130, 300), (257, 2)]


def make(shape, dtype, seed=0, noncontig=False):
    """x and grad of `shape` from a seeded generator; noncontig gives transposed layouts."""
    g = torch.Generator().manual_seed(seed)
    x64 = torch.randn(shape, generator=g, dtype=torch.float64)
    g64 = torch.randn(shape, generator=g, dtype=torch.float64)
    if noncontig:
        return _strided(x64, dtype), _strided(g64, dtype)
    return x64.to(dtype), g64.to(dtype)


def _strided(t64, dtype):
    """Same values in `dtype`, keeping a non-contiguous layout."""
    out = torch.empty(tuple(reversed(t64.shape)), dtype=dtype).permute(*reversed(range(t64.dim())))
    out.copy_(t64)
    assert not out.is_contiguous() or out.numel() <= 1
    return out


def scalars(shape, kind, dtype, seed=1):
    rows = shape[0] if len(shape) else 1
    if kind == "float":
        return 0.05, 0.3
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(rows, generator=g, dtype=torch.float64).to(dtype),
            torch.rand(rows, generator=g, dtype=torch.float64).to(dtype))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["float", "per_sample"])
@pytest.mark.parametrize("clamp", [None, (-0.5, 0.8)])
def test_matches_reference(backend, shape, dtype, kind, clamp):
    if kind == "per_sample" and len(shape) == 0:
        return  # a 0-d x has no sample dimension for a (B,) tensor; covered by test_bad_input
    x, g = make(shape, dtype)
    a, c = scalars(shape, kind, dtype)
    got = gmkernels.langevin_step(x, g, a, c, seed=2**40 + 3, offset=5, sample_offset=2, clamp=clamp)
    want = ref.langevin_step(x, g, a, c, 2**40 + 3, 5, 2, clamp)
    assert got.shape == x.shape and got.dtype == dtype
    assert torch.allclose(got, want, **TOL[dtype]), report(got, want)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 5), (130, 300)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous_inputs(backend, shape, dtype):
    x, g = make(shape, dtype, noncontig=True)
    assert not x.is_contiguous() and not g.is_contiguous()
    a, c = scalars(shape, "per_sample", dtype)
    got = gmkernels.langevin_step(x, g, a, c, seed=9, offset=1)
    want = ref.langevin_step(x.contiguous(), g.contiguous(), a, c, 9, 1)
    assert torch.allclose(got, want, **TOL[dtype]), report(got, want)
    # in place on a strided x writes through the view
    y = x.clone(memory_format=torch.preserve_format)
    assert not y.is_contiguous()
    out = gmkernels.langevin_step_(y, g, a, c, seed=9, offset=1)
    assert out is y
    assert torch.allclose(y, want, **TOL[dtype]), report(y, want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_use_float32_math(backend, dtype):
    x, g = make((33, 65), dtype)
    got = gmkernels.langevin_step(x, g, 0.1, 0.2, seed=4)
    want = ref.langevin_step(x, g, 0.1, 0.2, 4)  # computes in float32, rounds once
    assert got.dtype == dtype
    assert torch.allclose(got.float(), want.float(), **TOL[dtype]), report(got, want)


def test_noise_is_the_random_normal_stream(backend):
    x = torch.zeros(64, 33, dtype=torch.float64)
    y = gmkernels.langevin_step(x, torch.ones_like(x), 0.0, 1.0, seed=77, offset=12, sample_offset=5)
    xi = gmkernels.random.normal(x.shape, 77, 12, 5, dtype=torch.float64)
    assert torch.allclose(y, xi, atol=1e-12), report(y, xi)


def test_inplace_matches_out_of_place(backend):
    x, g = make((40, 17), torch.float32)
    want = gmkernels.langevin_step(x, g, 0.1, 0.2, seed=3, offset=8, clamp=(-1, 1))
    y = x.clone()
    assert gmkernels.langevin_step_(y, g, 0.1, 0.2, seed=3, offset=8, clamp=(-1, 1)) is y
    assert torch.equal(y, want)


def test_reproducible_and_sharded(backend):
    x, g = make((12, 9), torch.float32)
    a, c = scalars((12, 9), "per_sample", torch.float32)
    full = gmkernels.langevin_step(x, g, a, c, seed=5, offset=3)
    assert torch.equal(full, gmkernels.langevin_step(x, g, a, c, seed=5, offset=3))
    other = gmkernels.langevin_step(x, g, a, c, seed=5, offset=4)
    assert (full != other).float().mean() > 0.9
    for lo, hi in [(0, 5), (5, 12), (7, 8)]:
        part = gmkernels.langevin_step(x[lo:hi], g[lo:hi], a[lo:hi], c[lo:hi], seed=5, offset=3,
                                       sample_offset=lo)
        assert torch.equal(part, full[lo:hi]), f"rows {lo}:{hi}"
    torch.manual_seed(0)
    r1 = gmkernels.langevin_step(x, g, 0.1, 0.1)
    torch.manual_seed(0)
    assert torch.equal(r1, gmkernels.langevin_step(x, g, 0.1, 0.1))


# ---------------------------------------------------------------------------------------------
# gradients

@pytest.mark.parametrize("clamp", [None, (-0.7, 0.9)])
@pytest.mark.parametrize("shape", [(6, 5), (4, 2, 3), (300, 1), (3, 400)])
def test_gradients_match_reference(backend, clamp, shape):
    x, g = make(shape, torch.float64)
    a, c = scalars(shape, "per_sample", torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, g, a, c)]
    leaves_ref = [t.clone().requires_grad_() for t in (x, g, a, c)]
    y = gmkernels.langevin_step(*leaves, seed=3, offset=1, clamp=clamp)
    with gmkernels.use_backend("reference"):
        y_ref = gmkernels.langevin_step(*leaves_ref, seed=3, offset=1, clamp=clamp)
    w = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    got = torch.autograd.grad((y * w).sum(), leaves)
    want = torch.autograd.grad((y_ref * w).sum(), leaves_ref)
    for name, gg, ww in zip(["x", "grad", "step_size", "noise_scale"], got, want):
        assert torch.allclose(gg, ww, rtol=1e-10, atol=1e-10), f"d/d{name}: {report(gg, ww)}"


def test_gradients_float_scalars_and_partial_needs(backend):
    x, g = make((8, 8), torch.float32)
    x.requires_grad_()
    y = gmkernels.langevin_step(x, g, 0.25, 0.5, seed=1)
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(gx, torch.ones_like(x))
    # only the noise scale needs a gradient
    c = torch.full((8,), 0.5, requires_grad=True)
    y = gmkernels.langevin_step(x.detach(), g, 0.25, c, seed=1)
    (gc,) = torch.autograd.grad(y.sum(), c)
    xi = gmkernels.random.normal((8, 8), 1)
    assert torch.allclose(gc, xi.sum(1), atol=1e-5), report(gc, xi.sum(1))


def test_gradcheck(backend):
    x, g = make((5, 4), torch.float64)
    a, c = scalars((5, 4), "per_sample", torch.float64)
    args = [t.clone().requires_grad_() for t in (x, g, a, c)]
    fn = lambda x, g, a, c: gmkernels.langevin_step(x, g, a, c, seed=11, offset=2, clamp=(-3.0, 3.0))
    assert torch.autograd.gradcheck(fn, args)


def _op_args(shape, per_sample, requires_grad=False):
    x, g = make(shape, torch.float32)
    a, c = scalars(shape, "per_sample" if per_sample else "float", torch.float32)
    if requires_grad:
        x.requires_grad_()
        g.requires_grad_()
        if per_sample:
            a.requires_grad_()
            c.requires_grad_()
    a_t, a_f = (a, 0.0) if per_sample else (None, a)
    c_t, c_f = (c, 0.0) if per_sample else (None, c)
    return x, g, a_t, a_f, c_t, c_f


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("clamp", [(None, None), (-1.0, 1.0)])
def test_opcheck(per_sample, requires_grad, clamp):
    x, g, a_t, a, c_t, c = _op_args((6, 5), per_sample, requires_grad)
    torch.library.opcheck(torch.ops.gmkernels.langevin_step,
                          (x, g, a_t, a, c_t, c, 3, 2**33, 1) + clamp)


def test_opcheck_inplace_and_backward():
    x, g, a_t, a, c_t, c = _op_args((6, 5), True)
    torch.library.opcheck(torch.ops.gmkernels.langevin_step_, (x, g, a_t, a, c_t, c, 3, 1, 0, None, None))
    y = torch.randn(6, 5)
    torch.library.opcheck(torch.ops.gmkernels.langevin_step_backward,
                          (torch.randn(6, 5), y, g, a_t, a, 3, 1, 0, -1.0, 1.0, True, True))


@pytest.mark.slow
def test_compile_fullgraph_parity():
    def step(x, g, a):
        y = gmkernels.langevin_step(x, g, a, 0.3, seed=7, offset=4)
        return (y * y).sum(), y

    x, g = make((16, 9), torch.float32)
    a = torch.rand(16, requires_grad=True)
    compiled = torch.compile(step, fullgraph=True)
    loss_c, y_c = compiled(x, g, a)
    loss_e, y_e = step(x, g, a)
    assert torch.allclose(y_c, y_e, atol=1e-6), report(y_c, y_e)
    (ga_c,) = torch.autograd.grad(loss_c, a)
    (ga_e,) = torch.autograd.grad(loss_e, a)
    assert torch.allclose(ga_c, ga_e, rtol=1e-5, atol=1e-5), report(ga_c, ga_e)


# ---------------------------------------------------------------------------------------------
# bad input

@pytest.mark.parametrize("args,kwargs,exc,match", [
    ((torch.zeros(3, 2), torch.zeros(3, 3), 0.1, 0.1), {}, ValueError, "grad must have the shape of x"),
    ((torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.float64), 0.1, 0.1), {}, TypeError,
     "grad must have the dtype of x"),
    ((torch.zeros(3, 2), torch.zeros(3, 2, device="meta"), 0.1, 0.1), {}, ValueError,
     "grad must be on x's device"),
    ((torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.int64), 0.1, 0.1), {},
     TypeError, "x must be a floating-point tensor"),
    ((torch.zeros(3, 2), torch.zeros(3, 2), float("nan"), 0.1), {}, ValueError, "step_size must be finite"),
    ((torch.zeros(3, 2), torch.zeros(3, 2), 0.1, float("inf")), {}, ValueError, "noise_scale must be finite"),
    ((torch.zeros(3, 2), torch.zeros(3, 2), -0.1, 0.1), {}, ValueError, "step_size must be finite and >= 0"),
    ((torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(4), 0.1), {}, ValueError,
     r"step_size must be a float or a per-sample tensor of shape \(3,\)"),
    ((torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([0.1, -1.0, 0.1]), 0.1), {}, ValueError,
     "every step_size must be finite and >= 0"),
    ((torch.zeros(3, 2), torch.zeros(3, 2), 0.1, torch.tensor([0.1, math.nan, 0.1])), {}, ValueError,
     "every noise_scale must be finite"),
    ((torch.zeros(3, 2), torch.zeros(3, 2), 0.1, 0.1), dict(seed=-1), ValueError, "seed must be in"),
    ((torch.zeros(3, 2), torch.zeros(3, 2), 0.1, 0.1), dict(seed=2**64), ValueError, "seed must be in"),
    ((torch.zeros(3, 2), torch.zeros(3, 2), 0.1, 0.1), dict(seed=1, clamp=(1, -1)), ValueError,
     "clamp must be"),
    ((torch.zeros(3, 2), torch.zeros(3, 2), 0.1, 0.1), dict(seed=1, clamp=3.0), TypeError, "clamp must be"),
    ((torch.zeros(3, 2), [0.0], 0.1, 0.1), {}, TypeError, "grad must be a tensor"),
    ((torch.zeros(3, 2), torch.zeros(3, 2), "0.1", 0.1), {}, TypeError, "step_size must be a float"),
])
def test_bad_input(args, kwargs, exc, match):
    kwargs.setdefault("seed", 0)
    with pytest.raises(exc, match=match):
        gmkernels.langevin_step(*args, **kwargs)


def test_inplace_refuses_autograd():
    x = torch.zeros(3, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place step on tensors that require grad"):
        gmkernels.langevin_step_(x, torch.zeros(3, 2), 0.1, 0.1, seed=0)


def test_dispatcher_op_checks_arguments_itself():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="grad must have the shape of x"):
        torch.ops.gmkernels.langevin_step(x, torch.zeros(2, 3), None, 0.1, None, 0.1, 0, 0, 0, None, None)
    with pytest.raises(ValueError, match="step_size must be finite"):
        torch.ops.gmkernels.langevin_step(x, x, None, float("nan"), None, 0.1, 0, 0, 0, None, None)
    with pytest.raises(ValueError, match="noise_scale must be a float or a per-sample tensor"):
        torch.ops.gmkernels.langevin_step(x, x, None, 0.1, torch.ones(2), 0.1, 0, 0, 0, None, None)
    with pytest.raises(ValueError, match="clamp needs both bounds"):
        torch.ops.gmkernels.langevin_step(x, x, None, 0.1, None, 0.1, 0, 0, 0, -1.0, None)


def test_valid_extreme_input_gives_no_nan(backend):
    x = torch.full((64, 64), 1e30)
    g = torch.full((64, 64), -1e30)
    y = gmkernels.langevin_step(x, g, 1.0, 1.0, seed=1)
    assert torch.isfinite(y).all()
    # every uniform maps to a finite normal, including the extreme words
    assert torch.isfinite(gmkernels.random.normal((1 << 12, 256), seed=3)).all()
