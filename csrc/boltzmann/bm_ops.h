// Torch-side body of bm_gibbs: prepare (bm.cpp: checks, the initial fields) -> the device's run
// (bm_cpu.cpp or bm_cuda.cpp, on the prep's copy of the spins, which is the output). Written
// once here, instantiated by each device file with its Dev (`Guard`, `run(op, prep)`), so both
// devices accept and reject the same inputs.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "bm.h"
#include "gmk/checks.h"
#include "gmk/glue.h"

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
                  int64_t n_sweeps, const std::optional<at::Tensor>& beta_t, double beta,
                  int64_t order, int64_t seed, int64_t offset, int64_t sample_offset);

template <class Dev>
at::Tensor bm_gibbs(const at::Tensor& y, const at::Tensor& W, const at::Tensor& b,
                    int64_t n_sweeps, const std::optional<at::Tensor>& beta_t, double beta,
                    int64_t order, int64_t seed, int64_t offset, int64_t sample_offset) {
  const char* op = "gmkernels.bm_gibbs";
  const typename Dev::Guard guard(y.device());
  BmPrep p = bm_prepare(op, y, W, b, n_sweeps, beta_t, beta, order, seed, offset, sample_offset);
  Dev::run(op, p);
  return p.y;
}

}  // namespace gmk
