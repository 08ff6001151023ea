// Branch-free float32 log and sin/cos, for host and device.
//
// Why not libm: glibc's sinf/cosf are scalar calls that GCC does not vectorize, and they took
// almost all the time of a fused Philox + Box-Muller loop (docs/performance.md: 18 ms -> 4 ms for 2^22
// normals once replaced). These are written with selects instead of branches so that a loop
// over them vectorizes, and they run unchanged in CUDA so both backends compute the same
// floats. Accuracy (checked against float64 in python_tests/test_random.py through the
// normals): about 1 ulp over the arguments Box-Muller uses, u1 in (0, 1], angle in [0, 2 pi).
//
// Polynomials: minimax fits of the Cephes kind (log on [sqrt(1/2)-1, sqrt(2)-1]; sin and cos
// on [-pi/4, pi/4]) with a three-part Cody-Waite reduction by pi/2.
#pragma once

#include <cstdint>

#include "gmk/macros.h"

namespace gmk {

GMK_HD_INLINE uint32_t float_as_u32(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  return __builtin_bit_cast(uint32_t, f);  // GCC >= 11, clang: vectorizes where memcpy did not
#endif
}

GMK_HD_INLINE float u32_as_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  return __builtin_bit_cast(float, u);
#endif
}

// Natural log for finite x > 0 in the normal range (the Box-Muller radius argument is at
// least 2^-24). Not for 0, negatives, subnormals, inf or NaN.
GMK_HD_INLINE float fast_logf(float x) {
  const uint32_t bits = float_as_u32(x);
  int e = static_cast<int>(bits >> 23) - 126;                    // x = m * 2^e, m in [0.5, 1)
  float m = u32_as_float((bits & 0x007FFFFFu) | 0x3F000000u);
  const bool small = m < 0.70710678118654752440f;               // m < sqrt(1/2): use 2m, e-1
  e = small ? e - 1 : e;
  m = small ? m + m : m;
  const float f = m - 1.0f;                                      // f in [-0.293, 0.414]
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const float fe = static_cast<float>(e);
  float y = p * f * z;
  y = y - 2.12194440e-4f * fe;   // ln 2 = 0.693359375 - 2.12194440e-4, split for accuracy
  y = y - 0.5f * z;
  return f + y + 0.693359375f * fe;
}

// sin and cos of x for 0 <= x <= 8 (Box-Muller angles lie in [0, 2 pi)).
GMK_HD_INLINE void fast_sincosf(float x, float* s_out, float* c_out) {
  // Quadrant j = round(x / (pi/2)); x >= 0, so truncating x*2/pi + 0.5 rounds (and vectorizes).
  const int j = static_cast<int>(x * 0.63661977236758134308f + 0.5f);
  const float fj = static_cast<float>(j);
  // r = x - j*pi/2 in three parts; the first two have few mantissa bits so j*part is exact.
  float r = x - fj * 1.5703125f;
  r = r - fj * 4.837512969970703125e-4f;
  r = r - fj * 7.54978995489188216e-8f;
  const float z = r * r;
  float sp = -1.9515295891e-4f;
  sp = sp * z + 8.3321608736e-3f;
  sp = sp * z - 1.6666654611e-1f;
  const float sn = r + r * z * sp;
  float cp = 2.443315711809948e-5f;
  cp = cp * z - 1.388731625493765e-3f;
  cp = cp * z + 4.166664568298827e-2f;
  const float cs = 1.0f - 0.5f * z + z * z * cp;
  const int q = j & 3;
  // q: 0 -> ( s,  c), 1 -> ( c, -s), 2 -> (-s, -c), 3 -> (-c,  s)
  const float s_abs = (q & 1) ? cs : sn;
  const float c_abs = (q & 1) ? sn : cs;
  *s_out = (q & 2) ? -s_abs : s_abs;
  *c_out = ((q + 1) & 2) ? -c_abs : c_abs;
}

// Vectorizable by GCC on the host (glibc's expf is a scalar call it does not vectorize without
// -ffast-math); shared by the coupling and RBM kernels.
// e^x for float32, about 1 ulp (Cephes expf: Cody-Waite reduction by ln 2, degree-5
// polynomial). The power of two is applied in two halves, so the result is right across the
// whole float range: inf above 88.72, subnormals down to e^-103.3, 0 below, NaN for NaN.
GMK_HD_INLINE float fast_expf(float v) {
  // Written as max / min (one vmaxps / vminps each); a NaN, which these turn into -104, is put
  // back by the last line.
  float x = v > -104.0f ? v : -104.0f;
  x = x < 89.0f ? x : 89.0f;
  // n = round(x / ln 2): adding and subtracting 1.5 * 2^23 rounds to nearest (|x/ln2| < 2^22).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  const float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * z + r + 1.0f;
  const int ni = static_cast<int>(n);  // [-150, 128]
  const int n1 = ni / 2;
  const int n2 = ni - n1;              // both in [-75, 64]: normal powers of two
  const float e = y * u32_as_float(static_cast<uint32_t>(n1 + 127) << 23) *
                  u32_as_float(static_cast<uint32_t>(n2 + 127) << 23);
  return v != v ? v : e;
}

// tanh for float32: an odd polynomial below |x| = 0.625 (Cephes tanhf), 1 - 2/(e^2|x| + 1)
// above, chosen by a select. About 2 ulp.
GMK_HD_INLINE float fast_tanhf(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float e = fast_expf(2.0f * ax);  // inf for large |x|: 2/inf = 0, tanh = 1
  const float big = 1.0f - 2.0f / (e + 1.0f);
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  return ax < 0.625f ? small : (x < 0.0f ? -big : big);
}

}  // namespace gmk
