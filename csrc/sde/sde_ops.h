// Torch-side argument handling of the sde family, shared by the CPU kernels (sde.cpp) and the
// CUDA glue (sde_cuda.cpp) so both check and lay out their inputs the same way.
#pragma once

#include <ATen/ATen.h>

#include "gmk/checks.h"
#include "sde.h"

namespace gmk {

// Inputs of one Langevin step, checked and made contiguous.
struct LangevinPrep {
  at::Tensor x, g;      // contiguous
  at::Tensor a_t, c_t;  // per-row (rows,) in the compute dtype, or undefined
  double a, c;
  Clamp<double> clamp;
  RowView view;
  PhiloxStream st;
};

LangevinPrep langevin_prepare(const char* op, const at::Tensor& x, const at::Tensor& grad,
                              const c10::optional<at::Tensor>& step_size_t, double step_size,
                              const c10::optional<at::Tensor>& noise_scale_t, double noise_scale,
                              int64_t seed, int64_t offset, int64_t sample_offset,
                              c10::optional<double> clamp_lo, c10::optional<double> clamp_hi);

Clamp<double> make_clamp(const char* op, c10::optional<double> lo, c10::optional<double> hi);

}  // namespace gmk
