// Math of the fused planar-flow stack (docs/spec.md §1.1, Rezende & Mohamed 2015), host and device.
// No torch headers: planar.cu includes this with the plain CUDA toolkit.
//
// Layer k of a row z (D values):  a = w_k·z + b_k,  h = tanh(a),  z <- z + û_k h,
//                                 logdet += log|1 + (1 - h²) û_k·w_k|.
//
// The CPU kernel (planar.cpp) runs layers over a tile of rows laid out dimension-major, so the
// per-row scalars (a, tanh, log1p) sit in contiguous arrays whose loops vectorize across rows;
// libm's tanh / log1p are scalar calls that GCC does not vectorize, so this header has
// branch-free (select-only) versions, accurate to about 1 ulp (float) / a few ulp (double),
// that the CUDA kernel runs too. No -ffast-math anywhere: the magic-number rounding below
// needs IEEE addition.
#pragma once

#include <cstdint>
#include <limits>

#include "gmk/fastmath.h"
#include "gmk/launch.h"
#include "gmk/macros.h"

namespace gmk {
namespace planar {

GMK_HD_INLINE uint64_t f64_bits(double v) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(v));
#else
  return __builtin_bit_cast(uint64_t, v);
#endif
}
GMK_HD_INLINE double f64_from(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  return __builtin_bit_cast(double, u);
#endif
}

// expm1 and exp of x in [lo, 0] (the callers clamp), without cancellation near 0:
// x = n ln2 + r, |r| <= ln2/2, expm1(r) by its Taylor polynomial (float: through r^7, next
// term 6e-9 relative; double: through r^14, next term 1e-17 relative), then
// e = 2^n (1 + p) and em = 2^n p + (2^n - 1). n is rounded with the 1.5*2^mantissa trick, so
// 2^n is built from integer bits without a float->int conversion (none vectorizes for double
// below AVX-512).
GMK_HD_INLINE void exp_parts(float x, float* e, float* em) {
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;  // ln 2 = 0.693359375 - 2.12194440e-4
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r * r + r;  // expm1(r)
  const uint32_t nb = float_as_u32(t) - float_as_u32(magic);  // n as an integer (mod 2^32)
  const float scale = u32_as_float((nb + 127u) << 23);
  *e = scale + scale * p;
  *em = scale * p + (scale - 1.0f);
}

GMK_HD_INLINE void exp_parts(double x, double* e, double* em) {
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  const double t = x * 1.4426950408889634074 + magic;
  const double n = t - magic;
  double r = x - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  double p = 1.0 / 87178291200.0;  // 1/14!
  p = p * r + 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r * r + r;
  const uint64_t nb = f64_bits(t) - f64_bits(magic);
  const double scale = f64_from((nb + 1023u) << 52);
  *e = scale + scale * p;
  *em = scale * p + (scale - 1.0);
}

template <typename T>
struct ExpFloor;
template <>
struct ExpFloor<float> {
  static constexpr float v = -87.0f;  // 2^n stays a normal float
};
template <>
struct ExpFloor<double> {
  static constexpr double v = -708.0;
};

// h = tanh(a) and s = 1 - tanh(a)^2 = sech(a)^2, both without cancellation: with
// em = expm1(-2|a|) and e = exp(-2|a|), tanh|a| = -em / (2 + em) and s = 4e / (1 + e)^2.
// For |a| past 43.5 (float) / 354 (double) the exponent is clamped, where s < 1e-37 / 1e-307
// and h rounds to ±1: no overflow, no NaN for any non-NaN a (a = ±inf gives h = ±1, s ≈ 0).
// A NaN a gives h = s = NaN (the polynomial runs on 0 and the NaN is selected in at the end),
// so the NaN reaches every element of the row's z (z += û h) and its log-det (psi = 1 + s uw),
// as torch.tanh would.
template <typename T>
GMK_HD_INLINE void act(T a, T* h, T* s) {
  const T ax = a < T(0) ? -a : a;
  T x = T(-2) * ax;
  x = x < ExpFloor<T>::v ? ExpFloor<T>::v : x;
  x = x == x ? x : T(0);  // NaN a: keep the polynomial finite, then select the NaN below
  T e, em;
  exp_parts(x, &e, &em);
  const T d = T(2) + em;  // = 1 + e, in [1, 2]
  const T r = T(1) / d;   // one division for both outputs
  const T th = -em * r;
  const T sh = (T(4) * e) * (r * r);
  const bool nan = a != a;
  *h = nan ? a : (a < T(0) ? -th : th);
  *s = nan ? a : sh;
}

// Natural log of a finite x > 0 in the normal range: x = 2^k m with m in [sqrt(1/2), sqrt(2)),
// log m = 2 atanh(f), f = (m - 1) / (m + 1), |f| <= 0.1716, by its odd series (float: through
// f^9, next term 2e-9 relative; double: through f^23, next term 6e-19).
GMK_HD_INLINE float log_pos(float x) {
  const uint32_t bits = float_as_u32(x);
  int k = static_cast<int>(bits >> 23) - 127;
  float m = u32_as_float((bits & 0x007FFFFFu) | 0x3F800000u);  // [1, 2)
  const bool big = m > 1.41421356237309505f;
  m = big ? m * 0.5f : m;
  k = big ? k + 1 : k;
  const float f = (m - 1.0f) / (m + 1.0f);
  const float f2 = f * f;
  float p = 1.0f / 9.0f;
  p = p * f2 + 1.0f / 7.0f;
  p = p * f2 + 1.0f / 5.0f;
  p = p * f2 + 1.0f / 3.0f;
  const float lm = 2.0f * f + 2.0f * f * f2 * p;
  const float fk = static_cast<float>(k);
  return fk * 0.693359375f + (lm - fk * 2.12194440e-4f);
}

GMK_HD_INLINE double log_pos(double x) {
  const uint64_t bits = f64_bits(x);
  // the biased exponent as a double without an int64 -> double conversion
  double k = f64_from((bits >> 52) | 0x4330000000000000ull) - 4503599627370496.0 - 1023.0;
  double m = f64_from((bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);
  const bool big = m > 1.41421356237309504880;
  m = big ? m * 0.5 : m;
  k = big ? k + 1.0 : k;
  const double f = (m - 1.0) / (m + 1.0);
  const double f2 = f * f;
  double p = 1.0 / 23.0;
  p = p * f2 + 1.0 / 21.0;
  p = p * f2 + 1.0 / 19.0;
  p = p * f2 + 1.0 / 17.0;
  p = p * f2 + 1.0 / 15.0;
  p = p * f2 + 1.0 / 13.0;
  p = p * f2 + 1.0 / 11.0;
  p = p * f2 + 1.0 / 9.0;
  p = p * f2 + 1.0 / 7.0;
  p = p * f2 + 1.0 / 5.0;
  p = p * f2 + 1.0 / 3.0;
  const double lm = 2.0 * f + 2.0 * f * f2 * p;
  return k * 6.93147180369123816490e-01 + (lm + k * 1.90821492927058770002e-10);
}

template <typename T>
struct Tiny;
template <>
struct Tiny<float> {
  static constexpr float v = 1.17549435e-38f;  // smallest normal
};
template <>
struct Tiny<double> {
  static constexpr double v = 2.2250738585072014e-308;
};

// psi = 1 + s uw (s = 1 - h²) without cancellation: for uw >= 0 both terms are >= 0; for
// uw < 0, psi = (1 + uw) + h² (-uw), where 1 + uw is exact for uw in [-1, -1/2] (Sterbenz) and
// both terms are >= 0 when uw > -1. (Written as 1 + s uw, a psi of 1e-6 at uw ≈ -1 would carry
// the rounding of s uw, ~6e-8 in float32: a 6% error in psi.)
template <typename T>
GMK_HD_INLINE T layer_psi(T h, T s, T uw) {
  return uw >= T(0) ? T(1) + s * uw : (T(1) + uw) - h * h * uw;
}

// log|psi| of one layer: log1p(s uw) with its rounding correction for uw >= 0 (accurate for
// small s uw), log|psi| of layer_psi's cancellation-free form for uw < 0. One log per call.
// psi = 0 (only for û·w <= -1, outside the op's contract) gives -inf; subnormal |psi| is
// treated as the smallest normal.
template <typename T>
GMK_HD_INLINE T layer_log_psi(T h, T s, T uw) {
  const T y = s * uw;
  const T u = T(1) + y;
  const bool pos = uw >= T(0);
  const T base = pos ? u : (T(1) + uw) - h * h * uw;
  const T corr = pos ? (y - (u - T(1))) / u : T(0);  // u >= 1 when uw >= 0
  T ab = base < T(0) ? -base : base;
  const bool zero = ab == T(0);
  const bool nan = ab != ab;  // a NaN h, s or uw (log_pos reads bits: it would give a number)
  ab = ab < Tiny<T>::v ? Tiny<T>::v : ab;
  ab = nan ? T(1) : ab;
  const T r = log_pos(ab) + corr;
  return nan ? base : (zero ? -std::numeric_limits<T>::infinity() : r);
}

// Running product of |psi| over the layers in mantissa / exponent form, float32: m in [1, 2)
// and an integer exponent e, the product being m 2^e. One layer multiplies m by |psi| (clamped
// to [smallest normal, 2^126] so m |psi| stays a normal float) and moves the exponent bits of
// the result into e: a few integer ops instead of a log per layer. log_prod (one log per row)
// returns log(m) + e ln 2; zero marks a psi of exactly 0 (only for û·w <= -1, outside the op's
// contract), where the result is -inf as with the per-layer log, or (zero = 2, sticky) a NaN
// psi (a NaN z row, û, w or b), where the result is NaN, as the sum of the per-layer logs is.
GMK_HD_INLINE void prod_step(float h, float s, float uw, float* m, int32_t* e, int32_t* zero) {
  const float y = s * uw;
  const float base = uw >= 0.0f ? 1.0f + y : (1.0f + uw) - h * h * uw;  // layer_psi
  float ab = base < 0.0f ? -base : base;
  const bool nan = ab != ab;
  *zero = nan ? 2 : (ab == 0.0f && *zero == 0 ? 1 : *zero);
  ab = ab < Tiny<float>::v ? Tiny<float>::v : ab;
  ab = ab > 8.50705917e37f ? 8.50705917e37f : ab;  // 2^126
  ab = nan ? 1.0f : ab;  // keep m and e numbers; the NaN is in `zero`
  const uint32_t bits = float_as_u32(*m * ab);
  *e += static_cast<int32_t>(bits >> 23) - 127;
  *m = u32_as_float((bits & 0x007FFFFFu) | 0x3F800000u);
}

GMK_HD_INLINE float log_prod(float m, int32_t e, int32_t zero) {
  const float fe = static_cast<float>(e);
  const float r = fe * 0.693359375f + (log_pos(m) - fe * 2.12194440e-4f);
  return zero == 2 ? std::numeric_limits<float>::quiet_NaN()
                   : (zero ? -std::numeric_limits<float>::infinity() : r);
}

// Backward of one layer for one row, given
//   dotu = gz·û_k (gz: the gradient of the layer's output z_{k+1}), gl = d loss / d logdet,
//   h, s (act of the layer's pre-activation a) and uw = û_k·w_k.
// With psi = 1 + s uw and d s / d a = -2 h s:
//   *c  = gl s / psi                           (d / d uw, so û_k += c w_k and w_k += c û_k)
//   *ga = dotu s + gl (uw / psi)(-2 h s)       (d / d a, so w_k += ga z_k, b_k += ga, and
//                                               the input gradient is gz + ga w_k)
template <typename T>
GMK_HD_INLINE void layer_grads(T dotu, T gl, T h, T s, T uw, T* ga, T* c) {
  const T inv_psi = T(1) / layer_psi(h, s, uw);
  *c = gl * s * inv_psi;
  *ga = dotu * s + gl * uw * inv_psi * (T(-2) * h * s);
}

}  // namespace planar

namespace cuda {
// Launchers, defined in planar.cu (raw pointers, no torch). Tensors are contiguous:
// z, out, grad_out, gz (B, D); u, w (K, D) shared or (B, K, D) per sample; b (K,) or (B, K);
// logdet, grad_logdet (B,). dtype float32 or float64 (every tensor of one call alike).
struct PlanarArgs {
  const void* z;
  const void* u;
  const void* w;
  const void* b;
  void* out;
  void* logdet;
  int64_t B, K, D;
  bool per_sample;
  void* zbuf;  // a (B, D) workspace when D > the kernel's register row (see planar.cu), else null
  DType dtype;
};
LaunchStatus launch_planar_forward(const PlanarArgs& args, void* stream);

// grad_out / grad_logdet may be null (zero). gu, gw (K, D) and gb (K,) of shared parameters
// must be zero-filled (the kernel adds to them); per-sample ones are (B, K, D) / (B, K) and
// fully written. ws: a (3K, B) workspace of the dtype; zbuf as above, (2, B, D).
struct PlanarBackwardArgs {
  const void* grad_out;
  const void* grad_logdet;
  const void* z;
  const void* u;
  const void* w;
  const void* b;
  void* gz;
  void* gu;
  void* gw;
  void* gb;
  void* ws;
  void* zbuf;
  int64_t B, K, D;
  bool per_sample;
  DType dtype;
};
LaunchStatus launch_planar_backward(const PlanarBackwardArgs& args, void* stream);

// The largest D that the CUDA kernels keep in per-thread arrays; larger D uses zbuf.
constexpr int64_t kPlanarMaxLocalD = 32;
}  // namespace cuda
}  // namespace gmk
