// The random family on CUDA: the launches of random.cu and their registration. Checks and
// layout are the same bodies as the CPU's (random.cpp / random_ops.h). Compiled only in CUDA
// builds (csrc/SOURCES).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "gmk/cuda_glue.h"
#include "random.h"
#include "random_ops.h"

namespace gmk {
namespace {

struct RandomCuda {
  using Guard = cuda::DeviceGuard;

  static void fill(const char* op, Draw draw, const RandomPrep& p, at::Tensor& o) {
    const cuda::DType dtype =
        draw == Draw::kUint32 ? cuda::DType::kInt64 : cuda::floating_dtype(op, "out", o);
    cuda::check_launch(op, cuda::launch_random_fill(draw, dtype, o.data_ptr(), p.view.rows,
                                                    p.view.M, p.st, cuda::current_stream()));
  }

  static void bernoulli(const char* op, const RandomPrep& p, const at::Tensor& pc,
                        at::Tensor& out) {
    const cuda::DType dtype = cuda::floating_dtype(op, "p", pc);
    cuda::check_launch(op, cuda::launch_bernoulli(dtype, pc.data_ptr(), out.data_ptr(),
                                                  p.view.rows, p.view.M, p.st,
                                                  cuda::current_stream()));
  }
};

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) { gmk::register_random_ops<gmk::RandomCuda>(m); }
