// Per-site math of the fully connected Boltzmann machine (docs/spec.md §2.2), host and device.
// No torch headers: bm.cu includes this with the plain CUDA toolkit.
//
// Spins y in {-1, +1}, E(y) = -1/2 y'Wy - b'y, W symmetric with a zero diagonal. The local
// fields h = Wy + b are kept per chain; the site rule is
//     P(y_i = +1 | y_-i) = sigma(2 beta h_i),   y_i = +1 iff u < P,
// with u the uniform of the site's element in the Philox stream (docs/spec.md §0). When y_i flips, every
// field moves by 2 y_i_new W[i, :] (W symmetric: row i is column i, and contiguous). Because
// 2 y_i_new is +-2, the product 2 y_i_new W_ij is exact in every dtype, so each field update is a
// single rounding (the same with or without FMA contraction): CPU, CUDA, Triton and the
// reference keep bit-identical fields given identical initial fields.
#pragma once

#include <cstdint>
#include <cmath>

#include "gmk/enums.h"
#include "gmk/launch.h"
#include "gmk/macros.h"
#include "gmk/mathfn.h"
#include "gmk/philox.h"

namespace gmk {

// The scan order codes (BmOrder) are in gmk/enums.h; exp_t (libm expf / exp) in gmk/mathfn.h.

// P(y_i = +1 | rest) = sigma(2 beta h) = 1 / (1 + exp(-2 beta h)), in the op's dtype. For very
// negative arguments exp overflows to inf and P is 0 (never NaN); for very positive ones P is 1.
template <typename acc_t>
GMK_HD_INLINE acc_t bm_prob_up(acc_t h, acc_t beta) {
  const acc_t x = acc_t(2) * (beta * h);
  return acc_t(1) / (acc_t(1) + exp_t(-x));
}

// The new spin of a site from its Philox word w: +1 iff u < P(+1), u = (w >> 8) 2^-24.
template <typename acc_t>
GMK_HD_INLINE acc_t bm_new_spin(uint32_t w, acc_t h, acc_t beta) {
  return uniform_from_word<acc_t>(w) < bm_prob_up(h, beta) ? acc_t(1) : acc_t(-1);
}

// Random-scan site from a word: floor(u * D) with u = (w >> 8) 2^-24, computed exactly in
// integers as ((w >> 8) * D) >> 24 (D < 2^24, so the product fits in 48 bits).
GMK_HD_INLINE uint32_t bm_site(uint32_t w, uint32_t D) {
  return static_cast<uint32_t>((static_cast<uint64_t>(w >> 8) * D) >> 24);
}

// Word j (0..3) of a counter's output.
GMK_HD_INLINE uint32_t bm_word(const u32x4& w, uint32_t j) {
  return j == 0 ? w.x : (j == 1 ? w.y : (j == 2 ? w.z : w.w));
}

// The stream of sweep s: the op's stream with offset + s (mod 2^64).
GMK_HD_INLINE PhiloxStream bm_sweep_stream(const PhiloxStream& st, uint64_t s) {
  const uint64_t off = ((static_cast<uint64_t>(st.off_hi) << 32) | st.off_lo) + s;
  PhiloxStream r = st;
  r.off_lo = static_cast<uint32_t>(off);
  r.off_hi = static_cast<uint32_t>(off >> 32);
  return r;
}

namespace cuda {

// Launcher arguments (bm.cu), filled by the glue (bm_cuda.cpp).
struct BmArgs {
  void* y;           // (B, D) spins, updated in place (the glue passes the output)
  void* h;           // (B, D) initial fields W y + b (scratch: the kernel may update it)
  const void* W;     // (D, D) symmetric, zero diagonal, contiguous
  const void* beta_t;  // (B,) per-chain beta or null
  double beta;
  int64_t B, D, n_sweeps;
  int order;
  PhiloxStream st;
  DType dtype;       // float32 or float64
};

LaunchStatus launch_bm_gibbs(const BmArgs& args, void* stream);

}  // namespace cuda
}  // namespace gmk
