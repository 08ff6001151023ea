"""Property-based tests (hypothesis): random shapes, strides, dtypes and parameters, the
kernels compared with the reference (the tolerance table of _helpers.py), and the invariants
that hold for every input:

* row invariance: a row's result depends only on that row (and ``sample_offset``): a shard
  run with ``sample_offset=a`` reproduces rows ``a..`` of the full batch bit for bit, and
  changing the other rows changes nothing in it;
* coupling round trips: the inverse undoes the forward, and the log-dets cancel;
* ``planar_u_hat``: ``û·w > -1`` (the layer stays invertible);
* log-dets against ``slogdet`` of the Jacobian at small D (planar flow, affine coupling).

Examples are bounded (``max_examples``) and derandomized, so a run is reproducible and the
file stays within its time budget; hypothesis's example database is off (nothing is
written to the checkout).
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gmkernels

from _helpers import assert_close, assert_equal, tol

F32, F64 = torch.float32, torch.float64

SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def bounded(n):
    return settings(max_examples=n, **SETTINGS)


# --------------------------------------------------------------------------------------------
# strategies

dtypes = st.sampled_from([F32, F64])
layouts = st.sampled_from(["contiguous", "transposed", "strided", "offset"])
seeds = st.integers(0, (1 << 64) - 1)
offsets = st.integers(0, (1 << 64) - 64)


def _layout(t: torch.Tensor, kind: str) -> torch.Tensor:
    """t's values in the layout ``kind``: contiguous, transposed storage (reversed strides),
    every other element of a wider buffer, or a view at a storage offset."""
    if kind == "contiguous" or t.dim() == 0:
        return t.contiguous()
    if kind == "transposed":
        out = torch.empty(tuple(reversed(t.shape)), dtype=t.dtype).permute(*reversed(range(t.dim())))
    elif kind == "strided":
        out = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)[..., ::2]
    else:
        out = torch.empty(t.numel() + 3, dtype=t.dtype)[3:].view(t.shape)
    return out.copy_(t)


@st.composite
def tensors(draw, shape, dtype, scale=1.0):
    """A random tensor of ``shape`` (values from a seeded generator: hypothesis picks the seed)
    in a random layout."""
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31)))
    t = torch.randn(shape, generator=g, dtype=dtype) * scale
    return _layout(t, draw(layouts))


@st.composite
def batches(draw, max_rows=9, max_cols=6, min_rows=0):
    return draw(st.integers(min_rows, max_rows)), draw(st.integers(1, max_cols))


@st.composite
def coefs(draw, rows, dtype, lo=0.0, hi=1.0):
    """A step coefficient: a float, or a per-sample (rows,) tensor."""
    if draw(st.booleans()):
        return draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31)))
    return (torch.rand(rows, generator=g, dtype=dtype) * (hi - lo) + lo)


def _reference(fn, *args, **kwargs):
    with gmkernels.use_backend("reference"):
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# kernels against the reference

@bounded(40)
@given(st.data(), batches(), dtypes, seeds, offsets)
def test_langevin_step_matches_the_reference(data, bd, dtype, seed, offset):
    B, D = bd
    x, g = data.draw(tensors((B, D), dtype)), data.draw(tensors((B, D), dtype))
    a, c = data.draw(coefs(B, dtype)), data.draw(coefs(B, dtype))
    clamp = data.draw(st.sampled_from([None, (-1.0, 1.0), (-0.5, 2.0)]))
    got = gmkernels.langevin_step(x, g, a, c, seed=seed, offset=offset, clamp=clamp)
    want = _reference(gmkernels.langevin_step, x, g, a, c, seed=seed, offset=offset, clamp=clamp)
    assert_close(got, want, kind="values", what=f"langevin_step {B}x{D} {dtype} a={a} c={c}")


@bounded(30)
@given(st.data(), batches(), dtypes, seeds)
def test_euler_maruyama_and_affine_noise_match_the_reference(data, bd, dtype, seed):
    B, D = bd
    x, f = data.draw(tensors((B, D), dtype)), data.draw(tensors((B, D), dtype))
    g = data.draw(coefs(B, dtype, -2.0, 2.0))
    dt = data.draw(st.sampled_from([1e-3, 0.1, -0.05]))
    got = gmkernels.euler_maruyama_step(x, f, g, dt, seed=seed, offset=2)
    want = _reference(gmkernels.euler_maruyama_step, x, f, g, dt, seed=seed, offset=2)
    assert_close(got, want, kind="values", what=f"euler_maruyama_step {B}x{D} {dtype}")
    cx, ce, cn = (data.draw(coefs(B, dtype, -2.0, 2.0)) for _ in range(3))
    got = gmkernels.affine_noise_step(x, f, cx, ce, cn, seed=seed, offset=5)
    want = _reference(gmkernels.affine_noise_step, x, f, cx, ce, cn, seed=seed, offset=5)
    assert_close(got, want, kind="values", what=f"affine_noise_step {B}x{D} {dtype}")


@bounded(30)
@given(st.data(), batches(max_cols=5), dtypes, st.integers(1, 4), st.booleans())
def test_planar_flow_matches_the_reference(data, bd, dtype, K, per_sample):
    B, D = bd
    z = data.draw(tensors((B, D), dtype))
    lead = (B, K) if per_sample else (K,)
    u = data.draw(tensors(lead + (D,), dtype))
    w = data.draw(tensors(lead + (D,), dtype))
    b = data.draw(tensors(lead, dtype))
    u_hat = gmkernels.planar_u_hat(u, w)
    got = gmkernels.planar_flow(z, u_hat, w, b)
    want = _reference(gmkernels.planar_flow, z, u_hat, w, b)
    for i, (g_, w_) in enumerate(zip(got, want)):
        assert_close(g_, w_, kind="transcendental", what=f"planar_flow output {i}, {B}x{D} K={K}")


@bounded(30)
@given(st.data(), batches(max_cols=8), dtypes, st.sampled_from(["exp", "sigmoid"]),
       st.sampled_from([None, 2.0, 5.0]), st.booleans())
def test_affine_coupling_matches_the_reference(data, bd, dtype, scale, clamp, inverse):
    B, D = bd
    x, s, t = (data.draw(tensors((B, D), dtype)) for _ in range(3))
    mask = torch.tensor(data.draw(st.lists(st.booleans(), min_size=D, max_size=D)))
    got = gmkernels.affine_coupling(x, s, t, mask, inverse=inverse, scale=scale, clamp=clamp)
    want = _reference(gmkernels.affine_coupling, x, s, t, mask, inverse=inverse, scale=scale,
                      clamp=clamp)
    for i, (g_, w_) in enumerate(zip(got, want)):
        assert_close(g_, w_, kind="transcendental", what=f"affine_coupling output {i}")


@bounded(25)
@given(st.data(), st.integers(0, 9), st.integers(1, 7), st.integers(1, 5), seeds,
       st.integers(0, 3))
def test_rbm_ops_match_the_reference(data, B, nv, nh, seed, k):
    v = (data.draw(tensors((B, nv), F64)) > 0).double()
    W = data.draw(tensors((nv, nh), F64, 0.5))
    b, c = data.draw(tensors((nv,), F64)), data.draw(tensors((nh,), F64))
    assert_close(gmkernels.rbm_free_energy(v, W, b, c),
                 _reference(gmkernels.rbm_free_energy, v, W, b, c), kind="softplus_sum",
                 what="rbm_free_energy")
    got = gmkernels.rbm_gibbs(v, W, b, c, k, seed=seed)
    want = _reference(gmkernels.rbm_gibbs, v, W, b, c, k, seed=seed)
    for i, (g_, w_) in enumerate(zip(got, want)):   # float64: the same draws, bit for bit
        assert_close(g_, w_, kind="values", what=f"rbm_gibbs output {i} (k={k})")


@bounded(25)
@given(st.data(), st.integers(0, 30), st.integers(1, 9), seeds, offsets,
       st.sampled_from(["uniform", "normal", "rademacher"]), dtypes)
def test_random_fills_match_the_reference(data, rows, cols, seed, offset, draw, dtype):
    so = data.draw(st.integers(0, 1000))
    fill = getattr(gmkernels.random, draw)
    got = fill((rows, cols), seed=seed, offset=offset, sample_offset=so, dtype=dtype)
    want = _reference(fill, (rows, cols), seed=seed, offset=offset, sample_offset=so, dtype=dtype)
    assert_close(got, want, kind="normal" if draw == "normal" else "values",
                 what=f"random.{draw} ({rows}, {cols})")


# --------------------------------------------------------------------------------------------
# row invariance

ROW_OPS = {
    "langevin_step": lambda x, so, s: gmkernels.langevin_step(x, -x, 0.1, 0.3, seed=s, offset=1,
                                                              sample_offset=so),
    "euler_maruyama_step": lambda x, so, s: gmkernels.euler_maruyama_step(
        x, x * 0.5, 0.7, 0.01, seed=s, offset=2, sample_offset=so),
    "affine_noise_step": lambda x, so, s: gmkernels.affine_noise_step(
        x, x.flip(-1), 1.01, 0.1, 0.2, seed=s, offset=3, sample_offset=so),
    "reverse_sde_step": lambda x, so, s: gmkernels.reverse_sde_step(
        x, -x, 0.5, 0.01, gmkernels.score.VPSDE(), seed=s, offset=4, sample_offset=so),
    "random.bernoulli": lambda x, so, s: gmkernels.random.bernoulli(torch.sigmoid(x), seed=s,
                                                                    sample_offset=so),
    "rbm_gibbs": lambda x, so, s: gmkernels.rbm_gibbs(
        (x > 0).double(), _W_RBM[:x.shape[1]], torch.zeros(x.shape[1], dtype=F64),
        torch.zeros(3, dtype=F64), 2, seed=s, sample_offset=so)[0],
    "bm_gibbs": lambda x, so, s: gmkernels.bm_gibbs(
        torch.where(x > 0, 1.0, -1.0).to(x.dtype), _sym(x.shape[1], x.dtype),
        torch.zeros(x.shape[1], dtype=x.dtype), 3, seed=s, sample_offset=so),
    "planar_flow": lambda x, so, s: gmkernels.planar_flow(
        x, _U_HAT[:, :x.shape[1]].to(x.dtype), _W_PL[:, :x.shape[1]].to(x.dtype),
        torch.zeros(3, dtype=x.dtype))[1],
}
_W_RBM = torch.linspace(-0.5, 0.5, 18, dtype=F64).reshape(6, 3)
_W_PL = torch.linspace(-1, 1, 18).reshape(3, 6)
_U_HAT = torch.linspace(0.5, -0.4, 18).reshape(3, 6) * 0.3


def _sym(D, dtype):
    A = torch.linspace(-0.4, 0.6, D * D, dtype=dtype).reshape(D, D)
    return ((A + A.T) / 2).fill_diagonal_(0)


@bounded(40)
@given(st.data(), st.sampled_from(sorted(ROW_OPS)), batches(min_rows=2, max_cols=6), dtypes,
       seeds)
def test_a_row_depends_on_that_row_only(data, name, bd, dtype, seed):
    """rows a..b computed alone with sample_offset=a equal rows a..b of the full batch, and
    rewriting every other row leaves them unchanged, bit for bit."""
    B, D = bd
    f = ROW_OPS[name]
    x = data.draw(tensors((B, D), dtype))
    a = data.draw(st.integers(0, B - 1))
    b = data.draw(st.integers(a + 1, B))
    full = f(x, 0, seed)
    assert_equal(f(x[a:b], a, seed), full[a:b], what=f"{name}: rows {a}:{b} of {B} alone")
    other = x.clone()
    other[:a] = torch.flip(other[:a], [0]) * -2 + 1
    other[b:] = 3.0
    assert_equal(f(other, 0, seed)[a:b], full[a:b],
                 what=f"{name}: rows {a}:{b} of {B} with the other rows rewritten")


# --------------------------------------------------------------------------------------------
# invariants of the flows

@bounded(40)
@given(st.data(), batches(max_cols=8), dtypes, st.sampled_from(["exp", "sigmoid"]),
       st.sampled_from([None, 1.0, 5.0]))
def test_coupling_round_trip(data, bd, dtype, scale, clamp):
    B, D = bd
    x, t = data.draw(tensors((B, D), dtype)), data.draw(tensors((B, D), dtype))
    s = data.draw(tensors((B, D), dtype, 2.0))
    mask = torch.tensor(data.draw(st.lists(st.booleans(), min_size=D, max_size=D)))
    y, ld = gmkernels.affine_coupling(x, s, t, mask, scale=scale, clamp=clamp)
    back, ld_inv = gmkernels.affine_coupling(y, s, t, mask, inverse=True, scale=scale, clamp=clamp)
    # the inverse divides by the scale e^l, so x comes back to ~ulp * |t| * e^|l| (the
    # "round_trip" kind's derivation): scale the bound by the largest e^|l| of this example
    ls = s.double() if clamp is None else clamp * torch.tanh(s.double() / clamp)
    if scale == "sigmoid":
        ls = torch.log(torch.sigmoid(ls + 2) + 1e-3)
    amp = float(torch.exp(ls.abs()).max()) if B else 1.0
    r = tol("round_trip", dtype)
    assert_close(back, x, rtol=r["rtol"] * amp, atol=r["atol"] * amp, what="x -> y -> x")
    assert_close(ld_inv, -ld, rtol=r["rtol"], atol=r["atol"], what="the log-dets cancel")
    assert_equal(y[..., mask], x[..., mask], what="the masked part passes through")


@bounded(60)
@given(st.data(), st.integers(1, 6), st.integers(1, 8), dtypes, st.integers(-3, 3))
def test_planar_u_hat_keeps_the_layer_invertible(data, K, D, dtype, eu):
    """û·w > -1 for u and w of magnitudes 10^-3 .. 10^3 (each picked per example), û·w taken
    exactly (float64) from the stored û and w.

    The product |u||w| is bounded per dtype: the rounding of û to the dtype moves û·w by up to
    ~ D ulp |û||w|, which must stay below the margin that keeps m(w·u) above -1 (1e-3 in
    float32, ulp 1.2e-7, D <= 8: |u||w| <= 10^2; 1e-8 in float64, ulp 2.2e-16: 10^4)."""
    top = 2 if dtype == F32 else 4
    ew = data.draw(st.integers(-3, min(3, top - eu)))
    u = data.draw(tensors((K, D), dtype, 10.0 ** eu))
    w = data.draw(tensors((K, D), dtype, 10.0 ** ew))
    u_hat = gmkernels.planar_u_hat(u, w)
    dot = (u_hat.double() * w.double()).sum(-1)
    assert bool(torch.isfinite(u_hat).all()), u_hat
    assert bool((dot > -1).all()), f"min û·w = {float(dot.min())} (|u| ~ 1e{eu}, |w| ~ 1e{ew})"


def _jacobian_logdet(f, z):
    J = torch.autograd.functional.jacobian(f, z)
    sign, logabs = torch.linalg.slogdet(J)
    return sign, logabs


@bounded(25)
@given(st.data(), st.integers(1, 4), st.integers(1, 4))
def test_planar_logdet_is_the_slogdet_of_the_jacobian(data, D, K):
    u = data.draw(tensors((K, D), F64))
    w = data.draw(tensors((K, D), F64))
    b = data.draw(tensors((K,), F64))
    z = data.draw(tensors((1, D), F64))
    u_hat = gmkernels.planar_u_hat(u, w)
    sign, logabs = _jacobian_logdet(lambda v: gmkernels.planar_flow(v[None], u_hat, w, b)[0][0],
                                    z[0].contiguous())
    _, ld = gmkernels.planar_flow(z, u_hat, w, b)
    assert float(sign) == 1.0, "an invertible planar stack has a positive Jacobian determinant"
    assert_close(ld[0], logabs, kind="grad", what=f"planar log-det, D={D} K={K}")


@bounded(25)
@given(st.data(), st.integers(1, 5), st.sampled_from(["exp", "sigmoid"]),
       st.sampled_from([None, 3.0]), st.booleans())
def test_coupling_logdet_is_the_slogdet_of_the_jacobian(data, D, scale, clamp, inverse):
    """s and t are functions of the masked part (as in RealNVP), so the Jacobian is triangular
    up to a permutation, and its log |det| is the op's log-det."""
    mask = torch.tensor(data.draw(st.lists(st.booleans(), min_size=D, max_size=D)))
    A = data.draw(tensors((D, D), F64, 0.5))
    Bm = data.draw(tensors((D, D), F64, 0.5))
    x = data.draw(tensors((1, D), F64))

    def f(v):
        keep = v * mask
        y, _ = gmkernels.affine_coupling(v[None], (keep @ A)[None], (keep @ Bm)[None], mask,
                                         inverse=inverse, scale=scale, clamp=clamp)
        return y[0]

    _, logabs = _jacobian_logdet(f, x[0].contiguous())
    keep = x * mask
    _, ld = gmkernels.affine_coupling(x, keep @ A, keep @ Bm, mask, inverse=inverse, scale=scale,
                                      clamp=clamp)
    assert_close(ld[0], logabs, kind="grad", what=f"coupling log-det, D={D} {scale} {clamp}")
