// AVX2 pieces of the float32 CPU kernel of bm_gibbs (bm.cpp), torch-free so that the exhaustive
// check benchmarks/micro/bm_band_check.cpp can include them.
//
// The site decision without exp on the critical path. The exact rule (bm.h) is
//     y_new = +1  iff  u < p,   p = fl(1 / fl(1 + expf(-x))),   x = 2 fl(beta h),
// a monotone function of x for each uniform u. Mathematically u < sigma(x) iff x > logit(u), and
// logit(u) depends only on the random word, not on the chain's state, so it is computed ahead
// for 8 chains at once (bm_band8: z ~ logit(u) and a half-width dz) off the latency chain. Then
//     x - z >  dz  ->  +1,     x - z < -dz  ->  -1,     otherwise: the exact scalar rule.
// dz = 2^-16 / (u (1 - u)) + 2^-12 is many times wider than the combined error of p (a few
// float32 ulps), of z (the log polynomial below) and of the rounded difference x - z, so outside
// the band the exact rule gives the same answer; inside it (probability ~1e-4 per update) the
// exact rule runs. Results are therefore bit-identical to the scalar path. This is checked for
// every one of the 2^24 uniforms at the band's edges by benchmarks/micro/bm_band_check.cpp.
// u = 0 gives dz = inf: always the exact rule.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include <cstdint>

#define GMK_BM_AVX2 __attribute__((target("avx2,fma,bmi,bmi2")))

namespace gmk {
namespace bm_avx2 {

// Natural log of 8 positive normal floats (Cephes-style: exponent split at sqrt(1/2) and a
// degree-9 polynomial of the mantissa; relative error ~1e-7, absolute error here < 2^-18 since
// |log| < 17 for the ratios u / (1 - u) of 24-bit uniforms). x = 0 gives a finite wrong value;
// the caller's band is infinite there.
GMK_BM_AVX2 inline __m256 log8(__m256 x) {
  const __m256i xi = _mm256_castps_si256(x);
  __m256 e = _mm256_cvtepi32_ps(
      _mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(126)));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
      _mm256_and_si256(xi, _mm256_set1_epi32(0x007FFFFF)), _mm256_set1_epi32(0x3F000000)));
  // m in [0.5, 1): if m < sqrt(1/2): e -= 1, m = 2m - 1, else m = m - 1.
  const __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm256_sub_ps(e, _mm256_and_ps(small, _mm256_set1_ps(1.0f)));
  m = _mm256_add_ps(_mm256_sub_ps(m, _mm256_set1_ps(1.0f)), _mm256_and_ps(small, m));
  const __m256 z = _mm256_mul_ps(m, m);
  __m256 y = _mm256_set1_ps(7.0376836292E-2f);
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.1514610310E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.1676998740E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.2420140846E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.4249322787E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.6668057665E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(2.0000714765E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-2.4999993993E-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(3.3333331174E-1f));
  y = _mm256_mul_ps(_mm256_mul_ps(y, m), z);
  y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
  __m256 r = _mm256_add_ps(m, y);
  return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), r);
}

// For 8 Philox words: z ~ logit(u) and the band half-width dz (see the top of the file).
GMK_BM_AVX2 inline void band8(__m256i w, __m256* z, __m256* dz) {
  const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(w, 8)),
                                 _mm256_set1_ps(5.9604644775390625e-08f));  // exact
  const __m256 om = _mm256_sub_ps(_mm256_set1_ps(1.0f), u);                // exact
  *z = log8(_mm256_div_ps(u, om));
  *dz = _mm256_add_ps(_mm256_div_ps(_mm256_set1_ps(1.52587890625e-05f), _mm256_mul_ps(u, om)),
                      _mm256_set1_ps(2.44140625e-04f));
}

// The decision of 8 sites from x = 2 fl(beta h): lanes of `up` all-ones where +1 (valid outside
// the band), and the 8-bit mask of lanes in the band (to be decided by the exact rule).
GMK_BM_AVX2 inline __m256 decide8(__m256 x, __m256 z, __m256 dz, int* band) {
  const __m256 d = _mm256_sub_ps(x, z);
  const __m256 ad = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), d);
  *band = _mm256_movemask_ps(_mm256_cmp_ps(ad, dz, _CMP_LE_OQ));
  return _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_GT_OQ);
}

// In-place transpose of 8 rows of 8 floats.
GMK_BM_AVX2 inline void transpose8(__m256* r) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// h += s * w over D floats (s = +-2: the product is exact, so FMA or not is the same rounding).
// Two independent vectors per iteration; the scalar tail does the same single rounding.
GMK_BM_AVX2 inline void field_update(float* __restrict h, const float* __restrict w, float s,
                                     int64_t D) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t j = 0;
  for (; j + 16 <= D; j += 16) {
    const __m256 a = _mm256_fmadd_ps(vs, _mm256_loadu_ps(w + j), _mm256_loadu_ps(h + j));
    const __m256 b = _mm256_fmadd_ps(vs, _mm256_loadu_ps(w + j + 8), _mm256_loadu_ps(h + j + 8));
    _mm256_storeu_ps(h + j, a);
    _mm256_storeu_ps(h + j + 8, b);
  }
  for (; j + 8 <= D; j += 8)
    _mm256_storeu_ps(h + j, _mm256_fmadd_ps(vs, _mm256_loadu_ps(w + j), _mm256_loadu_ps(h + j)));
  for (; j < D; ++j) h[j] += s * w[j];
}

// h += s[0] w[0]; h += s[1] w[1]; ... (N rows, in this order: N single roundings per value, as
// N calls of field_update) in one pass over h: one load and one store of h instead of N.
template <int N>
GMK_BM_AVX2 inline void field_update_n(float* __restrict h, const float* const* w,
                                       const float* s, int64_t D) {
  __m256 vs[N];
  for (int r = 0; r < N; ++r) vs[r] = _mm256_set1_ps(s[r]);
  int64_t j = 0;
  for (; j + 8 <= D; j += 8) {
    __m256 acc = _mm256_loadu_ps(h + j);
#pragma GCC unroll 4
    for (int r = 0; r < N; ++r) acc = _mm256_fmadd_ps(vs[r], _mm256_loadu_ps(w[r] + j), acc);
    _mm256_storeu_ps(h + j, acc);
  }
  for (; j < D; ++j) {
    float acc = h[j];
    for (int r = 0; r < N; ++r) acc += s[r] * w[r][j];
    h[j] = acc;
  }
}

// Any number of rows, in order, at most 4 per pass.
GMK_BM_AVX2 inline void field_update_rows(float* __restrict h, const float* const* w,
                                          const float* s, int n, int64_t D) {
  while (n > 0) {
    switch (n) {
      case 1: field_update_n<1>(h, w, s, D); return;
      case 2: field_update_n<2>(h, w, s, D); return;
      case 3: field_update_n<3>(h, w, s, D); return;
      default: field_update_n<4>(h, w, s, D); w += 4; s += 4; n -= 4;
    }
  }
}

}  // namespace bm_avx2
}  // namespace gmk
#endif
