// Philox4x32-10 and the draws built on it (docs/spec.md §0), for host and device alike.
//
// Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11.
// Every backend (this header on the CPU and in CUDA, the Triton kernels, the pure-PyTorch
// reference in gmkernels/reference/random.py) produces the same uint32 words for the same
// (seed, offset, row, element); tests hold them to that word for word.
//
// The float transforms use the polynomial log and sin/cos of fastmath.h in float32 so that
// the CPU loop vectorizes (libm's sinf/cosf do not; docs/performance.md) and CPU and CUDA agree.
// float64 uses the C library in double: it is not the fast path and it is exact to rounding.
#pragma once

#include <cstdint>
#include <cmath>

#include "gmk/macros.h"
#include "gmk/fastmath.h"

namespace gmk {

struct u32x4 {
  uint32_t x, y, z, w;
};

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

// Ten rounds; the key is bumped between rounds. The 32x32->64 products are written as
// 64-bit multiplies so that compilers use vpmuludq (x86) or mul.wide (PTX).
GMK_HD_INLINE u32x4 philox4x32_10(u32x4 c, uint32_t k0, uint32_t k1) {
// Device pass: nvcc's pragma. g++ (the CPU kernels): GCC's, since a rolled loop is "control
// flow" to the vectorizer. nvcc's host pass gets neither: cudafe++ rejects `GCC unroll`
// (#1675-D) and gcc warns about a bare `unroll`; no CPU kernel is compiled there.
#if defined(__CUDA_ARCH__)
#pragma unroll
#elif !defined(__CUDACC__)
#pragma GCC unroll 10
#endif
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c.x;
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c.z;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = u32x4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return c;
}

// Stream position of one op call (docs/spec.md §0): key from the seed, counter words 2 and 3 from
// the offset. Row r, group g (elements 4g..4g+3 of the row) use counter (g, r + sample_offset,
// off_lo, off_hi).
struct PhiloxStream {
  uint32_t k0, k1;          // lo32(seed), hi32(seed)
  uint32_t off_lo, off_hi;  // lo32(offset), hi32(offset)
  uint32_t row0;            // sample_offset

  GMK_HD_INLINE u32x4 words(uint32_t group, uint32_t row) const {
    return philox4x32_10(u32x4{group, row + row0, off_lo, off_hi}, k0, k1);
  }
};

inline PhiloxStream make_stream(uint64_t seed, uint64_t offset, uint64_t sample_offset) {
  return PhiloxStream{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                      static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32),
                      static_cast<uint32_t>(sample_offset)};
}

// Uniform in [0, 1) with 24 bits in every dtype (exact in float32).
template <typename T>
GMK_HD_INLINE T uniform_from_word(uint32_t w) {
  return static_cast<T>(static_cast<float>(w >> 8) * 5.9604644775390625e-08f);  // 2^-24
}

// Uniform in (0, 1] used as the Box-Muller radius argument (never 0, so log is finite).
template <typename T>
GMK_HD_INLINE T uniform_open0_from_word(uint32_t w) {
  return static_cast<T>(static_cast<float>((w >> 8) + 1u) * 5.9604644775390625e-08f);
}

// 1 if u < p else 0, and NaN for a p that is NaN or outside [0, 1]: no valid draw, and a NaN
// shows it in exactly that element (the Python wrapper refuses such p on the CPU; on CUDA
// it does not read p, which would cost a device sync per call).
template <typename T>
GMK_HD_INLINE T bernoulli_of(T u, T p) {
  const T d = u < p ? T(1) : T(0);
  return (p >= T(0) && p <= T(1)) ? d : T(NAN);
}
GMK_HD_INLINE float bernoulli_from_word(uint32_t w, float p) {
  return bernoulli_of(uniform_from_word<float>(w), p);
}
GMK_HD_INLINE double bernoulli_from_word(uint32_t w, double p) {
  return bernoulli_of(uniform_from_word<double>(w), p);
}

template <typename T>
GMK_HD_INLINE T rademacher_from_word(uint32_t w) {
  return (w >> 31) ? T(-1) : T(1);
}

// Box-Muller on one word pair: n0 = r cos(2 pi u2), n1 = r sin(2 pi u2), r = sqrt(-2 ln u1).
// The angle is rounded to the compute dtype before cos/sin, as the reference does.
GMK_HD_INLINE void box_muller(uint32_t wa, uint32_t wb, float* n0, float* n1) {
  const float u1 = uniform_open0_from_word<float>(wa);
  const float u2 = uniform_from_word<float>(wb);
  const float r = std::sqrt(-2.0f * fast_logf(u1));
  float s, c;
  fast_sincosf(u2 * 6.28318530717958647692f, &s, &c);
  *n0 = r * c;
  *n1 = r * s;
}

GMK_HD_INLINE void box_muller(uint32_t wa, uint32_t wb, double* n0, double* n1) {
  const double u1 = uniform_open0_from_word<double>(wa);
  const double u2 = uniform_from_word<double>(wb);
  const double r = ::sqrt(-2.0 * ::log(u1));
  const double a = u2 * 6.28318530717958647692;
  *n0 = r * ::cos(a);
  *n1 = r * ::sin(a);
}

// Four values of one counter; element 4g+j of a row takes v[j]. A struct returned by value
// (not an array written through a pointer) so that a SIMD loop over counters keeps it in
// registers.
template <typename T>
struct Quad {
  T v0, v1, v2, v3;
};

// The four standard normals of one counter.
template <typename T>
GMK_HD_INLINE Quad<T> normals4(u32x4 w) {
  Quad<T> q;
  box_muller(w.x, w.y, &q.v0, &q.v1);
  box_muller(w.z, w.w, &q.v2, &q.v3);
  return q;
}

template <typename T>
GMK_HD_INLINE Quad<T> uniforms4(u32x4 w) {
  return Quad<T>{uniform_from_word<T>(w.x), uniform_from_word<T>(w.y),
                 uniform_from_word<T>(w.z), uniform_from_word<T>(w.w)};
}

// The largest uniform that a fill may store in a type of `digits` significand bits:
// 1 - 2^-digits (1 - 2^-11 float16, 1 - 2^-8 bfloat16). uniform_from_word is at most
// 1 - 2^-24, which round-to-nearest takes to 1.0 in float16 and bfloat16; a fill in those
// types clamps to this value first, so it stays in [0, 1) (docs/spec.md §0). For 24 digits
// and more (float32, float64) the clamp never binds: those streams are unchanged.
GMK_HD_INLINE float uniform_top(int digits) {
  return digits >= 24 ? 1.0f - 5.9604644775390625e-08f
                      : 1.0f - static_cast<float>(1u << (24 - digits)) * 5.9604644775390625e-08f;
}

// uniforms4, each clamped to `top` (uniform_top of the stored type).
template <typename T>
GMK_HD_INLINE Quad<T> uniforms4_below(u32x4 w, T top) {
  const Quad<T> q = uniforms4<T>(w);
  return Quad<T>{q.v0 < top ? q.v0 : top, q.v1 < top ? q.v1 : top, q.v2 < top ? q.v2 : top,
                 q.v3 < top ? q.v3 : top};
}

template <typename T>
GMK_HD_INLINE Quad<T> rademachers4(u32x4 w) {
  return Quad<T>{rademacher_from_word<T>(w.x), rademacher_from_word<T>(w.y),
                 rademacher_from_word<T>(w.z), rademacher_from_word<T>(w.w)};
}

}  // namespace gmk
