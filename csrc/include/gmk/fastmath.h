// Branch-free float32 log and sin/cos, for host and device.
//
// Why not libm: glibc's sinf/cosf are scalar calls that GCC does not vectorize, and they took
// almost all the time of a fused Philox + Box-Muller loop (PERF_NOTES: 18 ms -> 4 ms for 2^22
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

}  // namespace gmk
