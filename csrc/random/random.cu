// CUDA kernels of the random family (docs/spec.md §0): fills of the Philox stream and Bernoulli draws.
// Raw pointers and a cudaStream_t only; the torch side is random_cuda.cpp.
//
// One thread per Philox counter: thread t of the counter grid (gmk/cuda_kernel.cuh) computes
// the four words of counter (g, r + sample_offset, lo32(offset), hi32(offset)) and writes
// elements 4g..4g+3 of row r, exactly the elements the CPU kernel gives that counter, so both
// backends write the same words and, through the same philox.h functions, the same floats up
// to the last ulps of FMA contraction.
#include "random.h"

#include "gmk/cuda_kernel.cuh"

namespace gmk {
namespace cuda {
namespace {

// The draws of one counter, in the compute type (the per-counter math lives in philox.h).
// Significand bits of a stored type: a uniform stored in float16 / bfloat16 is clamped below 1
// (philox.h uniform_top), so round-to-nearest never gives 1.0; float32 / float64 are unchanged.
template <typename T>
constexpr int kDigits = 24;
template <>
constexpr int kDigits<__half> = 11;
template <>
constexpr int kDigits<__nv_bfloat16> = 8;

template <typename T>
struct UniformOp {
  using acc_t = typename Scalar<T>::acc;
  __device__ __forceinline__ Quad<acc_t> operator()(u32x4 w) const {
    return uniforms4_below<acc_t>(w, static_cast<acc_t>(uniform_top(kDigits<T>)));
  }
};
template <typename acc_t>
struct NormalOp {
  __device__ __forceinline__ Quad<acc_t> operator()(u32x4 w) const { return normals4<acc_t>(w); }
};
template <typename acc_t>
struct RademacherOp {
  __device__ __forceinline__ Quad<acc_t> operator()(u32x4 w) const {
    return rademachers4<acc_t>(w);
  }
};
struct WordOp {
  __device__ __forceinline__ Quad<int64_t> operator()(u32x4 w) const {
    return Quad<int64_t>{w.x, w.y, w.z, w.w};
  }
};

// kVec: M % 4 == 0 and `out` aligned to Vec4<T>, so each counter's four elements are one
// vector store; otherwise element stores, and the last counter of a row may own fewer than 4.
template <typename T, typename index_t, bool kVec, typename DrawOp>
__global__ void __launch_bounds__(kThreads)
    fill_kernel(T* __restrict__ out, CounterGrid<index_t> grid, int64_t M, PhiloxStream st,
                DrawOp draw) {
  using S = Scalar<T>;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t t = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < grid.total;
       t += stride) {
    index_t r, g;
    grid.split(t, &r, &g);
    const auto q = draw(st.words(static_cast<uint32_t>(g), static_cast<uint32_t>(r)));
    const int64_t e0 = static_cast<int64_t>(r) * M + 4 * static_cast<int64_t>(g);
    if (kVec) {
      Vec4<T> v;
#pragma unroll
      for (int j = 0; j < 4; ++j) v.v[j] = S::store(quad_get(q, j));
      *reinterpret_cast<Vec4<T>*>(out + e0) = v;
    } else {
      const int64_t n = M - 4 * static_cast<int64_t>(g);  // elements left in the row (>= 1)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (j < n + (GMK_PLANT == 1)) out[e0 + j] = S::store(quad_get(q, j));
    }
  }
}

// out = 1 where the element's uniform is below p, else 0 (in T, like the CPU kernel).
template <typename T, typename index_t, bool kVec>
__global__ void __launch_bounds__(kThreads)
    bernoulli_kernel(const T* __restrict__ p, T* __restrict__ out, CounterGrid<index_t> grid,
                     int64_t M, PhiloxStream st) {
  using S = Scalar<T>;
  using acc_t = typename S::acc;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t t = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < grid.total;
       t += stride) {
    index_t r, g;
    grid.split(t, &r, &g);
    const u32x4 w = st.words(static_cast<uint32_t>(g), static_cast<uint32_t>(r));
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
    const int64_t e0 = static_cast<int64_t>(r) * M + 4 * static_cast<int64_t>(g);
    if (kVec) {
      const Vec4<T> pv = *reinterpret_cast<const Vec4<T>*>(p + e0);
      Vec4<T> v;
#pragma unroll
      for (int j = 0; j < 4; ++j)
        v.v[j] = S::store(static_cast<acc_t>(
            bernoulli_from_word(words[j], static_cast<acc_t>(S::load(pv.v[j])))));
      *reinterpret_cast<Vec4<T>*>(out + e0) = v;
    } else {
      const int64_t n = M - 4 * static_cast<int64_t>(g);
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (j < n)
          out[e0 + j] = S::store(static_cast<acc_t>(
              bernoulli_from_word(words[j], static_cast<acc_t>(S::load(p[e0 + j])))));
    }
  }
}

template <typename T, typename DrawOp>
LaunchStatus fill_typed(void* out_v, int64_t rows, int64_t M, const PhiloxStream& st,
                        cudaStream_t stream) {
  T* out = static_cast<T*>(out_v);
  return launch_over_counters(rows, M, vec4_aligned<T>(out), [&](auto cfg, auto grid,
                                                                  unsigned blocks) {
    using C = decltype(cfg);
    return launch(fill_kernel<T, typename C::index, C::vec, DrawOp>, blocks, kThreads, 0, stream,
                  out, grid, M, st, DrawOp{});
  });
}

}  // namespace

LaunchStatus launch_random_fill(Draw draw, DType dtype, void* out, int64_t rows, int64_t M,
                                PhiloxStream st, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (draw == Draw::kUint32) {
    if (dtype != DType::kInt64) return "uint32 words are written as int64; out must be int64";
    return fill_typed<int64_t, WordOp>(out, rows, M, st, s);
  }
  return dispatch_floating(dtype, [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    using acc_t = typename Scalar<T>::acc;
    switch (draw) {
      case Draw::kUniform: return fill_typed<T, UniformOp<T>>(out, rows, M, st, s);
      case Draw::kNormal: return fill_typed<T, NormalOp<acc_t>>(out, rows, M, st, s);
      case Draw::kRademacher: return fill_typed<T, RademacherOp<acc_t>>(out, rows, M, st, s);
      default: return "unknown draw kind";
    }
  });
}

LaunchStatus launch_bernoulli(DType dtype, const void* p, void* out, int64_t rows, int64_t M,
                              PhiloxStream st, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  return dispatch_floating(dtype, [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    const T* pt = static_cast<const T*>(p);
    T* ot = static_cast<T*>(out);
    const bool vec_ok = vec4_aligned<T>(pt) && vec4_aligned<T>(ot);
    return launch_over_counters(rows, M, vec_ok, [&](auto cfg, auto grid, unsigned blocks) {
      using C = decltype(cfg);
      return launch(bernoulli_kernel<T, typename C::index, C::vec>, blocks, kThreads, 0, s, pt, ot,
                    grid, M, st);
    });
  });
}

}  // namespace cuda
}  // namespace gmk
