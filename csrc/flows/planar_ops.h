// Torch-side argument handling of the planar flow, shared by the CPU kernels (planar.cpp) and
// the CUDA glue (planar_cuda.cpp) so that both accept and reject the same inputs.
#pragma once

#include <ATen/ATen.h>

#include "planar.h"

namespace gmk {

// Inputs of planar_flow / planar_flow_backward, checked and made contiguous.
struct PlanarPrep {
  at::Tensor z, u, w, b;   // contiguous
  at::Tensor gy, gl;       // backward only: grad_out (B, D) and grad_logdet (B,), or undefined
  int64_t B = 0, K = 0, D = 0;
  bool per_sample = false;
};

PlanarPrep planar_prepare(const char* op, const at::Tensor& z, const at::Tensor& u_hat,
                          const at::Tensor& w, const at::Tensor& b);

// Also checks grad_out (B, D) and grad_logdet (B,), either of which may be absent (zero).
PlanarPrep planar_backward_prepare(const char* op, const c10::optional<at::Tensor>& grad_out,
                                   const c10::optional<at::Tensor>& grad_logdet,
                                   const at::Tensor& z, const at::Tensor& u_hat,
                                   const at::Tensor& w, const at::Tensor& b);

}  // namespace gmk
