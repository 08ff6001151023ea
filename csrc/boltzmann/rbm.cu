// CUDA kernel of the RBM fused pass (rbm.h): bias add, beta, sigmoid and Bernoulli draw over a
// GEMM output (cuBLAS, called by the glue). Raw pointers and a cudaStream_t only; the torch side
// is rbm_cuda.cpp.
//
// One thread per Philox counter (gmk/cuda_kernel.cuh): thread t owns elements 4g..4g+3 of row
// r and the four uniforms of counter (g, r + sample_offset, ...), so its draws are the CPU
// kernel's draws for those elements, and the per-element math is the same rbm_sample_prob.
#include "rbm.h"

#include "gmk/cuda_kernel.cuh"

namespace gmk {
namespace cuda {
namespace {

// No __restrict__ on pre and prob: the last step writes the probabilities over the GEMM
// output (each element is read, then written, by the same thread).
template <typename T, typename index_t, bool kVec>
__global__ void __launch_bounds__(kThreads)
    rbm_pass_kernel(const T* pre, const T* __restrict__ bias, const T* __restrict__ base,
                    const T* __restrict__ beta_t, T beta, T* sample, T* prob,
                    CounterGrid<index_t> grid, int64_t M, PhiloxStream st) {
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t t = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < grid.total;
       t += stride) {
    index_t r, gi;
    grid.split(t, &r, &gi);
    const Quad<T> u = uniforms4<T>(st.words(static_cast<uint32_t>(gi), static_cast<uint32_t>(r)));
    const T br = beta_t ? beta_t[r] : beta;
    const int64_t m0 = 4 * static_cast<int64_t>(gi);
    const int64_t e0 = static_cast<int64_t>(r) * M + m0;
    if (kVec) {
      const Vec4<T> pv = *reinterpret_cast<const Vec4<T>*>(pre + e0);
      Vec4<T> sv, qv;
#pragma unroll
      for (int j = 0; j < 4; ++j)
        sv.v[j] = rbm_sample_prob<T>(pv.v[j], bias[m0 + j], br, base ? base[m0 + j] : T(0),
                                     quad_get(u, j), &qv.v[j]);
      *reinterpret_cast<Vec4<T>*>(sample + e0) = sv;
      if (prob) *reinterpret_cast<Vec4<T>*>(prob + e0) = qv;
    } else {
      const int64_t n = M - m0;  // elements left in the row (>= 1)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (j < n) {
          T q;
          sample[e0 + j] = rbm_sample_prob<T>(pre[e0 + j], bias[m0 + j], br,
                                              base ? base[m0 + j] : T(0), quad_get(u, j), &q);
          if (prob) prob[e0 + j] = q;
        }
    }
  }
}

}  // namespace

LaunchStatus launch_rbm_pass(const RbmPassArgs& args, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  auto run = [&](auto tag) -> LaunchStatus {
    using T = typename decltype(tag)::type;
    const T* pre = static_cast<const T*>(args.pre);
    T* sample = static_cast<T*>(args.sample);
    T* prob = static_cast<T*>(args.prob);
    const bool vec_ok = vec4_aligned<T>(pre) && vec4_aligned<T>(sample) &&
                        (prob == nullptr || vec4_aligned<T>(prob));
    return launch_over_counters(args.rows, args.M, vec_ok, [&](auto cfg, auto grid,
                                                               unsigned blocks) {
      using C = decltype(cfg);
      return launch(
          rbm_pass_kernel<T, typename C::index, C::vec>, blocks, kThreads, 0, s, pre, static_cast<const T*>(args.bias), static_cast<const T*>(args.base),
          static_cast<const T*>(args.beta_t), static_cast<T>(args.beta), sample, prob, grid,
          args.M, args.st);
    });
  };
  switch (args.dtype) {
    case DType::kFloat32: return run(Tag<float>{});
    case DType::kFloat64: return run(Tag<double>{});
    default: return "rbm: unsupported dtype (expected float32 or float64)";
  }
}

}  // namespace cuda
}  // namespace gmk
