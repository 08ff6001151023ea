// Device-side helpers shared by the families' .cu kernels: storage <-> compute conversions,
// 4-element vector access, the counter grid of docs/spec.md §0, grid sizing and error reporting.
// Included only by .cu files; no torch headers (ARCHITECTURE: kernels know nothing of torch).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "gmk/launch.h"
#include "gmk/macros.h"
#include "gmk/philox.h"

// GMK_PLANT: a deliberate bug in one kernel, defined only by the emulation tests' "planted"
// builds (CMakeLists.txt, GMK_BUILD_CUDA_EMU), which python_tests/test_cuda_emu.py must catch.
// 0 everywhere else: the shipped kernels are clean.
#ifndef GMK_PLANT
#define GMK_PLANT 0
#endif

namespace gmk {
namespace cuda {

// ---------------------------------------------------------------------------------------------
// Storage type T <-> compute type acc. Half types compute in float, float64 in double (as the
// CPU kernels' at::opmath_type). The conversions are spelled with intrinsics because torch
// compiles .cu files with __CUDA_NO_HALF_CONVERSIONS__ / __CUDA_NO_BFLOAT16_CONVERSIONS__,
// which remove the implicit ones; __float2half_rn / __float2bfloat16_rn round to nearest even
// like c10::Half / c10::BFloat16 on the CPU.
template <typename T>
struct Scalar;

template <>
struct Scalar<float> {
  using acc = float;
  static __device__ __forceinline__ acc load(float v) { return v; }
  static __device__ __forceinline__ float store(acc v) { return v; }
};
template <>
struct Scalar<double> {
  using acc = double;
  static __device__ __forceinline__ acc load(double v) { return v; }
  static __device__ __forceinline__ double store(acc v) { return v; }
};
template <>
struct Scalar<__half> {
  using acc = float;
  static __device__ __forceinline__ acc load(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half store(acc v) { return __float2half_rn(v); }
};
template <>
struct Scalar<__nv_bfloat16> {
  using acc = float;
  static __device__ __forceinline__ acc load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 store(acc v) { return __float2bfloat16_rn(v); }
};
// Raw Philox words travel in int64 (torch has no uint32 arithmetic dtype worth using).
template <>
struct Scalar<int64_t> {
  using acc = int64_t;
  static __device__ __forceinline__ acc load(int64_t v) { return v; }
  static __device__ __forceinline__ int64_t store(acc v) { return v; }
};

// Calls f(Tag<T>{}) with the storage type of a floating DType; null on success, else the
// message of an unsupported dtype. A tag rather than a value of T: __half has no constexpr
// default constructor in every toolkit.
template <typename T>
struct Tag {
  using type = T;
};

template <typename F>
const char* dispatch_floating(DType dtype, const F& f) {
  switch (dtype) {
    case DType::kFloat32: return f(Tag<float>{});
    case DType::kFloat64: return f(Tag<double>{});
    case DType::kFloat16: return f(Tag<__half>{});
    case DType::kBFloat16: return f(Tag<__nv_bfloat16>{});
    default: return "unsupported dtype (expected float32, float64, float16 or bfloat16)";
  }
}

// ---------------------------------------------------------------------------------------------
// The four elements of one counter as one memory access (16 B for float, 8 B for half types;
// two 16 B accesses for 8-byte types). Used only when a row's length is a multiple of 4 and
// every pointer is aligned to the vector, so that each counter's elements are whole vectors.
template <typename T>
struct alignas(4 * sizeof(T) > 16 ? 16 : 4 * sizeof(T)) Vec4 {
  T v[4];
};

template <typename T>
inline bool vec4_aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % alignof(Vec4<T>) == 0;
}

template <typename acc_t>
GMK_HD_INLINE acc_t quad_get(const Quad<acc_t>& q, int j) {
  // Called with j a compile-time constant from an unrolled loop: folds to one field.
  return j == 0 ? q.v0 : (j == 1 ? q.v1 : (j == 2 ? q.v2 : q.v3));
}

// ---------------------------------------------------------------------------------------------
// The counter grid (docs/spec.md §0): a rows x M stream has G = ceil(M / 4) counters per row, and
// thread work item t in [0, rows * G) is counter (g = t % G, row r = t / G), covering the
// elements r * M + 4g .. r * M + 4g + min(4, M - 4g) - 1. Adjacent threads take adjacent
// counters of a row, so their 4-element chunks are adjacent in memory (coalesced).
//
// index_t is uint32_t when every index and the grid-stride step fit in 31 bits (the common
// case: a 64-bit division costs dozens of instructions, a 32-bit one a few), else uint64_t.
template <typename index_t>
struct CounterGrid {
  index_t total;  // rows * G
  index_t G;      // counters per row

  __device__ __forceinline__ void split(index_t t, index_t* r, index_t* g) const {
    *r = t / G;
    *g = t - *r * G;
  }
};

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n work items: enough to fill every SM (8 resident blocks
// of 256 threads = 2048 threads, the per-SM limit on sm_80 and sm_90), never more than needed.
inline cudaError_t grid_blocks(int64_t n, unsigned* blocks) {
  int dev = 0, sms = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  const int64_t need = (n + kThreads - 1) / kThreads;
  const int64_t cap = static_cast<int64_t>(sms > 0 ? sms : 1) * (2048 / kThreads);
  *blocks = static_cast<unsigned>(need < cap ? need : cap);
  return cudaSuccess;
}

// Largest work count for the 32-bit index path: t + stride must not wrap (stride < 2^31).
constexpr int64_t kMax32 = (int64_t{1} << 31) - 1;

// Launcher result convention (see gmk/launch.h): null, or cudaGetErrorString's static text.
inline const char* status_of(cudaError_t e) {
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

// After a launch: a launch-configuration error, or a sticky error of an earlier kernel.
inline const char* last_launch_status() { return status_of(cudaGetLastError()); }

// The one kernel launch of every launcher: kernel<<<grid, block, smem_bytes, stream>>>(args...)
// followed by the check of cudaGetLastError (a bad configuration, or a sticky fault of an earlier
// kernel, surfaces at this op's call). In the CPU execution layer (GMK_CUDA_EMU, gmk/emu/) the
// same call runs the grid on the host, one block at a time, its threads as fibers.
template <typename... P, typename... A>
inline LaunchStatus launch(void (*kernel)(P...), unsigned grid, unsigned block, size_t smem_bytes,
                           cudaStream_t stream, A&&... args) {
#if defined(GMK_CUDA_EMU)
  return ::gmk::emu::launch_kernel(kernel, grid, block, smem_bytes, stream,
                                   std::forward<A>(args)...);
#else
  kernel<<<grid, block, smem_bytes, stream>>>(std::forward<A>(args)...);
  return last_launch_status();
#endif
}

// The dynamic (extern) shared memory of a kernel, as a T* named `name`: `extern __shared__`
// under nvcc; in the CPU execution layer a per-block buffer of exactly the launch's smem_bytes
// (so that AddressSanitizer sees a read or write past it).
#if defined(GMK_CUDA_EMU)
#define GMK_EXTERN_SHARED(T, name) T* name = ::gmk::emu::dynamic_shared<T>()
#else
#define GMK_EXTERN_SHARED(T, name) extern __shared__ __align__(16) T name[]
#endif

// The largest work count of the 32-bit index path. kMax32 on a GPU; the CPU execution layer
// lowers it (gmk_emu_configure) so that small tests take the 64-bit path too.
inline int64_t index32_limit() {
#if defined(GMK_CUDA_EMU)
  return ::gmk::emu::index32_limit(kMax32);
#else
  return kMax32;
#endif
}


// Shape decisions shared by every counter-grid launcher: the index width (32-bit when it
// fits), and the vector path (vec_ok: the caller's pointers are aligned to Vec4<T>; it also
// needs M % 4 == 0 so that no counter straddles two rows). Calls
// launch(Config<kVec, index_t>{}, CounterGrid<index_t>, blocks) once and returns its status (the
// callback's gmk::cuda::launch).
template <bool kVec, typename index_t>
struct Config {
  static constexpr bool vec = kVec;
  using index = index_t;
};

template <typename L>
LaunchStatus launch_over_counters(int64_t rows, int64_t M, bool vec_ok, const L& launch) {
  if (rows == 0 || M == 0) return nullptr;  // nothing to do, and a 0-block launch is an error
  const int64_t G = (M + 3) / 4;
  const int64_t total = rows * G;  // <= numel, so it fits in int64
  unsigned blocks = 0;
  if (const LaunchStatus s = status_of(grid_blocks(total, &blocks))) return s;
  const bool vec = vec_ok && M % 4 == 0;
  if (total <= index32_limit()) {
    const CounterGrid<uint32_t> grid{static_cast<uint32_t>(total), static_cast<uint32_t>(G)};
    return vec ? launch(Config<true, uint32_t>{}, grid, blocks)
               : launch(Config<false, uint32_t>{}, grid, blocks);
  }
  const CounterGrid<uint64_t> grid{static_cast<uint64_t>(total), static_cast<uint64_t>(G)};
  return vec ? launch(Config<true, uint64_t>{}, grid, blocks)
             : launch(Config<false, uint64_t>{}, grid, blocks);
}

}  // namespace cuda
}  // namespace gmk
