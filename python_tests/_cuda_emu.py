"""The CUDA kernels under the CPU execution layer (issue 12; docs/architecture.md): the cases and
the child process of test_cuda_emu.py.

build/emu-cmake/libgmkernels_cuda_emu.so (CMake option GMK_BUILD_CUDA_EMU; tools/env.sh builds
it) holds every launcher of csrc/*/*.cu compiled for the host with AddressSanitizer and UBSan;
csrc/emu/api.cpp is its C interface. This module loads it with ctypes (it needs no torch),
mirrors the launchers' argument structs, and for every launcher feeds the same fresh random
inputs to the CPU op (torch.ops.gmkernels.* on CPU tensors) and to the emulated CUDA launcher
(the tensors' data pointers), comparing with the suite's rules: Philox words and Boltzmann
states bit-equal, floats within _helpers.TOLERANCES.

Each case runs under several layer configurations (CONFIGS): two or more thread schedules, and
the int32 and int64 index paths of the counter-grid kernels (the switch forced with a small
threshold). Run as a script it is the child process (ASan needs its runtime preloaded, which
only a fresh process can have):

    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \\
    ASAN_OPTIONS=detect_leaks=0 python python_tests/_cuda_emu.py LIB FAMILY
"""

from __future__ import annotations

import ctypes as C
import math
import os
import sys
from pathlib import Path

import torch

import gmkernels  # noqa: F401  (registers torch.ops.gmkernels)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _helpers import assert_close, assert_equal, tol  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("GMK_EMU_BUILD", ROOT / "build" / "emu-cmake"))
FAMILIES = ("random", "sde", "planar", "coupling", "rbm", "bm")
# The planted builds (CMakeLists.txt): library suffix -> the family whose cases must fail.
PLANTED = {"plant1": "random", "plant2": "coupling", "plant3": "planar"}

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
DTYPE_CODE = {F32: 0, F64: 1, F16: 2, BF16: 3, torch.int64: 4}
FLOATS = (F32, F64, F16, BF16)

# (sm_count, index32_limit, schedule_seed). One SM: a grid of at most 8 blocks of 256 threads,
# so a grid-stride loop over more than 2048 work items takes several turns. index32_limit 100:
# every counter grid of more than 100 items takes the uint64 index path.
SCHEDULES = (0, 0x9E3779B97F4A7C15)
CONFIGS = [(1, -1, s) for s in SCHEDULES] + [(1, 100, SCHEDULES[1] + 1)]
# Families whose kernels have no counter grid (int64 indices throughout): the two schedules.
NO_INDEX_SWITCH = ("planar", "coupling", "bm")


def configs(family: str) -> list[tuple[int, int, int]]:
    return CONFIGS[:2] if family in NO_INDEX_SWITCH else CONFIGS


# ---------------------------------------------------------------------------------------------
# ctypes mirrors of the argument structs (csrc/*/<family>.h), checked against the library's sizeof.
def _struct(name, fields):
    return type(name, (C.Structure,), {"_fields_": fields})


P, D, I64, B, I = C.c_void_p, C.c_double, C.c_int64, C.c_bool, C.c_int
PhiloxStream = _struct("PhiloxStream",
                       [(n, C.c_uint32) for n in ("k0", "k1", "off_lo", "off_hi", "row0")])
LangevinArgs = _struct("LangevinArgs", [
    ("x", P), ("g", P), ("y", P), ("a_t", P), ("c_t", P), ("a", D), ("c", D), ("lo", D), ("hi", D),
    ("clamp", B), ("rows", I64), ("M", I64), ("st", PhiloxStream), ("dtype", I)])
LangevinBackwardArgs = _struct("LangevinBackwardArgs", [
    ("gy", P), ("y", P), ("g", P), ("a_t", P), ("a", D), ("lo", D), ("hi", D), ("clamp", B),
    ("gx", P), ("gg", P), ("ga", P), ("gc", P), ("rows", I64), ("M", I64), ("st", PhiloxStream),
    ("dtype", I)])
CoefArgs = _struct("CoefArgs", [
    ("src", I), ("cx_t", P), ("ce_t", P), ("cn_t", P), ("cx", D), ("ce", D), ("cn", D),
    ("t_t", P), ("kind", I), ("predictor", I), ("pf", B), ("p0", D), ("p1", D), ("dt", D),
    ("alpha_t", P), ("alpha", D), ("snr", D), ("sums", P)])
AffineArgs = _struct("AffineArgs", [
    ("x", P), ("e", P), ("nfull", P), ("y", P), ("nscale", D), ("noise", B), ("coefs", CoefArgs),
    ("rows", I64), ("M", I64), ("st", PhiloxStream), ("dtype", I)])
AffineBackwardArgs = _struct("AffineBackwardArgs", [
    ("gy", P), ("x", P), ("e", P), ("gx", P), ("ge", P), ("sx", P), ("se", P), ("sn", P), ("gn", P),
    ("nscale", D), ("coefs", CoefArgs), ("rows", I64), ("M", I64), ("st", PhiloxStream),
    ("dtype", I)])
RowNormsArgs = _struct("RowNormsArgs", [
    ("s", P), ("sums", P), ("means", P), ("rows", I64), ("M", I64), ("st", PhiloxStream), ("dtype", I)])
PlanarArgs = _struct("PlanarArgs", [
    ("z", P), ("u", P), ("w", P), ("b", P), ("out", P), ("logdet", P), ("B", I64), ("K", I64),
    ("D", I64), ("per_sample", B), ("zbuf", P), ("dtype", I)])
PlanarBackwardArgs = _struct("PlanarBackwardArgs", [
    ("grad_out", P), ("grad_logdet", P), ("z", P), ("u", P), ("w", P), ("b", P), ("gz", P),
    ("gu", P), ("gw", P), ("gb", P), ("ws", P), ("zbuf", P), ("B", I64), ("K", I64), ("D", I64),
    ("per_sample", B), ("dtype", I)])
CouplingArgs = _struct("CouplingArgs", [
    ("x", P), ("s", P), ("t", P), ("mask", P), ("mask_row_stride", I64), ("y", P), ("logdet", P),
    ("partial", P), ("rows", I64), ("M", I64), ("scale", I), ("inverse", B), ("clamp_on", B),
    ("clamp", D), ("dtype", I)])
CouplingBackwardArgs = _struct("CouplingBackwardArgs", [
    ("gy", P), ("gld", P), ("x", P), ("s", P), ("t", P), ("mask", P), ("mask_row_stride", I64),
    ("gx", P), ("gs", P), ("gt", P), ("rows", I64), ("M", I64), ("scale", I), ("inverse", B),
    ("clamp_on", B), ("clamp", D), ("dtype", I)])
RbmPassArgs = _struct("RbmPassArgs", [
    ("pre", P), ("bias", P), ("base", P), ("beta_t", P), ("beta", D), ("sample", P), ("prob", P),
    ("rows", I64), ("M", I64), ("st", PhiloxStream), ("dtype", I)])
BmArgs = _struct("BmArgs", [
    ("y", P), ("h", P), ("W", P), ("beta_t", P), ("beta", D), ("B", I64), ("D", I64),
    ("n_sweeps", I64), ("order", I), ("st", PhiloxStream), ("dtype", I)])
STRUCTS = [PhiloxStream, LangevinArgs, LangevinBackwardArgs, CoefArgs, AffineArgs,
           AffineBackwardArgs, RowNormsArgs, PlanarArgs, PlanarBackwardArgs, CouplingArgs,
           CouplingBackwardArgs, RbmPassArgs, BmArgs]


class Emu:
    """The emulation library: configure() and one method per launcher (raising on a status)."""

    def __init__(self, path: Path):
        self.lib = C.CDLL(str(path))
        self.lib.gmk_emu_configure.argtypes = [C.c_int, I64, I64, C.c_uint64]
        self.lib.gmk_emu_sizeof.argtypes = [C.c_char_p]
        self.lib.gmk_emu_sizeof.restype = C.c_size_t
        for s in STRUCTS:
            n = self.lib.gmk_emu_sizeof(s.__name__.encode())
            assert n == C.sizeof(s), f"ctypes mirror of {s.__name__}: {C.sizeof(s)} bytes, C++ {n}"
        self.planted = self.lib.gmk_emu_planted()
        flat = [C.c_int, C.c_void_p, C.c_void_p, I64, I64, C.POINTER(PhiloxStream)]
        if hasattr(self.lib, "gmk_emu_random_fill"):
            self.lib.gmk_emu_random_fill.argtypes = [C.c_int] + flat[:1] + flat[2:]
            self.lib.gmk_emu_bernoulli.argtypes = flat

    def configure(self, sm_count: int, index32_limit: int, schedule_seed: int,
                  shared_limit: int = -1) -> None:
        self.config = (sm_count, index32_limit, schedule_seed)
        self.lib.gmk_emu_configure(sm_count, index32_limit, shared_limit, schedule_seed)

    def call(self, name: str, *args) -> None:
        f = getattr(self.lib, "gmk_emu_" + name)
        f.restype = C.c_char_p
        status = f(*args)
        assert status is None, f"{name}: the launcher failed: {status.decode()}"


def ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def stream(seed: int, offset: int, sample_offset: int) -> PhiloxStream:
    """gmk::make_stream (philox.h)."""
    return PhiloxStream(seed & 0xFFFFFFFF, seed >> 32, offset & 0xFFFFFFFF, offset >> 32,
                        sample_offset)


def acc_of(dtype: torch.dtype) -> torch.dtype:
    return F64 if dtype == F64 else F32


def sum_bound(terms_abs: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """An absolute bound on the difference of two float sums of the same n terms (per row, the
    last dim) in different orders: each sum is within (n - 1) u sum|t| of the exact one
    (Higham, Accuracy and Stability, eq. 4.3), plus u |t| per term for the terms' own rounding,
    so the two differ by at most 2 n u sum|t|. u: the unit roundoff of the compute dtype."""
    u = torch.finfo(acc).eps / 2
    n = terms_abs.shape[-1]
    return 2 * n * u * terms_abs.double().sum(-1) + 1e-30


OPS = torch.ops.gmkernels
CASES: dict[str, list] = {f: [] for f in FAMILIES}


def case(family: str):
    def deco(f):
        CASES[family].append(f)
        return f
    return deco


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(shape, dtype, g, scale=1.0):
    return (torch.randn(shape, generator=g, dtype=F64) * scale).to(dtype)


# ---------------------------------------------------------------------------------------------
# random: launch_random_fill (every draw and storage dtype), launch_bernoulli.
# Shapes: (5, 2001) takes the element path with a short last counter (2001 = 4 * 500 + 1), 2505
# counters (two grid-stride turns of 2048 threads); (5, 2048) the 4-wide vector path.
RANDOM_SHAPES = ((5, 2001), (5, 2048), (3, 6))
FILL_OPS = {0: "random_uint32_", 1: "random_uniform_", 2: "random_normal_", 3: "random_rademacher_"}


@case("random")
def random_fill(emu: Emu, k: int) -> None:
    for shape in RANDOM_SHAPES:
        for draw, opname in FILL_OPS.items():
            for dtype in ((torch.int64,) if draw == 0 else FLOATS):
                seed, off, so = 1234 + k, 77 + draw, 3
                want = torch.empty(shape, dtype=dtype)
                getattr(OPS, opname)(want, seed, off, so)
                got = torch.full(shape, -7, dtype=dtype)
                st = stream(seed, off, so)
                emu.call("random_fill", draw, DTYPE_CODE[dtype], ptr(got), shape[0],
                         math.prod(shape[1:]), C.byref(st))
                what = f"{opname} {dtype} {shape}"
                if draw == 2 and dtype in (F32, F64):
                    assert_close(got, want, kind="normal", what=what)
                elif draw == 2:
                    assert_close(got, want, kind="half_rounding", what=what)
                else:
                    assert_equal(got, want, what=what)


@case("random")
def random_bernoulli(emu: Emu, k: int) -> None:
    for shape in RANDOM_SHAPES:
        for dtype in FLOATS:
            p = torch.rand(shape, generator=gen(k), dtype=F64).to(dtype)
            want = OPS.random_bernoulli(p, 99, 5 + k, 0)
            got = torch.full(shape, -1, dtype=dtype)
            emu.call("bernoulli", DTYPE_CODE[dtype], ptr(p), ptr(got), shape[0], shape[1],
                     C.byref(stream(99, 5 + k, 0)))
            assert_equal(got, want, what=f"bernoulli {dtype} {shape}")


# ---------------------------------------------------------------------------------------------
# sde: launch_langevin, launch_langevin_backward, launch_affine (per-row and scalar coefficients,
# the reverse SDE's, Euler-Maruyama's full diffusion, the corrector's), launch_affine_backward
# (its sums sx / se / sn and the full gn), launch_corrector_norms.
# (9, 1001): the element path, 251 counters a row with a short last one, rows that straddle
# warps and blocks, 2259 counters (two grid-stride turns); (4, 1024) the vector path; (40, 6):
# two counters a row, sixteen rows in a warp.
SDE_SHAPES = ((9, 1001), (4, 1024), (40, 6))


def elem_kind(dtype: torch.dtype, kind: str) -> str:
    """kind for float32 / float64; for half storage, one rounding of the float32 result apart."""
    return kind if dtype in (F32, F64) else "half_rounding"


def sde_grid(k, shapes=SDE_SHAPES):
    """(shape, dtype, compute dtype, rows, M, three fresh (rows, M) inputs) for every shape and
    floating dtype."""
    for shape in shapes:
        for dtype in FLOATS:
            g = gen(100 + k)
            yield (shape, dtype, acc_of(dtype), *shape,
                   tuple(randn(shape, dtype, g) for _ in range(3)))


@case("sde")
def langevin(emu: Emu, k: int) -> None:
    for shape, dtype, acc, rows, M, (x, grad, gy) in sde_grid(k):
        a_t = torch.rand(rows, generator=gen(k), dtype=F64).to(acc) * 0.1
        seed, off, so = 42, 7 + k, 2
        for per_row, (lo, hi) in ((True, (None, None)), (False, (-1.5, 1.5))):
            at = a_t if per_row else None
            want = OPS.langevin_step(x, grad, at, 0.05, None, 0.5, seed, off, so, lo, hi)
            got = torch.full_like(x, 9.0)
            st = stream(seed, off, so)
            args = LangevinArgs(ptr(x), ptr(grad), ptr(got), ptr(at), None, 0.05, 0.5,
                                lo if lo is not None else 0.0, hi if hi is not None else 0.0,
                                lo is not None, rows, M, st, DTYPE_CODE[dtype])
            emu.call("langevin", C.byref(args))
            what = f"langevin_step {dtype} {shape} per_row={per_row}"
            assert_close(got, want, kind="values", what=what)
            # In place (langevin_step_): y is x's own buffer.
            xin = x.clone()
            args.x = args.y = ptr(xin)
            emu.call("langevin", C.byref(args))
            assert_close(xin, want, kind="values", what="in place " + what)
            # Backward at the CPU output (the clamp mask is the same then).
            # need_noise_grad only with per-row steps: the kernel without xi (kNeedC false)
            # runs in the other variant.
            need_c = per_row
            gx_w, gg_w, ga_w, gc_w = OPS.langevin_step_backward(
                gy, want, grad, at, 0.05, seed, off, so, lo, hi, True, need_c)
            gx, gg = torch.full_like(x, 9.0), torch.full_like(x, 9.0)
            ga, gc = torch.zeros(rows, dtype=acc), torch.zeros(rows, dtype=acc)
            bargs = LangevinBackwardArgs(ptr(gy), ptr(want), ptr(grad), ptr(at), 0.05,
                                         args.lo, args.hi, args.clamp, ptr(gx), ptr(gg),
                                         ptr(ga), ptr(gc) if need_c else None, rows, M, st,
                                         DTYPE_CODE[dtype])
            emu.call("langevin_backward", C.byref(bargs))
            assert_close(gx, gx_w, kind="values", what="grad_x " + what)
            assert_close(gg, gg_w, kind="values", what="grad_grad " + what)
            # |xi| <= sqrt(-2 ln 2^-24) < 6 (Box-Muller's largest radius).
            gya = gy.double().abs()
            assert_close(ga, ga_w, rtol=0.0, atol=sum_bound(gya * grad.double().abs(), acc),
                         what="grad_step_size " + what)
            if need_c:
                assert_close(gc, gc_w, rtol=0.0, atol=sum_bound(gya * 6.0, acc),
                             what="grad_noise_scale " + what)
            else:
                assert gc_w.numel() == 0 and not gc.any(), "grad_noise_scale " + what


def coefs_rows(cx_t=None, cx=1.0, ce_t=None, ce=0.0, cn_t=None, cn=0.0) -> CoefArgs:
    return CoefArgs(src=0, cx_t=ptr(cx_t), ce_t=ptr(ce_t), cn_t=ptr(cn_t), cx=cx, ce=ce, cn=cn)


@case("sde")
def affine_noise(emu: Emu, k: int) -> None:
    for shape, dtype, acc, rows, M, (x, e, gy) in sde_grid(k):
        g = gen(7 + k)
        cx_t = (torch.rand(rows, generator=g, dtype=F64) + 0.5).to(acc)
        cn_t = (torch.rand(rows, generator=g, dtype=F64) * 0.5).to(acc)
        seed, off, so = 5, 11 + k, 1
        for per_row in (True, False):
            cxt, cnt = (cx_t, cn_t) if per_row else (None, None)
            want = OPS.affine_noise_step(x, e, cxt, 0.9, None, 0.3, cnt, 0.2, seed, off, so)
            got = torch.full_like(x, 9.0)
            st = stream(seed, off, so)
            args = AffineArgs(ptr(x), ptr(e), None, ptr(got), 1.0, True,
                              coefs_rows(cxt, 0.9, None, 0.3, cnt, 0.2), rows, M, st,
                              DTYPE_CODE[dtype])
            emu.call("affine", C.byref(args))
            what = f"affine_noise_step {dtype} {shape} per_row={per_row}"
            assert_close(got, want, kind=elem_kind(dtype, "values"), what=what)
            gx_w, ge_w, scx_w, sce_w, scn_w = OPS.affine_noise_step_backward(
                gy, x, e, cxt, 0.9, None, 0.3, seed, off, so, True, True, True)
            gx, ge = torch.full_like(x, 9.0), torch.full_like(x, 9.0)
            sx, se, sn = (torch.zeros(rows, dtype=acc) for _ in range(3))
            bargs = AffineBackwardArgs(ptr(gy), ptr(x), ptr(e), ptr(gx), ptr(ge), ptr(sx),
                                       ptr(se), ptr(sn), None, 1.0,
                                       coefs_rows(cxt, 0.9, None, 0.3), rows, M, st,
                                       DTYPE_CODE[dtype])
            emu.call("affine_backward", C.byref(bargs))
            assert_close(gx, gx_w, kind=elem_kind(dtype, "values"), what="grad_x " + what)
            assert_close(ge, ge_w, kind=elem_kind(dtype, "values"), what="grad_e " + what)
            gya = gy.double().abs()
            assert_close(sx, scx_w, rtol=0.0, atol=sum_bound(gya * x.double().abs(), acc),
                         what="grad_cx " + what)
            assert_close(-se, sce_w, rtol=0.0, atol=sum_bound(gya * e.double().abs(), acc),
                         what="grad_ce " + what)
            assert_close(sn, scn_w, rtol=0.0, atol=sum_bound(gya * 6.0, acc),
                         what="grad_cn " + what)


@case("sde")
def reverse_sde(emu: Emu, k: int) -> None:
    # (kind, predictor, probability_flow): VE / VP / sub-VP, Euler-Maruyama / reverse diffusion.
    variants = ((0, 0, False), (1, 1, False), (2, 0, True), (0, 1, False))
    params = {0: (0.01, 50.0), 1: (0.1, 20.0), 2: (0.1, 20.0)}
    for shape, dtype, acc, rows, M, (x, score, gy) in sde_grid(k, SDE_SHAPES[:2]):
        t_t = (torch.rand(rows, generator=gen(k), dtype=F64) * 0.8 + 0.1).to(acc)
        for kind, pred, pf in variants:
            p0, p1 = params[kind]
            dt, seed, off, so = 0.01, 3, 20 + k, 0
            want = OPS.reverse_sde_step(x, score, t_t, 0.5, dt, kind, p0, p1, pred, pf, seed,
                                        off, so)
            got = torch.full_like(x, 9.0)
            st = stream(seed, off, so)
            coefs = CoefArgs(src=1, t_t=ptr(t_t), kind=kind, predictor=pred, pf=pf, p0=p0,
                             p1=p1, dt=dt)
            args = AffineArgs(ptr(x), ptr(score), None, ptr(got), 1.0, not pf, coefs, rows,
                              M, st, DTYPE_CODE[dtype])
            emu.call("affine", C.byref(args))
            what = f"reverse_sde_step kind={kind} pred={pred} pf={pf} {dtype} {shape}"
            assert_close(got, want, kind=elem_kind(dtype, "cross_backend"), what=what)
            gx_w, gs_w = OPS.reverse_sde_step_backward(gy, t_t, 0.5, dt, kind, p0, p1, pred,
                                                       pf, list(shape))
            gx, gs = torch.full_like(x, 9.0), torch.full_like(x, 9.0)
            bargs = AffineBackwardArgs(ptr(gy), None, None, ptr(gx), ptr(gs), None, None,
                                       None, None, 1.0, coefs, rows, M, st, DTYPE_CODE[dtype])
            emu.call("affine_backward", C.byref(bargs))
            assert_close(gx, gx_w, kind=elem_kind(dtype, "cross_backend"), what="grad_x " + what)
            assert_close(gs, gs_w, kind=elem_kind(dtype, "cross_backend"),
                         what="grad_score " + what)


@case("sde")
def euler_maruyama_full_diffusion(emu: Emu, k: int) -> None:
    for shape, dtype, acc, rows, M, (x, drift, gy) in sde_grid(k):
        diff = torch.rand(shape, generator=gen(k), dtype=F64).to(dtype)
        dt, seed, off, so = -0.02, 8, 30 + k, 4
        want = OPS.euler_maruyama_step(x, drift, diff, 0.0, dt, seed, off, so)
        got = torch.full_like(x, 9.0)
        st = stream(seed, off, so)
        ns = math.sqrt(abs(dt))
        args = AffineArgs(ptr(x), ptr(drift), ptr(diff), ptr(got), ns, True,
                          coefs_rows(None, 1.0, None, -dt, None, 0.0), rows, M, st,
                          DTYPE_CODE[dtype])
        emu.call("affine", C.byref(args))
        what = f"euler_maruyama_step full diffusion {dtype} {shape}"
        assert_close(got, want, kind=elem_kind(dtype, "values"), what=what)
        gx_w, gd_w, gn_w = OPS.euler_maruyama_step_backward(gy, diff, dt, seed, off, so,
                                                            list(shape), True)
        gx, gd, gn = (torch.full_like(x, 9.0) for _ in range(3))
        bargs = AffineBackwardArgs(ptr(gy), None, None, ptr(gx), ptr(gd), None, None, None,
                                   ptr(gn), ns, coefs_rows(None, 1.0, None, -dt), rows, M,
                                   st, DTYPE_CODE[dtype])
        emu.call("affine_backward", C.byref(bargs))
        assert_close(gx, gx_w, kind=elem_kind(dtype, "values"), what="grad_x " + what)
        assert_close(gd, gd_w, kind=elem_kind(dtype, "values"), what="grad_drift " + what)
        assert_close(gn, gn_w, kind=elem_kind(dtype, "values"), what="grad_diffusion " + what)


@case("sde")
def corrector(emu: Emu, k: int) -> None:
    # The launches of langevin_corrector_step on CUDA (sde_cuda.cpp): the row norms into zeroed
    # sums and their batch means (launch_corrector_norms: two kernels), then the affine step
    # with the corrector's coefficients.
    for shape, dtype, acc, rows, M, (x, score, _) in sde_grid(k):
        score[1] = 0  # a row with ||score|| = 0 (the batch's mean norm stays > 0)
        alpha_t = (torch.rand(rows, generator=gen(k), dtype=F64) * 0.1).to(acc)
        seed, off, so = 9, 40 + k, 0
        want = OPS.langevin_corrector_step(x, score, alpha_t, 0.0, 0.16, seed, off, so)
        st = stream(seed, off, so)
        sums = torch.zeros(rows, 2, dtype=acc)
        means = torch.full((2,), 9.0, dtype=acc)
        emu.call("corrector_norms", C.byref(RowNormsArgs(ptr(score), ptr(sums), ptr(means), rows,
                                                         M, st, DTYPE_CODE[dtype])))
        # The norms themselves: ||score_r||^2 against a float64 sum (a sum of M squares), and
        # the batch mean of the norms against the float64 mean of the kernel's own sums (the
        # means kernel adds rows square roots in double: a few roundings of the result).
        s2 = score.double().pow(2)
        what = f"{dtype} {shape}"
        assert_close(sums[:, 1].double(), s2.sum(1), rtol=0.0, atol=sum_bound(s2, acc),
                     what="corrector norms " + what)
        assert_close(means.double(), sums.double().sqrt().mean(0), kind="cross_backend",
                     dtype=acc, what="corrector means " + what)
        got = torch.full_like(x, 9.0)
        coefs = CoefArgs(src=2, alpha_t=ptr(alpha_t), alpha=0.0, snr=0.16, sums=ptr(means))
        emu.call("affine", C.byref(AffineArgs(ptr(x), ptr(score), None, ptr(got), 1.0, True,
                                              coefs, rows, M, st, DTYPE_CODE[dtype])))
        assert_close(got, want, kind=elem_kind(dtype, "cross_backend"),
                     what="langevin_corrector_step " + what)


# ---------------------------------------------------------------------------------------------
# planar: launch_planar_forward, launch_planar_backward; shared and per-sample parameters, the
# per-thread row (D <= 32) and the global workspace row (D > 32), float32 and float64.
# B = 2100: the forward's grid-stride loop takes two turns of 8 x 256 threads; B = 300: the
# backward's last block is part-empty (inactive lanes in the shared-parameter warp sums).
PLANAR_SIZES = ((2100, 2, 3), (300, 3, 5), (70, 2, 37))  # (B, K, D)


@case("planar")
def planar(emu: Emu, k: int) -> None:
    for B_, K, D_ in PLANAR_SIZES:
        for dtype in (F32, F64):
            for per_sample in (False, True):
                g = gen(300 + k)
                lead = (B_, K) if per_sample else (K,)
                z = randn((B_, D_), dtype, g)
                u = randn(lead + (D_,), dtype, g, 0.3)
                w = randn(lead + (D_,), dtype, g, 0.3)
                b = randn(lead, dtype, g, 0.3)
                gy, gl = randn((B_, D_), dtype, g), randn((B_,), dtype, g)
                what = f"planar {dtype} B={B_} K={K} D={D_} per_sample={per_sample}"
                out_w, ld_w = OPS.planar_flow(z, u, w, b)
                out, ld = torch.full_like(z, 9.0), torch.full((B_,), 9.0, dtype=dtype)
                zbuf = torch.empty(B_, D_, dtype=dtype) if D_ > 32 else None
                emu.call("planar_forward", C.byref(PlanarArgs(
                    ptr(z), ptr(u), ptr(w), ptr(b), ptr(out), ptr(ld), B_, K, D_, per_sample,
                    ptr(zbuf), DTYPE_CODE[dtype])))
                assert_close(out, out_w, kind="transcendental", what="out " + what)
                assert_close(ld, ld_w, kind="transcendental", what="logdet " + what)
                gz_w, gu_w, gw_w, gb_w = OPS.planar_flow_backward(gy, gl, z, u, w, b)
                gz = torch.full_like(z, 9.0)
                # Shared-parameter gradients are added to (zero-filled), per-sample ones written.
                gu, gw, gb = (torch.full_like(t, 9.0) if per_sample else torch.zeros_like(t)
                              for t in (u, w, b))
                ws = torch.empty(3 * K, B_, dtype=dtype)
                zbuf2 = torch.empty(2, B_, D_, dtype=dtype) if D_ > 32 else None
                emu.call("planar_backward", C.byref(PlanarBackwardArgs(
                    ptr(gy), ptr(gl), ptr(z), ptr(u), ptr(w), ptr(b), ptr(gz), ptr(gu), ptr(gw),
                    ptr(gb), ptr(ws), ptr(zbuf2), B_, K, D_, per_sample, DTYPE_CODE[dtype])))
                assert_close(gz, gz_w, kind="chain_grad", what="grad_z " + what)
                # Shared parameters: sums over the batch (the table's rule: atol times B).
                scale = 1 if per_sample else B_
                for name, got, want in (("grad_u", gu, gu_w), ("grad_w", gw, gw_w),
                                        ("grad_b", gb, gb_w)):
                    t = tol("chain_grad", dtype)
                    assert_close(got, want, rtol=t["rtol"], atol=t["atol"] * scale,
                                 what=f"{name} {what}")


# ---------------------------------------------------------------------------------------------
# coupling: launch_affine_coupling (warp per row; chunked rows with the partial sums and the
# finishing kernel), launch_affine_coupling_backward (both layouts); exp and sigmoid scales,
# forward and inverse, with and without the soft clamp, a shared and a per-row mask, every dtype.
# (300, 70): warp per row, 70 = 2 * 32 + 6 (a tail), 300 rows over 64 warps (five turns);
# (3, 5000): two chunks a row, the last of 904 elements; (10, 4500): 20 chunk items over 8 blocks.
COUPLING_SHAPES = ((300, 70), (3, 5000), (10, 4500))
COUPLING_VARIANTS = ((0, False, None), (1, True, None), (0, True, 2.0), (1, False, 3.0))


def coupling_chunks(M: int) -> int:
    """coupling_cuda_chunks (coupling.h)."""
    return 1 if M <= 1024 else (M + 4095) // 4096


@case("coupling")
def coupling(emu: Emu, k: int) -> None:
    for rows, M in COUPLING_SHAPES:
        for dtype in FLOATS:
            acc = acc_of(dtype)
            g = gen(500 + k)
            x, sc, t = (randn((rows, M), dtype, g) for _ in range(3))
            gy, gld = randn((rows, M), dtype, g), randn((rows,), dtype, g)
            for vi, (scale, inverse, clamp) in enumerate(COUPLING_VARIANTS):
                per_row = vi % 2 == 1
                mshape = (rows, M) if per_row else (M,)
                mask = torch.rand(mshape, generator=g) < 0.5
                m8 = mask.to(torch.uint8).contiguous()
                what = (f"affine_coupling {dtype} {(rows, M)} scale={scale} inverse={inverse} "
                        f"clamp={clamp} per_row_mask={per_row}")
                y_w, ld_w = OPS.affine_coupling(x, sc, t, mask, inverse, scale, clamp)
                y, ld = torch.full_like(x, 9.0), torch.full((rows,), 9.0, dtype=dtype)
                nch = coupling_chunks(M)
                partial = torch.full((rows * nch,), 9.0, dtype=acc) if nch > 1 else None
                emu.call("affine_coupling", C.byref(CouplingArgs(
                    ptr(x), ptr(sc), ptr(t), ptr(m8), M if per_row else 0, ptr(y), ptr(ld),
                    ptr(partial), rows, M, scale, inverse, clamp is not None,
                    clamp if clamp is not None else 0.0, DTYPE_CODE[dtype])))
                ek = "transcendental" if dtype in (F32, F64) else "half_transcendental"
                assert_close(y, y_w, kind=ek, what="y " + what)
                # logdet: a sum of M log-scales, |l| <= |s| + 7 (exp: the clamped s; sigmoid:
                # log(sigmoid + 1e-3) >= log 1e-3 = -6.9), each to the transcendental bound,
                # summed in another order (sum_bound); half storage rounds it once more.
                la = sc.double().abs() + 7.0
                bound = sum_bound(la, acc) + 1e-5 * la.sum(-1)
                rt = 0.0 if dtype in (F32, F64) else tol("half_rounding", dtype)["rtol"]
                assert_close(ld, ld_w, rtol=rt, atol=bound, what="logdet " + what)
                gx_w, gs_w, gt_w = OPS.affine_coupling_backward(gy, gld, x, sc, t, mask, inverse,
                                                                scale, clamp)
                gx, gs, gt = (torch.full_like(x, 9.0) for _ in range(3))
                emu.call("affine_coupling_backward", C.byref(CouplingBackwardArgs(
                    ptr(gy), ptr(gld), ptr(x), ptr(sc), ptr(t), ptr(m8), M if per_row else 0,
                    ptr(gx), ptr(gs), ptr(gt), rows, M, scale, inverse, clamp is not None,
                    clamp if clamp is not None else 0.0, DTYPE_CODE[dtype])))
                for name, got, want in (("grad_x", gx, gx_w), ("grad_s", gs, gs_w),
                                        ("grad_t", gt, gt_w)):
                    assert_close(got, want, kind=ek, what=f"{name} {what}")


# ---------------------------------------------------------------------------------------------
# rbm: launch_rbm_pass, as rbm_gibbs runs it (rbm_ops.h, rbm_gibbs_run): k = 1 is the hidden pass
# (stream offset + 0) then the visible pass (offset + 1), each writing its probabilities over its
# GEMM output (prob aliasing pre). Plus the base-bias term of AIS (base non-null).
# (nv, nh) = (203, 45), B = 45: the hidden pass is (45, 45) and the visible (45, 203): 2295
# counters (two turns), a short last counter; (64, 256): the vector path.
RBM_SIZES = ((45, 203, 45), (16, 64, 256))  # (B, nv, nh)


def rbm_pass(emu, pre, bias, base, beta_t, beta, st, sample, prob, dtype):
    emu.call("rbm_pass", C.byref(RbmPassArgs(
        ptr(pre), ptr(bias), ptr(base), ptr(beta_t), beta, ptr(sample), ptr(prob), pre.shape[0],
        pre.shape[1], st, DTYPE_CODE[dtype])))


@case("rbm")
def rbm(emu: Emu, k: int) -> None:
    for B_, nv, nh in RBM_SIZES:
        for dtype in (F32, F64):
            g = gen(700 + k)
            v0 = (torch.rand((B_, nv), generator=g) < 0.5).to(dtype)
            W = randn((nv, nh), dtype, g, 0.1)
            b, c = randn((nv,), dtype, g, 0.5), randn((nh,), dtype, g, 0.5)
            beta_t = torch.rand(B_, generator=g, dtype=F64).to(dtype)
            seed, off, so = 17, 60 + k, 1
            what = f"rbm_gibbs k=1 {dtype} B={B_} nv={nv} nh={nh}"
            v_w, h_w, pv_w, ph_w = OPS.rbm_gibbs(v0, W, b, c, 1, beta_t, 1.0, seed, off, so)
            pre_h = v0 @ W
            h = torch.full((B_, nh), 9.0, dtype=dtype)
            rbm_pass(emu, pre_h, c, None, beta_t, 1.0, stream(seed, off, so), h, pre_h, dtype)
            pre_v = h @ W.t()
            v = torch.full((B_, nv), 9.0, dtype=dtype)
            rbm_pass(emu, pre_v, b, None, beta_t, 1.0, stream(seed, off + 1, so), v, pre_v, dtype)
            assert_equal(h, h_w, what="h " + what)
            assert_equal(v, v_w, what="v " + what)
            assert_close(pre_h, ph_w, kind="transcendental", what="ph " + what)
            assert_close(pre_v, pv_w, kind="transcendental", what="pv " + what)
            # The base term: z = beta (pre + bias) + (1 - beta) base, sample = u < sigmoid(z),
            # u the uniforms of the pass's stream (random_uniform_ of the same shape and stream).
            base = randn((nv,), dtype, g, 0.5)
            pre = randn((B_, nv), dtype, g)
            sample, prob = torch.full_like(pre, 9.0), torch.full_like(pre, 9.0)
            rbm_pass(emu, pre, b, base, beta_t, 1.0, stream(seed, off, so), sample, prob, dtype)
            bt = beta_t.double()[:, None]
            z = bt * (pre.double() + b.double()) + (1 - bt) * base.double()
            assert_close(prob, torch.sigmoid(z).to(dtype), kind="transcendental",
                         what="prob with base " + what)
            u = torch.empty_like(pre)
            OPS.random_uniform_(u, seed, off, so)
            assert_equal(sample, (u < prob).to(dtype), what="sample with base " + what)


# ---------------------------------------------------------------------------------------------
# bm: launch_bm_gibbs, sequential and random scan, fields in shared memory (dynamic, sized by
# the launch) and, with the layer's shared budget lowered to 0, in the global scratch; a block
# of 32 threads (D = 20: fewer sites than threads) and of 64 (D = 150: several fields a thread);
# B = 11 chains over 8 blocks (one SM) takes the grid-stride loop over chains.
BM_SIZES = ((11, 20), (5, 150))


@case("bm")
def bm(emu: Emu, k: int) -> None:
    for B_, D_ in BM_SIZES:
        for dtype in (F32, F64):
            g = gen(900 + k)
            W = randn((D_, D_), dtype, g, 0.3)
            W = (W + W.t()) / 2
            W.fill_diagonal_(0)
            bias = randn((D_,), dtype, g, 0.2)
            y0 = torch.where(torch.rand((B_, D_), generator=g) < 0.5, 1.0, -1.0).to(dtype)
            beta_t = (torch.rand(B_, generator=g, dtype=F64) + 0.5).to(dtype)
            for order in (0, 1):
                seed, off, so, sweeps = 23, 80 + k, 0, 3
                want = OPS.bm_gibbs(y0, W, bias, sweeps, beta_t, 1.0, order, seed, off, so)
                for shared_limit in (-1, 0):
                    emu.configure(*emu.config, shared_limit=shared_limit)
                    y = y0.clone()
                    h = (y0 @ W + bias).contiguous()  # the initial fields (bm_cuda.cpp: cuBLAS)
                    emu.call("bm_gibbs", C.byref(BmArgs(
                        ptr(y), ptr(h), ptr(W), ptr(beta_t), 1.0, B_, D_, sweeps, order,
                        stream(seed, off, so), DTYPE_CODE[dtype])))
                    assert_equal(y, want, what=f"bm_gibbs {dtype} B={B_} D={D_} order={order} "
                                               f"fields={'shared' if shared_limit else 'global'}")


def main(argv: list[str]) -> int:
    # --first-failure: stop at the first failing case (the planted builds: one is enough).
    first = "--first-failure" in argv
    argv = [a for a in argv if a != "--first-failure"]
    lib, family = Path(argv[1]), argv[2]
    emu = Emu(lib)
    print(f"{lib.name}: planted build {emu.planted}", flush=True)
    failed = 0
    for f in CASES[family]:
        for k, (sms, lim, sched) in enumerate(configs(family)):
            emu.configure(sms, lim, sched)
            label = f"{family}.{f.__name__} [sm={sms} index32_limit={lim} schedule={sched:#x}]"
            try:
                f(emu, k)
                print("ok  ", label, flush=True)
            except AssertionError as e:
                failed += 1
                print("FAIL", label, "\n   ", str(e).replace("\n", "\n    "), flush=True)
                if first:
                    return 1
    print(f"{family}: {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
