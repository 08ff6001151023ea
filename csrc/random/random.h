// The random family: fill ops over the Philox stream (docs/spec.md §0). The per-counter math (Philox,
// uniform, Box-Muller normals, Bernoulli, Rademacher) lives in gmk/philox.h; this header only
// names the draws and declares the CUDA launchers. No torch headers.
#pragma once

#include <cstdint>

#include "gmk/launch.h"
#include "gmk/philox.h"

namespace gmk {

// Which draw a fill op writes.
enum class Draw : int { kUint32 = 0, kUniform = 1, kNormal = 2, kRademacher = 3 };

namespace cuda {

// Launchers of random.cu. Pointers are device memory of the current device, `stream` is a
// cudaStream_t; both return a LaunchStatus (null on success, see gmk/launch.h).

// Fill a contiguous rows x M tensor (`out`) with draws from the stream.
// kUint32 writes the uint32 words into int64 (dtype must be kInt64); the others write a
// floating `dtype`.
LaunchStatus launch_random_fill(Draw draw, DType dtype, void* out, int64_t rows, int64_t M,
                                PhiloxStream st, void* stream);
// out[e] = u[e] < p[e] ? 1 : 0 (bernoulli_from_word), both contiguous rows x M in `dtype`.
LaunchStatus launch_bernoulli(DType dtype, const void* p, void* out, int64_t rows, int64_t M,
                              PhiloxStream st, void* stream);

}  // namespace cuda
}  // namespace gmk
