// CPU driver for ops that consume the Philox stream element by element (docs/spec.md §0).
//
// An op's random tensor is `rows` rows of `M` elements. The driver cuts it into tiles,
// generates the tile's draws into a small L1-resident buffer with the counters laid across
// SIMD lanes, then hands the buffer to the op's functor, which does the arithmetic in a
// second, equally vectorizable loop. Tiles are spread over threads with at::parallel_for;
// the draws depend only on (row, element), never on the thread or tile.
//
// Two tile shapes keep the lanes busy whatever the row length:
//  * long rows (M >= kLongRow): a tile is a run of kGroupsPerTile counters of one row;
//  * short rows: a tile is kRowsPerTile whole rows, lanes run across rows (a 1-D tensor has
//    M = 1, so this path is what makes it fast).
//
// ISA: the tile loops are compiled for AVX-512, AVX2+FMA and baseline x86-64 and chosen by
// cpuid at run time, so one wheel runs everywhere and still vectorizes (docs/performance.md).
#pragma once

// GMK_NO_ATEN: a torch-free build (benchmarks/micro) that brings its own at::parallel_for.
#ifndef GMK_NO_ATEN
#include <ATen/Parallel.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "gmk/philox.h"

namespace gmk {
namespace cpu {

constexpr int64_t kGroupsPerTile = 64;                 // counters per long-row tile
constexpr int64_t kTileElems = 4 * kGroupsPerTile;     // 256 elements per long-row tile
constexpr int64_t kLongRow = 128;                      // rows at least this long use path A
constexpr int64_t kRowsPerTile = 64;                   // rows per short-row tile

enum class Isa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// The best ISA this CPU supports (cpuid, once).
inline Isa supported_isa() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
      return Isa::kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
    return Isa::kBaseline;
  }();
  return isa;
#else
  return Isa::kBaseline;
#endif
}

// A lower ISA can be forced (gmkernels._C.set_cpu_isa) so that tests cover every code path the
// machine can run, not only the fastest. -1: no override.
inline std::atomic<int>& isa_override() {
  static std::atomic<int> v{-1};
  return v;
}

inline Isa detect_isa() {
  const int o = isa_override().load(std::memory_order_relaxed);
  const Isa best = supported_isa();
  return (o >= 0 && o < static_cast<int>(best)) ? static_cast<Isa>(o) : best;
}

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "baseline";
  }
}

// Stage 1: Philox words of kLanes counters (c0 + i*d0, c1 + i*d1, off_lo, off_hi), i < kLanes,
// into words[4][kLanes]. GCC's auto-vectorized 32x32->64 products spend most of their time in
// lane shuffles (objdump: ~2 shuffles per multiply), so the AVX2 build uses intrinsics: even
// and odd lanes multiplied with vpmuludq, high and low halves put back with blends.
constexpr int64_t kLanes = 64;

GMK_FORCEINLINE void philox_words_scalar(uint32_t c0, uint32_t d0, uint32_t c1, uint32_t d1,
                                         const PhiloxStream& st, uint32_t (*words)[kLanes]) {
  for (int64_t i = 0; i < kLanes; ++i) {
    const uint32_t ii = static_cast<uint32_t>(i);
    const u32x4 w = philox4x32_10(u32x4{c0 + ii * d0, c1 + ii * d1, st.off_lo, st.off_hi},
                                  st.k0, st.k1);
    words[0][i] = w.x;
    words[1][i] = w.y;
    words[2][i] = w.z;
    words[3][i] = w.w;
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#ifndef GMK_PHILOX_CHAINS
#define GMK_PHILOX_CHAINS 4
#endif
#define GMK_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,bmi2")))
#define GMK_TARGET_AVX2 __attribute__((target("avx2,fma,bmi2")))

// hi and lo 32 bits of a * m for 8 uint32 lanes.
GMK_TARGET_AVX2 GMK_FORCEINLINE void mulhilo8(__m256i a, __m256i m, __m256i* hi, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(a, m);                          // lanes 0,2,4,6
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);    // lanes 1,3,5,7
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// Not inlined: it is called once per 64 counters, and a target("avx2") function cannot be
// inlined into the generic lambdas around it.
GMK_TARGET_AVX2 __attribute__((noinline)) inline void philox_words_avx2(uint32_t c0, uint32_t d0, uint32_t c1,
                                                       uint32_t d1, const PhiloxStream& st,
                                                       uint32_t (*words)[kLanes]) {
  // kChains independent 8-lane vectors per pass: one chain is latency-bound (each round
  // waits on a 5-cycle multiply), several keep the multiply ports busy.
  constexpr int kChains = GMK_PHILOX_CHAINS;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kPhiloxM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(kPhiloxM1));
  const __m256i vd0 = _mm256_set1_epi32(static_cast<int>(d0));
  const __m256i vd1 = _mm256_set1_epi32(static_cast<int>(d1));
  for (int64_t i = 0; i < kLanes; i += 8 * kChains) {
    __m256i x[kChains], y[kChains], z[kChains], w[kChains];
#pragma GCC unroll 8
    for (int q = 0; q < kChains; ++q) {
      const __m256i idx = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(i + 8 * q)));
      x[q] = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(c0)), _mm256_mullo_epi32(idx, vd0));
      y[q] = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(c1)), _mm256_mullo_epi32(idx, vd1));
      z[q] = _mm256_set1_epi32(static_cast<int>(st.off_lo));
      w[q] = _mm256_set1_epi32(static_cast<int>(st.off_hi));
    }
    uint32_t k0 = st.k0, k1 = st.k1;
#pragma GCC unroll 10
    for (int round = 0; round < 10; ++round) {
      const __m256i vk0 = _mm256_set1_epi32(static_cast<int>(k0));
      const __m256i vk1 = _mm256_set1_epi32(static_cast<int>(k1));
#pragma GCC unroll 8
      for (int q = 0; q < kChains; ++q) {
        __m256i hi0, lo0, hi1, lo1;
        mulhilo8(x[q], m0, &hi0, &lo0);
        mulhilo8(z[q], m1, &hi1, &lo1);
        x[q] = _mm256_xor_si256(_mm256_xor_si256(hi1, y[q]), vk0);
        y[q] = lo1;
        z[q] = _mm256_xor_si256(_mm256_xor_si256(hi0, w[q]), vk1);
        w[q] = lo0;
      }
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
#pragma GCC unroll 8
    for (int q = 0; q < kChains; ++q) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[0][i + 8 * q]), x[q]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[1][i + 8 * q]), y[q]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[2][i + 8 * q]), z[q]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[3][i + 8 * q]), w[q]);
    }
  }
}
#endif

// Stage 2: the op's draws of each lane's counter, d[j][i] for j < 4 (vectorized by the compiler).
// kPairOnly: only d[0] and d[1] are used (rows of 1 or 2 elements), so a normal draw does one
// Box-Muller transform instead of two.
template <bool kPairOnly, typename acc_t, typename Draw>
GMK_FORCEINLINE void draws_of_words(const uint32_t (*words)[kLanes], int64_t n, const Draw& draw,
                                    acc_t (*d)[kLanes]) {
  // Each Quad is initialized from the call (not declared, then assigned): otherwise GCC 12
  // keeps it in memory and the loop does not vectorize.
  if constexpr (kPairOnly) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const Quad<acc_t> q = draw.pair(u32x4{words[0][i], words[1][i], words[2][i], words[3][i]});
      d[0][i] = q.v0;
      d[1][i] = q.v1;
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const Quad<acc_t> q = draw(u32x4{words[0][i], words[1][i], words[2][i], words[3][i]});
      d[0][i] = q.v0;
      d[1][i] = q.v1;
      d[2][i] = q.v2;
      d[3][i] = q.v3;
    }
  }
}

// Process tiles [t0, t1). Draw: (u32x4) -> Quad<acc_t> gives the four draws of a counter.
// F: (int64_t row, int64_t m0, int64_t n, const acc_t* draws) -> void consumes the draws of
// the n elements that start at element m0 of `row`, in row-major order: flat indices
// row*M + m0 .. row*M + m0 + n - 1. In a short-row tile the run covers several whole rows
// (m0 = 0, n a multiple of M) so that tiny rows still make one long loop; functors with
// per-row values split it with for_rows(). kIsa picks the Philox stage.
template <int kIsa, typename acc_t, typename Draw, typename F>
GMK_FORCEINLINE void tiles_body(int64_t t0, int64_t t1, int64_t rows, int64_t M,
                                const PhiloxStream& st, const Draw& draw, const F& f) {
  alignas(64) uint32_t words[4][kLanes];
  alignas(64) acc_t soa[4][kLanes];
  auto philox = [&](uint32_t c0, uint32_t d0, uint32_t c1, uint32_t d1) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (kIsa > 0) return philox_words_avx2(c0, d0, c1, d1, st, words);
#endif
    philox_words_scalar(c0, d0, c1, d1, st, words);
  };
  if (M >= kLongRow) {
    static_assert(kGroupsPerTile == kLanes, "a long-row tile is one block of lanes");
    alignas(64) acc_t buf[kTileElems];
    const int64_t tiles_per_row = (M + kTileElems - 1) / kTileElems;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r = t / tiles_per_row;
      const int64_t m0 = (t % tiles_per_row) * kTileElems;
      const int64_t n = std::min<int64_t>(kTileElems, M - m0);
      const int64_t groups = (n + 3) / 4;
      philox(static_cast<uint32_t>(m0 / 4), 1u, static_cast<uint32_t>(r) + st.row0, 0u);
      draws_of_words<false, acc_t>(words, groups, draw, soa);
      for (int64_t i = 0; i < groups; ++i) {
        buf[4 * i + 0] = soa[0][i];
        buf[4 * i + 1] = soa[1][i];
        buf[4 * i + 2] = soa[2][i];
        buf[4 * i + 3] = soa[3][i];
      }
      f(r, m0, n, buf);
    }
  } else {
    static_assert(kRowsPerTile == kLanes, "a short-row tile is one block of lanes");
    alignas(64) acc_t buf[kRowsPerTile * kLongRow];
    const int64_t groups = (M + 3) / 4;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = t * kRowsPerTile;
      const int64_t nr = std::min<int64_t>(kRowsPerTile, rows - r0);
      for (int64_t g = 0; g < groups; ++g) {
        philox(static_cast<uint32_t>(g), 0u, static_cast<uint32_t>(r0) + st.row0, 1u);
        if (M <= 2)
          draws_of_words<true, acc_t>(words, nr, draw, soa);
        else
          draws_of_words<false, acc_t>(words, nr, draw, soa);
        const int64_t jn = std::min<int64_t>(4, M - 4 * g);
        for (int64_t j = 0; j < jn; ++j)
          for (int64_t i = 0; i < nr; ++i) buf[i * M + 4 * g + j] = soa[j][i];
      }
      f(r0, 0, nr * M, buf);
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
template <typename acc_t, typename Draw, typename F>
GMK_TARGET_AVX512 void tiles_avx512(int64_t t0, int64_t t1, int64_t rows, int64_t M,
                                    const PhiloxStream& st, const Draw& draw, const F& f) {
  tiles_body<2, acc_t>(t0, t1, rows, M, st, draw, f);
}
template <typename acc_t, typename Draw, typename F>
GMK_TARGET_AVX2 void tiles_avx2(int64_t t0, int64_t t1, int64_t rows, int64_t M,
                                const PhiloxStream& st, const Draw& draw, const F& f) {
  tiles_body<1, acc_t>(t0, t1, rows, M, st, draw, f);
}
#endif
template <typename acc_t, typename Draw, typename F>
void tiles_baseline(int64_t t0, int64_t t1, int64_t rows, int64_t M, const PhiloxStream& st,
                    const Draw& draw, const F& f) {
  tiles_body<0, acc_t>(t0, t1, rows, M, st, draw, f);
}

// Splits a functor's run (see tiles_body) into per-row pieces: g(row, m0, n, offset into run).
template <typename G>
GMK_FORCEINLINE void for_rows(int64_t r, int64_t m0, int64_t n, int64_t M, const G& g) {
  int64_t done = 0;
  while (done < n) {
    const int64_t len = std::min<int64_t>(n - done, M - m0);
    g(r, m0, len, done);
    done += len;
    ++r;
    m0 = 0;
  }
}

inline int64_t num_tiles(int64_t rows, int64_t M) {
  if (rows == 0 || M == 0) return 0;
  if (M >= kLongRow) return rows * ((M + kTileElems - 1) / kTileElems);
  return (rows + kRowsPerTile - 1) / kRowsPerTile;
}

// Run F over every element of a rows x M stream, in parallel. Grain: about 16K elements per
// task, so that small tensors stay on one thread (a parallel region costs a few microseconds).
template <typename acc_t, typename Draw, typename F>
void for_each_draw(int64_t rows, int64_t M, const PhiloxStream& st, const Draw& draw,
                   const F& f) {
  const int64_t tiles = num_tiles(rows, M);
  if (tiles == 0) return;
  const int64_t elems_per_tile = M >= kLongRow ? kTileElems : kRowsPerTile * M;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / elems_per_tile);
  const Isa isa = detect_isa();
  at::parallel_for(0, tiles, grain, [&](int64_t t0, int64_t t1) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == Isa::kAvx512) return tiles_avx512<acc_t>(t0, t1, rows, M, st, draw, f);
    if (isa == Isa::kAvx2) return tiles_avx2<acc_t>(t0, t1, rows, M, st, draw, f);
#endif
    tiles_baseline<acc_t>(t0, t1, rows, M, st, draw, f);
  });
}

// Draw functors (the per-counter math lives in philox.h). pair(w) only has to get v0 and v1
// right.
template <typename acc_t>
struct NormalDraw {
  GMK_FORCEINLINE Quad<acc_t> operator()(u32x4 w) const { return normals4<acc_t>(w); }
  GMK_FORCEINLINE Quad<acc_t> pair(u32x4 w) const {
    Quad<acc_t> q;
    box_muller(w.x, w.y, &q.v0, &q.v1);
    q.v2 = q.v3 = acc_t(0);
    return q;
  }
};
template <typename acc_t>
struct UniformDraw {
  GMK_FORCEINLINE Quad<acc_t> operator()(u32x4 w) const { return uniforms4<acc_t>(w); }
  GMK_FORCEINLINE Quad<acc_t> pair(u32x4 w) const { return uniforms4<acc_t>(w); }
};
// The uniforms of a fill stored in a narrower type, clamped below 1 (philox.h uniform_top).
template <typename acc_t>
struct UniformBelowDraw {
  acc_t top;
  GMK_FORCEINLINE Quad<acc_t> operator()(u32x4 w) const { return uniforms4_below<acc_t>(w, top); }
  GMK_FORCEINLINE Quad<acc_t> pair(u32x4 w) const { return uniforms4_below<acc_t>(w, top); }
};
template <typename acc_t>
struct RademacherDraw {
  GMK_FORCEINLINE Quad<acc_t> operator()(u32x4 w) const { return rademachers4<acc_t>(w); }
  GMK_FORCEINLINE Quad<acc_t> pair(u32x4 w) const { return rademachers4<acc_t>(w); }
};
// Raw words, carried in an int64 buffer (the uint32 fill op returns int64).
struct WordDraw {
  GMK_FORCEINLINE Quad<int64_t> operator()(u32x4 w) const {
    return Quad<int64_t>{w.x, w.y, w.z, w.w};
  }
  GMK_FORCEINLINE Quad<int64_t> pair(u32x4 w) const { return (*this)(w); }
};

}  // namespace cpu
}  // namespace gmk
