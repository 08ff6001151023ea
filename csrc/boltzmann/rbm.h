// Per-element math of the RBM ops (docs/spec.md §2.1), host and device.
// No torch headers: rbm.cu includes this with the plain CUDA toolkit.
//
// The fused pass of one block-Gibbs half-step. The GEMM (vW or hWᵀ, done by BLAS / cuBLAS)
// leaves `pre`; one pass over it then computes, per element m of row (chain) r,
//     z = beta_r * (pre + bias_m) + (1 - beta_r) * base_m      (base: AIS only, else 0)
//     p = 1 / (1 + exp(-z))
//     s = (u < p) ? 1 : 0,  u = uniform word m % 4 of counter (m / 4, r + sample_offset, offset)
// and writes s (and, on the last step, p). The CPU loop, the CUDA kernel and the Triton kernel
// all use rbm_sample_prob below (Triton mirrors it); the reference writes the same formula.
#pragma once

#include <cmath>
#include <cstdint>

#include "gmk/launch.h"
#include "gmk/macros.h"
#include "gmk/mathfn.h"
#include "gmk/philox.h"

namespace gmk {

// exp for float32 without libm, so that the CPU loop vectorizes and CPU and CUDA compute the
// same floats: gmk::exp_fast_clamped (gmk/mathfn.h), fast_expf (about 1 ulp) with the argument
// clamped to [-87, 87]; outside, exp(-z) only moves a sigmoid by less than 1e-37, and the Triton
// kernel applies the same clamp. float64: libm exp.

// The logistic function as every backend writes it: 1 / (1 + exp(-z)). For float64 a very
// negative z gives exp(-z) = inf and p = 0 (no NaN); float32 clamps inside exp_fast_clamped.
template <typename acc_t>
GMK_HD_INLINE acc_t rbm_sigmoid(acc_t z) {
  return acc_t(1) / (acc_t(1) + exp_fast_clamped(-z));
}

// One element of the fused pass: the pre-activation `pre` (a GEMM output), the unit's bias,
// the chain's beta, the base-rate bias (0 unless AIS anneals towards a base model) and the
// element's uniform. Returns p through *prob and the {0, 1} sample.
template <typename acc_t>
GMK_HD_INLINE acc_t rbm_sample_prob(acc_t pre, acc_t bias, acc_t beta, acc_t base, acc_t u,
                                    acc_t* prob) {
  const acc_t z = beta * (pre + bias) + (acc_t(1) - beta) * base;
  const acc_t p = rbm_sigmoid(z);
  *prob = p;
  return u < p ? acc_t(1) : acc_t(0);
}

namespace cuda {

// Arguments of the CUDA fused pass (rbm.cu), raw pointers in the glue's layout:
// pre (rows, M) contiguous in dtype; bias (M,) and base (M,) (base may be null) in dtype;
// beta_t (rows,) in the compute dtype (null: the scalar beta); sample (rows, M) written;
// prob (rows, M) written when non-null (it may be `pre` itself: each element is read, then
// written, by one thread).
struct RbmPassArgs {
  const void* pre;
  const void* bias;
  const void* base;
  const void* beta_t;
  double beta;
  void* sample;
  void* prob;
  int64_t rows, M;
  PhiloxStream st;
  DType dtype;  // float32 or float64
};

LaunchStatus launch_rbm_pass(const RbmPassArgs& args, void* stream);

}  // namespace cuda
}  // namespace gmk
