// CUDA kernels of the sde family (docs/spec.md §3): the fused Langevin step and its backward, and the
// affine step behind the SDE steps (sde.h), its backward and the corrector's norms and means.
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
// kStride: out holds kStride interleaved sums per row (the corrector's two norms).
template <typename acc_t, typename index_t, int kStride = 1>
__device__ __forceinline__ void warp_row_sum(index_t row, bool active, acc_t v, acc_t* out) {
  const unsigned lane = threadIdx.x % 32;
#pragma unroll
  for (int off = 1; off < 32; off *= 2) {
    const acc_t v_up = __shfl_up_sync(0xffffffffu, v, off);
    const index_t r_up = __shfl_up_sync(0xffffffffu, row, off);
    if (lane >= static_cast<unsigned>(off) && r_up == row) v += v_up;
  }
  const index_t r_next = __shfl_down_sync(0xffffffffu, row, 1);
  if (active && (lane == 31 || r_next != row)) atomicAdd(out + row * kStride, v);
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


// ---------------------------------------------------------------------------------------------
// The affine step out = cx*x - ce*e + cn*xi (sde.h) behind euler_maruyama_step,
// reverse_sde_step, langevin_corrector_step and affine_noise_step. Coefs is the per-row
// coefficient provider of sde.h; its row(r) runs once per counter (a few transcendentals for
// the SDE coefficients, far cheaper than the counter's Philox, and it saves a launch and a
// buffer). noise = false (probability flow, cn = 0) skips Philox altogether. noise and nf (the
// full diffusion tensor of euler_maruyama_step) are grid-uniform runtime branches rather than
// template axes: each axis doubles the kernels nvcc builds (sde.cu took 165 s per architecture
// with noise as a template flag).
template <typename T, typename index_t, bool kVec, typename Coefs>
__global__ void __launch_bounds__(kThreads)
    affine_kernel(const T* __restrict__ x, const T* __restrict__ e, const T* __restrict__ nf,
                  T* __restrict__ y, typename Scalar<T>::acc ns, bool noise, Coefs cf,
                  CounterGrid<index_t> grid, int64_t M, PhiloxStream st) {
  using S = Scalar<T>;
  using acc_t = typename S::acc;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t t = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < grid.total;
       t += stride) {
    index_t r, gi;
    grid.split(t, &r, &gi);
    Quad<acc_t> xi{0, 0, 0, 0};
    if (noise) xi = normals4<acc_t>(st.words(static_cast<uint32_t>(gi), static_cast<uint32_t>(r)));
    const Coef3<acc_t> c = cf.row(static_cast<int64_t>(r));
    const acc_t cn = c.cn * ns;
    const int64_t e0 = static_cast<int64_t>(r) * M + 4 * static_cast<int64_t>(gi);
    if (kVec) {
      const Vec4<T> xv = *reinterpret_cast<const Vec4<T>*>(x + e0);
      const Vec4<T> ev = *reinterpret_cast<const Vec4<T>*>(e + e0);
      Vec4<T> nv = xv;
      if (nf) nv = *reinterpret_cast<const Vec4<T>*>(nf + e0);
      Vec4<T> yv;
#pragma unroll
      for (int j = 0; j < 4; ++j)
        yv.v[j] = S::store(affine_update<acc_t>(S::load(xv.v[j]), S::load(ev.v[j]), c.cx, c.ce,
                                                nf ? S::load(nv.v[j]) * ns : cn,
                                                quad_get(xi, j)));
      *reinterpret_cast<Vec4<T>*>(y + e0) = yv;
    } else {
      const int64_t n = M - 4 * static_cast<int64_t>(gi);  // elements left in the row (>= 1)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (j < n)
          y[e0 + j] = S::store(affine_update<acc_t>(S::load(x[e0 + j]), S::load(e[e0 + j]), c.cx,
                                                    c.ce, nf ? S::load(nf[e0 + j]) * ns : cn,
                                                    quad_get(xi, j)));
    }
  }
}

// Backward of the affine step: gx = gy*cx, ge = -gy*ce, per-row sums sx += gy*x, se += gy*e,
// sn += gy*ns*xi (warp_row_sum into zero-filled buffers), per-element gn = gy*ns*xi. sx, se,
// sn, gn may be null (grid-uniform branches); xi is regenerated only when sn or gn is wanted.
// Lanes past the end take part in the shuffles with zeros (as langevin_backward).
template <typename T, typename index_t, bool kVec, typename Coefs>
__global__ void __launch_bounds__(kThreads)
    affine_backward_kernel(const T* __restrict__ gy, const T* __restrict__ x,
                           const T* __restrict__ e, T* __restrict__ gx, T* __restrict__ ge,
                           typename Scalar<T>::acc* sx, typename Scalar<T>::acc* se,
                           typename Scalar<T>::acc* sn, T* __restrict__ gn,
                           typename Scalar<T>::acc ns, Coefs cf, CounterGrid<index_t> grid,
                           int64_t M, PhiloxStream st) {
  using S = Scalar<T>;
  using acc_t = typename S::acc;
  constexpr index_t kNoRow = ~index_t(0);
  const bool noise = sn != nullptr || gn != nullptr;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t base = static_cast<index_t>(blockIdx.x) * blockDim.x; base < grid.total;
       base += stride) {
    const index_t t = base + threadIdx.x;
    const bool active = t < grid.total;
    index_t r = kNoRow, gi = 0;
    acc_t a = 0, b = 0, d = 0;
    if (active) {
      grid.split(t, &r, &gi);
      Quad<acc_t> xi{0, 0, 0, 0};
      if (noise)
        xi = normals4<acc_t>(st.words(static_cast<uint32_t>(gi), static_cast<uint32_t>(r)));
      const Coef3<acc_t> c = cf.row(static_cast<int64_t>(r));
      const int64_t e0 = static_cast<int64_t>(r) * M + 4 * static_cast<int64_t>(gi);
      const int64_t n = kVec ? 4 : M - 4 * static_cast<int64_t>(gi);
      acc_t gyv[4], xv[4], ev[4];
      if (kVec) {
        const Vec4<T> g4 = *reinterpret_cast<const Vec4<T>*>(gy + e0);
        Vec4<T> x4 = g4, e4 = g4;
        if (sx) x4 = *reinterpret_cast<const Vec4<T>*>(x + e0);
        if (se) e4 = *reinterpret_cast<const Vec4<T>*>(e + e0);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          gyv[j] = S::load(g4.v[j]);
          xv[j] = S::load(x4.v[j]);
          ev[j] = S::load(e4.v[j]);
        }
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const bool in = j < n;
          gyv[j] = in ? S::load(gy[e0 + j]) : acc_t(0);
          xv[j] = in && sx ? S::load(x[e0 + j]) : acc_t(0);
          ev[j] = in && se ? S::load(e[e0 + j]) : acc_t(0);
        }
      }
      Vec4<T> gx4, ge4, gn4;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        gx4.v[j] = S::store(affine_grad_x<acc_t>(gyv[j], c.cx));
        ge4.v[j] = S::store(affine_grad_e<acc_t>(gyv[j], c.ce));
        const acc_t nv = gyv[j] * ns * quad_get(xi, j);
        gn4.v[j] = S::store(nv);
        if (j < n) {  // a row's short last counter owns fewer than 4 elements
          a += gyv[j] * xv[j];
          b += gyv[j] * ev[j];
          d += nv;
        }
      }
      if (kVec) {
        *reinterpret_cast<Vec4<T>*>(gx + e0) = gx4;
        *reinterpret_cast<Vec4<T>*>(ge + e0) = ge4;
        if (gn) *reinterpret_cast<Vec4<T>*>(gn + e0) = gn4;
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (j < n) {
            gx[e0 + j] = gx4.v[j];
            ge[e0 + j] = ge4.v[j];
            if (gn) gn[e0 + j] = gn4.v[j];
          }
      }
    }
    if (sx) warp_row_sum<acc_t, index_t>(r, active, a, sx);
    if (se) warp_row_sum<acc_t, index_t>(r, active, b, se);
    if (sn) warp_row_sum<acc_t, index_t>(r, active, d, sn);
  }
}

// The corrector's first pass: sums[2r] += ||xi_r||^2, sums[2r + 1] += ||s_r||^2. The batch
// means (corrector_means_kernel) and the update kernel (affine_kernel with CorrectorCoefs) run
// after it on the same stream; the update draws the same xi again rather than storing it.
template <typename T, typename index_t, bool kVec>
__global__ void __launch_bounds__(kThreads)
    corrector_norms_kernel(const T* __restrict__ s, typename Scalar<T>::acc* sums,
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
    acc_t a = 0, b = 0;
    if (active) {
      grid.split(t, &r, &gi);
      const Quad<acc_t> xi =
          normals4<acc_t>(st.words(static_cast<uint32_t>(gi), static_cast<uint32_t>(r)));
      const int64_t e0 = static_cast<int64_t>(r) * M + 4 * static_cast<int64_t>(gi);
      const int64_t n = kVec ? 4 : M - 4 * static_cast<int64_t>(gi);
      acc_t sv[4];
      if (kVec) {
        const Vec4<T> s4 = *reinterpret_cast<const Vec4<T>*>(s + e0);
#pragma unroll
        for (int j = 0; j < 4; ++j) sv[j] = S::load(s4.v[j]);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) sv[j] = j < n ? S::load(s[e0 + j]) : acc_t(0);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (j < n) {
          const acc_t q = quad_get(xi, j);
          a += q * q;
          b += sv[j] * sv[j];
        }
    }
    warp_row_sum<acc_t, index_t, 2>(r, active, a, sums);
    warp_row_sum<acc_t, index_t, 2>(r, active, b, sums + 1);
  }
}

// The corrector's batch means (sde.h corrector_means, on the device): one block strides over
// the rows, summing sqrt of the squared row norms in double, then reduces across the block;
// means[0] = mean_r ||xi_r||, means[1] = mean_r ||s_r||. It runs between the two passes on the
// same stream, so the host never waits. One block: the work is 2 sqrt per row, small next to
// the Philox draws of the passes around it.
constexpr int kMeansThreads = 1024;

template <typename acc_t>
__global__ void __launch_bounds__(kMeansThreads)
    corrector_means_kernel(const acc_t* __restrict__ sums, int64_t rows, acc_t* means) {
  __shared__ double part[2][kMeansThreads / 32];
  double a = 0.0, b = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += kMeansThreads) {
    a += static_cast<double>(sqrt_t(sums[2 * r]));
    b += static_cast<double>(sqrt_t(sums[2 * r + 1]));
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    a += __shfl_down_sync(0xffffffffu, a, off);
    b += __shfl_down_sync(0xffffffffu, b, off);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    part[0][warp] = a;
    part[1][warp] = b;
  }
  __syncthreads();
  if (warp == 0) {
    a = part[0][lane];  // kMeansThreads / 32 == 32 partials, one per lane
    b = part[1][lane];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
      a += __shfl_down_sync(0xffffffffu, a, off);
      b += __shfl_down_sync(0xffffffffu, b, off);
    }
    if (lane == 0) {
      means[0] = static_cast<acc_t>(a / static_cast<double>(rows));
      means[1] = static_cast<acc_t>(b / static_cast<double>(rows));
    }
  }
}
static_assert(kMeansThreads == 32 * 32, "corrector_means_kernel: one partial per lane of warp 0");

// Calls f(provider) with the coefficient provider of c (sde.h) in the compute dtype.
template <typename acc_t, typename F>
LaunchStatus with_coefs(const CoefArgs& c, const F& f) {
  switch (c.src) {
    case CoefSource::kRows:
      return f(RowCoefs<acc_t>{static_cast<const acc_t*>(c.cx_t),
                               static_cast<const acc_t*>(c.ce_t),
                               static_cast<const acc_t*>(c.cn_t), static_cast<acc_t>(c.cx),
                               static_cast<acc_t>(c.ce), static_cast<acc_t>(c.cn)});
    case CoefSource::kReverseSde:
      return f(ReverseSdeCoefs<acc_t>{
          static_cast<const acc_t*>(c.t_t),
          SdeSpec<acc_t>{c.kind, c.predictor, c.pf, static_cast<acc_t>(c.p0),
                         static_cast<acc_t>(c.p1), static_cast<acc_t>(c.dt)}});
    case CoefSource::kCorrector:
      return f(CorrectorCoefs<acc_t>{static_cast<const acc_t*>(c.alpha_t),
                                     static_cast<acc_t>(c.alpha), static_cast<acc_t>(c.snr),
                                     static_cast<const acc_t*>(c.sums)});  // the (2,) means
  }
  return "unknown coefficient source";
}

template <typename T>
bool aligned_or_null(const void* p) {
  return p == nullptr || vec4_aligned<T>(p);
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
      return launch(
          langevin_kernel<T, typename C::index, C::vec>, blocks, kThreads, 0, s, x, g, y, static_cast<const acc_t*>(args.a_t), static_cast<acc_t>(args.a),
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
        return launch(langevin_backward_kernel<T, typename C::index, C::vec, true>, blocks,
                      kThreads, 0, s, gy, y, g, a_t, static_cast<acc_t>(args.a), cl, gx, gg, ga,
                      gc, grid, args.M, args.st);
      return launch(langevin_backward_kernel<T, typename C::index, C::vec, false>, blocks,
                    kThreads, 0, s, gy, y, g, a_t, static_cast<acc_t>(args.a), cl, gx, gg, ga,
                    gc, grid, args.M, args.st);
    });
  });
}


LaunchStatus launch_affine(const AffineArgs& args, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  return dispatch_floating(args.dtype, [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    using acc_t = typename Scalar<T>::acc;
    const T* x = static_cast<const T*>(args.x);
    const T* e = static_cast<const T*>(args.e);
    const T* nf = static_cast<const T*>(args.nfull);
    T* y = static_cast<T*>(args.y);
    const bool vec_ok = vec4_aligned<T>(x) && vec4_aligned<T>(e) && aligned_or_null<T>(nf) &&
                        vec4_aligned<T>(y);
    const acc_t ns = static_cast<acc_t>(args.nscale);
    return with_coefs<acc_t>(args.coefs, [&](auto cf) -> LaunchStatus {
      using Coefs = decltype(cf);
      return launch_over_counters(args.rows, args.M, vec_ok, [&](auto cfg, auto grid,
                                                                 unsigned blocks) {
        using C = decltype(cfg);
        return launch(affine_kernel<T, typename C::index, C::vec, Coefs>, blocks, kThreads, 0, s,
                      x, e, nf, y, ns, args.noise, cf, grid, args.M, args.st);
      });
    });
  });
}

LaunchStatus launch_affine_backward(const AffineBackwardArgs& args, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (args.coefs.src == CoefSource::kCorrector) return "the corrector step has no backward";
  return dispatch_floating(args.dtype, [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    using acc_t = typename Scalar<T>::acc;
    const T* gy = static_cast<const T*>(args.gy);
    const T* x = static_cast<const T*>(args.x);
    const T* e = static_cast<const T*>(args.e);
    T* gx = static_cast<T*>(args.gx);
    T* ge = static_cast<T*>(args.ge);
    T* gn = static_cast<T*>(args.gn);
    acc_t* sx = static_cast<acc_t*>(args.sx);
    acc_t* se = static_cast<acc_t*>(args.se);
    acc_t* sn = static_cast<acc_t*>(args.sn);
    const bool vec_ok = vec4_aligned<T>(gy) && aligned_or_null<T>(x) && aligned_or_null<T>(e) &&
                        vec4_aligned<T>(gx) && vec4_aligned<T>(ge) && aligned_or_null<T>(gn);
    const acc_t ns = static_cast<acc_t>(args.nscale);
    // The backward providers: per-row / scalar coefficients and the reverse SDE's.
    auto run = [&](auto cf) -> LaunchStatus {
      using Coefs = decltype(cf);
      return launch_over_counters(args.rows, args.M, vec_ok, [&](auto cfg, auto grid,
                                                                 unsigned blocks) {
        using C = decltype(cfg);
        return launch(affine_backward_kernel<T, typename C::index, C::vec, Coefs>, blocks,
                      kThreads, 0, s, gy, x, e, gx, ge, sx, se, sn, gn, ns, cf, grid, args.M,
                      args.st);
      });
    };
    const CoefArgs& c = args.coefs;
    if (c.src == CoefSource::kReverseSde)
      return run(ReverseSdeCoefs<acc_t>{
          static_cast<const acc_t*>(c.t_t),
          SdeSpec<acc_t>{c.kind, c.predictor, c.pf, static_cast<acc_t>(c.p0),
                         static_cast<acc_t>(c.p1), static_cast<acc_t>(c.dt)}});
    return run(RowCoefs<acc_t>{static_cast<const acc_t*>(c.cx_t), static_cast<const acc_t*>(c.ce_t),
                               static_cast<const acc_t*>(c.cn_t), static_cast<acc_t>(c.cx),
                               static_cast<acc_t>(c.ce), static_cast<acc_t>(c.cn)});
  });
}

LaunchStatus launch_corrector_norms(const RowNormsArgs& args, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  return dispatch_floating(args.dtype, [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    using acc_t = typename Scalar<T>::acc;
    const T* sc = static_cast<const T*>(args.s);
    acc_t* sums = static_cast<acc_t*>(args.sums);
    const LaunchStatus st = launch_over_counters(
        args.rows, args.M, vec4_aligned<T>(sc), [&](auto cfg, auto grid, unsigned blocks) {
          using C = decltype(cfg);
          return launch(corrector_norms_kernel<T, typename C::index, C::vec>, blocks, kThreads,
                        0, s, sc, sums, grid, args.M, args.st);
        });
    if (st || args.rows == 0) return st;
    return launch(corrector_means_kernel<acc_t>, 1, kMeansThreads, 0, s, sums, args.rows,
                  static_cast<acc_t*>(args.means));
  });
}

}  // namespace cuda
}  // namespace gmk
