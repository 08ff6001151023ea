// Self-test of the CPU execution layer (gmk/emu/runtime.h): the semantics the kernel tests rely
// on, each with a kernel whose right answer is known. Exit status 0 when every check passes;
// python_tests/test_cuda_emu.py runs it (build/emu-cmake/test_emu_runtime).
#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

#include "gmk/cuda_kernel.cuh"

namespace {

int g_failures = 0;

void check(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++g_failures;
}

// Each thread writes its index; after the barrier, thread t reads thread (t + 1)'s value.
__global__ void neighbour_kernel(int* out) {
  __shared__ int buf[256];
  const int t = static_cast<int>(threadIdx.x);
  buf[t] = t + 1000 * static_cast<int>(blockIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + t] = buf[(t + 1) % blockDim.x];
}

// The same without the barrier: which value thread t reads depends on the schedule.
__global__ void racy_kernel(int* out) {
  __shared__ int buf[64];
  const int t = static_cast<int>(threadIdx.x);
  buf[t] = -1;
  __syncthreads();
  buf[t] = t;
  out[t] = buf[(t + 1) % blockDim.x];
}

__global__ void shuffle_kernel(int* xor_sum, int* down0, int* up) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  int v = lane;
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  xor_sum[threadIdx.x] = v;  // every lane: 0 + 1 + ... + 31 = 496
  int d = lane;
  for (int o = 16; o > 0; o /= 2) d += __shfl_down_sync(0xffffffffu, d, o);
  if (lane == 0) down0[threadIdx.x / 32] = d;  // lane 0: 496
  up[threadIdx.x] = __shfl_up_sync(0xffffffffu, lane * 10, 3);  // lane < 3: its own
}

__global__ void exit_before_shuffle_kernel(int* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
}

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 16) __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void dynamic_shared_kernel(double* out, int n) {
  GMK_EXTERN_SHARED(double, buf);
  for (int k = static_cast<int>(threadIdx.x); k < n; k += static_cast<int>(blockDim.x))
    buf[k] = k * 0.5;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0;
    for (int k = 0; k < n; ++k) s += buf[k];
    out[blockIdx.x] = s;
  }
}

__global__ void atomic_kernel(float* total) { atomicAdd(total, 1.0f); }

using gmk::cuda::launch;

void configure(uint64_t seed) {
  gmk::emu::config().schedule_seed = seed;
  gmk::emu::reseed(seed);
}

}  // namespace

int main() {
  for (const uint64_t seed : {uint64_t{0}, uint64_t{12345}}) {
    configure(seed);
    std::vector<int> out(3 * 256, -1);
    const char* e = launch(neighbour_kernel, 3, 256, 0, nullptr, out.data());
    bool ok = e == nullptr;
    for (int b = 0; b < 3; ++b)
      for (int t = 0; t < 256; ++t) ok = ok && out[b * 256 + t] == (t + 1) % 256 + 1000 * b;
    check(ok, seed ? "__syncthreads orders the block (seeded schedule)"
                   : "__syncthreads orders the block (in-order schedule)");

    std::vector<int> xs(64), d0(2), up(64);
    e = launch(shuffle_kernel, 1, 64, 0, nullptr, xs.data(), d0.data(), up.data());
    ok = e == nullptr && d0[0] == 496 && d0[1] == 496;
    for (int t = 0; t < 64; ++t) {
      const int lane = t % 32;
      ok = ok && xs[t] == 496 && up[t] == (lane < 3 ? lane : lane - 3) * 10;
    }
    check(ok, "shuffles (xor butterfly, down reduction, up with the lower lanes' own values)");
  }

  // Without the barrier, the in-order schedule reads the neighbour's old value (-1: thread t+1
  // has not run yet) and some seeded schedule reads the new one: the schedules do interleave.
  std::set<std::vector<int>> seen;
  for (uint64_t seed = 0; seed < 4; ++seed) {
    configure(seed);
    std::vector<int> out(64);
    launch(racy_kernel, 1, 64, 0, nullptr, out.data());
    seen.insert(out);
  }
  check(seen.size() > 1, "a missing __syncthreads gives schedule-dependent results");

  configure(0);
  std::vector<int> out(32);
  const char* e = launch(exit_before_shuffle_kernel, 1, 32, 0, nullptr, out.data());
  check(e != nullptr && std::strstr(e, "exited"), "a shuffle with an exited lane is an error");
  e = launch(divergent_barrier_kernel, 1, 32, 0, nullptr, out.data());
  check(e != nullptr, "a __syncthreads reached by part of the block is an error");
  e = launch(neighbour_kernel, 1, 2048, 0, nullptr, out.data());
  check(e != nullptr, "a block of more than 1024 threads is a launch error");
  e = launch(neighbour_kernel, 0, 32, 0, nullptr, out.data());
  check(e != nullptr, "an empty grid is a launch error");

  std::vector<double> sums(4);
  e = launch(dynamic_shared_kernel, 4, 64, 1000 * sizeof(double), nullptr, sums.data(), 1000);
  check(e == nullptr && sums[3] == 0.5 * 999 * 1000 / 2, "dynamic shared memory of the launch's size");
  e = launch(dynamic_shared_kernel, 1, 64, 49 * 1024, nullptr, sums.data(), 10);
  check(e != nullptr, "more than 48 KiB of dynamic shared memory is a launch error");

  float total = 0;
  e = launch(atomic_kernel, 5, 96, 0, nullptr, &total);
  check(e == nullptr && total == 480.0f, "atomicAdd over every thread of the grid");

  gmk::emu::config().sm_count = 3;
  unsigned blocks = 0;
  gmk::cuda::grid_blocks(1 << 20, &blocks);
  check(blocks == 24, "grid_blocks sees the configured SM count (3 SMs x 8 blocks)");

  const __half h = __float2half_rn(1.0f + 1.0f / 2048);  // a tie: rounds to even (1.0)
  const __nv_bfloat16 b = __float2bfloat16_rn(1.0f + 3.0f / 256);  // a tie: rounds up to even
  check(__half2float(h) == 1.0f && __bfloat162float(b) == 1.015625f,
        "half / bfloat16 conversions round to nearest even");

  std::printf("%d failed\n", g_failures);
  return g_failures ? 1 : 0;
}
