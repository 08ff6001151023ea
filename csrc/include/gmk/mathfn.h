// Elementwise math in the compute dtype, host and device, in one place: each function has a
// float and a double overload, so a kernel templated on acc_t calls the precision it computes
// in. No torch headers (the .cu kernels include this).
//
// Three families, chosen per op for its accuracy and speed contract (bit-identical results
// across CPU and CUDA where the op promises them):
//  * exp_t, log_t, sqrt_t, pow_t, tanh_t: the C library (expf / exp, ...) on both devices.
//  * exp_vec, tanh_vec, log_vec: the branch-free polynomials of gmk/fastmath.h for float32 on
//    the host, so that CPU loops vectorize (glibc's expf / tanhf / logf are scalar calls GCC
//    does not vectorize without -ffast-math), and the CUDA library functions on the device;
//    libm for double. log_vec needs a normal positive float argument.
//  * exp_fast_clamped: gmk::fast_expf with the argument clamped to [-87, 87] for float32 on
//    both devices (so CPU and CUDA compute the same floats; outside the clamp exp(-z) moves a
//    sigmoid by less than 1e-37), libm exp for double.
#pragma once

#include <cmath>

#include "gmk/fastmath.h"
#include "gmk/macros.h"

namespace gmk {

GMK_HD_INLINE float exp_t(float v) { return expf(v); }
GMK_HD_INLINE double exp_t(double v) { return exp(v); }
GMK_HD_INLINE float log_t(float v) { return logf(v); }
GMK_HD_INLINE double log_t(double v) { return log(v); }
GMK_HD_INLINE float sqrt_t(float v) { return sqrtf(v); }
GMK_HD_INLINE double sqrt_t(double v) { return sqrt(v); }
GMK_HD_INLINE float pow_t(float a, float b) { return powf(a, b); }
GMK_HD_INLINE double pow_t(double a, double b) { return pow(a, b); }
GMK_HD_INLINE float tanh_t(float v) { return tanhf(v); }
GMK_HD_INLINE double tanh_t(double v) { return tanh(v); }

GMK_HD_INLINE float exp_vec(float v) {
#if defined(__CUDA_ARCH__)
  return expf(v);
#else
  return fast_expf(v);
#endif
}
GMK_HD_INLINE double exp_vec(double v) { return exp(v); }
GMK_HD_INLINE float tanh_vec(float v) {
#if defined(__CUDA_ARCH__)
  return tanhf(v);
#else
  return fast_tanhf(v);
#endif
}
GMK_HD_INLINE double tanh_vec(double v) { return tanh(v); }
GMK_HD_INLINE float log_vec(float v) {
#if defined(__CUDA_ARCH__)
  return logf(v);
#else
  return fast_logf(v);
#endif
}
GMK_HD_INLINE double log_vec(double v) { return log(v); }

GMK_HD_INLINE float exp_fast_clamped(float x) {
  return fast_expf(x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x));
}
GMK_HD_INLINE double exp_fast_clamped(double x) { return ::exp(x); }

}  // namespace gmk
