// CUDA kernel of bm_gibbs (docs/spec.md §2.2): sequential or random-scan Gibbs sweeps of B chains of a
// fully connected +-1 Boltzmann machine. Raw pointers and a cudaStream_t only; the torch side
// (checks, the initial fields by cuBLAS) is bm_cuda.cpp.
//
// One block per chain (grid-stride over chains). Every thread of the block walks the same site
// sequence and computes the same decision redundantly (the site's Philox counter, the sigmoid):
// no broadcast and no barrier is needed unless the spin flips, and then the block updates the D
// fields together, each thread a strided slice (coalesced reads of row i of W, which stays in
// L2 across the block's sites and across blocks). The fields live in shared memory when
// D * sizeof(acc) fits in 48 KiB (D <= 12288 in float32, 6144 in float64), else in the global
// scratch the glue passes. A flip costs two barriers: one so that every thread has read the old
// spin before thread 0 writes the new one, one before the next site reads the fields.
#include "bm.h"

#include "gmk/cuda_kernel.cuh"

namespace gmk {
namespace cuda {
namespace {

constexpr int64_t kSharedBytes = 48 * 1024;

// The fields' shared-memory budget: kSharedBytes, lowered in the CPU execution layer so that
// small tests take the global-scratch path too.
inline int64_t shared_limit() {
#if defined(GMK_CUDA_EMU)
  return ::gmk::emu::shared_limit(kSharedBytes);
#else
  return kSharedBytes;
#endif
}

// The word of element m of row `row` in stream ss, with a one-counter cache (consecutive
// elements share a counter four at a time).
struct WordCache {
  uint32_t g = 0xFFFFFFFFu;
  u32x4 w{0, 0, 0, 0};
  __device__ __forceinline__ uint32_t get(const PhiloxStream& ss, uint32_t m, uint32_t row) {
    const uint32_t gm = m >> 2;
    if (gm != g) {
      w = ss.words(gm, row);
      g = gm;
    }
    return bm_word(w, m & 3u);
  }
};

template <typename acc_t, bool kSharedH>
__global__ void bm_gibbs_kernel(acc_t* __restrict__ y, acc_t* __restrict__ hg,
                                const acc_t* __restrict__ W, const acc_t* __restrict__ beta_t,
                                acc_t beta, int64_t B, int64_t D, int64_t n_sweeps, int order,
                                PhiloxStream st) {
  GMK_EXTERN_SHARED(unsigned char, smem);
  const int tid = threadIdx.x;
  const int nt = blockDim.x;
  const uint32_t Du = static_cast<uint32_t>(D);
  for (int64_t c = blockIdx.x; c < B; c += gridDim.x) {
    acc_t* yc = y + c * D;
    acc_t* h = kSharedH ? reinterpret_cast<acc_t*>(smem) : hg + c * D;
    if (kSharedH) {
      __syncthreads();  // the previous chain's last reads of the shared fields are done
      for (int64_t k = tid; k < D; k += nt) h[k] = hg[c * D + k];
    }
    __syncthreads();
    const acc_t bc = beta_t ? beta_t[c] : beta;
    const uint32_t row = static_cast<uint32_t>(c);
    for (int64_t s = 0; s < n_sweeps; ++s) {
      const PhiloxStream ss = bm_sweep_stream(st, static_cast<uint64_t>(s));
      WordCache acc_words, site_words;
      for (uint32_t j = 0; j < Du; ++j) {
        const uint32_t i =
            order == kBmRandom ? bm_site(site_words.get(ss, Du + j, row), Du) : j;
        const acc_t yn = bm_new_spin<acc_t>(acc_words.get(ss, j, row), h[i], bc);
        if (yn != yc[i]) {  // the same outcome in every thread of the block
          __syncthreads();
          if (tid == 0) yc[i] = yn;
          const acc_t sc = acc_t(2) * yn;
          const acc_t* wi = W + static_cast<int64_t>(i) * D;
          for (int64_t k = tid; k < D; k += nt) h[k] += sc * wi[k];
          __syncthreads();
        }
      }
    }
  }
}

int threads_for(int64_t D) {
  int64_t t = 32;
  while (t < 256 && t * 4 < D) t *= 2;  // about four fields per thread, 32..256 threads
  return static_cast<int>(t);
}

template <typename acc_t>
LaunchStatus launch_typed(const BmArgs& a, cudaStream_t stream) {
  if (a.B == 0 || a.D == 0 || a.n_sweeps == 0) return nullptr;
  const int64_t max_blocks = 2147483647;
  const unsigned blocks = static_cast<unsigned>(a.B < max_blocks ? a.B : max_blocks);
  const int threads = threads_for(a.D);
  const int64_t shared = a.D * static_cast<int64_t>(sizeof(acc_t));
  acc_t* y = static_cast<acc_t*>(a.y);
  acc_t* h = static_cast<acc_t*>(a.h);
  const acc_t* W = static_cast<const acc_t*>(a.W);
  const acc_t* bt = static_cast<const acc_t*>(a.beta_t);
  if (shared <= shared_limit())
    return launch(bm_gibbs_kernel<acc_t, true>, blocks, threads, static_cast<size_t>(shared),
                  stream, y, h, W, bt, static_cast<acc_t>(a.beta), a.B, a.D, a.n_sweeps, a.order,
                  a.st);
  return launch(bm_gibbs_kernel<acc_t, false>, blocks, threads, 0, stream, y, h, W, bt,
                static_cast<acc_t>(a.beta), a.B, a.D, a.n_sweeps, a.order, a.st);
}

}  // namespace

LaunchStatus launch_bm_gibbs(const BmArgs& args, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (args.dtype) {
    case DType::kFloat32: return launch_typed<float>(args, s);
    case DType::kFloat64: return launch_typed<double>(args, s);
    default: return "bm_gibbs: unsupported dtype (expected float32 or float64)";
  }
}

}  // namespace cuda
}  // namespace gmk
