// Types shared by the torch-free CUDA launchers (<family>.cu) and their glue
// (<family>_cuda.cpp). The glue maps at::ScalarType onto DType and passes raw pointers.
#pragma once

namespace gmk {
namespace cuda {

enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3, kInt64 = 4 };

}  // namespace cuda
}  // namespace gmk
