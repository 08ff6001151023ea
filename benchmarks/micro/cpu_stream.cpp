// Single-thread micro-benchmark of the CPU noise driver (csrc/include/gmk/cpu_stream.h) without
// torch: it times gmk::cpu::for_each_draw writing normals (or uniforms) into a buffer, so the
// Philox and Box-Muller stages can be timed and instruction-counted apart from the ops.
//
//   g++ -O3 -std=c++17 -fno-math-errno -fno-trapping-math -fopenmp-simd -I../../csrc/include \
//       -DDRAW='gmk::cpu::NormalDraw<float>' cpu_stream.cpp -o cpu_stream
//   ./cpu_stream 1024 4096      # rows, row length: ns per element, 3 repetitions
//   valgrind --tool=callgrind ./cpu_stream 256 4096   # instructions per element (load-independent)
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

// Stand-in for ATen's parallel_for: one thread, so the numbers are per core.
namespace at {
template <class F>
void parallel_for(int64_t b, int64_t e, int64_t, const F& f) {
  f(b, e);
}
}  // namespace at
#define GMK_NO_ATEN
#include "gmk/cpu_stream.h"

#ifndef DRAW
#define DRAW gmk::cpu::NormalDraw<float>
#endif

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ROWS ROW_LENGTH\n", argv[0]);
    return 2;
  }
  const int64_t rows = std::atoll(argv[1]), M = std::atoll(argv[2]);
  std::vector<float> out(rows * M);
  const gmk::PhiloxStream st = gmk::make_stream(1, 0, 0);
  float* o = out.data();
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    gmk::cpu::for_each_draw<float>(rows, M, st, DRAW{},
                                   [=](int64_t r, int64_t m0, int64_t n, const float* d) {
                                     float* p = o + r * M + m0;
                                     for (int64_t i = 0; i < n; ++i) p[i] = d[i];
                                   });
    const double ms =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3;
    std::printf("%lld x %lld: %.2f ms, %.2f ns/element (1 thread; isa %s)\n", (long long)rows,
                (long long)M, ms, ms * 1e6 / double(rows * M),
                gmk::cpu::isa_name(gmk::cpu::detect_isa()));
  }
  return 0;
}
