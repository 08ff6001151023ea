// The affine coupling ops on CUDA: the launches of the kernels in coupling.cu and their
// registration. Checks, layout and outputs are the CPU's own bodies (coupling.cpp /
// coupling_ops.h). Compiled only in CUDA builds (csrc/SOURCES).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "coupling.h"
#include "coupling_ops.h"
#include "gmk/checks.h"
#include "gmk/cuda_glue.h"
#include "gmk/glue.h"

namespace gmk {
namespace {

struct CouplingCuda {
  using Guard = cuda::DeviceGuard;
  static constexpr at::ScalarType kMaskDtype = at::kByte;  // the kernels read bytes
  static constexpr bool kZeroedSums = true;

  static void forward(const char* op, const CouplingPrep& p, at::Tensor& y, at::Tensor& logdet) {
    const int64_t nchunks = cuda::coupling_cuda_chunks(p.M);
    at::Tensor partial;  // chunk sums of long rows, in the compute dtype
    if (nchunks > 1 && p.rows > 0)
      partial = at::empty({p.rows * nchunks}, p.x.options().dtype(acc_type_of(p.x.scalar_type())));
    cuda::CouplingArgs a{};
    a.x = p.x.data_ptr();
    a.s = p.s.data_ptr();
    a.t = p.t.data_ptr();
    a.mask = static_cast<const uint8_t*>(p.mask.data_ptr());
    a.mask_row_stride = p.mask_row_stride;
    a.y = y.data_ptr();
    a.logdet = logdet.data_ptr();
    a.partial = opt_ptr(partial);
    a.rows = p.rows;
    a.M = p.M;
    a.scale = p.scale;
    a.inverse = p.inverse;
    a.clamp_on = p.clamp_on;
    a.clamp = p.clamp;
    a.dtype = cuda::floating_dtype(op, "x", p.x);
    cuda::check_launch(op, cuda::launch_affine_coupling(a, cuda::current_stream()));
  }

  static void backward(const char* op, const CouplingPrep& p, at::Tensor& gx, at::Tensor& gs,
                       at::Tensor& gt) {
    cuda::CouplingBackwardArgs a{};
    a.gy = p.gy.data_ptr();
    a.gld = p.gld.data_ptr();
    a.x = p.x.data_ptr();
    a.s = p.s.data_ptr();
    a.t = p.t.data_ptr();
    a.mask = static_cast<const uint8_t*>(p.mask.data_ptr());
    a.mask_row_stride = p.mask_row_stride;
    a.gx = gx.data_ptr();
    a.gs = gs.data_ptr();
    a.gt = gt.data_ptr();
    a.rows = p.rows;
    a.M = p.M;
    a.scale = p.scale;
    a.inverse = p.inverse;
    a.clamp_on = p.clamp_on;
    a.clamp = p.clamp;
    a.dtype = cuda::floating_dtype(op, "x", p.x);
    cuda::check_launch(op, cuda::launch_affine_coupling_backward(a, cuda::current_stream()));
  }
};

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) { gmk::register_coupling_ops<gmk::CouplingCuda>(m); }
