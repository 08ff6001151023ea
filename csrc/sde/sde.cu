// CUDA kernels of the sde family (SPEC §3.1): the fused Langevin step and its backward.
// Raw pointers and a cudaStream_t only; the torch side is sde_cuda.cpp.
//
// One thread per Philox counter (gmk/cuda_kernel.cuh): thread t owns elements 4g..4g+3 of row
// r and the four normals of counter (g, r + sample_offset, ...), so its noise is the CPU
// kernel's noise for those elements, and the per-element math is the same sde.h functor.
#include "sde.h"

#include "gmk/cuda_kernel.cuh"

namespace gmk {
namespace cuda {
namespace {

template <typename acc_t>
Clamp<acc_t> cast_clamp(double lo, double hi, bool on) {
  return Clamp<acc_t>{static_cast<acc_t>(lo), static_cast<acc_t>(hi), on};
}

// Forward: y = clamp(x + a*g + c*xi). No __restrict__ on x and y: the in-place op passes the
// same buffer (each element is read and then written by one thread, so aliasing is safe).
// kVec: M % 4 == 0 and every pointer aligned to Vec4<T> (see fill_kernel in random.cu).
template <typename T, typename index_t, bool kVec>
__global__ void __launch_bounds__(kThreads)
    langevin_kernel(const T* x, const T* g, T* y, const typename Scalar<T>::acc* a_t,
                    typename Scalar<T>::acc a, const typename Scalar<T>::acc* c_t,
                    typename Scalar<T>::acc c, Clamp<typename Scalar<T>::acc> cl,
                    CounterGrid<index_t> grid, int64_t M, PhiloxStream st) {
  using S = Scalar<T>;
  using acc_t = typename S::acc;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t t = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < grid.total;
       t += stride) {
    index_t r, gi;
    grid.split(t, &r, &gi);
    const Quad<acc_t> xi =
        normals4<acc_t>(st.words(static_cast<uint32_t>(gi), static_cast<uint32_t>(r)));
    const acc_t ar = a_t ? a_t[r] : a;
    const acc_t cr = c_t ? c_t[r] : c;
    const int64_t e0 = static_cast<int64_t>(r) * M + 4 * static_cast<int64_t>(gi);
    if (kVec) {
      const Vec4<T> xv = *reinterpret_cast<const Vec4<T>*>(x + e0);
      const Vec4<T> gv = *reinterpret_cast<const Vec4<T>*>(g + e0);
      Vec4<T> yv;
#pragma unroll
      for (int j = 0; j < 4; ++j)
        yv.v[j] = S::store(langevin_update<acc_t>(S::load(xv.v[j]), S::load(gv.v[j]),
                                                  quad_get(xi, j), ar, cr, cl));
      *reinterpret_cast<Vec4<T>*>(y + e0) = yv;
    } else {
      const int64_t n = M - 4 * static_cast<int64_t>(gi);  // elements left in the row (>= 1)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (j < n)
          y[e0 + j] = S::store(langevin_update<acc_t>(S::load(x[e0 + j]), S::load(g[e0 + j]),
                                                      quad_get(xi, j), ar, cr, cl));
    }
  }
}

// Per-row sums across a warp. The lanes of a warp hold consecutive counters, so lanes of one
// row are contiguous: a segmented inclusive scan (add the value `off` lanes up when it belongs
// to the same row) leaves each row's warp total in its last lane, which adds it to out[row]
// with one atomic. Inactive lanes carry row = kNoRow and never match an active lane.
// Atomics make the summation order (and so the last bits of the sums) run-dependent.
template <typename acc_t, typename index_t>
__device__ __forceinline__ void warp_row_sum(index_t row, bool active, acc_t v, acc_t* out) {
  const unsigned lane = threadIdx.x % 32;
#pragma unroll
  for (int off = 1; off < 32; off *= 2) {
    const acc_t v_up = __shfl_up_sync(0xffffffffu, v, off);
    const index_t r_up = __shfl_up_sync(0xffffffffu, row, off);
    if (lane >= static_cast<unsigned>(off) && r_up == row) v += v_up;
  }
  const index_t r_next = __shfl_down_sync(0xffffffffu, row, 1);
  if (active && (lane == 31 || r_next != row)) atomicAdd(out + row, v);
}

// Backward: gx = gy*pass, gg = gy*pass*a, ga[r] += sum gy*pass*g, gc[r] += sum gy*pass*xi,
// pass = clamp_pass(y). kNeedC regenerates xi from the stream (the only reason to run Philox
// here). The loop runs while the block's first item is in range, so that every lane of a warp
// takes part in the shuffles of warp_row_sum; lanes past the end only contribute zeros.
template <typename T, typename index_t, bool kVec, bool kNeedC>
__global__ void __launch_bounds__(kThreads)
    langevin_backward_kernel(const T* gy, const T* y, const T* g,
                             const typename Scalar<T>::acc* a_t, typename Scalar<T>::acc a,
                             Clamp<typename Scalar<T>::acc> cl, T* gx, T* gg,
                             typename Scalar<T>::acc* ga, typename Scalar<T>::acc* gc,
                             CounterGrid<index_t> grid, int64_t M, PhiloxStream st) {
  using S = Scalar<T>;
  using acc_t = typename S::acc;
  constexpr index_t kNoRow = ~index_t(0);
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t base = static_cast<index_t>(blockIdx.x) * blockDim.x; base < grid.total;
       base += stride) {
    const index_t t = base + threadIdx.x;
    const bool active = t < grid.total;
    index_t r = kNoRow, gi = 0;
    acc_t sa = 0, sc = 0;
    if (active) {
      grid.split(t, &r, &gi);
      Quad<acc_t> xi{0, 0, 0, 0};
      if (kNeedC)
        xi = normals4<acc_t>(st.words(static_cast<uint32_t>(gi), static_cast<uint32_t>(r)));
      const acc_t ar = a_t ? a_t[r] : a;
      const int64_t e0 = static_cast<int64_t>(r) * M + 4 * static_cast<int64_t>(gi);
      const int64_t n = kVec ? 4 : M - 4 * static_cast<int64_t>(gi);
      acc_t gyv[4], yv[4], gv[4];
      if (kVec) {
        const Vec4<T> a4 = *reinterpret_cast<const Vec4<T>*>(gy + e0);
        const Vec4<T> b4 = *reinterpret_cast<const Vec4<T>*>(y + e0);
        const Vec4<T> c4 = *reinterpret_cast<const Vec4<T>*>(g + e0);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          gyv[j] = S::load(a4.v[j]);
          yv[j] = S::load(b4.v[j]);
          gv[j] = S::load(c4.v[j]);
        }
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const bool in = j < n;
          gyv[j] = in ? S::load(gy[e0 + j]) : acc_t(0);
          yv[j] = in ? S::load(y[e0 + j]) : acc_t(0);
          gv[j] = in ? S::load(g[e0 + j]) : acc_t(0);
        }
      }
      Vec4<T> gx4, gg4;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const acc_t go = gyv[j] * clamp_pass(yv[j], cl);
        gx4.v[j] = S::store(go);
        gg4.v[j] = S::store(go * ar);
        if (j < n) {  // a row's short last counter owns fewer than 4 elements
          sa += go * gv[j];
          if (kNeedC) sc += go * quad_get(xi, j);
        }
      }
      if (kVec) {
        *reinterpret_cast<Vec4<T>*>(gx + e0) = gx4;
        *reinterpret_cast<Vec4<T>*>(gg + e0) = gg4;
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (j < n) {
            gx[e0 + j] = gx4.v[j];
            gg[e0 + j] = gg4.v[j];
          }
      }
    }
    // Warp-uniform branches: ga / gc are the same pointer for every thread.
    if (ga) warp_row_sum<acc_t, index_t>(r, active, sa, ga);
    if (kNeedC) warp_row_sum<acc_t, index_t>(r, active, sc, gc);
  }
}

}  // namespace

LaunchStatus launch_langevin(const LangevinArgs& args, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  return dispatch_floating(args.dtype, [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    using acc_t = typename Scalar<T>::acc;
    const T* x = static_cast<const T*>(args.x);
    const T* g = static_cast<const T*>(args.g);
    T* y = static_cast<T*>(args.y);
    const bool vec_ok = vec4_aligned<T>(x) && vec4_aligned<T>(g) && vec4_aligned<T>(y);
    return launch_over_counters(args.rows, args.M, vec_ok, [&](auto cfg, auto grid,
                                                               unsigned blocks) {
      using C = decltype(cfg);
      langevin_kernel<T, typename C::index, C::vec><<<blocks, kThreads, 0, s>>>(
          x, g, y, static_cast<const acc_t*>(args.a_t), static_cast<acc_t>(args.a),
          static_cast<const acc_t*>(args.c_t), static_cast<acc_t>(args.c),
          cast_clamp<acc_t>(args.lo, args.hi, args.clamp), grid, args.M, args.st);
    });
  });
}

LaunchStatus launch_langevin_backward(const LangevinBackwardArgs& args, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  return dispatch_floating(args.dtype, [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    using acc_t = typename Scalar<T>::acc;
    const T* gy = static_cast<const T*>(args.gy);
    const T* y = static_cast<const T*>(args.y);
    const T* g = static_cast<const T*>(args.g);
    T* gx = static_cast<T*>(args.gx);
    T* gg = static_cast<T*>(args.gg);
    const bool vec_ok = vec4_aligned<T>(gy) && vec4_aligned<T>(y) && vec4_aligned<T>(g) &&
                        vec4_aligned<T>(gx) && vec4_aligned<T>(gg);
    const acc_t* a_t = static_cast<const acc_t*>(args.a_t);
    acc_t* ga = static_cast<acc_t*>(args.ga);
    acc_t* gc = static_cast<acc_t*>(args.gc);
    const Clamp<acc_t> cl = cast_clamp<acc_t>(args.lo, args.hi, args.clamp);
    return launch_over_counters(args.rows, args.M, vec_ok, [&](auto cfg, auto grid,
                                                               unsigned blocks) {
      using C = decltype(cfg);
      if (gc)
        langevin_backward_kernel<T, typename C::index, C::vec, true><<<blocks, kThreads, 0, s>>>(
            gy, y, g, a_t, static_cast<acc_t>(args.a), cl, gx, gg, ga, gc, grid, args.M,
            args.st);
      else
        langevin_backward_kernel<T, typename C::index, C::vec, false><<<blocks, kThreads, 0, s>>>(
            gy, y, g, a_t, static_cast<acc_t>(args.a), cl, gx, gg, ga, gc, grid, args.M,
            args.st);
    });
  });
}

}  // namespace cuda
}  // namespace gmk
