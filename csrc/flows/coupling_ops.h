// Torch-side argument handling of the affine coupling ops, shared by the CPU kernels
// (coupling.cpp) and the CUDA glue (coupling_cuda.cpp) so both check and lay out their inputs
// the same way.
#pragma once

#include <ATen/ATen.h>

#include "coupling.h"

namespace gmk {

// Inputs of affine_coupling(_backward), checked and laid out for the kernels.
struct CouplingPrep {
  at::Tensor x, s, t;          // contiguous, x's shape and dtype
  at::Tensor gy, gld;          // backward only: contiguous grad of y, (rows,) grad of logdet
  at::Tensor mask;             // mask_dtype (nonzero = pass), M or rows*M elements, contiguous
  int64_t mask_row_stride = 0; // 0: one pattern for every row; M: a mask per row
  int64_t rows = 0, M = 0;
  int scale = 0;
  bool inverse = false, clamp_on = false;
  double clamp = 0.0;
};

// Checks x, s, t, mask, scale and clamp (errors name the argument) and builds the prep.
// mask_dtype: the kernels' mask element type. The CPU loops read int32 (a uint8 mask next to
// float data made GCC pick 128-bit vectors for the whole loop, half the AVX2 width); the CUDA
// kernels read bytes.
CouplingPrep coupling_prepare(const char* op, const at::Tensor& x, const at::Tensor& s,
                              const at::Tensor& t, const at::Tensor& mask, bool inverse,
                              int64_t scale, c10::optional<double> clamp,
                              at::ScalarType mask_dtype);

// Adds the backward's grad_y (x's shape, dtype, device) and grad_logdet ((B,), x's dtype).
void coupling_backward_prepare(const char* op, CouplingPrep& p, const at::Tensor& grad_y,
                               const at::Tensor& grad_logdet);

}  // namespace gmk
