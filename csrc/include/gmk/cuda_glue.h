// Torch-side helpers of the CUDA glue (<family>_cuda.cpp): map a tensor's dtype onto the
// launchers' DType and turn a launcher's LaunchStatus into an error that names the op.
// Ordinary C++ with torch headers; never included by a .cu file.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "gmk/launch.h"

namespace gmk {
namespace cuda {

// The launcher DType of a floating tensor; anything else (float8, complex, integers) is an
// error that names the op and the argument.
inline DType floating_dtype(const char* op, const char* arg, const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kDouble: return DType::kFloat64;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default:
      TORCH_CHECK(false, op, ": ", arg,
                  " must be float32, float64, float16 or bfloat16 on CUDA, got ",
                  t.scalar_type());
  }
}

inline void check_launch(const char* op, LaunchStatus status) {
  TORCH_CHECK(status == nullptr, op, ": CUDA kernel failed: ", status);
}

}  // namespace cuda
}  // namespace gmk
