"""Philox4x32-10 and the draws built on it (docs/spec.md §0), as ``@triton.jit`` helpers.

These mirror ``csrc/include/gmk/philox.h`` word for word: the same counters give the same
uint32 words as the C++/CUDA kernels and the pure-PyTorch reference
(:mod:`gmkernels.reference.random`); tests hold them to that with ``torch.equal``.

The float transforms use Triton's ``tl.log`` / ``tl.cos`` / ``tl.sin`` and the IEEE square root
``tl.sqrt_rn`` (``tl.sqrt`` is an approximation on NVIDIA GPUs); compiled for sm_80/sm_90 the
first three become libdevice calls (no ``lg2.approx``/``sin.approx`` in the PTX), in the
interpreter they are numpy's. The C++ float32 path uses its
own polynomials (fastmath.h), so Triton's float32 normals agree with the other backends to a
few ulps, not bit for bit, as docs/spec.md §0 allows ("floats agree to rounding").

Layout of a tile: a kernel works on ``(BLOCK_R, BLOCK_G)`` counters, ``BLOCK_R`` rows by
``BLOCK_G`` groups of four elements; :func:`interleave4` turns the four per-counter values into
the ``(BLOCK_R, 4 * BLOCK_G)`` element tile in row-major order (element ``4g + j`` takes word
``j`` of counter ``g``), so loads and stores stay contiguous along the row.

Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11.
"""

import os

import triton
import triton.language as tl

PHILOX_M0: tl.constexpr = tl.constexpr(0xD2511F53)
PHILOX_M1: tl.constexpr = tl.constexpr(0xCD9E8D57)
PHILOX_W0: tl.constexpr = tl.constexpr(0x9E3779B9)
PHILOX_W1: tl.constexpr = tl.constexpr(0xBB67AE85)
TWO_POW_M24: tl.constexpr = tl.constexpr(5.9604644775390625e-08)  # 2^-24, exact in float32
TWO_PI: tl.constexpr = tl.constexpr(6.283185307179586)
# @triton.jit reads TRITON_INTERPRET when it decorates, so this is fixed for the module too.
INTERPRET: tl.constexpr = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")


@triton.jit
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds on uint32 counter words ``c0..c3`` (tensors of one shape) under the
    uint32 key ``(k0, k1)`` (scalars). Returns the four output words, uint32, same shape.

    Per round: ``hi0, lo0 = mulhilo(M0, c0); hi1, lo1 = mulhilo(M1, c2);
    c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)``, then the key is bumped by (W0, W1).
    The high word comes from ``tl.umulhi``; the low word is the wrapping uint32 product.
    """
    for _ in tl.static_range(10):
        hi0 = tl.umulhi(c0, PHILOX_M0)
        lo0 = c0 * PHILOX_M0
        hi1 = tl.umulhi(c2, PHILOX_M1)
        lo1 = c2 * PHILOX_M1
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = k0 + PHILOX_W0
        k1 = k1 + PHILOX_W1
    return c0, c1, c2, c3


@triton.jit
def stream_words(g, r, seed_lo, seed_hi, off_lo, off_hi, row0):
    """The words of counters ``(g, r + row0, off_lo, off_hi)`` under key ``(seed_lo, seed_hi)``.

    Args:
        g: (1, BLOCK_G) group indices (element ``m`` of a row is in group ``m // 4``), int.
        r: (BLOCK_R, 1) row indices (0-based within the call), int.
        seed_lo, seed_hi, off_lo, off_hi, row0: the 32-bit halves of seed and offset and the
            sample_offset, integer scalars with values in [0, 2^32).

    Returns:
        four (BLOCK_R, BLOCK_G) uint32 tensors w0..w3.

    ``r + row0`` is formed in uint32: the op checks rows + sample_offset < 2^32 beforehand.
    """
    c0 = g.to(tl.uint32)
    c1 = r.to(tl.uint32) + row0.to(tl.uint32)
    c0, c1 = tl.broadcast(c0, c1)
    c2 = tl.zeros_like(c0) + off_lo.to(tl.uint32)
    c3 = tl.zeros_like(c0) + off_hi.to(tl.uint32)
    return philox4x32_10(c0, c1, c2, c3, seed_lo.to(tl.uint32), seed_hi.to(tl.uint32))


@triton.jit
def uniform_from_word(w):
    """Uniform in [0, 1): ``(w >> 8) * 2^-24`` as float32 (exact; 24 bits in every dtype)."""
    return (w >> 8).to(tl.float32) * TWO_POW_M24


@triton.jit
def uniform_open0_from_word(w):
    """Uniform in (0, 1]: ``((w >> 8) + 1) * 2^-24`` as float32 (never 0, so log is finite)."""
    return ((w >> 8) + 1).to(tl.float32) * TWO_POW_M24


@triton.jit
def box_muller(wa, wb):
    """Two float32 standard normals from a word pair: ``r cos(θ), r sin(θ)`` with
    ``r = sqrt(-2 ln u1)``, ``θ = u2 * 2π`` rounded to float32 (as the C++ and the reference)."""
    u1 = uniform_open0_from_word(wa)
    u2 = uniform_from_word(wb)
    r = tl.sqrt_rn(-2.0 * tl.log(u1))
    theta = u2 * TWO_PI  # a Python float meets a float32 tensor: 2π is rounded to float32
    return r * tl.cos(theta), r * tl.sin(theta)


@triton.jit
def box_muller_f64(wa, wb):
    """:func:`box_muller` computed in float64 (for float64 outputs). The uniforms are exact in
    either precision; 2π is made an explicit float64 constant, since a bare Python float would
    be a float32 constant promoted to float64."""
    u1 = uniform_open0_from_word(wa).to(tl.float64)
    u2 = uniform_from_word(wb).to(tl.float64)
    r = tl.sqrt(-2.0 * tl.log(u1))  # float64 sqrt is IEEE-rounded (sqrt_rn is float32-only)
    theta = u2 * tl.full([], TWO_PI, tl.float64)
    return r * tl.cos(theta), r * tl.sin(theta)


@triton.jit
def normals4(w0, w1, w2, w3, FP64: tl.constexpr):
    """The four standard normals of one counter: (w0, w1) -> n0, n1 and (w2, w3) -> n2, n3,
    in float64 when ``FP64`` else float32."""
    if FP64:
        n0, n1 = box_muller_f64(w0, w1)
        n2, n3 = box_muller_f64(w2, w3)
    else:
        n0, n1 = box_muller(w0, w1)
        n2, n3 = box_muller(w2, w3)
    return n0, n1, n2, n3


@triton.jit
def interleave4(v0, v1, v2, v3):
    """(R, G) x 4 -> (R, 4G): out[:, 4g + j] = v_j[:, g] (element 4g+j takes word j)."""
    return tl.interleave(tl.interleave(v0, v2), tl.interleave(v1, v3))


@triton.jit
def _bf16_rne(v):
    """float32 -> bfloat16 rounded to nearest, ties to even, by integer arithmetic on the bits
    (a quiet NaN stays NaN: adding the rounding bias to a NaN could carry into infinity)."""
    bits = v.to(tl.uint32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    rounded = tl.where(v != v, tl.full([], 0x7FC0, tl.uint32), rounded)
    return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def cast_to(v, DTYPE: tl.constexpr):
    """``v.to(DTYPE)`` for a store, rounding to nearest even in the interpreter too.

    Why: Triton 3.8's interpreter converts float32 to bfloat16 by truncating the mantissa
    (its ``_convert_float`` with no rounding mode), while the compiled kernel rounds to nearest
    even (cvt.rn.bf16.f32) like torch's ``.to(torch.bfloat16)``. The interpreter then gets the
    bits by hand; compiled kernels keep the hardware conversion.
    """
    if INTERPRET and DTYPE == tl.bfloat16:
        return _bf16_rne(v.to(tl.float32))
    else:
        return v.to(DTYPE)


@triton.jit
def tile_index(pid, n_gblocks, BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """Row, group and element indices of program ``pid`` of a 1-D grid over
    ``(row blocks) x (group blocks)`` tiles (row blocks outer).

    Returns:
        r: (BLOCK_R, 1) int64 rows; g: (1, BLOCK_G) int64 groups;
        m: (1, 4 * BLOCK_G) int64 element indices within the row; pg: the group block.

    int64 because rows * M and M itself may pass 2^31 (docs/spec.md §0 allows M < 2^34); the index
    math is small next to the Philox rounds and the memory traffic.
    """
    pr = pid // n_gblocks
    pg = pid % n_gblocks
    r = pr.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R).to(tl.int64)
    g = pg.to(tl.int64) * BLOCK_G + tl.arange(0, BLOCK_G).to(tl.int64)
    m = pg.to(tl.int64) * (4 * BLOCK_G) + tl.arange(0, 4 * BLOCK_G).to(tl.int64)
    return r[:, None], g[None, :], m[None, :], pg


# ---------------------------------------------------------------------------------------------
# host-side helpers shared by the kernel launchers

U32_MASK = 0xFFFFFFFF


def stream_halves(seed: int, offset: int, sample_offset: int) -> tuple[int, int, int, int, int]:
    """(seed_lo, seed_hi, off_lo, off_hi, row0): the kernels' five uint32 stream arguments.

    The 64-bit seed and offset travel as 32-bit halves declared ``tl.uint32`` in the kernels
    (and not specialized on their value): a Python int >= 2^31 would otherwise be typed by its
    value (i32, u32 or i64), giving a different compiled kernel per range.
    """
    return (seed & U32_MASK, (seed >> 32) & U32_MASK, offset & U32_MASK, (offset >> 32) & U32_MASK,
            sample_offset & U32_MASK)


def next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


# Counters (groups of 4 elements) per program. On a GPU, 256 counters = 1024 elements over
# 4 warps: 2 Philox evaluations and 8 outputs per thread, enough work to hide the loads without
# spilling (not yet tuned on hardware: no GPU in this environment; the PTX shows the
# interleave4 join going through shared memory, a layout change worth measuring against four
# stride-4 stores). Under the interpreter each
# program is a Python call whose numpy ops cost about the same for 1 or 10^4 lanes, so programs
# are made as large as memory allows.
GPU_GROUPS_PER_PROGRAM = 256
INTERPRET_GROUPS_PER_PROGRAM = 1 << 14


def tile_config(rows: int, M: int, device) -> tuple[int, int, int, int, int]:
    """Tile of the (rows, M) element grid for one program.

    Returns (BLOCK_R, BLOCK_G, n_gblocks, n_programs, num_warps): tiles are BLOCK_R rows by
    BLOCK_G counters (4 * BLOCK_G elements); short rows share a program, long rows span several.
    """
    groups = (M + 3) // 4
    cap = INTERPRET_GROUPS_PER_PROGRAM if device.type == "cpu" else GPU_GROUPS_PER_PROGRAM
    block_g = min(next_pow2(groups), cap)
    block_r = min(next_pow2(rows), cap // block_g)
    n_gblocks = triton.cdiv(groups, block_g)
    n_programs = triton.cdiv(rows, block_r) * n_gblocks
    return block_r, block_g, n_gblocks, n_programs, 4
