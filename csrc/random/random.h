// The random family: fill ops over the Philox stream (SPEC §0). The per-counter math (Philox,
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

// Fill a contiguous rows x M tensor (`out`) with draws from the stream (random.cu).
// kUint32 writes int64 words; the others write `dtype`.
void launch_random_fill(Draw draw, DType dtype, void* out, int64_t rows, int64_t M,
                        PhiloxStream st, void* stream);
// out[e] = u[e] < p[e] ? 1 : 0, both contiguous rows x M in `dtype` (random.cu).
void launch_bernoulli(DType dtype, const void* p, void* out, int64_t rows, int64_t M,
                      PhiloxStream st, void* stream);

}  // namespace cuda
}  // namespace gmk
