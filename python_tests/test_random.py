"""The Philox stream (docs/spec.md §0): known answers, every backend word for word against the
reference, the float transforms, row invariance, statistics, and bad input; and the Triton
fill kernels on their own (interpreter, CPU tensors): more streams, every float dtype, their
non-contiguous out= path and their argument checks.

The compiled (PTX) side of the Triton kernels is test_triton_compile.py."""

import math

import pytest
import torch

import gmkernels
from gmkernels.reference import random as ref
from _helpers import assert_close, assert_equal

KATS = [  # Random123 kat_vectors, philox4x32_10: (counter, key, output)
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]

SHAPES = [(), (1,), (5,), (3, 7), (2, 3, 5), (0, 4), (4, 0), (129, 3), (4, 1031), (70, 130)]
# (seed, offset, sample_offset): small, above 2^32, and at the top of their ranges.
STREAMS = [(0, 0, 0), (12345, 7, 3), (2**40 + 17, 2**33 + 5, 1000), (2**64 - 1, 2**64 - 1, 2**31)]


@pytest.mark.parametrize("ctr,key,want", KATS)
def test_known_answers_reference(ctr, key, want):
    got = tuple(int(w) for w in ref.philox4x32_10(ctr, key))
    assert got == want, f"reference philox{ctr} key {key}: got {[hex(g) for g in got]}"


@pytest.mark.parametrize("ctr,key,want", KATS)
def test_known_answers_cpp(ctr, key, want):
    from gmkernels import _C
    got = tuple(_C.philox4x32_10(ctr, key))
    assert got == want, f"C++ philox{ctr} key {key}: got {[hex(g) for g in got]}"


def test_known_answer_through_fill_op(backend):
    # The all-zero counter and key is element 0..3 of row 0 at seed 0, offset 0.
    w = gmkernels.random.uint32((1, 4), seed=0, offset=0)
    assert w.flatten().tolist() == list(KATS[0][2]), [hex(v) for v in w.flatten().tolist()]


def test_stream_mapping_matches_spec(device):
    # Element m of row r at (seed, offset, sample_offset) is word m%4 of
    # counter (m//4, r + sample_offset, lo32(offset), hi32(offset)) under key (lo32, hi32)(seed).
    seed, offset, so = 0x299F31D0A4093822, 0x0370734413198A2E, 9
    w = gmkernels.random.uint32((3, 10), seed, offset, so)
    for r in range(3):
        for m in (0, 5, 9):
            want = ref.philox4x32_10((m // 4, r + so, offset & 0xFFFFFFFF, offset >> 32),
                                     (seed & 0xFFFFFFFF, seed >> 32))[m % 4]
            assert int(w[r, m]) == int(want), (r, m)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stream", STREAMS)
def test_uint32_words_identical(backend, shape, stream):
    seed, offset, so = stream
    got = gmkernels.random.uint32(shape, seed, offset, so)
    want = ref.uint32(shape, seed, offset, so)
    assert got.dtype == torch.int64
    assert_equal(got, want)
    if got.numel():
        assert 0 <= int(got.min()) and int(got.max()) < 2**32


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stream", STREAMS[1:3])
def test_uniform_rademacher_identical(backend, shape, stream):
    for dtype in (torch.float32, torch.float64):
        got = gmkernels.random.uniform(shape, *stream, dtype=dtype)
        want = ref.uniform(shape, *stream, dtype=dtype)
        assert got.dtype == dtype
        assert_equal(got, want, f"uniform {dtype}")
        got = gmkernels.random.rademacher(shape, *stream, dtype=dtype)
        want = ref.rademacher(shape, *stream, dtype=dtype)
        assert_equal(got, want, f"rademacher {dtype}")


# Normals: tolerance kind "normal" (_helpers.TOLERANCES): the last ulp of log/sqrt/cos/sin.

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normal_matches_reference(backend, shape, stream, dtype):
    got = gmkernels.random.normal(shape, *stream, dtype=dtype)
    want = ref.normal(shape, *stream, dtype=dtype)
    assert got.dtype == dtype
    assert_close(got, want, kind="normal")


def test_normal_float32_large(backend):
    # 2^20 draws: the polynomial log/sin/cos over many arguments, both tile shapes.
    for shape in [(256, 4096), (2**18, 4)]:
        got = gmkernels.random.normal(shape, 99, 5)
        want = ref.normal(shape, 99, 5)
        assert_close(got, want, kind="normal", what=str(shape))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_round_the_float32_draws(backend, dtype):
    got = gmkernels.random.normal((33, 17), 4, 2, dtype=dtype)
    want = ref.normal((33, 17), 4, 2, dtype=torch.float32).to(dtype)
    assert_equal(got, want)


@pytest.mark.parametrize("shape", [(5,), (3, 7), (129, 3), (4, 1031), (2, 3, 5)])
def test_bernoulli_identical(backend, shape):
    p = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    p.view(-1)[:3] = torch.tensor([0.0, 1.0, 0.5])[: p.numel()]
    for dtype in (torch.float32, torch.float64):
        got = gmkernels.random.bernoulli(p.to(dtype), 77, 3, 2)
        want = ref.bernoulli(p.to(dtype), 77, 3, 2)
        assert got.dtype == dtype
        assert_equal(got, want, str(dtype))
    assert bool((gmkernels.random.bernoulli(torch.zeros(100), 1) == 0).all())
    assert bool((gmkernels.random.bernoulli(torch.ones(100), 1) == 1).all())


def test_non_contiguous_out_and_p(device):
    # The out= layout is a property of the dispatcher op (the Triton path has its own test).
    out = torch.empty(9, 130).t()               # (130, 9), not contiguous
    torch.ops.gmkernels.random_normal_(out, 5, 1, 0)
    want = ref.normal((130, 9), 5, 1)
    assert_close(out, want, kind="normal")
    p = torch.rand(9, 130).t()
    assert torch.equal(gmkernels.random.bernoulli(p, 3), ref.bernoulli(p.contiguous(), 3))


@pytest.mark.parametrize("shape", [(6, 5), (300, 2), (5, 300), (4, 3, 3)])
def test_row_invariance(backend, shape):
    full = gmkernels.random.normal(shape, 11, 4, 0)
    for b in range(0, shape[0], max(1, shape[0] // 3)):
        one = gmkernels.random.normal((1,) + shape[1:], 11, 4, b)
        assert_equal(one[0], full[b], f"row {b}")
        shard = gmkernels.random.uint32((2,) + shape[1:], 11, 4, b)
        assert torch.equal(shard[0], gmkernels.random.uint32(shape, 11, 4)[b])


def test_different_offset_or_seed_changes_the_draws(backend):
    a = gmkernels.random.uint32((8, 8), 1, 0)
    assert torch.equal(a, gmkernels.random.uint32((8, 8), 1, 0))
    assert (a != gmkernels.random.uint32((8, 8), 1, 1)).float().mean() > 0.99
    assert (a != gmkernels.random.uint32((8, 8), 2, 0)).float().mean() > 0.99
    # offsets that differ only in the high word
    assert (a != gmkernels.random.uint32((8, 8), 1, 2**32)).float().mean() > 0.99


def test_every_cpu_simd_path_gives_the_same_words():
    """The CPU kernels pick AVX-512 / AVX2 / baseline at run time; force each one this CPU
    has and compare with the reference."""
    from gmkernels import _C
    best = _C.set_cpu_isa("auto")
    order = ["baseline", "avx2", "avx512"]
    try:
        for isa in order[: order.index(best) + 1]:
            assert _C.set_cpu_isa(isa) == isa
            for shape in [(4, 1031), (129, 3), (2**12,)]:
                with gmkernels.use_backend("native"):
                    got = gmkernels.random.uint32(shape, 2**35 + 3, 2**34 + 1, 17)
                    n = gmkernels.random.normal(shape, 2**35 + 3, 2**34 + 1, 17)
                assert torch.equal(got, ref.uint32(shape, 2**35 + 3, 2**34 + 1, 17)), isa
                want = ref.normal(shape, 2**35 + 3, 2**34 + 1, 17)
                assert_close(n, want, kind="normal", what=isa)
    finally:
        _C.set_cpu_isa("auto")


def test_seed_none_follows_torch_manual_seed(backend):
    torch.manual_seed(123)
    a = gmkernels.random.normal((4, 4))
    torch.manual_seed(123)
    b = gmkernels.random.normal((4, 4))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(5)
    c = gmkernels.random.normal((4, 4), generator=g)
    assert torch.equal(c, gmkernels.random.normal((4, 4), generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(a, c)


# ---------------------------------------------------------------------------------------------
# statistics (the native kernels of each device; the other backends equal them word for word
# above)

N_STAT = 2**20


def test_uniform_moments_and_ks(device):
    scipy_stats = pytest.importorskip("scipy.stats")
    u = gmkernels.random.uniform((1024, N_STAT // 1024), seed=2024, dtype=torch.float64).flatten()
    # mean 1/2, variance 1/12: SE of the mean sqrt(1/12/n) = 2.8e-4, of the variance
    # sqrt((E(u-1/2)^4 - 1/144)/n) = sqrt((1/80 - 1/144)/n) = 7.3e-5 at n = 2^20. 5 SE bounds.
    n = u.numel()
    m, v = u.mean().item(), u.var().item()
    assert abs(m - 0.5) < 5 * math.sqrt(1 / 12 / n), m
    assert abs(v - 1 / 12) < 5 * math.sqrt((1 / 80 - 1 / 144) / n), v
    assert float(u.min()) >= 0 and float(u.max()) < 1
    # KS at a fixed seed: a correct generator gives p > 0.001 except 1 time in 1000.
    p = scipy_stats.kstest(u[:200000].cpu().numpy(), "uniform").pvalue
    assert p > 1e-3, f"KS p-value {p:.3g}"


def test_normal_moments_ks_and_independence(device):
    scipy_stats = pytest.importorskip("scipy.stats")
    z = gmkernels.random.normal((1024, N_STAT // 1024), seed=7, dtype=torch.float64)
    x = z.flatten()
    n = x.numel()
    # mean 0 (SE 1/sqrt(n) = 9.8e-4), variance 1 (SE sqrt(2/n) = 1.4e-3), skewness 0
    # (SE sqrt(6/n)), excess kurtosis 0 (SE sqrt(24/n)). 5 SE bounds.
    m, v = x.mean().item(), x.var().item()
    skew = ((x - m) ** 3).mean().item() / v ** 1.5
    kurt = ((x - m) ** 4).mean().item() / v ** 2 - 3
    assert abs(m) < 5 / math.sqrt(n), m
    assert abs(v - 1) < 5 * math.sqrt(2 / n), v
    assert abs(skew) < 5 * math.sqrt(6 / n), skew
    assert abs(kurt) < 5 * math.sqrt(24 / n), kurt
    p = scipy_stats.kstest(x[:200000].cpu().numpy(), "norm").pvalue
    assert p > 1e-3, f"KS p-value {p:.3g}"
    # Neighbours share a counter (n0/n1 come from one Box-Muller pair) or a row: their
    # correlation must vanish; SE of a sample correlation is 1/sqrt(n).
    for a, b, what in [(z[:, :-1], z[:, 1:], "adjacent elements"), (z[:-1], z[1:], "adjacent rows"),
                       (z[:, 0::4], z[:, 1::4], "Box-Muller pair")]:
        a, b = a.flatten(), b.flatten()
        r = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
        assert abs(r) < 5 / math.sqrt(a.numel()), f"{what}: correlation {r:.3g}"


def test_rademacher_and_bernoulli_rates(device):
    s = gmkernels.random.rademacher((512, 1024), seed=3)
    # P(+1) = 1/2: SE of the mean sign is 1/sqrt(n)
    assert abs(s.mean().item()) < 5 / math.sqrt(s.numel())
    p = torch.full((512, 1024), 0.3)
    b = gmkernels.random.bernoulli(p, seed=4)
    assert abs(b.mean().item() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / b.numel())


# ---------------------------------------------------------------------------------------------
# bad input

@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(seed=-1), ValueError, "seed must be in"),
    (dict(seed=2**64), ValueError, "seed must be in"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
    (dict(seed=1, offset=-1), ValueError, "offset must be in"),
    (dict(seed=1, offset=2**64), ValueError, "offset must be in"),
    (dict(seed=1, sample_offset=2**32), ValueError, "sample_offset must be in"),
    (dict(seed=1, sample_offset=2**32 - 2), ValueError, "rows \\+ sample_offset"),
])
def test_bad_stream_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gmkernels.random.normal((4, 3), **kwargs)


def test_bad_dtype_and_p():
    with pytest.raises(TypeError, match="dtype must be a floating-point"):
        gmkernels.random.normal((3,), 1, dtype=torch.int32)
    with pytest.raises(TypeError, match="p must be a floating-point tensor"):
        gmkernels.random.bernoulli(torch.ones(3, dtype=torch.int64), 1)
    with pytest.raises(ValueError, match="sizes >= 0"):
        gmkernels.random.uniform((3, -1), 1)


def test_dispatcher_op_checks_limits_itself(device):
    # Called directly, without the Python wrapper, the op still refuses bad streams.
    with pytest.raises(ValueError, match="sample_offset"):
        torch.ops.gmkernels.random_uniform_(torch.empty(4), 1, 0, 2**32 - 2)
    with pytest.raises(TypeError, match="out must be int64"):
        torch.ops.gmkernels.random_uint32_(torch.empty(4), 1, 0, 0)


@pytest.mark.parametrize("name", ["random_uint32_", "random_uniform_", "random_normal_",
                                  "random_rademacher_"])
def test_opcheck_fill_ops(name, device):
    dtype = torch.int64 if name == "random_uint32_" else torch.float32
    op = getattr(torch.ops.gmkernels, name)
    for shape in [(5, 7), (3,), ()]:
        torch.library.opcheck(op, (torch.empty(shape, dtype=dtype), 3, 2**40, 1))


def test_opcheck_bernoulli(device):
    torch.library.opcheck(torch.ops.gmkernels.random_bernoulli, (torch.rand(6, 5), 3, 1, 0))


# ---------------------------------------------------------------------------------------------
# The Triton fill kernels on their own (the `triton` fixture makes the backend current, or
# skips with the reason where it cannot run)

TRITON_SHAPES = [(), (5,), (3, 7), (2, 3, 5), (0, 4), (129, 3), (4, 1031)]
# (seed, offset, sample_offset): zero, words >= 2^31 in every half, >= 2^32, and the tops.
TRITON_STREAMS = [(0, 0, 0), (0x89ABCDEF, 0x80000001, 2**31 + 3), (2**32 + 5, 2**40 + 17, 1000),
                  (2**64 - 1, 2**64 - 1, 2**32 - 200)]
ALL_FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def random_streams(n, seed=0):
    """n further (seed, offset, sample_offset) triples drawn over the whole uint64 range."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        s, o = (int(v) % 2**64 for v in torch.randint(-2**63, 2**63 - 1, (2,), generator=g))
        out.append((s, o, int(torch.randint(0, 2**31, (1,), generator=g))))
    return out


@pytest.mark.parametrize("shape", TRITON_SHAPES)
def test_triton_uint32_words_identical(triton, shape):
    for seed, offset, so in TRITON_STREAMS + random_streams(2):
        got = gmkernels.random.uint32(shape, seed, offset, so)
        want = ref.uint32(shape, seed, offset, so)
        assert got.dtype == torch.int64, got.dtype
        assert_equal(got, want, f"stream {(seed, offset, so)}")


def test_triton_uint32_words_equal_native(triton):
    # The C++ kernel and the reference agree already; this pins Triton to the C++ directly.
    shape, stream = (37, 45), (2**63 + 99, 2**35 + 1, 12)
    got = gmkernels.random.uint32(shape, *stream)
    with gmkernels.use_backend("native"):
        want = gmkernels.random.uint32(shape, *stream)
    assert_equal(got, want)


@pytest.mark.parametrize("shape", TRITON_SHAPES)
def test_triton_uniform_and_rademacher_identical(triton, shape):
    stream = TRITON_STREAMS[1]
    for dtype in ALL_FLOATS:
        got = gmkernels.random.uniform(shape, *stream, dtype=dtype)
        want = ref.uniform(shape, *stream, dtype=dtype)
        assert_equal(got, want, f"uniform {dtype}")
        got = gmkernels.random.rademacher(shape, *stream, dtype=dtype)
        want = ref.rademacher(shape, *stream, dtype=dtype)
        assert_equal(got, want, f"rademacher {dtype}")


@pytest.mark.parametrize("shape", TRITON_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_normal_matches_reference(triton, shape, dtype):
    for stream in TRITON_STREAMS[1:3]:
        got = gmkernels.random.normal(shape, *stream, dtype=dtype)
        want = ref.normal(shape, *stream, dtype=dtype)
        assert got.dtype == dtype
        assert_close(got, want, kind="normal", what=f"{dtype} stream {stream}")


def test_triton_normal_many_draws(triton):
    # 2^16 normals: much of the range of the Box-Muller radius and angle, several programs.
    got = gmkernels.random.normal((16, 4096), 2**62 + 1, 9)
    want = ref.normal((16, 4096), 2**62 + 1, 9)
    assert_close(got, want, kind="normal")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_half_types_round_the_float32_draws(triton, dtype):
    # Rounded to nearest even like torch's .to(dtype): the interpreter's own float32 ->
    # bfloat16 cast truncates, which the kernels work around (gmkernels.triton._philox.cast_to).
    for draw in ("uniform", "normal"):
        got = getattr(gmkernels.random, draw)((33, 17), 4, 2, dtype=dtype)
        want = getattr(ref, draw)((33, 17), 4, 2, dtype=torch.float32).to(dtype)
        assert_equal(got, want, draw)


@pytest.mark.parametrize("shape", [(), (5,), (3, 7), (129, 3), (4, 1031)])
def test_triton_bernoulli_identical(triton, shape):
    p = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    p.view(-1)[:3] = torch.tensor([0.0, 1.0, 0.5])[: p.numel()]
    for dtype in ALL_FLOATS:
        got = gmkernels.random.bernoulli(p.to(dtype), 2**33 + 77, 3, 2)
        want = ref.bernoulli(p.to(dtype), 2**33 + 77, 3, 2)
        assert_equal(got, want, str(dtype))


@pytest.mark.parametrize("shape", [(6, 5), (300, 2), (5, 300), (4, 3, 3)])
def test_triton_row_invariance(triton, shape):
    seed, offset = 2**40 + 11, 2**32 + 4
    full = gmkernels.random.normal(shape, seed, offset)
    words = gmkernels.random.uint32(shape, seed, offset)
    for b in range(0, shape[0], max(1, shape[0] // 3)):
        one = gmkernels.random.normal((1,) + shape[1:], seed, offset, b)
        assert_equal(one[0], full[b], f"normal row {b}")
        shard = gmkernels.random.uint32((2,) + shape[1:], seed, offset, b)
        assert_equal(shard[0], words[b], f"uint32 row {b}")


def test_triton_non_contiguous_out_and_p(triton):
    from gmkernels.triton import random as tri_random

    out = torch.empty(9, 130).t()  # (130, 9), column-major
    tri_random.fill_(out, "normal", 5, 1, 0)
    assert_close(out, ref.normal((130, 9), 5, 1), kind="normal", what="normal")
    out = torch.empty(9, 130, dtype=torch.int64)[:, ::2]
    tri_random.fill_(out, "uint32", 5, 1, 0)
    assert_equal(out, ref.uint32((9, 65), 5, 1), "uint32")
    p = torch.rand(9, 130).t()
    got, want = tri_random.bernoulli(p, 3, 0, 0), ref.bernoulli(p.contiguous(), 3)
    assert got.is_contiguous()
    assert_equal(got, want, "bernoulli")


def test_triton_fill_rejects_bad_dtype_and_draw(triton):
    from gmkernels.triton import random as tri_random

    with pytest.raises(TypeError, match="int64"):
        tri_random.fill_(torch.empty(3), "uint32", 0)
    with pytest.raises(TypeError, match="draw='normal'"):
        tri_random.fill_(torch.empty(3, dtype=torch.int32), "normal", 0)
    with pytest.raises(ValueError, match="draw must be one of"):
        tri_random.fill_(torch.empty(3), "gamma", 0)
