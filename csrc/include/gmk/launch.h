// Types shared by the torch-free CUDA launchers (<family>.cu) and their glue
// (<family>_cuda.cpp). The glue maps at::ScalarType onto DType and passes raw pointers.
#pragma once

namespace gmk {
namespace cuda {

enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3, kInt64 = 4 };

// What every launcher returns: null on success, else a static NUL-terminated message (the text
// of cudaGetErrorString, or a fixed string for arguments the kernel does not support). Plain
// C++ so that the glue needs no CUDA type to read it; it turns a message into a TORCH_CHECK
// naming the op (gmk/cuda_glue.h: check_launch). A launcher checks cudaGetLastError after its
// launch, so a bad configuration, or a fault of an earlier kernel, surfaces at this op's call.
using LaunchStatus = const char*;

}  // namespace cuda
}  // namespace gmk
