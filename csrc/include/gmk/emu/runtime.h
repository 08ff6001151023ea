// The CPU execution layer of the CUDA kernels (issue 12; docs/architecture.md, "The CPU execution
// layer"). Used only by the emulation build (CMake option GMK_BUILD_CUDA_EMU), which compiles the
// torch-free .cu files as C++ with -DGMK_CUDA_EMU and csrc/include/gmk/emu/shim first on the
// include path, so that their `#include <cuda_runtime.h>` (and cuda_fp16.h, cuda_bf16.h) land here.
//
// What it provides, and how:
//  - __global__ / __device__ / __host__ / __forceinline__ / __launch_bounds__ / __align__ /
//    __shared__ as host C++ (a static __shared__ array is a function-local static: blocks run one
//    at a time, so every block of a launch sees its own contents for its lifetime, and
//    AddressSanitizer puts redzones around it);
//  - threadIdx / blockIdx / blockDim / gridDim (x only; the kernels use 1-D grids);
//  - the threads of a block are cooperative fibers on one OS thread (ucontext). A thread runs
//    until it reaches a barrier: __syncthreads (all the block's threads), or a warp shuffle (the
//    32 lanes of its warp). Between barriers, the order in which the waiting threads resume is a
//    permutation drawn from the schedule seed (seed 0: in thread order), so a missing
//    __syncthreads shows up as a difference between schedules;
//  - __shfl_xor_sync / __shfl_down_sync / __shfl_up_sync with warps of 32 (full mask only: a lane
//    that has exited, or a shuffle reached by only part of a warp, is reported as an error);
//  - atomicAdd (plain adds: one OS thread runs the whole grid), blocks in a seeded order;
//  - __half / __nv_bfloat16 with the conversion intrinsics (round to nearest even, as
//    c10::Half / c10::BFloat16);
//  - cudaStream_t, cudaGetLastError / cudaGetErrorString, cudaGetDevice and
//    cudaDeviceGetAttribute(cudaDevAttrMultiProcessorCount) with a small configurable SM count (so
//    grid-stride loops take several turns), and a configurable int32/int64 index threshold.
//
// Launch errors the hardware would report (a block of more than 1024 threads, more than 48 KiB
// of dynamic shared memory, an empty grid) come back as the launcher's LaunchStatus; a kernel
// that deadlocks (threads waiting on a barrier that can never complete) does too.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

namespace gmk {
namespace emu {

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

// Per-fiber (CUDA thread) state.
struct ThreadState {
  uint3 idx;
};

// The running thread's state, and the running block's indices (set by the scheduler).
extern thread_local ThreadState* g_thread;
extern thread_local uint3 g_block_idx;
extern thread_local dim3 g_block_dim;
extern thread_local dim3 g_grid_dim;

// ---- configuration (gmk_emu_configure) ----
struct Config {
  int sm_count = 2;              // cudaDevAttrMultiProcessorCount
  int64_t index32_limit = -1;    // < 0: the kernel's own (kMax32)
  int64_t shared_limit = -1;     // < 0: the kernel's own (bm.cu's kSharedBytes)
  uint64_t schedule_seed = 0;    // 0: threads resume in order
};
Config& config();
void reseed(uint64_t seed);  // the schedule's random generator
inline int64_t index32_limit(int64_t kernel_default) {
  return config().index32_limit >= 0 ? config().index32_limit : kernel_default;
}
inline int64_t shared_limit(int64_t kernel_default) {
  return config().shared_limit >= 0 ? config().shared_limit : kernel_default;
}

// ---- barriers and shuffles (runtime.cpp) ----
void syncthreads();
// Exchanges 8 bytes through the warp: every lane deposits `mine`, waits for the whole warp, and
// gets lane `src`'s deposit (its own when src is outside the warp).
uint64_t warp_exchange(uint64_t mine, int src_lane);
inline int lane_id() { return static_cast<int>(g_thread->idx.x % 32u); }

template <typename T>
inline T shfl_from(T v, int src) {
  static_assert(sizeof(T) <= 8, "shuffles of up to 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const uint64_t got = warp_exchange(bits, src);
  T out;
  std::memcpy(&out, &got, sizeof(T));
  return out;
}

// Dynamic shared memory of the running block (exactly the launch's smem_bytes, 16-aligned).
void* dynamic_shared_raw();
template <typename T>
inline T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_raw());
}

// ---- the launch ----
// Runs body(ctx) as every thread of a grid x block launch; null, or an error message.
const char* run_grid(unsigned grid, unsigned block, size_t smem_bytes, void (*body)(void*),
                     void* ctx);

template <typename F>
void call_body(void* f) {
  (*static_cast<F*>(f))();
}

template <typename... P, typename... A>
const char* launch_kernel(void (*kernel)(P...), unsigned grid, unsigned block, size_t smem_bytes,
                          void* /*stream*/, A&&... args) {
  // Every thread gets its own copies of the arguments, as kernel parameters are.
  auto body = [&]() { kernel(static_cast<P>(args)...); };
  return run_grid(grid, block, smem_bytes, &call_body<decltype(body)>, &body);
}

// ---- half types ----
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

inline float half_to_float(Half h) {
  _Float16 v;
  std::memcpy(&v, &h.bits, 2);
  return static_cast<float>(v);
}
inline Half float_to_half_rn(float f) {
  const _Float16 v = static_cast<_Float16>(f);  // IEEE round to nearest even (libgcc)
  Half h;
  std::memcpy(&h.bits, &v, 2);
  return h;
}
inline float bf16_to_float(BFloat16 b) {
  const uint32_t u = static_cast<uint32_t>(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline BFloat16 float_to_bf16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  BFloat16 b;
  if (std::isnan(f)) {
    b.bits = 0x7FC0;
  } else {
    u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest even, as c10::BFloat16
    b.bits = static_cast<uint16_t>(u >> 16);
  }
  return b;
}

}  // namespace emu
}  // namespace gmk

// ---- the CUDA spelling ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

using dim3 = ::gmk::emu::dim3;
using uint3 = ::gmk::emu::uint3;
#define threadIdx (::gmk::emu::g_thread->idx)
#define blockIdx (::gmk::emu::g_block_idx)
#define blockDim (::gmk::emu::g_block_dim)
#define gridDim (::gmk::emu::g_grid_dim)

inline void __syncthreads() { ::gmk::emu::syncthreads(); }

template <typename T>
inline T __shfl_xor_sync(unsigned /*mask*/, T v, int lane_mask) {
  return ::gmk::emu::shfl_from(v, ::gmk::emu::lane_id() ^ lane_mask);
}
template <typename T>
inline T __shfl_down_sync(unsigned /*mask*/, T v, unsigned delta) {
  // A source past the warp's last lane gives the caller's own value (as on the GPU).
  const int src = ::gmk::emu::lane_id() + static_cast<int>(delta);
  return ::gmk::emu::shfl_from(v, src < 32 ? src : -1);
}
template <typename T>
inline T __shfl_up_sync(unsigned /*mask*/, T v, unsigned delta) {
  const int src = ::gmk::emu::lane_id() - static_cast<int>(delta);
  return ::gmk::emu::shfl_from(v, src);
}

template <typename T>
inline T atomicAdd(T* address, T v) {
  const T old = *address;
  *address = old + v;
  return old;
}

inline unsigned __float_as_uint(float f) { return __builtin_bit_cast(unsigned, f); }
inline float __uint_as_float(unsigned u) { return __builtin_bit_cast(float, u); }
inline long long __double_as_longlong(double d) { return __builtin_bit_cast(long long, d); }
inline double __longlong_as_double(long long u) { return __builtin_bit_cast(double, u); }

using __half = ::gmk::emu::Half;
using __nv_bfloat16 = ::gmk::emu::BFloat16;
inline float __half2float(__half h) { return ::gmk::emu::half_to_float(h); }
inline __half __float2half_rn(float f) { return ::gmk::emu::float_to_half_rn(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return ::gmk::emu::bf16_to_float(b); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return ::gmk::emu::float_to_bf16_rn(f); }

// ---- the runtime API the launchers call ----
struct CUstream_st;
using cudaStream_t = CUstream_st*;
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorLaunchFailure = 719,
  cudaErrorInvalidConfiguration = 9,
};
using cudaError = cudaError_t;
enum cudaDeviceAttr : int { cudaDevAttrMultiProcessorCount = 16 };

cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetDevice(int* dev);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int dev);
