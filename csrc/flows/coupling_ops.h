// Torch-side bodies of the affine coupling ops: prepare (coupling.cpp: checks, mask pattern,
// contiguous inputs) -> allocate -> the device's run, written once and instantiated by the CPU
// registration (coupling_cpu.cpp) and the CUDA glue (coupling_cuda.cpp) with their Dev, which
// supplies `Guard`, `kMaskDtype` (the mask element type its kernels read), `kZeroedSums`
// (logdet must start at zero), `forward(op, p, y, logdet)` and `backward(op, p, gx, gs, gt)`.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "coupling.h"
#include "gmk/glue.h"

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
// mask_dtype: the kernels' mask element type (Dev::kMaskDtype).
CouplingPrep coupling_prepare(const char* op, const at::Tensor& x, const at::Tensor& s,
                              const at::Tensor& t, const at::Tensor& mask, bool inverse,
                              int64_t scale, std::optional<double> clamp,
                              at::ScalarType mask_dtype);

// Adds the backward's grad_y (x's shape, dtype, device) and grad_logdet ((B,), x's dtype).
void coupling_backward_prepare(const char* op, CouplingPrep& p, const at::Tensor& grad_y,
                               const at::Tensor& grad_logdet);

template <class Dev>
std::tuple<at::Tensor, at::Tensor> affine_coupling(const at::Tensor& x, const at::Tensor& s,
                                                   const at::Tensor& t, const at::Tensor& mask,
                                                   bool inverse, int64_t scale,
                                                   std::optional<double> clamp) {
  const char* op = "gmkernels.affine_coupling";
  const typename Dev::Guard guard(x.device());
  const CouplingPrep p =
      coupling_prepare(op, x, s, t, mask, inverse, scale, clamp, Dev::kMaskDtype);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  // rows of no elements have logdet 0
  at::Tensor logdet = Dev::kZeroedSums || p.M == 0 ? at::zeros({p.rows}, p.x.options())
                                                   : at::empty({p.rows}, p.x.options());
  Dev::forward(op, p, y, logdet);
  return {y, logdet};
}

template <class Dev>
std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_coupling_backward(
    const at::Tensor& grad_y, const at::Tensor& grad_logdet, const at::Tensor& x,
    const at::Tensor& s, const at::Tensor& t, const at::Tensor& mask, bool inverse,
    int64_t scale, std::optional<double> clamp) {
  const char* op = "gmkernels.affine_coupling_backward";
  const typename Dev::Guard guard(x.device());
  CouplingPrep p = coupling_prepare(op, x, s, t, mask, inverse, scale, clamp, Dev::kMaskDtype);
  coupling_backward_prepare(op, p, grad_y, grad_logdet);
  at::Tensor gx = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  at::Tensor gs = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  at::Tensor gt = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  Dev::backward(op, p, gx, gs, gt);
  return {gx, gs, gt};
}

// The registration of the ops above for one device: its TORCH_LIBRARY_IMPL block calls this.
template <class Dev>
void register_coupling_ops(torch::Library& m) {
  m.impl("affine_coupling", &affine_coupling<Dev>);
  m.impl("affine_coupling_backward", &affine_coupling_backward<Dev>);
}

}  // namespace gmk
