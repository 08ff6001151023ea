"""The fused planar flow (docs/spec.md §1.1) on every backend against the reference: values, log-det
against the exact Jacobian, gradients, opcheck, torch.compile, extremes and bad input; and
the stable û parameterization."""

import pytest
import torch

import gmkernels
from gmkernels.reference import planar as ref
from _helpers import assert_close, noncontig, tol

# Tolerance kinds (_helpers.TOLERANCES): "transcendental" for x and logdet (tanh and psi in the
# compute dtype), "chain_grad" for the gradients through the K-layer stack.

# (B, K, D): odd sizes, a tile boundary (32 rows on the CPU), D past the CUDA register row (32),
# an empty batch, an empty stack.
SIZES = [(1, 1, 1), (7, 3, 5), (33, 4, 2), (70, 9, 33), (0, 3, 2), (5, 0, 3)]


def params(B, K, D, per_sample, dtype, seed=0, scale=1.0):
    """(z, u_hat, w, b) with û from planar_u_hat (so û·w > -1)."""
    g = torch.Generator().manual_seed(seed)
    pshape = (B, K, D) if per_sample else (K, D)
    z = torch.randn(B, D, generator=g, dtype=torch.float64)
    u = scale * torch.randn(pshape, generator=g, dtype=torch.float64)
    w = scale * torch.randn(pshape, generator=g, dtype=torch.float64) / max(D, 1) ** 0.5
    b = torch.randn(pshape[:-1], generator=g, dtype=torch.float64)
    u_hat = gmkernels.planar_u_hat(u, w)
    return tuple(t.to(dtype) for t in (z, u_hat, w, b))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_sample", [False, True])
def test_matches_reference(backend, size, dtype, per_sample):
    z, u, w, b = params(*size, per_sample, dtype)
    x, ld = gmkernels.planar_flow(z, u, w, b)
    # the reference in float64, rounded: the oracle for both dtypes
    xr, ldr = ref.planar_flow(*(t.double() for t in (z, u, w, b)))
    assert x.shape == z.shape and ld.shape == (size[0],) and x.dtype == ld.dtype == dtype
    assert_close(x, xr.to(dtype), kind="transcendental", what="x")
    assert_close(ld, ldr.to(dtype), kind="transcendental", what="logdet")


@pytest.mark.parametrize("per_sample", [False, True])
def test_non_contiguous_inputs(backend, per_sample):
    B, K, D = 37, 5, 6
    z, u, w, b = params(B, K, D, per_sample, torch.float32)
    # same values, transposed storage
    zt, ut, wt = noncontig(z), noncontig(u), noncontig(w)
    x, ld = gmkernels.planar_flow(zt, ut, wt, b)
    xr, ldr = ref.planar_flow(z.double(), u.double(), w.double(), b.double())
    assert_close(x, xr.float(), kind="transcendental", what="x")
    assert_close(ld, ldr.float(), kind="transcendental", what="logdet")


def _grads(fn, z, u, w, b, gy, gl):
    ins = [t.detach().clone().requires_grad_(True) for t in (z, u, w, b)]
    x, ld = fn(*ins)
    loss = 0
    if gy is not None:
        loss = loss + (x * gy).sum()
    if gl is not None:
        loss = loss + (ld * gl).sum()
    return torch.autograd.grad(loss, ins, allow_unused=True)


@pytest.mark.parametrize("size,which", [((1, 1, 1), "both"), ((45, 6, 5), "both"),
                                        ((33, 3, 40), "both"), ((45, 6, 5), "x"),
                                        ((45, 6, 5), "logdet")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_sample", [False, True])
def test_grads_match_reference(backend, size, which, dtype, per_sample):
    B, K, D = size
    z, u, w, b = params(B, K, D, per_sample, dtype, seed=3)
    g = torch.Generator().manual_seed(4)
    gy = torch.randn(B, D, generator=g, dtype=torch.float64).to(dtype) if which != "logdet" else None
    gl = torch.randn(B, generator=g, dtype=torch.float64).to(dtype) if which != "x" else None
    got = _grads(gmkernels.planar_flow, z, u, w, b, gy, gl)
    want = _grads(ref.planar_flow, *(t.double() for t in (z, u, w, b)),
                  None if gy is None else gy.double(), None if gl is None else gl.double())
    for name, a, e in zip(("z", "u_hat", "w", "b"), got, want):
        assert a is not None and a.shape == e.shape and a.dtype == dtype, name
        # shared-parameter grads are sums over B: scale the tolerance with the batch
        t = tol("chain_grad", dtype)
        if not per_sample and name != "z":
            t["atol"] *= B
        assert_close(a, e.to(dtype), **t, what=f"grad {name}")


@pytest.mark.parametrize("per_sample", [False, True])
def test_gradcheck(backend, per_sample):
    z, u, w, b = (t.requires_grad_(True) for t in params(4, 3, 3, per_sample, torch.float64, seed=5))
    # fast_mode (random projections of the Jacobian) for the Triton interpreter, whose every
    # launch costs ~0.1 s here; the full Jacobian for the native kernel
    assert torch.autograd.gradcheck(gmkernels.planar_flow, (z, u, w, b),
                                    fast_mode=backend == "triton")


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("D", [1, 2, 5, 8])
def test_logdet_is_slogdet_of_jacobian(device, per_sample, D):
    """logdet of the fused op (native kernel, default backend) == log|det J| of the whole
    K-layer transform, J from PyTorch autograd through the plain reference (independent of the
    kernel and its backward), and through the op's own backward."""
    B, K = 4, 6
    z, u, w, b = params(B, K, D, per_sample, torch.float64, seed=D, scale=1.5)
    _, ld = gmkernels.planar_flow(z, u, w, b)
    for i in range(B):
        ui, wi, bi = (u[i:i + 1], w[i:i + 1], b[i:i + 1]) if per_sample else (u, w, b)

        def f_ref(zi):
            return ref.planar_flow(zi.unsqueeze(0), ui, wi, bi)[0].squeeze(0)

        def f_op(zi):
            return gmkernels.planar_flow(zi.unsqueeze(0), ui, wi, bi)[0].squeeze(0)

        for f in (f_ref, f_op):
            J = torch.autograd.functional.jacobian(f, z[i])
            sign, logabs = torch.linalg.slogdet(J)
            assert sign > 0  # an invertible flow with û·w > -1 keeps orientation
            assert abs(float(ld[i] - logabs)) < 1e-10, (i, float(ld[i]), float(logabs))


@pytest.mark.parametrize("per_sample", [False, True])
def test_opcheck(device, per_sample):
    z, u, w, b = params(6, 3, 4, per_sample, torch.float32, seed=6)
    for t in (z, u, w, b):
        t.requires_grad_(True)
    torch.library.opcheck(torch.ops.gmkernels.planar_flow, (z, u, w, b))
    torch.library.opcheck(torch.ops.gmkernels.planar_flow_backward,
                          (torch.randn(6, 4), torch.randn(6), z.detach(), u.detach(), w.detach(),
                           b.detach()))
    torch.library.opcheck(torch.ops.gmkernels.planar_flow_backward,
                          (None, torch.randn(6), z.detach(), u.detach(), w.detach(), b.detach()))


@pytest.mark.slow
def test_compile_fullgraph_parity(device):
    def loss_fn(z, u, w, b):
        x, ld = gmkernels.planar_flow(z, gmkernels.planar_u_hat(u, w), w, b)
        return (x * x).sum() - ld.sum(), x

    g = torch.Generator().manual_seed(7)
    z = torch.randn(19, 3, generator=g)
    u, w = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    b = torch.randn(4, generator=g)
    args = [t.requires_grad_(True) for t in (u, w, b)]
    compiled = torch.compile(loss_fn, fullgraph=True)
    lc, xc = compiled(z, *args)
    le, xe = loss_fn(z, *args)
    assert_close(xc, xe, rtol=1e-5, atol=1e-6, what="compiled x")
    gc = torch.autograd.grad(lc, args)
    ge = torch.autograd.grad(le, args)
    for name, a, e in zip(("u", "w", "b"), gc, ge):
        assert_close(a, e, rtol=1e-5, atol=1e-5, what=f"compiled grad {name}")


# ---------------------------------------------------------------------------------------------
# extremes: no NaN / inf for valid input

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_sample", [False, True])
def test_extremes_are_finite(backend, dtype, per_sample):
    D, K = 3, 6
    # layers: |a| = 50 both signs (w = 0 so a = b exactly, and û·w = 0.5 via û... w = 0 gives
    # û·w = 0; a second pair has w ≠ 0 with b = ±50), w ≈ 0 (1e-30 through planar_u_hat),
    # û·w = -1 + 1e-6 at a = 0 (psi = 1e-6: logdet term log 1e-6 = -13.8)
    u = torch.tensor([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5],
                      [3.0, 1.0, 0.0], [-(1 - 1e-6), 0.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0],
                      [1e-30, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([50.0, -50.0, 50.0, -50.0, 0.0, 0.0], dtype=torch.float64)
    u_hat = u.clone()
    u_hat[4] = gmkernels.planar_u_hat(u[4:5], w[4:5])[0]
    B = 4
    z = torch.zeros(B, D, dtype=torch.float64)
    z[1] = torch.tensor([1e-3, 0.0, 0.0])  # small perturbations around a = 0 at the last layer
    z[2] = torch.tensor([-1e-3, 2.0, -1.0])
    z[3] = torch.tensor([0.0, 1e3, -1e3])
    if per_sample:
        u_hat, w, b = (t.unsqueeze(0).expand(B, *t.shape).contiguous() for t in (u_hat, w, b))
    ins = [t.to(dtype).requires_grad_(True) for t in (z, u_hat, w, b)]
    x, ld = gmkernels.planar_flow(*ins)
    assert torch.isfinite(x).all() and torch.isfinite(ld).all(), (x, ld)
    grads = torch.autograd.grad(x.sum() + ld.sum(), ins)
    for gr in grads:
        assert torch.isfinite(gr).all(), gr
    xr, ldr = ref.planar_flow(*(t.detach().double() for t in ins))
    # psi = 1 + s û·w ≈ 1e-6 is computed in the input dtype: one rounding of s û·w (spacing
    # 6e-8 near 1 in float32) moves psi by up to 6% there, i.e. log psi by up to 0.06
    bound = 0.1 if dtype == torch.float32 else 1e-8
    assert_close(ld, ldr, rtol=0, atol=bound, check_dtype=False, what="logdet")
    assert ldr.min() < -13  # the psi = 1e-6 layer is in there


# ---------------------------------------------------------------------------------------------
# planar_u_hat

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_u_hat_matches_paper_formula(device, dtype):
    g = torch.Generator().manual_seed(8)
    u, w = torch.randn(50, 7, generator=g, dtype=dtype), torch.randn(50, 7, generator=g, dtype=dtype)
    got = gmkernels.planar_u_hat(u, w)
    want = ref.planar_u_hat(u.double(), w.double())
    # the margin of planar_u_hat binds only where softplus(w·u) < margin; exclude those rows
    keep = torch.nn.functional.softplus((u * w).sum(-1).double()) > 1e-2
    assert keep.sum() > 40
    assert_close(got[keep], want[keep], rtol=1e-5, atol=1e-5, check_dtype=False, what="u_hat")
    uw = (got.double() * w.double()).sum(-1)
    assert (uw > -1).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_u_hat_extremes(device, dtype):
    """û·w > -1 and no NaN/inf for w·u = ±1e4, ±50, -17 (where -1 + softplus rounds to -1 in
    float32), w = 0, w = 1e-30, and huge u; gradients finite too."""
    D = 4
    rows = []
    for s in (1e4, 50.0, 17.0, 1.0):
        for sign in (1.0, -1.0):
            rows.append((sign * s * torch.ones(D) / D, torch.ones(D)))
    rows.append((torch.randn(D), torch.zeros(D)))
    rows.append((torch.randn(D), torch.full((D,), 1e-30)))
    rows.append((torch.full((D,), -1e20), torch.full((D,), 1e-20)))
    rows.append((torch.tensor([-1e3, 0.0, 0.0, 0.0]), torch.tensor([1e-3, 0.0, 0.0, 0.0])))
    u = torch.stack([r[0] for r in rows]).to(dtype).requires_grad_(True)
    w = torch.stack([r[1] for r in rows]).to(dtype).requires_grad_(True)
    uh = gmkernels.planar_u_hat(u, w)
    assert torch.isfinite(uh).all(), uh
    uw_own = (uh * w).sum(-1)  # in the dtype, as a kernel computes it
    uw_exact = (uh.double() * w.double()).sum(-1)
    assert (uw_own > -1).all() and (uw_exact > -1).all(), (uw_own, uw_exact)
    gu, gw = torch.autograd.grad(uh.sum(), (u, w))
    # the u = -1e20, w = 1e-20 row (index 10) has a true d û / d w of ~1e40: past float32
    keep = torch.ones(len(rows), dtype=torch.bool)
    keep[10] = dtype == torch.float64
    assert torch.isfinite(gu).all() and torch.isfinite(gw[keep]).all(), (gu, gw)
    # and a flow through them stays finite
    z = torch.randn(3, D, dtype=dtype)
    x, ld = gmkernels.planar_flow(z, uh.detach(), w.detach(), torch.zeros(len(rows), dtype=dtype))
    assert torch.isfinite(ld).all()


# ---------------------------------------------------------------------------------------------
# bad input

@pytest.mark.parametrize("args,exc,match", [
    ((torch.zeros(3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2)), ValueError,
     "z must be a \\(B, D\\) tensor"),
    ((torch.zeros(3, 2, dtype=torch.float16), torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2)),
     TypeError, "z must be float32 or float64"),
    ((torch.zeros(3, 2), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2)), ValueError, "u_hat must be"),
    ((torch.zeros(3, 2), torch.zeros(2, 2), torch.zeros(3, 2), torch.zeros(2)), ValueError,
     "w must have u_hat's shape"),
    ((torch.zeros(3, 2), torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(3)), ValueError,
     "b must have shape"),
    ((torch.zeros(3, 2), torch.zeros(4, 2, 2), torch.zeros(4, 2, 2), torch.zeros(4, 2)), ValueError,
     "per-sample u_hat must be"),
    ((torch.zeros(3, 2), torch.zeros(3, 2, 2), torch.zeros(3, 2, 2), torch.zeros(2)), ValueError,
     "b must have shape"),
    ((torch.zeros(3, 2), torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 2), torch.zeros(2)),
     TypeError, "u_hat must have the dtype of z"),
    ((torch.zeros(3, 2), torch.zeros(2, 2, device="meta"), torch.zeros(2, 2), torch.zeros(2)),
     ValueError, "u_hat must be on z's device"),
])
def test_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        gmkernels.planar_flow(*args)


def test_bad_input_reaches_the_op_checks(device):
    # the dispatcher op checks too (callers that skip the Python wrapper)
    with pytest.raises(ValueError, match="b must be \\(K,\\)"):
        torch.ops.gmkernels.planar_flow(torch.zeros(3, 2), torch.zeros(2, 2), torch.zeros(2, 2),
                                        torch.zeros(5))
    with pytest.raises(ValueError, match="grad_logdet must be"):
        torch.ops.gmkernels.planar_flow_backward(None, torch.zeros(4), torch.zeros(3, 2),
                                                 torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="u and w must have one shape"):
        gmkernels.planar_u_hat(torch.zeros(2, 3), torch.zeros(2, 2))


@pytest.mark.parametrize("isa", ["baseline", "avx2"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_cpu_simd_paths(isa, per_sample):
    """Each SIMD build of the CPU kernel (forced lower with _C.set_cpu_isa; a path the CPU
    lacks falls back to the best it has) matches the reference, forward and backward."""
    from gmkernels import _C
    z, u, w, b = params(70, 5, 6, per_sample, torch.float32, seed=9)
    gy, gl = torch.randn(70, 6), torch.randn(70)
    try:
        _C.set_cpu_isa(isa)
        x, ld = torch.ops.gmkernels.planar_flow(z, u, w, b)
        grads = torch.ops.gmkernels.planar_flow_backward(gy, gl, z, u, w, b)
    finally:
        _C.set_cpu_isa("auto")
    want = _grads(ref.planar_flow, *(t.double() for t in (z, u, w, b)), gy.double(), gl.double())
    xr, ldr = ref.planar_flow(*(t.double() for t in (z, u, w, b)))
    assert_close(x, xr.float(), kind="transcendental", what=f"{isa} x")
    assert_close(ld, ldr.float(), kind="transcendental", what=f"{isa} logdet")
    for name, a, e in zip(("z", "u_hat", "w", "b"), grads, want):
        t = tol("chain_grad", torch.float32)
        t["atol"] *= 1 if per_sample or name == "z" else 70
        assert_close(a, e.float(), **t, what=f"{isa} grad {name}")
