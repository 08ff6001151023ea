"""The Triton forward kernels of the SDE steps (issue 3: euler_maruyama_step, reverse_sde_step,
langevin_corrector_step, affine_noise_step), run in the Triton interpreter on CPU tensors and
held to plain-PyTorch formulas written here from the API (SPEC §3.2/§3.3), with the noise from
the reference Philox stream (gmkernels.reference.random.normal). The oracle computes the
per-row coefficients in the compute dtype, in the order csrc/sde/sde.h does, so float32 runs
are compared to a few ulps of the step's terms; the reference module (float64 coefficients)
and the native ops are cross-checked where they exist.

The compiled (PTX) side of the same kernels is test_triton_compile.py.
"""

import math
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from gmkernels import _backend  # noqa: E402
from gmkernels.reference import random as ref  # noqa: E402
from conftest import report  # noqa: E402

if not _backend.triton_interpret():
    pytest.skip("the Triton backend on CPU tensors needs TRITON_INTERPRET=1 (set to "
                f"{os.environ.get('TRITON_INTERPRET')!r})", allow_module_level=True)

from gmkernels.triton import _philox  # noqa: E402
from gmkernels.triton import sde as tri  # noqa: E402

FLOATS = [torch.float32, torch.float64]
SHAPES = [(), (7,), (3, 5), (4, 3, 33), (2, 1031), (0, 3)]
STREAM = (2**63 + 5, 2**33 + 1, 7)
# |got - want| <= REL * (the sum of the step's terms' magnitudes) + TINY: the kernel and the
# oracle differ by the noise's last ulp and by libm vs numpy/libdevice in exp/pow/log.
REL = {torch.float32: 1e-5, torch.float64: 1e-12}
TINY = {torch.float32: 1e-30, torch.float64: 1e-300}
# (kind, p0, p1) as the default VE / VP / sub-VP SDEs of Song et al. 2021
SDES = [(0, 0.01, 50.0), (1, 0.1, 20.0), (2, 0.1, 20.0)]


def _cd(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _row(v, x, cd):
    """A float as a 0-d tensor of cd, a (B,) tensor as (B, 1, ..., 1) (0-d for a 0-d x)."""
    if isinstance(v, torch.Tensor):
        v = v.to(cd)
        return v.reshape((-1,) + (1,) * (x.dim() - 1)) if x.dim() else v.reshape(())
    return torch.tensor(float(v), dtype=cd)


def _xi(x, cd, stream=STREAM):
    return ref.normal(x.shape, *stream, dtype=cd)


def _inputs(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    e = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    rows = shape[0] if len(shape) else 1
    per_row = (torch.rand(rows, generator=g, dtype=torch.float64) * 0.9 + 0.05).to(dtype)
    return x, e, per_row


def _check(got, want, scale, dtype, what):
    assert got.shape == want.shape and got.dtype == want.dtype, \
        f"{what}: got {tuple(got.shape)} {got.dtype}, want {tuple(want.shape)} {want.dtype}"
    assert got.is_contiguous(), what
    assert torch.isfinite(got).all(), f"{what}: non-finite values"
    d = (got.double() - want.double()).abs()
    bound = REL[dtype] * scale.double() + TINY[dtype]
    if not bool((d <= bound).all()):
        worst = int((d - bound).argmax())
        d, bound = d.flatten()[worst].item(), bound.flatten()[worst].item()
        raise AssertionError(f"{what}: {report(got, want)}; at the worst element |diff| = "
                             f"{d:.3g} > {bound:.3g}")


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
    cd = _cd(x.dtype)
    xi, sc = _xi(x, cd, stream), s.to(cd)
    rows, M = ref.row_view(x.shape)
    nn = (xi * xi).reshape(rows, M).sum(1)
    ns = (sc * sc).reshape(rows, M).sum(1)
    a = alpha.to(cd) if isinstance(alpha, torch.Tensor) else torch.tensor(float(alpha), dtype=cd)
    ratio = snr * nn.sqrt() / torch.where(ns > 0, ns, torch.ones_like(ns)).sqrt()
    eps = torch.where(ns > 0, 2 * a * ratio * ratio, torch.zeros_like(ns))
    e = _row(eps, x, cd)
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
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("diffusion", ["float", "per_sample", "full"])
def test_euler_maruyama(dtype, shape, diffusion):
    x, drift, per_row = _inputs(shape, dtype)
    d = {"float": 0.7, "per_sample": per_row,
         "full": (torch.rand(shape, dtype=torch.float64) + 0.1).to(dtype)}[diffusion]
    for dt in (0.01, -0.003):
        d_t, d_f = _split(d)
        got = tri.euler_maruyama_step_fwd(x, drift, d_t, d_f, dt, *STREAM)
        want, scale = oracle_em(x, drift, d, dt)
        _check(got, want, scale, dtype, f"em {dtype} {shape} {diffusion} dt={dt}")


def test_euler_maruyama_non_contiguous():
    xb, fb, per_row = _inputs((40, 9), torch.float32)
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
@pytest.mark.parametrize("sde", SDES, ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize("predictor", [0, 1], ids=["euler_maruyama", "reverse_diffusion"])
@pytest.mark.parametrize("pf", [False, True], ids=["sde", "probability_flow"])
def test_reverse_sde(dtype, sde, predictor, pf):
    kind, p0, p1 = sde
    for shape in [(), (4, 3, 33)]:
        x, s, _ = _inputs(shape, dtype, seed=1)
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


def test_reverse_sde_pf_reads_no_noise_and_em_does():
    x, s, _ = _inputs((3, 8), torch.float64, seed=2)
    a = tri.reverse_sde_step_fwd(x, s, None, 0.3, 0.01, 1, 0.1, 20.0, 0, True, 1, 2, 3)
    b = tri.reverse_sde_step_fwd(x, s, None, 0.3, 0.01, 1, 0.1, 20.0, 0, True, 9, 8, 7)
    assert torch.equal(a, b)
    c = tri.reverse_sde_step_fwd(x, s, None, 0.3, 0.01, 1, 0.1, 20.0, 0, False, 9, 8, 7)
    assert not torch.equal(a, c)


def test_reverse_sde_non_contiguous_and_shard():
    xb, sb, _ = _inputs((33, 10), torch.float32, seed=3)
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
    assert torch.equal(part, got[4:7]), report(part, got[4:7])


# --------------------------------------------------------------------------------------------
# langevin_corrector_step

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("per_sample", [False, True])
def test_langevin_corrector(dtype, shape, per_sample):
    x, s, per_row = _inputs(shape, dtype, seed=4)
    alpha = per_row if per_sample else 0.9
    a_t, a_f = _split(alpha)
    got = tri.langevin_corrector_step_fwd(x, s, a_t, a_f, 0.16, *STREAM)
    want, scale = oracle_corrector(x, s, alpha, 0.16)
    _check(got, want, scale, dtype, f"corrector {dtype} {shape} per_sample={per_sample}")


@pytest.mark.parametrize("dtype", FLOATS)
def test_langevin_corrector_zero_score_rows(dtype):
    x, s, per_row = _inputs((4, 3, 7), dtype, seed=5)
    s[1] = 0
    s[3] = 0
    got = tri.langevin_corrector_step_fwd(x, s, per_row, 0.0, 0.16, *STREAM)
    assert torch.isfinite(got).all()
    assert torch.equal(got[1], x[1]) and torch.equal(got[3], x[3])
    want, scale = oracle_corrector(x, s, per_row, 0.16)
    _check(got, want, scale, dtype, f"corrector zero rows {dtype}")
    one = tri.langevin_corrector_step_fwd(x[0], torch.zeros_like(x[0]), None, 1.0, 0.16,
                                          *STREAM)  # a (3, 7) tensor of 3 rows, all zero score
    assert torch.equal(one, x[0])


def test_langevin_corrector_long_rows_and_non_contiguous(monkeypatch):
    # programs of 8 counters (32 elements) so that rows of 70 span 3 tiles, as long rows do
    # on a GPU (256 counters per program): the norms are added from per-tile partials
    monkeypatch.setattr(_philox, "INTERPRET_GROUPS_PER_PROGRAM", 8)
    x, s, _ = _inputs((3, 70), torch.float32, seed=6)
    s[1] = 0
    got = tri.langevin_corrector_step_fwd(x, s, None, 1.0, 0.16, *STREAM)
    want, scale = oracle_corrector(x, s, 1.0, 0.16)
    _check(got, want, scale, torch.float32, "corrector long rows")
    assert torch.equal(got[1], x[1])
    xb, sb, per_row = _inputs((11, 6), torch.float64, seed=7)
    got = tri.langevin_corrector_step_fwd(xb.t(), sb.t(), per_row[:6], 0.0, 0.3, *STREAM)
    want, scale = oracle_corrector(xb.t().contiguous(), sb.t().contiguous(), per_row[:6], 0.3)
    _check(got, want, scale, torch.float64, "corrector non-contiguous")


# --------------------------------------------------------------------------------------------
# affine_noise_step

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("per_sample", ["none", "cx", "ce_cn", "all"])
def test_affine_noise(dtype, shape, per_sample):
    x, e, per_row = _inputs(shape, dtype, seed=8)
    cx = per_row + 1 if per_sample in ("cx", "all") else 1.02
    ce = per_row * 0.1 if per_sample in ("ce_cn", "all") else 0.05
    cn = per_row * 0.5 if per_sample in ("ce_cn", "all") else 0.2
    (cx_t, cx_f), (ce_t, ce_f), (cn_t, cn_f) = _split(cx), _split(ce), _split(cn)
    got = tri.affine_noise_step_fwd(x, e, cx_t, cx_f, ce_t, ce_f, cn_t, cn_f, *STREAM)
    want, scale = oracle_affine(x, e, cx, ce, cn)
    _check(got, want, scale, dtype, f"affine {dtype} {shape} {per_sample}")


def test_affine_noise_no_noise_and_non_contiguous():
    xb, eb, per_row = _inputs((12, 5), torch.float32, seed=9)
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
def test_half_types_round_the_float32_result(dtype):
    x, e, per_row = _inputs((3, 50), dtype, seed=10)
    x32, e32, r32 = x.float(), e.float(), per_row.float()
    ulp = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]

    def close(got, want32, what):
        assert got.dtype == dtype, what
        assert torch.allclose(got.float(), want32.to(dtype).float(), rtol=ulp, atol=1e-3), \
            f"{what}: {report(got, want32.to(dtype))}"

    close(tri.euler_maruyama_step_fwd(x, e, per_row, 0.0, 0.02, *STREAM),
          tri.euler_maruyama_step_fwd(x32, e32, r32, 0.0, 0.02, *STREAM), "em")
    close(tri.reverse_sde_step_fwd(x, e, None, 0.4, 0.01, 2, 0.1, 20.0, 1, False, *STREAM),
          tri.reverse_sde_step_fwd(x32, e32, None, 0.4, 0.01, 2, 0.1, 20.0, 1, False, *STREAM),
          "reverse")
    close(tri.langevin_corrector_step_fwd(x, e, None, 1.0, 0.16, *STREAM),
          tri.langevin_corrector_step_fwd(x32, e32, None, 1.0, 0.16, *STREAM), "corrector")
    close(tri.affine_noise_step_fwd(x, e, per_row, 0.0, None, 0.1, None, 0.3, *STREAM),
          tri.affine_noise_step_fwd(x32, e32, r32, 0.0, None, 0.1, None, 0.3, *STREAM), "affine")


def test_empty_and_errors():
    x = torch.empty(0, 4)
    r = torch.empty(0)
    for y in (tri.euler_maruyama_step_fwd(x, x, r, 0.0, 0.1, 1, 0, 0),
              tri.reverse_sde_step_fwd(x, x, r, 0.0, 0.1, 0, 0.01, 50.0, 1, False, 1, 0, 0),
              tri.langevin_corrector_step_fwd(x, x, r, 0.0, 0.16, 1, 0, 0),
              tri.affine_noise_step_fwd(x, x, r, 0.0, r, 0.0, r, 0.0, 1, 0, 0)):
        assert y.shape == (0, 4)
    x = torch.randn(3, 4)
    # The launchers check nothing: the public ops check (gmkernels._checks) before any backend.
    import gmkernels
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
# cross-checks with the reference module (float64 coefficients) and the native ops, where
# they exist

def _ref_sde():
    from gmkernels.reference import sde as ref_sde
    return ref_sde


@pytest.mark.parametrize("dtype", FLOATS)
def test_against_reference_module(dtype):
    ref_sde = _ref_sde()
    names = ("euler_maruyama_step", "reverse_sde_step", "langevin_corrector_step",
             "affine_noise_step")
    if not all(hasattr(ref_sde, n) for n in names):
        pytest.skip("gmkernels.reference.sde has no issue-3 steps")
    x, s, per_row = _inputs((4, 3, 5), dtype, seed=11)
    # float32 coefficients vs float64 ones rounded: a little looser than the own oracle
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)

    def close(got, want, what):
        assert got.dtype == want.dtype and torch.allclose(got, want, **tol), \
            f"{what}: {report(got, want)}"

    close(tri.euler_maruyama_step_fwd(x, s, per_row, 0.0, -0.02, *STREAM),
          ref_sde.euler_maruyama_step(x, s, per_row, -0.02, *STREAM), "em")
    t = torch.tensor([0.2, 0.5, 0.8, 1.0], dtype=dtype)
    for (kind, p0, p1), name in zip(SDES, ("ve", "vp", "subvp")):
        for pred, pred_name in ((0, "euler_maruyama"), (1, "reverse_diffusion")):
            for pf in (False, True):
                got = tri.reverse_sde_step_fwd(x, s, t, 0.0, 0.01, kind, p0, p1, pred, pf,
                                               *STREAM)
                want = ref_sde.reverse_sde_step(x, s, t, 0.01, name, p0, p1, pred_name, pf,
                                                *STREAM)
                scale = want.abs().max().item() + 1  # VE's g^2 reaches 4e4 at t = 1
                assert torch.allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale), \
                    f"reverse {name} {pred_name} pf={pf}: {report(got, want)}"
    close(tri.langevin_corrector_step_fwd(x, s, per_row, 0.0, 0.16, *STREAM),
          ref_sde.langevin_corrector_step(x, s, 0.16, per_row, *STREAM), "corrector")
    close(tri.affine_noise_step_fwd(x, s, per_row, 0.0, None, 0.1, per_row, 0.0, *STREAM),
          ref_sde.affine_noise_step(x, s, per_row, 0.1, per_row, *STREAM), "affine")


def _native(name):
    if not _backend.extension_available():
        pytest.skip("the extension did not load")
    op = getattr(torch.ops.gmkernels, name, None) if hasattr(torch.ops, "gmkernels") else None
    if op is None:
        pytest.skip(f"no native op {name} in this build")
    return op


@pytest.mark.parametrize("dtype", FLOATS)
def test_against_native_ops(dtype):
    """Against the C++ CPU kernels (issue-3 schemas), when the extension has them."""
    from gmkernels.random import as_int64_bits

    x, s, per_row = _inputs((5, 2, 9), dtype, seed=12)
    cd = _cd(dtype)
    # the schemas' int is int64: seed and offset travel as their two's-complement bits
    native_stream = (as_int64_bits(STREAM[0]), as_int64_bits(STREAM[1]), STREAM[2])
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)

    def close(got, want, what, scale=1.0):
        assert torch.allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale), \
            f"{what}: {report(got, want)}"

    em = _native("euler_maruyama_step")
    close(tri.euler_maruyama_step_fwd(x, s, per_row, 0.0, 0.02, *STREAM),
          em(x, s, per_row.to(cd), 0.0, 0.02, *native_stream), "em")
    rev = _native("reverse_sde_step")
    t = torch.linspace(0.0, 1.0, 5, dtype=cd)
    for kind, p0, p1 in SDES:
        for pred in (0, 1):
            for pf in (False, True):
                got = tri.reverse_sde_step_fwd(x, s, t, 0.0, 0.01, kind, p0, p1, pred, pf,
                                               *STREAM)
                want = rev(x, s, t, 0.0, 0.01, kind, p0, p1, pred, pf, *native_stream)
                close(got, want, f"reverse kind={kind} pred={pred} pf={pf}",
                      want.abs().max().item() + 1)
    corr = _native("langevin_corrector_step")
    s0 = s.clone()
    s0[2] = 0
    close(tri.langevin_corrector_step_fwd(x, s0, per_row, 0.0, 0.16, *STREAM),
          corr(x, s0, per_row.to(cd), 0.0, 0.16, *native_stream), "corrector")
    aff = _native("affine_noise_step")
    close(tri.affine_noise_step_fwd(x, s, per_row, 0.0, None, 0.1, per_row, 0.0, *STREAM),
          aff(x, s, per_row.to(cd), 0.0, None, 0.1, per_row.to(cd), 0.0, *native_stream), "affine")
