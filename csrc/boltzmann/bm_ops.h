// Torch-side argument handling of bm_gibbs, shared by the CPU kernel (bm.cpp) and the CUDA glue
// (bm_cuda.cpp) so both devices accept and reject the same inputs.
#pragma once

#include <ATen/ATen.h>

#include "gmk/checks.h"
#include "bm.h"

namespace gmk {

struct BmPrep {
  at::Tensor y;       // (B, D) contiguous copy of the input spins: the output, updated in place
  at::Tensor h;       // (B, D) contiguous initial fields y W + b (W symmetric: = (W y)ᵀ + b)
  at::Tensor W;       // (D, D) contiguous
  at::Tensor beta_t;  // (B,) contiguous in y's dtype, or undefined
  double beta = 1.0;
  int64_t B = 0, D = 0, n_sweeps = 0;
  int order = kBmSequential;
  PhiloxStream st{};
};

// Checks every argument (names it in the error) and computes the initial fields with one GEMM
// (at::addmm: BLAS on the CPU, cuBLAS on CUDA). The value checks (W symmetric with a zero
// diagonal, finite W and b, spins in {-1, +1}) read the tensors: one host sync on CUDA.
BmPrep bm_prepare(const char* op, const at::Tensor& y, const at::Tensor& W, const at::Tensor& b,
                  int64_t n_sweeps, const c10::optional<at::Tensor>& beta_t, double beta,
                  int64_t order, int64_t seed, int64_t offset, int64_t sample_offset);

}  // namespace gmk
