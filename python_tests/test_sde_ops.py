"""The sde family on every backend: the fused Langevin step (docs/spec.md §3.1) and the SDE sampler
steps (docs/spec.md §3.2/§3.3: euler_maruyama_step, reverse_sde_step, langevin_corrector_step,
affine_noise_step, ddpm_step). Values and noise against the reference, dtypes, shapes,
per-sample coefficients, non-contiguous inputs, gradients (reference autograd and gradcheck),
opcheck, torch.compile, reproducibility and bad input; then the Triton kernels on their own,
against an oracle written here and against the native ops.

Sections: langevin_step; langevin_step on Triton; the SDE steps; the SDE steps' Triton kernels.
The compiled (PTX) side of the Triton kernels is test_triton_compile.py.
"""

import math

import pytest
import torch

import gmkernels
import _helpers
from _helpers import assert_close, assert_equal, tol
from gmkernels.reference import random as ref_random
from gmkernels.reference import sde as ref
from gmkernels.score import DDPMSchedule, VESDE, VPSDE, subVPSDE


@pytest.fixture
def tri(triton):
    """gmkernels.triton.sde with the Triton backend current, or a skip with the reason where
    Triton cannot run here (the `triton` fixture)."""
    from gmkernels.triton import sde
    return sde

SHAPES = [(), (1,), (7,), (5, 3), (2, 3, 4, 5), (0, 3), (3, 0), (130, 300), (257, 2)]


def make(shape, dtype, seed=0, noncontig=False):
    """x and grad of `shape` from a seeded generator; noncontig gives transposed layouts."""
    g = torch.Generator().manual_seed(seed)
    x64 = torch.randn(shape, generator=g, dtype=torch.float64)
    g64 = torch.randn(shape, generator=g, dtype=torch.float64)
    if noncontig:
        return _helpers.noncontig(x64, dtype), _helpers.noncontig(g64, dtype)
    return x64.to(dtype), g64.to(dtype)


def scalars(shape, kind, dtype, seed=1):
    rows = shape[0] if len(shape) else 1
    if kind == "float":
        return 0.05, 0.3
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(rows, generator=g, dtype=torch.float64).to(dtype),
            torch.rand(rows, generator=g, dtype=torch.float64).to(dtype))


# a 0-d x has no sample dimension for a (B,) tensor: no per-sample case for it (the bad-input
# tests cover a wrong-shaped step_size)
LANGEVIN_CASES = [(shape, kind) for shape in SHAPES for kind in ("float", "per_sample")
                  if not (kind == "per_sample" and len(shape) == 0)]


@pytest.mark.parametrize("shape,kind", LANGEVIN_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clamp", [None, (-0.5, 0.8)])
def test_matches_reference(backend, shape, dtype, kind, clamp):
    x, g = make(shape, dtype)
    a, c = scalars(shape, kind, dtype)
    got = gmkernels.langevin_step(x, g, a, c, seed=2**40 + 3, offset=5, sample_offset=2, clamp=clamp)
    want = ref.langevin_step(x, g, a, c, 2**40 + 3, 5, 2, clamp)
    assert got.shape == x.shape and got.dtype == dtype
    assert_close(got, want, kind="values")


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 5), (130, 300)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous_inputs(backend, shape, dtype):
    x, g = make(shape, dtype, noncontig=True)
    assert not x.is_contiguous() and not g.is_contiguous()
    a, c = scalars(shape, "per_sample", dtype)
    got = gmkernels.langevin_step(x, g, a, c, seed=9, offset=1)
    want = ref.langevin_step(x.contiguous(), g.contiguous(), a, c, 9, 1)
    assert_close(got, want, kind="values", what="out of place")
    # in place on a strided x writes through the view
    y = x.clone(memory_format=torch.preserve_format)
    assert not y.is_contiguous()
    out = gmkernels.langevin_step_(y, g, a, c, seed=9, offset=1)
    assert out is y
    assert_close(y, want, kind="values", what="in place")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_use_float32_math(backend, dtype):
    x, g = make((33, 65), dtype)
    got = gmkernels.langevin_step(x, g, 0.1, 0.2, seed=4)
    want = ref.langevin_step(x, g, 0.1, 0.2, 4)  # computes in float32, rounds once
    assert_close(got, want, kind="values")


def test_noise_is_the_random_normal_stream(backend):
    x = torch.zeros(64, 33, dtype=torch.float64)
    y = gmkernels.langevin_step(x, torch.ones_like(x), 0.0, 1.0, seed=77, offset=12, sample_offset=5)
    xi = gmkernels.random.normal(x.shape, 77, 12, 5, dtype=torch.float64)
    assert_close(y, xi, kind="normal")


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
        assert_close(gg, ww, kind="grad", what=f"d/d{name}")


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
    assert_close(gc, xi.sum(1), kind="row_sum", what="d/d noise_scale")


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
def test_opcheck(device, per_sample, requires_grad, clamp):
    x, g, a_t, a, c_t, c = _op_args((6, 5), per_sample, requires_grad)
    torch.library.opcheck(torch.ops.gmkernels.langevin_step,
                          (x, g, a_t, a, c_t, c, 3, 2**33, 1) + clamp)


def test_opcheck_inplace_and_backward(device):
    x, g, a_t, a, c_t, c = _op_args((6, 5), True)
    torch.library.opcheck(torch.ops.gmkernels.langevin_step_, (x, g, a_t, a, c_t, c, 3, 1, 0, None, None))
    y = torch.randn(6, 5)
    torch.library.opcheck(torch.ops.gmkernels.langevin_step_backward,
                          (torch.randn(6, 5), y, g, a_t, a, 3, 1, 0, -1.0, 1.0, True, True))


@pytest.mark.slow
def test_compile_fullgraph_parity(device):
    def step(x, g, a):
        y = gmkernels.langevin_step(x, g, a, 0.3, seed=7, offset=4)
        return (y * y).sum(), y

    x, g = make((16, 9), torch.float32)
    a = torch.rand(16, requires_grad=True)
    compiled = torch.compile(step, fullgraph=True)
    loss_c, y_c = compiled(x, g, a)
    loss_e, y_e = step(x, g, a)
    assert_close(y_c, y_e, rtol=1e-5, atol=1e-6, what="compiled y")
    (ga_c,) = torch.autograd.grad(loss_c, a)
    (ga_e,) = torch.autograd.grad(loss_e, a)
    assert_close(ga_c, ga_e, rtol=1e-5, atol=1e-5, what="compiled d/d step_size")


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


def test_dispatcher_op_checks_arguments_itself(device):
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


# ---------------------------------------------------------------------------------------------
# langevin_step on the Triton backend (interpreter, CPU tensors): more shapes and streams, the
# kernels' entry points against the C++ op (half types included), the backward by parameter

def _lv_inputs(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    grad = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    rows = shape[0] if len(shape) else 1
    a_t = (torch.rand(rows, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    c_t = (torch.rand(rows, generator=g, dtype=torch.float64) + 0.1).to(dtype)
    return x, grad, a_t, c_t


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (6, 4, 33), (2, 1031), (0, 3)])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("clamp", [None, (-0.75, 0.5)])
def test_triton_langevin_forward_matches_reference(triton, dtype, shape, per_sample, clamp):
    x, grad, a_t, c_t = _lv_inputs(shape, dtype)
    a, c = (a_t, c_t) if per_sample and len(shape) else (0.05, 0.3)
    stream = (2**63 + 5, 2**33 + 1, 7)
    got = gmkernels.langevin_step(x, grad, a, c, seed=stream[0], offset=stream[1],
                                  sample_offset=stream[2], clamp=clamp)
    want = ref.langevin_step(x, grad, a, c, *stream, clamp)
    assert got.is_contiguous()
    assert_close(got, want, kind="values", what=f"{dtype} {shape} per_sample={per_sample} clamp={clamp}")


def test_triton_langevin_forward_non_contiguous_and_inplace(triton):
    base, gbase, a_t, c_t = _lv_inputs((40, 9), torch.float32)
    x, grad = base.t(), gbase.t()[:, :]  # (9, 40), column-major
    a_t, c_t = a_t[:9], c_t[:9]
    got = gmkernels.langevin_step(x, grad, a_t, c_t, seed=3, offset=2, clamp=(-1.0, 1.0))
    want = ref.langevin_step(x.contiguous(), grad.contiguous(), a_t, c_t, 3, 2, 0, (-1.0, 1.0))
    assert_close(got, want, kind="values", what="non-contiguous x")
    y = x.clone()
    gmkernels.langevin_step_(y, grad, a_t, c_t, seed=3, offset=2, clamp=(-1.0, 1.0))
    assert_equal(y, got, "in place")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("clamp", [None, (-0.5, 0.7)])
def test_triton_langevin_matches_native(tri, dtype, clamp):
    """Forward and backward against the C++ op, including the half types, where the clamp
    mask on the saved (rounded) output is part of the semantics."""
    x, grad, a_t, c_t = _lv_inputs((6, 3, 5), dtype, seed=1)
    lo, hi = clamp if clamp else (None, None)
    cd = torch.float64 if dtype == torch.float64 else torch.float32
    y = tri.langevin_step_fwd(x, grad, a_t, 0.0, c_t, 0.0, 11, 3, 2, clamp)
    yn = torch.ops.gmkernels.langevin_step(x, grad, a_t.to(cd), 0.0, c_t.to(cd), 0.0, 11, 3, 2,
                                           lo, hi)
    # one rounding of the result in the storage dtype apart (the noise differs in the last ulp)
    t = (tol("half_rounding", dtype) if dtype in (torch.float16, torch.bfloat16)
         else dict(rtol=0.0, atol=tol("values", dtype)["atol"]))
    assert_close(y, yn, **t, what=f"forward {dtype}")
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    got = tri.langevin_step_bwd(gy, yn, grad, a_t, 0.0, 11, 3, 2, clamp, True, True)
    want = torch.ops.gmkernels.langevin_step_backward(gy, yn, grad, a_t.to(cd), 0.0, 11, 3, 2,
                                                      lo, hi, True, True)
    for name, gt, wt in zip(("gx", "gg"), got[:2], want[:2]):
        assert_equal(gt, wt, f"{name} {dtype}")
    for name, gt, wt in zip(("ga", "gc"), got[2:], want[2:]):
        assert_close(gt, wt, kind="row_sum", dtype=cd, what=f"{name} {dtype}")


ARG_NAMES = ("x", "grad", "step_size", "noise_scale")


def _lv_grads(step, x, grad, a, c, stream, clamp, gy):
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
    return ref.langevin_step(x, grad, a, c, *stream, clamp)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (5,), (4, 3, 7), (3, 1031)])
@pytest.mark.parametrize("clamp", [None, (-0.6, 0.6)])
@pytest.mark.parametrize("params", ["floats", "per_sample_a", "per_sample_c", "per_sample_both"])
def test_triton_langevin_backward_matches_reference_autograd(triton, dtype, shape, clamp, params):
    x, grad, a_t, c_t = _lv_inputs(shape, dtype, seed=3)
    a = a_t if params in ("per_sample_a", "per_sample_both") else 0.05
    c = c_t if params in ("per_sample_c", "per_sample_both") else 0.3
    stream = (2**64 - 3, 2**32 + 9, 5)
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=dtype)
    names, got = _lv_grads(_ops_step, x, grad, a, c, stream, clamp, gy)
    _, want = _lv_grads(_ref_step, x, grad, a, c, stream, clamp, gy)
    assert len(got) == len(want) == len(names), (names, len(got), len(want))
    for name, gt, wt in zip(names, got, want):
        kind = "values" if name in ("x", "grad") else "row_sum"
        assert_close(gt, wt, kind=kind, what=f"d/d{name} {dtype} {shape} clamp={clamp}")


def test_triton_langevin_backward_empty_and_flags(tri):
    out = torch.empty(0, 4)
    gx, gg, ga, gc = tri.langevin_step_bwd(out, out, out, torch.empty(0), 0.1, 1, 0, 0,
                                               None, True, True)
    assert gx.shape == (0, 4) and ga.shape == (0,) and gc.shape == (0,)
    y = torch.randn(3, 2)
    gx, gg, ga, gc = tri.langevin_step_bwd(y, y, y, None, 0.5, 1, 0, 0, None, False, False)
    assert ga.shape == (0,) and gc.shape == (0,) and ga.dtype == torch.float32
    assert_equal(gx, y, "gx")
    assert_equal(gg, y * 0.5, "gg")


# ---------------------------------------------------------------------------------------------
# The SDE sampler steps (docs/spec.md §3.3: euler_maruyama_step, reverse_sde_step,
# langevin_corrector_step, affine_noise_step, ddpm_step) on every backend against the
# reference: values and noise element by element, dtypes, shapes, per-sample times and
# coefficients, non-contiguous inputs, gradients, opcheck and bad input. The backends are
# native and triton (when they run here) and "reference", the public wrapper on the reference
# path.

STEP_SHAPES = [(7,), (2, 3, 4, 5), (130, 33)]
SDES = {"ve": VESDE(0.01, 10.0), "vp": VPSDE(0.1, 20.0), "subvp": subVPSDE(0.1, 20.0)}
SEED, OFF, SOFF = 2**40 + 3, 5, 2


def make_n(shape, dtype, n=2, seed=0, noncontig=False, scale=1.0):
    """n tensors of `shape` from a seeded generator; noncontig gives reversed-strides layouts."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        t64 = torch.randn(shape, generator=g, dtype=torch.float64) * scale
        out.append(_helpers.noncontig(t64, dtype) if noncontig else t64.to(dtype))
    return out


def sde_p(sde):
    """(p0, p1) of an SDE object as the schemas take them: (sigma_min, sigma_max) for VE,
    (beta_min, beta_max) for VP and sub-VP."""
    return (sde.sigma_min, sde.sigma_max) if sde.kind == "ve" else (sde.beta_min, sde.beta_max)


def per_row(shape, dtype, lo=0.0, hi=1.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(shape[0], generator=g, dtype=torch.float64)).to(dtype)


def close(got, want, dtype, what=""):
    """The steps against the reference: tolerance kind "transcendental" (float32 per-row
    coefficients in the kernels, float64 in the reference)."""
    assert_close(got, want, kind="transcendental", dtype=dtype, what=what)


# ---------------------------------------------------------------------------------------------
# values vs reference

@pytest.mark.parametrize("shape", STEP_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("diff_kind", ["float", "per_sample", "full"])
def test_euler_maruyama_matches_reference(any_backend, shape, dtype, diff_kind):
    x, f = make_n(shape, dtype)
    g = {"float": 0.7, "per_sample": per_row(shape, dtype, 0.1, 2.0),
         "full": make_n(shape, dtype, 1, seed=3)[0].abs()}[diff_kind]
    for dt in (0.01, -0.03):          # negative: backwards in time, same noise scale
        got = gmkernels.euler_maruyama_step(x, f, g, dt, seed=SEED, offset=OFF, sample_offset=SOFF)
        want = ref.euler_maruyama_step(x, f, g, dt, SEED, OFF, SOFF)
        close(got, want, dtype, f"EM {diff_kind} dt={dt}")


@pytest.mark.parametrize("kind", ["ve", "vp", "subvp"])
@pytest.mark.parametrize("predictor", ["euler_maruyama", "reverse_diffusion"])
@pytest.mark.parametrize("t_kind", ["float", "per_sample"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reverse_sde_step_matches_reference(any_backend, kind, predictor, t_kind, dtype):
    shape = (5, 3, 4) if t_kind == "float" else (7, 6)
    x, s = make_n(shape, dtype)
    # per-sample t includes the ends 0 and 1 (VE reverse_diffusion clips t - dt at 0)
    t = 0.63 if t_kind == "float" else torch.cat([torch.tensor([0.0, 1.0, 0.004]),
                                                  per_row(shape, torch.float64)])[:shape[0]].to(dtype)
    sde = SDES[kind]
    dt = 0.01
    p0, p1 = sde_p(sde)
    for pf in (False, True):
        got = gmkernels.reverse_sde_step(x, s, t, dt, sde, predictor=predictor,
                                         probability_flow=pf, seed=SEED, offset=OFF,
                                         sample_offset=SOFF)
        want = ref.reverse_sde_step(x, s, t, dt, kind, p0, p1, predictor, pf, SEED, OFF, SOFF)
        close(got, want, dtype, f"{kind} {predictor} pf={pf} t={t_kind}")


@pytest.mark.parametrize("shape", STEP_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha_kind", ["float", "per_sample"])
def test_langevin_corrector_matches_reference(any_backend, shape, dtype, alpha_kind):
    x, s = make_n(shape, dtype)
    s[0].zero_()          # a zero score row: under the batch rule it still gets its noise
    alpha = 0.9 if alpha_kind == "float" else per_row(shape, dtype, 0.5, 1.0)
    got = gmkernels.langevin_corrector_step(x, s, 0.16, alpha=alpha, seed=SEED, offset=OFF,
                                            sample_offset=SOFF)
    want = ref.langevin_corrector_step(x, s, 0.16, alpha, SEED, OFF, SOFF)
    close(got, want, dtype, f"corrector alpha={alpha_kind}")
    assert torch.isfinite(got).all()
    if shape[0] > 1:
        assert not torch.equal(got[0], x[0]), "a zero score row must get the batch step's noise"


@pytest.mark.parametrize("shape", [(7,), (130, 33), (4, 3, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_langevin_corrector_reference_is_the_batch_rule(shape, dtype):
    # the reference against the independent oracle below (Song et al.'s released
    # LangevinCorrector: one ratio from the batch means of the row norms, per-row alpha)
    x, s = make_n(shape, dtype)
    for alpha in (0.7, per_row(shape, dtype, 0.5, 1.0)):
        got = ref.langevin_corrector_step(x, s, 0.16, alpha, *STREAM)
        want, scale = oracle_corrector(x, s, alpha, 0.16)
        _check(got, want, scale, dtype, f"reference vs oracle {shape} {dtype}")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the Triton
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_langevin_corrector_guard_and_nan(any_backend, dtype):
    # eps = 0 (x returned as is) when the mean score norm is 0 or the step size would pass
    # 2^120 (a tiny score: 1e-20 gives eps ~ 1e39); finite input never gives inf or NaN
    x, s = make_n((9, 5), dtype)
    for scale in (0.0, 1e-20, 1e-30):
        tiny = s * scale
        for alpha in (1.0, per_row((9,), dtype, 0.5, 1.0)):
            got = gmkernels.langevin_corrector_step(x, tiny, 0.16, alpha=alpha, seed=3, offset=1)
            assert torch.isfinite(got).all(), f"score scale {scale}: {got}"
            assert torch.equal(got, x), f"score scale {scale}: x must come back unchanged"
            assert torch.equal(got, ref.langevin_corrector_step(x, tiny, 0.16, alpha, 3, 1))
    # a score of a norm small enough for a large but finite step is not guarded: it follows
    # the formula (here eps ~ 2 * (0.16 * sqrt(5) / (1e-6 sqrt(5)))^2 ~ 5e10)
    got = gmkernels.langevin_corrector_step(x, s * 1e-6, 0.16, seed=3, offset=1)
    close(got, ref.langevin_corrector_step(x, s * 1e-6, 0.16, 1.0, 3, 1), dtype, "small score")
    assert torch.isfinite(got).all() and not torch.equal(got, x)
    # a NaN in one row's score makes the mean norm NaN: every row is NaN (the contract)
    sn = s.clone()
    sn[4, 2] = float("nan")
    got = gmkernels.langevin_corrector_step(x, sn, 0.16, seed=3, offset=1)
    assert got.isnan().all(), got
    # an inf makes the mean score norm inf, so eps = 0: x back, NaN (0 * inf) in that row only
    sn[4, 2] = float("inf")
    got = gmkernels.langevin_corrector_step(x, sn, 0.16, seed=3, offset=1)
    keep = torch.ones(9, dtype=torch.bool)
    keep[4] = False
    assert torch.equal(got[keep], x[keep]) and got[4].isnan().any(), got


def test_langevin_corrector_rows_depend_on_the_batch(any_backend):
    # the batch rule: scaling the other rows' scores changes row 0's step (documented), while
    # the noise stays row-keyed (sample_offset shards draw the same xi)
    x, s = make_n((8, 3), torch.float64)
    a = gmkernels.langevin_corrector_step(x, s, 0.16, seed=5, offset=2)
    s2 = s.clone()
    s2[1:] *= 4.0
    b = gmkernels.langevin_corrector_step(x, s2, 0.16, seed=5, offset=2)
    assert not torch.allclose(a[0], b[0])
    close(b, ref.langevin_corrector_step(x, s2, 0.16, 1.0, 5, 2), torch.float64, "scaled rows")
    # a shard of rows 3:8 with sample_offset 3 is the reference on those rows alone
    part = gmkernels.langevin_corrector_step(x[3:], s[3:], 0.16, seed=5, offset=2,
                                             sample_offset=3)
    close(part, ref.langevin_corrector_step(x[3:], s[3:], 0.16, 1.0, 5, 2, 3), torch.float64,
          "shard")


@pytest.mark.parametrize("shape", STEP_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("coef_kind", ["float", "per_sample", "mixed"])
def test_affine_noise_step_matches_reference(any_backend, shape, dtype, coef_kind):
    x, e = make_n(shape, dtype)
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
def test_ddpm_step_is_ho_et_al_alg2(any_backend, dtype, sched):
    S = DDPMSchedule.linear(100) if sched == "linear" else DDPMSchedule.cosine(100, sigma="posterior")
    x, e = make_n((6, 3, 2), dtype)
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


def test_steps_noise_is_the_random_normal_stream(any_backend):
    x = torch.zeros(64, 33, dtype=torch.float64)
    xi = gmkernels.random.normal(x.shape, 77, 12, 5, dtype=torch.float64)
    y = gmkernels.euler_maruyama_step(x, x, 1.0, 1.0, seed=77, offset=12, sample_offset=5)
    assert_close(y, xi, kind="normal", what="EM")
    y = gmkernels.affine_noise_step(x, x, 0.0, 0.0, 1.0, seed=77, offset=12, sample_offset=5)
    assert_close(y, xi, kind="normal", what="affine")
    # reverse EM on VP at t = 0 with beta_min = 1: g² = 1, so out = x + sqrt(dt) xi
    y = gmkernels.reverse_sde_step(x, x, 0.0, 0.25, VPSDE(1.0, 3.0), seed=77, offset=12, sample_offset=5)
    assert_close(y, 0.5 * xi, kind="normal", what="reverse")
    # probability flow draws no noise
    y = gmkernels.reverse_sde_step(x, x, 0.5, 0.25, VPSDE(), probability_flow=True, seed=77)
    assert torch.equal(y, x)


def test_sharding_and_seeds(any_backend):
    x, s = make_n((12, 9), torch.float32)
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
def test_steps_non_contiguous_inputs(any_backend, dtype):
    shape = (6, 5, 4)
    x, s = make_n(shape, dtype, noncontig=True)
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


def test_empty_batch(any_backend):
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
def test_euler_maruyama_gradients(any_backend, diff_kind, shape):
    x, f = make_n(shape, torch.float64)
    g = per_row(shape, torch.float64) if diff_kind == "per_sample" else make_n(shape, torch.float64, 1, 4)[0]
    w = make_n(shape, torch.float64, 1, seed=7)[0]
    got = _grads(lambda x, f, g: gmkernels.euler_maruyama_step(x, f, g, -0.2, seed=3, offset=1),
                 [t.clone().requires_grad_() for t in (x, f, g)], w)
    want = _grads(lambda x, f, g: ref.euler_maruyama_step(x, f, g, -0.2, 3, 1),
                  [t.clone().requires_grad_() for t in (x, f, g)], w)
    for name, a, b in zip(["x", "drift", "diffusion"], got, want):
        assert_close(a, b, kind="grad", what=f"d/d{name}")
    args = [t.clone().requires_grad_() for t in (x, f, g)]
    _gradcheck(any_backend, lambda x, f, g: gmkernels.euler_maruyama_step(x, f, g, 0.3, seed=2), args)


@pytest.mark.parametrize("kind", ["ve", "vp", "subvp"])
@pytest.mark.parametrize("predictor", ["euler_maruyama", "reverse_diffusion"])
def test_reverse_sde_step_gradients(any_backend, kind, predictor):
    shape = (5, 4)
    x, s = make_n(shape, torch.float64)
    t = per_row(shape, torch.float64)
    w = make_n(shape, torch.float64, 1, seed=7)[0]
    sde = SDES[kind]
    p0, p1 = sde_p(sde)
    for pf in (False, True):
        fn = lambda x, s: gmkernels.reverse_sde_step(x, s, t, 0.02, sde, predictor=predictor,  # noqa: E731
                                                     probability_flow=pf, seed=3, offset=1)
        got = _grads(fn, [x.clone().requires_grad_(), s.clone().requires_grad_()], w)
        want = _grads(lambda x, s: ref.reverse_sde_step(x, s, t, 0.02, kind, p0, p1, predictor, pf,
                                                        3, 1),
                      [x.clone().requires_grad_(), s.clone().requires_grad_()], w)
        for name, a, b in zip(["x", "score"], got, want):
            assert_close(a, b, kind="grad", what=f"pf={pf} d/d{name}")
    _gradcheck(any_backend, fn, [x.clone().requires_grad_(), s.clone().requires_grad_()])


def test_affine_noise_step_gradients(any_backend):
    shape = (5, 2, 3)
    x, e = make_n(shape, torch.float64)
    cs = [per_row(shape, torch.float64, 0.2, 1.5, seed=k) for k in range(3)]
    w = make_n(shape, torch.float64, 1, seed=7)[0]
    fn = lambda x, e, a, b, c: gmkernels.affine_noise_step(x, e, a, b, c, seed=4, offset=2)  # noqa: E731
    got = _grads(fn, [t.clone().requires_grad_() for t in (x, e, *cs)], w)
    want = _grads(lambda x, e, a, b, c: ref.affine_noise_step(x, e, a, b, c, 4, 2),
                  [t.clone().requires_grad_() for t in (x, e, *cs)], w)
    for name, a, b in zip(["x", "e", "cx", "ce", "cn"], got, want):
        assert_close(a, b, kind="grad", what=f"d/d{name}")
    _gradcheck(any_backend, fn, [t.clone().requires_grad_() for t in (x, e, *cs)])
    # ddpm_step is differentiable in x_t and eps_pred
    S = DDPMSchedule.linear(20)
    xr, er = x.clone().requires_grad_(), e.clone().requires_grad_()
    gx, ge = torch.autograd.grad(gmkernels.ddpm_step(xr, er, 7, S, seed=1).sum(), [xr, er])
    a, ab = S.alphas[7], S.alphas_cumprod[7]
    assert_close(gx, torch.full_like(gx, 1 / math.sqrt(a)), rtol=1e-12, atol=1e-8, what="ddpm d/dx")
    assert_close(ge, torch.full_like(ge, -(1 - a) / math.sqrt((1 - ab) * a)), rtol=1e-12, atol=1e-8,
                 what="ddpm d/d eps")


def test_corrector_refuses_autograd(any_backend):
    x = torch.zeros(3, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable"):
        gmkernels.langevin_corrector_step(x, torch.ones(3, 2), 0.1, seed=0)
    with torch.no_grad():
        gmkernels.langevin_corrector_step(x, torch.ones(3, 2), 0.1, seed=0)


# ---------------------------------------------------------------------------------------------
# opcheck of the dispatcher ops (test_build.py checks that the build has every op)

@pytest.mark.parametrize("diff_kind,requires_grad", [("float", False), ("per_sample", True),
                                                     ("full", True)])
def test_opcheck_euler_maruyama(device, diff_kind, requires_grad):
    x, f = make_n((6, 5), torch.float32)
    g_t = {"float": None, "per_sample": per_row((6,), torch.float32), "full": f.abs()}[diff_kind]
    if requires_grad:
        for t in (x, f, g_t):
            if t is not None:
                t.requires_grad_()
    torch.library.opcheck(torch.ops.gmkernels.euler_maruyama_step, (x, f, g_t, 0.5, -0.1, 3, 2**33, 1))


def test_opcheck_euler_maruyama_backward(device):
    gy = torch.randn(6, 5)
    for g_t, need in [(None, False), (torch.rand(6), True), (torch.rand(6, 5), True)]:
        torch.library.opcheck(torch.ops.gmkernels.euler_maruyama_step_backward,
                              (gy, g_t, 0.1, 3, 1, 0, [6, 5], need))


@pytest.mark.parametrize("kind,predictor,per_sample,pf", [(0, 0, False, False), (1, 1, True, False),
                                                         (2, 1, False, True), (0, 1, True, False)])
def test_opcheck_reverse_sde_step(device, kind, predictor, per_sample, pf):
    x, s = make_n((6, 5), torch.float32)
    x.requires_grad_()
    s.requires_grad_()
    t_t = per_row((6,), torch.float32) if per_sample else None
    p0, p1 = (0.01, 10.0) if kind == 0 else (0.1, 20.0)
    torch.library.opcheck(torch.ops.gmkernels.reverse_sde_step,
                          (x, s, t_t, 0.4, 0.01, kind, p0, p1, predictor, pf, 3, 2, 1))


def test_opcheck_reverse_sde_step_backward(device):
    gy = torch.randn(6, 5)
    torch.library.opcheck(torch.ops.gmkernels.reverse_sde_step_backward,
                          (gy, per_row((6,), torch.float32), 0.0, 0.01, 1, 0.1, 20.0, 1, False, [6, 5]))
    torch.library.opcheck(torch.ops.gmkernels.reverse_sde_step_backward,
                          (gy, None, 0.5, 0.01, 0, 0.01, 10.0, 0, True, [6, 5]))


@pytest.mark.parametrize("per_sample", [False, True])
def test_opcheck_langevin_corrector(device, per_sample):
    x, s = make_n((6, 5), torch.float32)
    a_t = per_row((6,), torch.float32) if per_sample else None
    torch.library.opcheck(torch.ops.gmkernels.langevin_corrector_step, (x, s, a_t, 1.0, 0.16, 3, 1, 0))


@pytest.mark.parametrize("per_sample,requires_grad", [(False, False), (True, True)])
def test_opcheck_affine_noise_step(device, per_sample, requires_grad):
    x, e = make_n((6, 5), torch.float32)
    cs = [per_row((6,), torch.float32, seed=k) if per_sample else None for k in range(3)]
    if requires_grad:
        for t in (x, e, *cs):
            if t is not None:
                t.requires_grad_()
    torch.library.opcheck(torch.ops.gmkernels.affine_noise_step,
                          (x, e, cs[0], 1.1, cs[1], 0.2, cs[2], 0.3, 3, 2**40, 1))


def test_opcheck_affine_noise_step_backward(device):
    gy, x, e = make_n((6, 5), torch.float32, n=3)
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
def test_steps_bad_input(call, exc, match):
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
def test_steps_compile_fullgraph_parity(device):
    def step(x, s, t, c):
        y = gmkernels.reverse_sde_step(x, s, t, 0.01, SDES["vp"], seed=7, offset=4)
        z = gmkernels.affine_noise_step(y, s, c, 0.1, 0.2, seed=7, offset=5)
        w = gmkernels.euler_maruyama_step(z, -z, c, 0.01, seed=7, offset=6)
        return (w * w).sum(), w

    x, s = make_n((16, 9), torch.float32)
    t = per_row((16,), torch.float32)
    c = torch.rand(16, requires_grad=True)
    loss_c, y_c = torch.compile(step, fullgraph=True)(x, s, t, c)
    loss_e, y_e = step(x, s, t, c)
    assert_close(y_c, y_e, rtol=1e-5, atol=1e-6, what="compiled y")
    (gc_c,) = torch.autograd.grad(loss_c, c)
    (gc_e,) = torch.autograd.grad(loss_e, c)
    assert_close(gc_c, gc_e, rtol=1e-5, atol=1e-5, what="compiled d/dc")


# ---------------------------------------------------------------------------------------------
# The Triton kernels of the SDE steps (gmkernels.triton.sde's *_fwd entry points), run in the
# interpreter on CPU tensors and held to plain-PyTorch formulas written here from the API
# (docs/spec.md §3.2/§3.3), with the noise from the reference Philox stream. The oracle computes the
# per-row coefficients in the compute dtype, in the order csrc/sde/sde.h does, so float32 runs
# are compared to a few ulps of the step's terms (tolerance kind "terms"); the reference module
# (float64 coefficients) and the native ops are cross-checked below.

FLOATS = [torch.float32, torch.float64]
TRI_SHAPES = [(), (7,), (3, 5), (4, 3, 33), (2, 1031), (0, 3)]
STREAM = (2**63 + 5, 2**33 + 1, 7)
# (kind, p0, p1) as the default VE / VP / sub-VP SDEs of Song et al. 2021
TRI_SDES = [(0, 0.01, 50.0), (1, 0.1, 20.0), (2, 0.1, 20.0)]


def _cd(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _row(v, x, cd):
    """A float as a 0-d tensor of cd, a (B,) tensor as (B, 1, ..., 1) (0-d for a 0-d x)."""
    if isinstance(v, torch.Tensor):
        v = v.to(cd)
        return v.reshape((-1,) + (1,) * (x.dim() - 1)) if x.dim() else v.reshape(())
    return torch.tensor(float(v), dtype=cd)


def _xi(x, cd, stream=STREAM):
    return ref_random.normal(x.shape, *stream, dtype=cd)


def _tri_inputs(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    e = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    rows = shape[0] if len(shape) else 1
    per_row = (torch.rand(rows, generator=g, dtype=torch.float64) * 0.9 + 0.05).to(dtype)
    return x, e, per_row


def _check(got, want, scale, dtype, what):
    """|got - want| <= rtol * scale + atol of tolerance kind "terms": scale is the sum of the
    magnitudes of the step's terms (from the oracle)."""
    assert got.is_contiguous(), what
    assert torch.isfinite(got).all(), f"{what}: non-finite values"
    t = tol("terms", dtype)
    assert_close(got, want, rtol=0.0, atol=t["rtol"] * scale.double() + t["atol"], what=what)


# --------------------------------------------------------------------------------------------
# oracles: y = cx*x - ce*e + cn*xi, returned with the terms' magnitude for the tolerance

def _affine(x, e, cx, ce, cn, xi):
    y = cx * x - ce * e + cn * xi
    return y, (cx * x).abs() + (ce * e).abs() + (cn * xi).abs()


def oracle_em(x, drift, diffusion, dt, stream=STREAM):
    cd = _cd(x.dtype)
    xc, f, xi = x.to(cd), drift.to(cd), _xi(x, cd, stream)
    if isinstance(diffusion, torch.Tensor) and diffusion.shape == x.shape:
        d = diffusion.to(cd)
    else:
        d = _row(diffusion, x, cd)
    dtc, sq = torch.tensor(dt, dtype=cd), torch.tensor(math.sqrt(abs(dt)), dtype=cd)
    y, scale = _affine(xc, f, 1.0, -dtc, d * sq, xi)
    return y.to(x.dtype), scale


def reverse_coefs(kind, predictor, pf, t, dt, p0, p1, cd):
    """(cx, ce, cn) of the reverse step at t (a cd tensor), as csrc/sde/sde.h reverse_sde_coefs,
    every operation in cd."""
    t = t.to(cd)
    p0, p1, dt = (torch.tensor(v, dtype=cd) for v in (p0, p1, dt))
    if predictor == 1 and kind == 0:
        ratio = p1 / p0
        tp = torch.where(t - dt > 0, t - dt, torch.zeros_like(t))
        sg, sp = p0 * ratio ** t, p0 * ratio ** tp
        fc_dt, g2_dt = torch.zeros_like(t), sg * sg - sp * sp
    elif predictor == 1 and kind == 1:
        g2_dt = (p0 + t * (p1 - p0)) * dt
        fc_dt = torch.sqrt(1 - g2_dt) - 1
    else:
        if kind == 0:
            ratio = p1 / p0
            sigma = p0 * ratio ** t
            fc, g2 = torch.zeros_like(t), 2 * sigma * sigma * torch.log(ratio)
        else:
            beta = p0 + t * (p1 - p0)
            fc = -0.5 * beta
            g2 = beta if kind == 1 else \
                beta * (1 - torch.exp(-2 * (p0 * t + 0.5 * t * t * (p1 - p0))))
        fc_dt, g2_dt = fc * dt, g2 * dt
    if pf:
        return 1 - fc_dt, -0.5 * g2_dt, torch.zeros_like(g2_dt)
    return 1 - fc_dt, -g2_dt, torch.sqrt(g2_dt)


def oracle_reverse(x, s, t, dt, kind, p0, p1, predictor, pf, stream=STREAM):
    cd = _cd(x.dtype)
    tt = t if isinstance(t, torch.Tensor) else torch.tensor(float(t))
    cx, ce, cn = (_row(c, x, cd) if c.dim() else c
                  for c in reverse_coefs(kind, predictor, pf, tt, dt, p0, p1, cd))
    xi = torch.zeros(x.shape, dtype=cd) if pf else _xi(x, cd, stream)
    y, scale = _affine(x.to(cd), s.to(cd), cx, ce, cn, xi)
    return y.to(x.dtype), scale


def oracle_corrector(x, s, alpha, snr, stream=STREAM):
    """Song et al.'s released LangevinCorrector: noise_norm and grad_norm the batch means of
    the row norms, step = (snr * noise_norm / grad_norm)^2 * 2 * alpha (per-row alpha), with
    the guard of docs/spec.md §3.3 (step 0 when grad_norm == 0 or step > 2^120)."""
    cd = _cd(x.dtype)
    xi, sc = _xi(x, cd, stream), s.to(cd)
    rows, M = ref_random.row_view(x.shape)
    noise_norm = (xi * xi).reshape(rows, M).sum(1).sqrt().mean()
    grad_norm = (sc * sc).reshape(rows, M).sum(1).sqrt().mean()
    a = alpha.to(cd) if isinstance(alpha, torch.Tensor) else torch.full((rows,), float(alpha),
                                                                         dtype=cd)
    if grad_norm == 0:
        step = torch.zeros(rows, dtype=cd)
    else:
        step = (snr * noise_norm / grad_norm) ** 2 * 2 * a
        step = torch.where(step > 2.0 ** 120, torch.zeros_like(step), step)
    e = _row(step, x, cd)
    y, scale = _affine(x.to(cd), sc, 1.0, -e, torch.sqrt(2 * e), xi)
    return y.to(x.dtype), scale


def oracle_affine(x, e, cx, ce, cn, stream=STREAM):
    cd = _cd(x.dtype)
    y, scale = _affine(x.to(cd), e.to(cd), _row(cx, x, cd), _row(ce, x, cd), _row(cn, x, cd),
                       _xi(x, cd, stream))
    return y.to(x.dtype), scale


def _split(v):
    """(tensor or None, float) as the *_fwd entry points take a coefficient."""
    return (v, 0.0) if isinstance(v, torch.Tensor) else (None, float(v))


# --------------------------------------------------------------------------------------------
# euler_maruyama_step

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", TRI_SHAPES)
@pytest.mark.parametrize("diffusion", ["float", "per_sample", "full"])
def test_triton_euler_maruyama(tri, dtype, shape, diffusion):
    x, drift, per_row = _tri_inputs(shape, dtype)
    d = {"float": 0.7, "per_sample": per_row,
         "full": (torch.rand(shape, dtype=torch.float64) + 0.1).to(dtype)}[diffusion]
    for dt in (0.01, -0.003):
        d_t, d_f = _split(d)
        got = tri.euler_maruyama_step_fwd(x, drift, d_t, d_f, dt, *STREAM)
        want, scale = oracle_em(x, drift, d, dt)
        _check(got, want, scale, dtype, f"em {dtype} {shape} {diffusion} dt={dt}")


def test_triton_euler_maruyama_non_contiguous(tri):
    xb, fb, per_row = _tri_inputs((40, 9), torch.float32)
    x, drift = xb.t(), fb.t()  # (9, 40), column-major
    d = torch.rand(40, 9).t()
    got = tri.euler_maruyama_step_fwd(x, drift, d, 0.0, 0.02, *STREAM)
    want, scale = oracle_em(x.contiguous(), drift.contiguous(), d.contiguous(), 0.02)
    _check(got, want, scale, torch.float32, "em non-contiguous")
    got = tri.euler_maruyama_step_fwd(x, drift, per_row[::4][:9], 0.0, 0.02, *STREAM)
    want, scale = oracle_em(x.contiguous(), drift.contiguous(), per_row[::4][:9].clone(), 0.02)
    _check(got, want, scale, torch.float32, "em non-contiguous per-sample")


# --------------------------------------------------------------------------------------------
# reverse_sde_step

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("sde", TRI_SDES, ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize("predictor", [0, 1], ids=["euler_maruyama", "reverse_diffusion"])
@pytest.mark.parametrize("pf", [False, True], ids=["sde", "probability_flow"])
def test_triton_reverse_sde(tri, dtype, sde, predictor, pf):
    kind, p0, p1 = sde
    for shape in [(), (4, 3, 33)]:
        x, s, _ = _tri_inputs(shape, dtype, seed=1)
        rows = shape[0] if shape else 1
        # per-sample times across [0, 1] including the ends, and t < dt (VE's sigma(0) clip)
        t_rows = torch.linspace(0, 1, rows, dtype=torch.float64).to(dtype) if rows > 1 else \
            torch.full((rows,), 0.004, dtype=dtype)
        for t, dt in ((0.5, 0.01), (t_rows, 0.01)):
            t_t, t_f = _split(t)
            got = tri.reverse_sde_step_fwd(x, s, t_t, t_f, dt, kind, p0, p1, predictor, pf,
                                           *STREAM)
            want, scale = oracle_reverse(x, s, t, dt, kind, p0, p1, predictor, pf)
            what = f"reverse {dtype} kind={kind} pred={predictor} pf={pf} {shape} t={t} dt={dt}"
            _check(got, want, scale, dtype, what)


def test_triton_reverse_sde_pf_reads_no_noise_and_em_does(tri):
    x, s, _ = _tri_inputs((3, 8), torch.float64, seed=2)
    a = tri.reverse_sde_step_fwd(x, s, None, 0.3, 0.01, 1, 0.1, 20.0, 0, True, 1, 2, 3)
    b = tri.reverse_sde_step_fwd(x, s, None, 0.3, 0.01, 1, 0.1, 20.0, 0, True, 9, 8, 7)
    assert torch.equal(a, b)
    c = tri.reverse_sde_step_fwd(x, s, None, 0.3, 0.01, 1, 0.1, 20.0, 0, False, 9, 8, 7)
    assert not torch.equal(a, c)


def test_triton_reverse_sde_non_contiguous_and_shard(tri):
    xb, sb, _ = _tri_inputs((33, 10), torch.float32, seed=3)
    x, s = xb.t(), sb.t()  # (10, 33)
    t = torch.linspace(0.1, 1.0, 20)[::2]  # strided (10,)
    got = tri.reverse_sde_step_fwd(x, s, t, 0.0, 0.02, 0, 0.01, 50.0, 0, False, *STREAM)
    want, scale = oracle_reverse(x.contiguous(), s.contiguous(), t.clone(), 0.02, 0, 0.01, 50.0,
                                 0, False)
    _check(got, want, scale, torch.float32, "reverse non-contiguous")
    # rows 4..6 alone, with sample_offset moved by 4: the same rows of the batch
    seed, offset, so = STREAM
    part = tri.reverse_sde_step_fwd(x[4:7], s[4:7], t[4:7], 0.0, 0.02, 0, 0.01, 50.0, 0, False,
                                    seed, offset, so + 4)
    assert_equal(part, got[4:7], "rows 4..6 alone")


# --------------------------------------------------------------------------------------------
# langevin_corrector_step

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", TRI_SHAPES)
@pytest.mark.parametrize("per_sample", [False, True])
def test_triton_langevin_corrector(tri, dtype, shape, per_sample):
    x, s, per_row = _tri_inputs(shape, dtype, seed=4)
    alpha = per_row if per_sample else 0.9
    a_t, a_f = _split(alpha)
    got = tri.langevin_corrector_step_fwd(x, s, a_t, a_f, 0.16, *STREAM)
    want, scale = oracle_corrector(x, s, alpha, 0.16)
    _check(got, want, scale, dtype, f"corrector {dtype} {shape} per_sample={per_sample}")


@pytest.mark.parametrize("dtype", FLOATS)
def test_triton_langevin_corrector_zero_score_rows(tri, dtype):
    x, s, per_row = _tri_inputs((4, 3, 7), dtype, seed=5)
    s[1] = 0
    s[3] = 0              # zero score rows: their step is the batch's, so they move by noise
    got = tri.langevin_corrector_step_fwd(x, s, per_row, 0.0, 0.16, *STREAM)
    assert torch.isfinite(got).all()
    assert not torch.equal(got[1], x[1]) and not torch.equal(got[3], x[3])
    want, scale = oracle_corrector(x, s, per_row, 0.16)
    _check(got, want, scale, dtype, f"corrector zero rows {dtype}")
    one = tri.langevin_corrector_step_fwd(x[0], torch.zeros_like(x[0]), None, 1.0, 0.16,
                                          *STREAM)  # a (3, 7) tensor of 3 rows, all zero score
    assert torch.equal(one, x[0])


def test_triton_langevin_corrector_long_rows_and_non_contiguous(tri, monkeypatch):
    from gmkernels.triton import _philox

    # programs of 8 counters (32 elements) so that rows of 70 span 3 tiles, as long rows do
    # on a GPU (256 counters per program): the norms are added from per-tile partials (the
    # interpreter's and the GPU's program size both, whichever this run uses)
    monkeypatch.setattr(_philox, "INTERPRET_GROUPS_PER_PROGRAM", 8)
    monkeypatch.setattr(_philox, "GPU_GROUPS_PER_PROGRAM", 8)
    x, s, _ = _tri_inputs((3, 70), torch.float32, seed=6)
    s[1] = 0
    got = tri.langevin_corrector_step_fwd(x, s, None, 1.0, 0.16, *STREAM)
    want, scale = oracle_corrector(x, s, 1.0, 0.16)
    _check(got, want, scale, torch.float32, "corrector long rows")
    xb, sb, per_row = _tri_inputs((11, 6), torch.float64, seed=7)
    got = tri.langevin_corrector_step_fwd(xb.t(), sb.t(), per_row[:6], 0.0, 0.3, *STREAM)
    want, scale = oracle_corrector(xb.t().contiguous(), sb.t().contiguous(), per_row[:6], 0.3)
    _check(got, want, scale, torch.float64, "corrector non-contiguous")


# --------------------------------------------------------------------------------------------
# affine_noise_step

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", TRI_SHAPES)
@pytest.mark.parametrize("per_sample", ["none", "cx", "ce_cn", "all"])
def test_triton_affine_noise(tri, dtype, shape, per_sample):
    x, e, per_row = _tri_inputs(shape, dtype, seed=8)
    cx = per_row + 1 if per_sample in ("cx", "all") else 1.02
    ce = per_row * 0.1 if per_sample in ("ce_cn", "all") else 0.05
    cn = per_row * 0.5 if per_sample in ("ce_cn", "all") else 0.2
    (cx_t, cx_f), (ce_t, ce_f), (cn_t, cn_f) = _split(cx), _split(ce), _split(cn)
    got = tri.affine_noise_step_fwd(x, e, cx_t, cx_f, ce_t, ce_f, cn_t, cn_f, *STREAM)
    want, scale = oracle_affine(x, e, cx, ce, cn)
    _check(got, want, scale, dtype, f"affine {dtype} {shape} {per_sample}")


def test_triton_affine_noise_no_noise_and_non_contiguous(tri):
    xb, eb, per_row = _tri_inputs((12, 5), torch.float32, seed=9)
    x, e = xb.t(), eb.t()  # (5, 12)
    got = tri.affine_noise_step_fwd(x, e, None, 1.5, per_row[:5], 0.0, None, 0.0, *STREAM)
    cd_ce = per_row[:5].reshape(5, 1)
    assert torch.equal(got, 1.5 * x - cd_ce * e)  # cn == 0: no draws, exactly cx*x - ce*e
    cn = torch.zeros(5)
    cn[2] = 0.4  # a DDPM batch where only row 2 is not at t = 0
    got = tri.affine_noise_step_fwd(x, e, None, 1.5, per_row[:5], 0.0, cn, 0.0, *STREAM)
    want, scale = oracle_affine(x.contiguous(), e.contiguous(), 1.5, per_row[:5], cn)
    _check(got, want, scale, torch.float32, "affine non-contiguous")


# --------------------------------------------------------------------------------------------
# half types, empty tensors, argument errors

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_half_types_round_the_float32_result(tri, dtype):
    x, e, per_row = _tri_inputs((3, 50), dtype, seed=10)
    x32, e32, r32 = x.float(), e.float(), per_row.float()

    def close(got, want32, what):
        assert_close(got, want32.to(dtype), kind="half_rounding", what=what)

    close(tri.euler_maruyama_step_fwd(x, e, per_row, 0.0, 0.02, *STREAM),
          tri.euler_maruyama_step_fwd(x32, e32, r32, 0.0, 0.02, *STREAM), "em")
    close(tri.reverse_sde_step_fwd(x, e, None, 0.4, 0.01, 2, 0.1, 20.0, 1, False, *STREAM),
          tri.reverse_sde_step_fwd(x32, e32, None, 0.4, 0.01, 2, 0.1, 20.0, 1, False, *STREAM),
          "reverse")
    close(tri.langevin_corrector_step_fwd(x, e, None, 1.0, 0.16, *STREAM),
          tri.langevin_corrector_step_fwd(x32, e32, None, 1.0, 0.16, *STREAM), "corrector")
    close(tri.affine_noise_step_fwd(x, e, per_row, 0.0, None, 0.1, None, 0.3, *STREAM),
          tri.affine_noise_step_fwd(x32, e32, r32, 0.0, None, 0.1, None, 0.3, *STREAM), "affine")


def test_triton_empty_and_errors(tri):
    x = torch.empty(0, 4)
    r = torch.empty(0)
    for y in (tri.euler_maruyama_step_fwd(x, x, r, 0.0, 0.1, 1, 0, 0),
              tri.reverse_sde_step_fwd(x, x, r, 0.0, 0.1, 0, 0.01, 50.0, 1, False, 1, 0, 0),
              tri.langevin_corrector_step_fwd(x, x, r, 0.0, 0.16, 1, 0, 0),
              tri.affine_noise_step_fwd(x, x, r, 0.0, r, 0.0, r, 0.0, 1, 0, 0)):
        assert y.shape == (0, 4)
    x = torch.randn(3, 4)
    # The launchers check nothing: the public ops check (gmkernels._checks) before any backend.
    with gmkernels.use_backend("triton"):
        with pytest.raises(ValueError, match="predictor"):
            gmkernels.reverse_sde_step(x, x, 0.5, 0.1, gmkernels.score.VPSDE(), predictor="heun")
        with pytest.raises(ValueError, match="alpha"):
            gmkernels.langevin_corrector_step(x, x, 0.16, alpha=torch.ones(4), seed=1)
        with pytest.raises(TypeError, match="score"):
            gmkernels.langevin_corrector_step(x, x.double(), 0.16, seed=1)
        with pytest.raises(ValueError, match="diffusion"):
            gmkernels.euler_maruyama_step(x, x, torch.ones(3, 2), 0.1, seed=1)
        with pytest.raises(TypeError, match="floating-point"):
            gmkernels.affine_noise_step(x.int(), x.int(), 1.0, 1.0, 1.0, seed=1)


# --------------------------------------------------------------------------------------------
# cross-checks with the reference module (float64 coefficients) and the native ops

@pytest.mark.parametrize("dtype", FLOATS)
def test_triton_against_reference_module(tri, dtype):
    x, s, per_row = _tri_inputs((4, 3, 5), dtype, seed=11)
    # float32 coefficients vs float64 ones rounded: kind "transcendental"
    t_ = tol("transcendental", dtype)

    def close(got, want, what):
        assert_close(got, want, **t_, what=what)

    close(tri.euler_maruyama_step_fwd(x, s, per_row, 0.0, -0.02, *STREAM),
          ref.euler_maruyama_step(x, s, per_row, -0.02, *STREAM), "em")
    t = torch.tensor([0.2, 0.5, 0.8, 1.0], dtype=dtype)
    for (kind, p0, p1), name in zip(TRI_SDES, ("ve", "vp", "subvp")):
        for pred, pred_name in ((0, "euler_maruyama"), (1, "reverse_diffusion")):
            for pf in (False, True):
                got = tri.reverse_sde_step_fwd(x, s, t, 0.0, 0.01, kind, p0, p1, pred, pf,
                                               *STREAM)
                want = ref.reverse_sde_step(x, s, t, 0.01, name, p0, p1, pred_name, pf,
                                                *STREAM)
                scale = want.abs().max().item() + 1  # VE's g^2 reaches 4e4 at t = 1
                assert_close(got, want, rtol=t_["rtol"], atol=t_["atol"] * scale,
                             what=f"reverse {name} {pred_name} pf={pf}")
    close(tri.langevin_corrector_step_fwd(x, s, per_row, 0.0, 0.16, *STREAM),
          ref.langevin_corrector_step(x, s, 0.16, per_row, *STREAM), "corrector")
    close(tri.affine_noise_step_fwd(x, s, per_row, 0.0, None, 0.1, per_row, 0.0, *STREAM),
          ref.affine_noise_step(x, s, per_row, 0.1, per_row, *STREAM), "affine")


@pytest.mark.parametrize("dtype", FLOATS)
def test_triton_against_native_ops(tri, dtype):
    """Against the C++ CPU kernels, through the dispatcher ops' schemas."""
    from gmkernels.random import as_int64_bits

    x, s, per_row = _tri_inputs((5, 2, 9), dtype, seed=12)
    cd = _cd(dtype)
    # the schemas' int is int64: seed and offset travel as their two's-complement bits
    native_stream = (as_int64_bits(STREAM[0]), as_int64_bits(STREAM[1]), STREAM[2])
    t_ = tol("cross_backend", dtype)

    def close(got, want, what, scale=1.0):
        assert_close(got, want, rtol=t_["rtol"], atol=t_["atol"] * scale, what=what)

    em = torch.ops.gmkernels.euler_maruyama_step
    close(tri.euler_maruyama_step_fwd(x, s, per_row, 0.0, 0.02, *STREAM),
          em(x, s, per_row.to(cd), 0.0, 0.02, *native_stream), "em")
    rev = torch.ops.gmkernels.reverse_sde_step
    t = torch.linspace(0.0, 1.0, 5, dtype=cd)
    for kind, p0, p1 in TRI_SDES:
        for pred in (0, 1):
            for pf in (False, True):
                got = tri.reverse_sde_step_fwd(x, s, t, 0.0, 0.01, kind, p0, p1, pred, pf,
                                               *STREAM)
                want = rev(x, s, t, 0.0, 0.01, kind, p0, p1, pred, pf, *native_stream)
                close(got, want, f"reverse kind={kind} pred={pred} pf={pf}",
                      want.abs().max().item() + 1)
    corr = torch.ops.gmkernels.langevin_corrector_step
    s0 = s.clone()
    s0[2] = 0
    close(tri.langevin_corrector_step_fwd(x, s0, per_row, 0.0, 0.16, *STREAM),
          corr(x, s0, per_row.to(cd), 0.0, 0.16, *native_stream), "corrector")
    aff = torch.ops.gmkernels.affine_noise_step
    close(tri.affine_noise_step_fwd(x, s, per_row, 0.0, None, 0.1, per_row, 0.0, *STREAM),
          aff(x, s, per_row.to(cd), 0.0, None, 0.1, per_row.to(cd), 0.0, *native_stream), "affine")
