// The cost of one barrier of the CPU execution layer (gmk/emu/runtime.h), against one OS thread
// per CUDA thread (std::barrier-like, a mutex and a condition variable), for a block of 256
// threads crossing `rounds` __syncthreads. Prints microseconds per thread-barrier (one thread
// crossing one barrier). Built by CMake with GMK_BUILD_CUDA_EMU:
//   build/emu-cmake/bench_fibers
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "gmk/emu/runtime.h"

namespace {

constexpr int kThreads = 256;
constexpr int kRounds = 200;

int g_sink[kThreads];

void fiber_body(void*) {
  for (int r = 0; r < kRounds; ++r) {
    g_sink[threadIdx.x] += r;
    __syncthreads();
  }
}

struct Barrier {
  std::mutex m;
  std::condition_variable cv;
  int count = 0, phase = 0;
  void wait() {
    std::unique_lock<std::mutex> lock(m);
    const int p = phase;
    if (++count == kThreads) {
      count = 0;
      ++phase;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return phase != p; });
    }
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
  const auto t0 = std::chrono::steady_clock::now();
  const char* err = gmk::emu::run_grid(1, kThreads, 0, &fiber_body, nullptr);
  const double fib = seconds_since(t0);
  if (err) {
    std::printf("fibers failed: %s\n", err);
    return 1;
  }
  Barrier bar;
  const auto t1 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i)
    ts.emplace_back([&, i] {
      for (int r = 0; r < kRounds; ++r) {
        g_sink[i] += r;
        bar.wait();
      }
    });
  for (auto& t : ts) t.join();
  const double thr = seconds_since(t1);
  const double per = 1e6 / (static_cast<double>(kThreads) * kRounds);
  std::printf("block of %d threads, %d barriers\n", kThreads, kRounds);
  std::printf("fibers (ucontext):       %.3f us per thread-barrier\n", fib * per);
  std::printf("one OS thread each:      %.3f us per thread-barrier\n", thr * per);
  return g_sink[0] == 2 * (kRounds * (kRounds - 1) / 2) ? 0 : 2;
}
