// CUDA kernels of the planar flow (docs/spec.md §1.1): the fused K-layer forward and its backward.
// Raw pointers and a cudaStream_t only; the torch side is planar_cuda.cpp. The per-row math
// (tanh and 1 - tanh², log|1 + y|, the layer's backward scalars) is planar.h's, as on the CPU.
//
// One thread per row. A row of z (and, backward, of its gradient) lives in a per-thread array
// when D <= kPlanarMaxLocalD (local memory, cached in L1), else in a global workspace row.
// The backward follows the CPU kernel's three sweeps (planar.cpp): (0) forward, storing the
// pre-activation a_k of every layer in a (K, B) workspace (coalesced: thread = row);
// (1) reverse sweep, storing ga_k and c_k ((K, B) each); (2) forward sweep rebuilding z_k from z
// with the same h_k, for d/dw_k = ga_k z_k + c_k û_k. Nothing of size (B, K, D) is stored.
// Shared-parameter gradients: a warp sum per (k, d), then one atomicAdd per warp (so the last
// bits of those sums depend on the order the warps run).
#include "planar.h"

#include "gmk/cuda_kernel.cuh"

namespace gmk {
namespace cuda {
namespace {

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2)
    v += __shfl_down_sync(0xffffffffu, v, off + (GMK_PLANT == 3));
  return v;
}

// Adds v, summed over the warp, to *dst (lane 0 does the atomic). Every lane must call it.
template <typename T>
__device__ __forceinline__ void warp_add(T* dst, T v) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) atomicAdd(dst, v);
}

template <typename T, bool kPS>
__device__ __forceinline__ const T* param_row(const T* p, int64_t row, int64_t k, int64_t K,
                                              int64_t D) {
  return kPS ? p + (row * K + k) * D : p + k * D;
}

template <typename T, bool kPS, int kLocalD>
__global__ void __launch_bounds__(kThreads)
    planar_forward_kernel(const T* __restrict__ z, const T* __restrict__ u,
                          const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ out,
                          T* __restrict__ logdet, int64_t B, int64_t K, int64_t D, T* zbuf) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; row < B;
       row += stride) {
    T zl[kLocalD > 0 ? kLocalD : 1];
    T* zr = kLocalD > 0 ? zl : zbuf + row * D;
    for (int64_t d = 0; d < D; ++d) zr[d] = z[row * D + d];
    T ld = T(0);
    for (int64_t k = 0; k < K; ++k) {
      const T* up = param_row<T, kPS>(u, row, k, K, D);
      const T* wp = param_row<T, kPS>(w, row, k, K, D);
      T a = kPS ? b[row * K + k] : b[k];
      T uw = T(0);
      for (int64_t d = 0; d < D; ++d) {
        a += wp[d] * zr[d];
        uw += up[d] * wp[d];
      }
      T h, s;
      planar::act(a, &h, &s);
      ld += planar::layer_log_psi(h, s, uw);
      for (int64_t d = 0; d < D; ++d) zr[d] += up[d] * h;
    }
    for (int64_t d = 0; d < D; ++d) out[row * D + d] = zr[d];
    logdet[row] = ld;
  }
}

// One thread per row, exactly (no grid-stride loop): the warp sums of shared-parameter
// gradients need all 32 lanes, so lanes past B run with zero gradients and write nothing.
template <typename T, bool kPS, int kLocalD>
__global__ void __launch_bounds__(kThreads)
    planar_backward_kernel(const T* __restrict__ gy, const T* __restrict__ gl,
                           const T* __restrict__ z, const T* __restrict__ u,
                           const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ gz,
                           T* __restrict__ gu, T* __restrict__ gw, T* __restrict__ gb,
                           T* __restrict__ ws, T* zbuf, int64_t B, int64_t K, int64_t D) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool active = tid < B;
  const int64_t row = active ? tid : 0;  // inactive lanes read row 0 and write nothing
  T* A = ws;                 // (K, B) pre-activations
  T* GA = ws + K * B;        // (K, B) d/da
  T* C = ws + 2 * K * B;     // (K, B) d/d(û·w)
  T zl[kLocalD > 0 ? kLocalD : 1];
  T gl_[kLocalD > 0 ? kLocalD : 1];
  T* zr = kLocalD > 0 ? zl : zbuf + row * D;
  T* gr = kLocalD > 0 ? gl_ : zbuf + (B + row) * D;
  // (0) forward, storing a_k.
  for (int64_t d = 0; d < D; ++d)
    if (kLocalD > 0 || active) zr[d] = z[row * D + d];
  for (int64_t k = 0; k < K; ++k) {
    const T* up = param_row<T, kPS>(u, row, k, K, D);
    const T* wp = param_row<T, kPS>(w, row, k, K, D);
    T a = kPS ? b[row * K + k] : b[k];
    for (int64_t d = 0; d < D; ++d) a += wp[d] * zr[d];
    T h, s;
    planar::act(a, &h, &s);
    if (active) A[k * B + row] = a;
    if (kLocalD > 0 || active)
      for (int64_t d = 0; d < D; ++d) zr[d] += up[d] * h;
  }
  // (1) reverse sweep.
  const T gli = (gl != nullptr && active) ? gl[row] : T(0);
  for (int64_t d = 0; d < D; ++d)
    if (kLocalD > 0 || active) gr[d] = (gy != nullptr && active) ? gy[row * D + d] : T(0);
  for (int64_t k = K - 1; k >= 0; --k) {
    const T* up = param_row<T, kPS>(u, row, k, K, D);
    const T* wp = param_row<T, kPS>(w, row, k, K, D);
    T h, s;
    planar::act(active ? A[k * B + row] : T(0), &h, &s);
    T dotu = T(0), uw = T(0);
    for (int64_t d = 0; d < D; ++d) {
      const T g = (kLocalD > 0 || active) ? gr[d] : T(0);
      dotu += g * up[d];
      uw += up[d] * wp[d];
    }
    T ga, c;
    planar::layer_grads(dotu, gli, h, s, uw, &ga, &c);
    if (!active) ga = c = T(0);
    if (active) {
      GA[k * B + row] = ga;
      C[k * B + row] = c;
    }
    for (int64_t d = 0; d < D; ++d) {
      const T g = (kLocalD > 0 || active) ? gr[d] : T(0);
      const T v = active ? g * h + c * wp[d] : T(0);
      if (kPS) {
        if (active) gu[(row * K + k) * D + d] = v;
      } else {
        warp_add(gu + k * D + d, v);
      }
      if (kLocalD > 0 || active) gr[d] = g + ga * wp[d];
    }
    if (kPS) {
      if (active) gb[row * K + k] = ga;
    } else {
      warp_add(gb + k, ga);
    }
  }
  if (active)
    for (int64_t d = 0; d < D; ++d) gz[row * D + d] = gr[d];
  // (2) forward sweep rebuilding z_k.
  for (int64_t d = 0; d < D; ++d)
    if (kLocalD > 0 || active) zr[d] = z[row * D + d];
  for (int64_t k = 0; k < K; ++k) {
    const T* up = param_row<T, kPS>(u, row, k, K, D);
    T h, s;
    planar::act(active ? A[k * B + row] : T(0), &h, &s);
    const T ga = active ? GA[k * B + row] : T(0);
    const T c = active ? C[k * B + row] : T(0);
    for (int64_t d = 0; d < D; ++d) {
      const T zd = (kLocalD > 0 || active) ? zr[d] : T(0);
      const T v = ga * zd + c * up[d];
      if (kPS) {
        if (active) gw[(row * K + k) * D + d] = v;
      } else {
        warp_add(gw + k * D + d, v);
      }
      if (kLocalD > 0 || active) zr[d] = zd + up[d] * h;
    }
  }
}

template <typename F>
LaunchStatus dispatch_real(DType dtype, const F& f) {
  switch (dtype) {
    case DType::kFloat32: return f(Tag<float>{});
    case DType::kFloat64: return f(Tag<double>{});
    default: return "planar_flow: unsupported dtype (expected float32 or float64)";
  }
}

}  // namespace

LaunchStatus launch_planar_forward(const PlanarArgs& args, void* stream) {
  if (args.B == 0) return nullptr;
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  unsigned blocks = 0;
  if (const LaunchStatus e = status_of(grid_blocks(args.B, &blocks))) return e;
  const bool local = args.D <= kPlanarMaxLocalD;
  if (!local && args.zbuf == nullptr) return "planar_flow: missing workspace for D > 32";
  return dispatch_real(args.dtype, [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    const T* z = static_cast<const T*>(args.z);
    const T* u = static_cast<const T*>(args.u);
    const T* w = static_cast<const T*>(args.w);
    const T* b = static_cast<const T*>(args.b);
    T* out = static_cast<T*>(args.out);
    T* ld = static_cast<T*>(args.logdet);
    T* zbuf = static_cast<T*>(args.zbuf);
    auto kernel = args.per_sample
                      ? (local ? planar_forward_kernel<T, true, kPlanarMaxLocalD>
                               : planar_forward_kernel<T, true, 0>)
                      : (local ? planar_forward_kernel<T, false, kPlanarMaxLocalD>
                               : planar_forward_kernel<T, false, 0>);
    return launch(kernel, blocks, kThreads, 0, st, z, u, w, b, out, ld, args.B, args.K, args.D,
                  zbuf);
  });
}

LaunchStatus launch_planar_backward(const PlanarBackwardArgs& args, void* stream) {
  if (args.B == 0) return nullptr;
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  const int64_t nblocks = (args.B + kThreads - 1) / kThreads;
  if (nblocks > 0x7fffffff) return "planar_flow_backward: batch too large for one launch";
  const unsigned blocks = static_cast<unsigned>(nblocks);
  const bool local = args.D <= kPlanarMaxLocalD;
  if (!local && args.zbuf == nullptr) return "planar_flow_backward: missing workspace for D > 32";
  return dispatch_real(args.dtype, [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    const T* gy = static_cast<const T*>(args.grad_out);
    const T* gl = static_cast<const T*>(args.grad_logdet);
    const T* z = static_cast<const T*>(args.z);
    const T* u = static_cast<const T*>(args.u);
    const T* w = static_cast<const T*>(args.w);
    const T* b = static_cast<const T*>(args.b);
    T* gz = static_cast<T*>(args.gz);
    T* gu = static_cast<T*>(args.gu);
    T* gw = static_cast<T*>(args.gw);
    T* gb = static_cast<T*>(args.gb);
    T* ws = static_cast<T*>(args.ws);
    T* zbuf = static_cast<T*>(args.zbuf);
    auto kernel = args.per_sample
                      ? (local ? planar_backward_kernel<T, true, kPlanarMaxLocalD>
                               : planar_backward_kernel<T, true, 0>)
                      : (local ? planar_backward_kernel<T, false, kPlanarMaxLocalD>
                               : planar_backward_kernel<T, false, 0>);
    return launch(kernel, blocks, kThreads, 0, st, gy, gl, z, u, w, b, gz, gu, gw, gb, ws, zbuf,
                  args.B, args.K, args.D);
  });
}

}  // namespace cuda
}  // namespace gmk
