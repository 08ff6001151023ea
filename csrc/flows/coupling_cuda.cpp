// The affine coupling ops on CUDA: the glue of the kernels in coupling.cu. Argument checks and
// layout come from the same coupling_prepare as the CPU kernels (coupling.cpp), so both devices
// accept and reject the same inputs. Compiled only in CUDA builds (csrc/SOURCES).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "coupling.h"
#include "coupling_ops.h"
#include "gmk/cuda_glue.h"

namespace gmk {
namespace {

void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

std::tuple<at::Tensor, at::Tensor> affine_coupling_cuda(const at::Tensor& x, const at::Tensor& s,
                                                        const at::Tensor& t,
                                                        const at::Tensor& mask, bool inverse,
                                                        int64_t scale,
                                                        c10::optional<double> clamp) {
  const char* op = "gmkernels.affine_coupling";
  const c10::cuda::CUDAGuard guard(x.device());
  const CouplingPrep p = coupling_prepare(op, x, s, t, mask, inverse, scale, clamp, at::kByte);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  at::Tensor logdet = at::zeros({p.rows}, p.x.options());
  const int64_t nchunks = cuda::coupling_cuda_chunks(p.M);
  at::Tensor partial;
  if (nchunks > 1 && p.rows > 0) {
    const at::ScalarType acc = p.x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    partial = at::empty({p.rows * nchunks}, p.x.options().dtype(acc));
  }
  cuda::CouplingArgs a{};
  a.x = p.x.data_ptr();
  a.s = p.s.data_ptr();
  a.t = p.t.data_ptr();
  a.mask = reinterpret_cast<const uint8_t*>(p.mask.data_ptr());
  a.mask_row_stride = p.mask_row_stride;
  a.y = y.data_ptr();
  a.logdet = logdet.data_ptr();
  a.partial = partial.defined() ? partial.data_ptr() : nullptr;
  a.rows = p.rows;
  a.M = p.M;
  a.scale = p.scale;
  a.inverse = p.inverse;
  a.clamp_on = p.clamp_on;
  a.clamp = p.clamp;
  a.dtype = cuda::floating_dtype(op, "x", p.x);
  cuda::check_launch(op, cuda::launch_affine_coupling(a, current_stream()));
  return {y, logdet};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_coupling_backward_cuda(
    const at::Tensor& grad_y, const at::Tensor& grad_logdet, const at::Tensor& x,
    const at::Tensor& s, const at::Tensor& t, const at::Tensor& mask, bool inverse,
    int64_t scale, c10::optional<double> clamp) {
  const char* op = "gmkernels.affine_coupling_backward";
  const c10::cuda::CUDAGuard guard(x.device());
  CouplingPrep p = coupling_prepare(op, x, s, t, mask, inverse, scale, clamp, at::kByte);
  coupling_backward_prepare(op, p, grad_y, grad_logdet);
  at::Tensor gx = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  at::Tensor gs = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  at::Tensor gt = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  cuda::CouplingBackwardArgs a{};
  a.gy = p.gy.data_ptr();
  a.gld = p.gld.data_ptr();
  a.x = p.x.data_ptr();
  a.s = p.s.data_ptr();
  a.t = p.t.data_ptr();
  a.mask = reinterpret_cast<const uint8_t*>(p.mask.data_ptr());
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
  cuda::check_launch(op, cuda::launch_affine_coupling_backward(a, current_stream()));
  return {gx, gs, gt};
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) {
  m.impl("affine_coupling", &gmk::affine_coupling_cuda);
  m.impl("affine_coupling_backward", &gmk::affine_coupling_backward_cuda);
}
