// Per-element math of the affine coupling transform (docs/spec.md §1.2), host and device.
// No torch headers: coupling.cu includes this with the plain CUDA toolkit.
//
// One element, with pass = (mask != 0), s' = clamp ? c*tanh(s/c) : s:
//   scale "exp":     log-scale l = s',                   factor e^l
//   scale "sigmoid": log-scale l = log(sigmoid(s'+2) + 1e-3)  (nflows' AffineCouplingTransform)
//   forward:  y = x * e^l + t,       logdet += l
//   inverse:  y = (x - t) * e^-l,    logdet -= l
//   pass:     y = x exactly (whatever s and t hold), nothing added to logdet.
// e^-l is computed directly (exp(-s'), or 1/(sigmoid + 1e-3)), never as 1/exp(s'), and pass
// elements are a select, never x*0 + ..., so s = +-80 (fp32: e^80 = 5.5e34 < 3.4e38) gives no
// NaN/inf for finite inputs and never an inf*0.
#pragma once

#include <cmath>
#include <cstdint>

#include "gmk/enums.h"
#include "gmk/launch.h"
#include "gmk/macros.h"
#include "gmk/mathfn.h"

namespace gmk {

// nflows adds 1e-3 to the sigmoid so that the scale stays >= 1e-3 (the log-scale >= -6.9).
constexpr double kSigmoidEps = 1e-3;

// exp, tanh and log in the compute dtype: gmk::exp_vec / tanh_vec / log_vec (gmk/mathfn.h), the
// vectorizable polynomials for float32 on the host and the CUDA library functions on the device.
// The scale enum (CouplingScale) is in gmk/enums.h.


// ---------------------------------------------------------------------------------------------
// Compile-time variant of the op: scale kind, soft clamp on/off, direction.
template <int kScale, bool kClamp, bool kInverse>
struct CouplingVariant {
  static constexpr int scale = kScale;
  static constexpr bool clamp = kClamp;
  static constexpr bool inverse = kInverse;
};

// The log-scale l, the factor f applied in the variant's direction (e^l forward, e^-l
// inverse) and, when dl is non-null, dl/ds.
template <typename V, typename T>
GMK_HD_INLINE T coupling_scale(T s, T c, T inv_c, T* f, T* dl) {
  T sc = s, dclamp = T(1);
  if (V::clamp) {
    const T th = tanh_vec(s * inv_c);
    sc = c * th;
    dclamp = T(1) - th * th;
  }
  if (V::scale == static_cast<int>(CouplingScale::kExp)) {
    *f = V::inverse ? exp_vec(-sc) : exp_vec(sc);
    if (dl) *dl = dclamp;
    return sc;
  } else {
    // sigmoid(a) from e = e^-|a| in (0, 1]: never overflows, and 1 - sigmoid(a) keeps its
    // precision for large a (sigmoid' = sig (1 - sig) = e / (1 + e)^2).
    const T a = sc + T(2);
    const T e = exp_vec(a < T(0) ? a : -a);
    const T inv1e = T(1) / (T(1) + e);
    const T sig = a < T(0) ? e * inv1e : inv1e;
    const T scale = sig + T(kSigmoidEps);
    *f = V::inverse ? T(1) / scale : scale;
    if (dl) *dl = dclamp * (e * inv1e * inv1e) / scale;
    return log_vec(scale);
  }
}

// Forward of one element: returns y, and the element's log-scale contribution (0 where pass).
// The logdet of a row is sign * sum(contributions), sign = -1 for the inverse.
template <typename V, typename T>
GMK_HD_INLINE T coupling_elem(T x, T s, T t, bool pass, T c, T inv_c, T* contrib) {
  T f;
  // Pass lanes compute a scale too (the loops are branch-free) and drop it in the selects
  // below; an inf there (e^s of a huge s) is discarded, never multiplied by 0.
  const T l = coupling_scale<V, T>(s, c, inv_c, &f, static_cast<T*>(nullptr));
  const T y = V::inverse ? (x - t) * f : x * f + t;
  *contrib = pass ? T(0) : l;
  return pass ? x : y;
}

// Backward of one element given gy = dL/dy and gld = dL/dlogdet of its row:
//   forward:  dy/dx = f, dy/dt = 1,  dy/dl = x f,        dlogdet/dl = +1
//   inverse:  dy/dx = f, dy/dt = -f, dy/dl = -(x - t) f, dlogdet/dl = -1
// and ds = (dL/dl) * dl/ds. Pass elements: gx = gy, gs = gt = 0.
template <typename V, typename T>
GMK_HD_INLINE void coupling_elem_backward(T gy, T gld, T x, T s, T t, bool pass, T c, T inv_c,
                                          T* gx, T* gs, T* gt) {
  T f, dl;
  coupling_scale<V, T>(s, c, inv_c, &f, &dl);
  const T gyf = gy * f;
  T gl;
  if (V::inverse) {
    gl = -(gyf * (x - t)) - gld;
    *gt = pass ? T(0) : -gyf;
  } else {
    gl = gyf * x + gld;
    *gt = pass ? T(0) : gy;
  }
  *gx = pass ? gy : gyf;
  *gs = pass ? T(0) : gl * dl;
}

// Calls f(CouplingVariant<...>{}) for the runtime (scale, clamp, inverse).
template <typename F>
GMK_FORCEINLINE auto with_coupling_variant(int scale, bool clamp, bool inverse, const F& f) {
  constexpr int E = static_cast<int>(CouplingScale::kExp);
  constexpr int S = static_cast<int>(CouplingScale::kSigmoid);
  if (scale == E) {
    if (clamp) return inverse ? f(CouplingVariant<E, true, true>{}) : f(CouplingVariant<E, true, false>{});
    return inverse ? f(CouplingVariant<E, false, true>{}) : f(CouplingVariant<E, false, false>{});
  }
  if (clamp) return inverse ? f(CouplingVariant<S, true, true>{}) : f(CouplingVariant<S, true, false>{});
  return inverse ? f(CouplingVariant<S, false, true>{}) : f(CouplingVariant<S, false, false>{});
}

// ---------------------------------------------------------------------------------------------
// CUDA launchers (coupling.cu), on raw pointers. Tensors are contiguous rows x M (row = dim 0
// of x); mask is uint8 (nonzero = pass) of M elements per row, row r at mask + r*mask_row_stride
// (stride 0: one pattern broadcast over the batch). logdet: rows values of x's dtype.
namespace cuda {

// Rows of at most kCudaWarpRowMax elements take one warp each; longer rows are cut into chunks
// of kCudaChunk elements, one block each, whose sums a second kernel adds in order (so the
// logdet is deterministic). The glue allocates `partial` (rows * chunks values of the compute
// dtype) when coupling_cuda_chunks(M) > 1.
constexpr int64_t kCudaWarpRowMax = 1024;
constexpr int64_t kCudaChunk = 4096;
inline int64_t coupling_cuda_chunks(int64_t M) {
  return M <= kCudaWarpRowMax ? 1 : (M + kCudaChunk - 1) / kCudaChunk;
}

struct CouplingArgs {
  const void* x;
  const void* s;
  const void* t;
  const uint8_t* mask;
  int64_t mask_row_stride;
  void* y;
  void* logdet;
  void* partial;  // compute dtype, rows * coupling_cuda_chunks(M) values, or null when 1 chunk
  int64_t rows, M;
  int scale;
  bool inverse, clamp_on;
  double clamp;
  DType dtype;
};
LaunchStatus launch_affine_coupling(const CouplingArgs& args, void* stream);

struct CouplingBackwardArgs {
  const void* gy;
  const void* gld;  // rows values of x's dtype
  const void* x;
  const void* s;
  const void* t;
  const uint8_t* mask;
  int64_t mask_row_stride;
  void* gx;
  void* gs;
  void* gt;
  int64_t rows, M;
  int scale;
  bool inverse, clamp_on;
  double clamp;
  DType dtype;
};
LaunchStatus launch_affine_coupling_backward(const CouplingBackwardArgs& args, void* stream);

}  // namespace cuda
}  // namespace gmk
