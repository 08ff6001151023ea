// CUDA kernels of the affine coupling transform (docs/spec.md §1.2); the math is coupling.h.
// Raw pointers and a cudaStream_t only; the torch side is coupling_cuda.cpp.
//
// Layout: contiguous rows x M. Short rows (M <= kCudaWarpRowMax, e.g. the (65536, 64) case):
// one warp per row, lanes over the row (coalesced), a shuffle reduction for the logdet. Long
// rows (images, M = C*H*W): one block per chunk of kCudaChunk elements; the chunk sums go to
// `partial` and a second kernel adds them per row in a fixed order (no atomics, so the logdet
// does not depend on scheduling). The backward uses the same layout without the reduction.
#include <cuda_runtime.h>

#include <cstdint>

#include "coupling.h"
#include "gmk/cuda_kernel.cuh"

namespace gmk {
namespace cuda {
namespace {

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
struct FwdPtrs {
  const T* x;
  const T* s;
  const T* t;
  const uint8_t* mask;
  int64_t mrs;
  T* y;
  T* logdet;
};

template <typename V, typename T>
__global__ void __launch_bounds__(kThreads)
coupling_fwd_warp_kernel(FwdPtrs<T> p, int64_t rows, int64_t M, typename Scalar<T>::acc c,
                         typename Scalar<T>::acc ic, typename Scalar<T>::acc sign) {
  using acc = typename Scalar<T>::acc;
  const int lane = threadIdx.x & 31;
  const int64_t wpb = blockDim.x / 32;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * wpb;
  // r is the same for every lane of a warp, so the whole warp takes part in each shuffle.
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * wpb + threadIdx.x / 32; r < rows;
       r += nwarps) {
    const int64_t off = r * M;
    const uint8_t* m = p.mask + r * p.mrs;
    acc sum = acc(0);
    for (int64_t i = lane; i < M; i += 32) {
      acc contrib;
      const acc yi = coupling_elem<V, acc>(Scalar<T>::load(p.x[off + i]),
                                           Scalar<T>::load(p.s[off + i]),
                                           Scalar<T>::load(p.t[off + i]), m[i] != 0, c, ic,
                                           &contrib);
      p.y[off + i] = Scalar<T>::store(yi);
      sum += contrib;
    }
    sum = warp_sum(sum);
    if (lane == 0) p.logdet[r] = Scalar<T>::store(sign * sum);
  }
}

template <typename V, typename T>
__global__ void __launch_bounds__(kThreads)
coupling_fwd_chunk_kernel(FwdPtrs<T> p, typename Scalar<T>::acc* partial, int64_t rows,
                          int64_t M, int64_t nchunks, typename Scalar<T>::acc c,
                          typename Scalar<T>::acc ic) {
  using acc = typename Scalar<T>::acc;
  __shared__ acc red[kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  const int64_t items = rows * nchunks;
  for (int64_t it = blockIdx.x; it < items; it += gridDim.x) {
    const int64_t r = it / nchunks, k = it - r * nchunks;
    const int64_t e0 = k * kCudaChunk;
    const int64_t n = M - e0 < kCudaChunk ? M - e0 : kCudaChunk;
    const int64_t off = r * M + e0;
    const uint8_t* m = p.mask + r * p.mrs + e0;
    acc sum = acc(0);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      acc contrib;
      const acc yi = coupling_elem<V, acc>(Scalar<T>::load(p.x[off + i]),
                                           Scalar<T>::load(p.s[off + i]),
                                           Scalar<T>::load(p.t[off + i]), m[i] != 0, c, ic,
                                           &contrib);
      p.y[off + i] = Scalar<T>::store(yi);
      sum += contrib;
    }
    sum = warp_sum(sum);
    if (lane == 0) red[warp] = sum;
    if (GMK_PLANT != 2) __syncthreads();
    if (warp == 0) {
      acc v = lane < static_cast<int>(blockDim.x / 32) ? red[lane] : acc(0);
      v = warp_sum(v);
      if (lane == 0) partial[it] = v;
    }
    __syncthreads();  // red is reused by the next item
  }
}

// logdet[r] = sign * sum_k partial[r * nchunks + k], in order.
template <typename T>
__global__ void coupling_finish_kernel(const typename Scalar<T>::acc* partial, T* logdet,
                                       int64_t rows, int64_t nchunks,
                                       typename Scalar<T>::acc sign) {
  using acc = typename Scalar<T>::acc;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    acc sum = acc(0);
    for (int64_t k = 0; k < nchunks; ++k) sum += partial[r * nchunks + k];
    logdet[r] = Scalar<T>::store(sign * sum);
  }
}

template <typename T>
struct BwdPtrs {
  const T* gy;
  const T* gld;
  const T* x;
  const T* s;
  const T* t;
  const uint8_t* mask;
  int64_t mrs;
  T* gx;
  T* gs;
  T* gt;
};

template <typename V, typename T>
__device__ __forceinline__ void coupling_bwd_segment(const BwdPtrs<T>& p, int64_t r, int64_t off,
                                                     const uint8_t* m, int64_t i0, int64_t n,
                                                     int64_t step, typename Scalar<T>::acc c,
                                                     typename Scalar<T>::acc ic) {
  using acc = typename Scalar<T>::acc;
  const acc gld = Scalar<T>::load(p.gld[r]);
  for (int64_t i = i0; i < n; i += step) {
    acc gx, gs, gt;
    coupling_elem_backward<V, acc>(Scalar<T>::load(p.gy[off + i]), gld,
                                   Scalar<T>::load(p.x[off + i]), Scalar<T>::load(p.s[off + i]),
                                   Scalar<T>::load(p.t[off + i]), m[i] != 0, c, ic, &gx, &gs,
                                   &gt);
    p.gx[off + i] = Scalar<T>::store(gx);
    p.gs[off + i] = Scalar<T>::store(gs);
    p.gt[off + i] = Scalar<T>::store(gt);
  }
}

template <typename V, typename T>
__global__ void __launch_bounds__(kThreads)
coupling_bwd_warp_kernel(BwdPtrs<T> p, int64_t rows, int64_t M, typename Scalar<T>::acc c,
                         typename Scalar<T>::acc ic) {
  const int64_t wpb = blockDim.x / 32;
  const int64_t nwarps = static_cast<int64_t>(gridDim.x) * wpb;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * wpb + threadIdx.x / 32; r < rows;
       r += nwarps)
    coupling_bwd_segment<V, T>(p, r, r * M, p.mask + r * p.mrs, threadIdx.x & 31, M, 32, c, ic);
}

template <typename V, typename T>
__global__ void __launch_bounds__(kThreads)
coupling_bwd_chunk_kernel(BwdPtrs<T> p, int64_t rows, int64_t M, int64_t nchunks,
                          typename Scalar<T>::acc c, typename Scalar<T>::acc ic) {
  const int64_t items = rows * nchunks;
  for (int64_t it = blockIdx.x; it < items; it += gridDim.x) {
    const int64_t r = it / nchunks, k = it - r * nchunks;
    const int64_t e0 = k * kCudaChunk;
    const int64_t n = M - e0 < kCudaChunk ? M - e0 : kCudaChunk;
    coupling_bwd_segment<V, T>(p, r, r * M + e0, p.mask + r * p.mrs + e0, threadIdx.x, n,
                               blockDim.x, c, ic);
  }
}

}  // namespace

LaunchStatus launch_affine_coupling(const CouplingArgs& a, void* stream) {
  if (a.rows == 0 || a.M == 0) return nullptr;  // the glue zero-fills logdet
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  const int64_t nchunks = coupling_cuda_chunks(a.M);
  if (nchunks > 1 && a.partial == nullptr) return "affine_coupling: missing partial-sum buffer";
  return dispatch_floating(a.dtype, [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    using acc = typename Scalar<T>::acc;
    FwdPtrs<T> p{static_cast<const T*>(a.x), static_cast<const T*>(a.s),
                 static_cast<const T*>(a.t), a.mask, a.mask_row_stride, static_cast<T*>(a.y),
                 static_cast<T*>(a.logdet)};
    const acc c = static_cast<acc>(a.clamp_on ? a.clamp : 1.0);
    const acc ic = static_cast<acc>(a.clamp_on ? 1.0 / a.clamp : 1.0);
    const acc sign = a.inverse ? acc(-1) : acc(1);
    return with_coupling_variant(a.scale, a.clamp_on, a.inverse, [&](auto v) -> LaunchStatus {
      using V = decltype(v);
      unsigned blocks = 0;
      if (nchunks == 1) {
        if (const LaunchStatus s = status_of(grid_blocks(a.rows * 32, &blocks))) return s;
        return launch(coupling_fwd_warp_kernel<V, T>, blocks, kThreads, 0, st, p, a.rows, a.M, c,
                      ic, sign);
      }
      acc* partial = static_cast<acc*>(a.partial);
      if (const LaunchStatus s = status_of(grid_blocks(a.rows * nchunks * kThreads, &blocks)))
        return s;
      if (const LaunchStatus s = launch(coupling_fwd_chunk_kernel<V, T>, blocks, kThreads, 0, st,
                                        p, partial, a.rows, a.M, nchunks, c, ic))
        return s;
      if (const LaunchStatus s = status_of(grid_blocks(a.rows, &blocks))) return s;
      return launch(coupling_finish_kernel<T>, blocks, kThreads, 0, st, partial, p.logdet, a.rows,
                    nchunks, sign);
    });
  });
}

LaunchStatus launch_affine_coupling_backward(const CouplingBackwardArgs& a, void* stream) {
  if (a.rows == 0 || a.M == 0) return nullptr;
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  const int64_t nchunks = coupling_cuda_chunks(a.M);
  return dispatch_floating(a.dtype, [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    using acc = typename Scalar<T>::acc;
    BwdPtrs<T> p{static_cast<const T*>(a.gy), static_cast<const T*>(a.gld),
                 static_cast<const T*>(a.x),  static_cast<const T*>(a.s),
                 static_cast<const T*>(a.t),  a.mask,
                 a.mask_row_stride,           static_cast<T*>(a.gx),
                 static_cast<T*>(a.gs),       static_cast<T*>(a.gt)};
    const acc c = static_cast<acc>(a.clamp_on ? a.clamp : 1.0);
    const acc ic = static_cast<acc>(a.clamp_on ? 1.0 / a.clamp : 1.0);
    return with_coupling_variant(a.scale, a.clamp_on, a.inverse, [&](auto v) -> LaunchStatus {
      using V = decltype(v);
      unsigned blocks = 0;
      if (nchunks == 1) {
        if (const LaunchStatus s = status_of(grid_blocks(a.rows * 32, &blocks))) return s;
        return launch(coupling_bwd_warp_kernel<V, T>, blocks, kThreads, 0, st, p, a.rows, a.M, c,
                      ic);
      }
      if (const LaunchStatus s = status_of(grid_blocks(a.rows * nchunks * kThreads, &blocks)))
        return s;
      return launch(coupling_bwd_chunk_kernel<V, T>, blocks, kThreads, 0, st, p, a.rows, a.M,
                    nchunks, c, ic);
    });
  });
}

}  // namespace cuda
}  // namespace gmk
