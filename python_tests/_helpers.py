"""What every test file shares: one tolerance table, one `assert_close`, one non-contiguous
layout helper. (The fixtures -- `backend`, `one_thread`, `triton` -- live in conftest.py.)

Import from here, not from another test file:

    from _helpers import assert_close, noncontig, tol
"""

from __future__ import annotations

import math

import torch

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64

# ---------------------------------------------------------------------------------------------
# One tolerance table: kind x dtype -> (rtol, atol), for |got - want| <= atol + rtol * |want|.
#
# Every backend (native, triton, the reference path of the wrappers) is held to the same bound:
# the differences below come from the arithmetic (float32 coefficients, polynomial or libm
# transcendentals, summation order), which every backend's kernels share; none of the tables
# this one replaced had a backend-specific entry, so the table has no backend axis.
#
# A kind is named for where the error comes from. Pick the kind of the computation, never a
# looser one because a test fails: a failure at these bounds is a finding.
TOLERANCES: dict[str, dict[torch.dtype, tuple[float, float]]] = {
    # Element-wise arithmetic on the inputs plus one normal draw (the Langevin step): the noise
    # differs by <= the "normal" bound below and the sum by a rounding or two. Half types
    # compute in float32 and round once: 1e-3 is one float16 ulp at 1 (9.8e-4); 8e-3 one
    # bfloat16 ulp (7.8e-3).
    "values": {F32: (1e-6, 2e-6), F64: (1e-12, 1e-12), F16: (1e-3, 1e-3), BF16: (8e-3, 8e-3)},
    # Normal draws (Box-Muller): backends round log/sqrt/cos/sin differently in the last ulp;
    # the radius is at most sqrt(-2 ln 2^-24) = 5.77, where one float32 ulp is 4.8e-7. An
    # absolute bound (rtol 0): the error does not shrink with |n|.
    "normal": {F32: (0.0, 1e-6), F64: (0.0, 1e-12)},
    # Float32 math against a reference that does it otherwise: exp / tanh / log as ~1-2 ulp
    # polynomials in the kernels against torch's (coupling: a log-scale error of d moves y by a
    # relative d, |l| <= ~6), and per-row coefficients computed in float32 by the kernels where
    # the reference computes them in float64 and rounds once (the SDE steps' sigma(t)^2,
    # beta(t), sqrt; the planar flow's tanh and psi: a few ulps of a coefficient of size O(10)
    # times an input of size O(3)). The SDE-step and planar tables had 2e-5 in float32, the
    # coupling table 1e-5: their tests pass at 1e-5, so that is the bound.
    "transcendental": {F32: (1e-5, 1e-5), F64: (1e-11, 1e-11)},
    # One kernel against another (the Triton SDE steps against the C++ ones), both computing
    # the per-row coefficients in the compute dtype in the same order: they differ by libm vs
    # numpy/libdevice in exp/pow/log and the noise's last ulp.
    "cross_backend": {F32: (1e-5, 1e-5), F64: (1e-12, 1e-12)},
    # Per-row sums (the Langevin backward's d/d step_size, d/d noise_scale): summed in another
    # order by each backend, M terms of the element-wise error each.
    "row_sum": {F32: (1e-5, 1e-5), F64: (1e-12, 1e-12)},
    # The RBM free energy against brute-force enumeration: F = -b.v - sum_j softplus(x_j), a
    # sum of nh softplus terms of size up to ~10 here, each to an ulp or two of float32.
    "softplus_sum": {F32: (2e-5, 2e-5), F64: (1e-12, 1e-12)},
    # Gradients in float64 against the reference's autograd: the same formulas in another
    # order, each a handful of roundings (the float64 gradient tests of the SDE, Langevin and
    # coupling families).
    "grad": {F64: (1e-10, 1e-10)},
    # Planar-flow gradients: K chained layers whose backward re-derives h'(a) = 1 - tanh^2 and
    # 1 / psi from the kernels' tanh (the "transcendental" error) and multiplies them through the
    # stack. Callers scale atol by B for shared-parameter gradients (sums over the batch).
    "chain_grad": {F32: (2e-4, 2e-4), F64: (1e-9, 1e-9)},
    # One rounding of the result in a half storage dtype apart (a float32 result that differs
    # by an ulp can round to the neighbouring half value): 2 ulps of float16 / bfloat16 at 1.
    # atol: the float32 "values" bound of the math underneath (near 0 a half value is exact to
    # float32's absolute error).
    "half_rounding": {F16: (2e-3, 2e-6), BF16: (1.6e-2, 2e-6)},
    # A forward then inverse of an affine map y = x e^l + t (coupling, RealNVP): x comes back
    # to ~ulp * |t| e^|l|, with e^l up to e^6 unclamped: ~1e-7 * 400 in float32.
    "round_trip": {F32: (1e-4, 1e-4), F64: (1e-10, 1e-10)},
    # Half storage through exp in float32 (coupling): y = x e^l + t is rounded once to the half
    # type, |y| up to ~10, where one half ulp is 7.8e-3 (float16) / 6.2e-2 (bfloat16); the
    # rtol covers a rounding either way at |y| ~ 1 (the bound the coupling test had).
    "half_transcendental": {F16: (1e-2, 1e-2), BF16: (2e-2, 2e-2)},
    # The Triton SDE steps against an oracle written from the API, relative to the SUM of the
    # magnitudes of the step's terms (|cx x| + |ce e| + |cn xi|, see test_sde_ops.py): the
    # kernel and the oracle differ by the noise's last ulp and libm vs numpy/libdevice in
    # exp/pow/log, each a few ulps of one term. atol is only a floor for exact zeros, far below
    # any element's scale.
    "terms": {F32: (1e-5, 1e-30), F64: (1e-12, 1e-300)},
}


def tol(kind: str, dtype: torch.dtype) -> dict[str, float]:
    """``dict(rtol=..., atol=...)`` of `kind` for `dtype` from TOLERANCES."""
    try:
        rtol, atol = TOLERANCES[kind][dtype]
    except KeyError:
        raise KeyError(f"tol: no tolerance of kind {kind!r} for {dtype} "
                       f"(kinds: {sorted(TOLERANCES)})") from None
    return dict(rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# One comparison.

def _describe(got: torch.Tensor, want: torch.Tensor, bound: torch.Tensor | None = None) -> str:
    """The numbers of a mismatch: max |diff|, where, the values there (and the bound)."""
    if got.numel() == 0:
        return "empty"
    d = (got.detach().double() - want.detach().double()).abs()
    d = torch.where(torch.isnan(d), torch.full_like(d, math.inf), d)  # a NaN is the worst
    if bound is None:
        i = int(d.flatten().argmax())
        extra = ""
    else:  # the element furthest past its bound
        i = int((d - bound).flatten().argmax())
        extra = f" > bound {bound.flatten()[i].item():.3g}"
    idx = tuple(int(v) for v in torch.unravel_index(torch.tensor(i), got.shape)) if got.dim() else ()
    return (f"max |diff| = {d.max().item():.3g}; at {idx} (flat {i}): |diff| = "
            f"{d.flatten()[i].item():.3g}{extra}, got {got.detach().flatten()[i].item():.9g}, "
            f"want {want.detach().flatten()[i].item():.9g}")


def assert_close(got: torch.Tensor, want: torch.Tensor, *, kind: str | None = None,
                 dtype: torch.dtype | None = None, rtol: float | None = None,
                 atol: float | torch.Tensor | None = None, what: str = "",
                 check_dtype: bool = True, equal_nan: bool = False) -> None:
    """Assert |got - want| <= atol + rtol |want| element by element, with shapes equal (and
    dtypes, unless check_dtype=False), printing the numbers on failure.

    The bound is ``tol(kind, dtype)`` (dtype defaults to want's), or explicit rtol / atol;
    an explicit one overrides that part of the kind's. atol may be a tensor (an element-wise
    bound, broadcast against want). Both sides are compared in float64."""
    label = f"{what}: " if what else ""
    assert isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor), \
        f"{label}got {type(got).__name__}, want {type(want).__name__}"
    assert got.shape == want.shape, f"{label}shape {tuple(got.shape)}, want {tuple(want.shape)}"
    if check_dtype:
        assert got.dtype == want.dtype, f"{label}dtype {got.dtype}, want {want.dtype}"
    if kind is not None:
        t = tol(kind, dtype if dtype is not None else want.dtype)
        rtol = t["rtol"] if rtol is None else rtol
        atol = t["atol"] if atol is None else atol
    assert rtol is not None and atol is not None, \
        f"{label}assert_close needs kind= or both rtol= and atol="
    g, w = got.detach().double(), want.detach().double()
    a = atol.detach().double() if isinstance(atol, torch.Tensor) else torch.tensor(float(atol), dtype=torch.float64)
    bound = (a + rtol * w.abs()).expand(w.shape) if w.dim() else a + rtol * w.abs()
    ok = (g - w).abs() <= bound
    same = g == w  # infinities of one sign (inf - inf is NaN)
    ok = ok | same
    if equal_nan:
        ok = ok | (torch.isnan(g) & torch.isnan(w))
    if not bool(ok.all()):
        raise AssertionError(f"{label}{int((~ok).sum())} of {ok.numel()} elements off "
                             f"(rtol={rtol:.3g}, atol="
                             f"{'tensor' if isinstance(atol, torch.Tensor) else f'{atol:.3g}'}); "
                             + _describe(got, want, bound))


def assert_equal(got: torch.Tensor, want: torch.Tensor, what: str = "") -> None:
    """Bit-for-bit equality (shape, dtype, values), printing the numbers on failure."""
    label = f"{what}: " if what else ""
    assert got.shape == want.shape, f"{label}shape {tuple(got.shape)}, want {tuple(want.shape)}"
    assert got.dtype == want.dtype, f"{label}dtype {got.dtype}, want {want.dtype}"
    if not torch.equal(got, want):
        n = int((got != want).sum())
        raise AssertionError(f"{label}{n} of {got.numel()} elements differ; "
                             + _describe(got, want))


# ---------------------------------------------------------------------------------------------
# One non-contiguous layout.

def noncontig(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The values of `t` (converted to `dtype`, default t's) in reversed-strides storage: the
    transpose of a contiguous tensor for 2-D, every dimension reversed for more. Non-contiguous
    whenever two dimensions have size > 1 (a tensor of one row or column has no other layout)."""
    dtype = t.dtype if dtype is None else dtype
    out = torch.empty(tuple(reversed(t.shape)), dtype=dtype, device=t.device)
    out = out.permute(*reversed(range(t.dim())))
    out.copy_(t)
    if sum(s > 1 for s in t.shape) >= 2:
        assert not out.is_contiguous(), tuple(t.shape)
    return out
