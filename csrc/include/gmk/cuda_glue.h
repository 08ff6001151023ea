// Torch-side helpers of the CUDA glue (<group>_cuda.cpp): the current stream, the device guard
// of a CUDA body, the launchers' DType of a tensor, and a launcher's LaunchStatus turned into an
// error that names the op. Ordinary C++ with torch headers; never included by a .cu file.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

#include "gmk/launch.h"

namespace gmk {
namespace cuda {

// The stream every launcher runs on: PyTorch's current CUDA stream of the current device (the
// body's guard has made the inputs' device current). A cudaStream_t as the launchers take it.
inline void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// The device guard of a CUDA body (`typename Dev::Guard guard(x.device())`).
using DeviceGuard = c10::cuda::CUDAGuard;

// The launcher DType of a floating tensor; anything else (float8, complex, integers) is an
// error that names the op and the argument.
inline DType floating_dtype(const char* op, const char* arg, const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kDouble: return DType::kFloat64;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default:
      TORCH_CHECK_TYPE(false, op, ": ", arg,
                       " must be float32, float64, float16 or bfloat16 on CUDA, got ",
                       t.scalar_type());
  }
}

// float32 or float64 (for kernels whose prepare has already checked that).
inline DType real_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? DType::kFloat64 : DType::kFloat32;
}

inline void check_launch(const char* op, LaunchStatus status) {
  TORCH_CHECK(status == nullptr, op, ": CUDA kernel failed: ", status);
}

}  // namespace cuda
}  // namespace gmk
