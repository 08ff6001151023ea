// The planar flow on CUDA: the glue of the kernels in planar.cu. Argument checks and layout
// come from planar_prepare / planar_backward_prepare (planar.cpp), so both devices accept and
// reject the same inputs. Compiled only in CUDA builds (csrc/SOURCES).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "gmk/checks.h"
#include "gmk/cuda_glue.h"
#include "planar.h"
#include "planar_ops.h"

namespace gmk {
namespace {

void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

cuda::DType real_dtype(const at::Tensor& z) {
  return z.scalar_type() == at::kDouble ? cuda::DType::kFloat64 : cuda::DType::kFloat32;
}

std::tuple<at::Tensor, at::Tensor> planar_flow_cuda(const at::Tensor& z, const at::Tensor& u_hat,
                                                    const at::Tensor& w, const at::Tensor& b) {
  const char* op = "gmkernels.planar_flow";
  const c10::cuda::CUDAGuard guard(z.device());
  const PlanarPrep p = planar_prepare(op, z, u_hat, w, b);
  at::Tensor out = at::empty_like(p.z);
  at::Tensor logdet = at::empty({p.B}, p.z.options());
  at::Tensor zbuf;
  if (p.D > cuda::kPlanarMaxLocalD) zbuf = at::empty({p.B, p.D}, p.z.options());
  cuda::PlanarArgs args{};
  args.z = p.z.data_ptr();
  args.u = p.u.data_ptr();
  args.w = p.w.data_ptr();
  args.b = p.b.data_ptr();
  args.out = out.data_ptr();
  args.logdet = logdet.data_ptr();
  args.B = p.B;
  args.K = p.K;
  args.D = p.D;
  args.per_sample = p.per_sample;
  args.zbuf = zbuf.defined() ? zbuf.data_ptr() : nullptr;
  args.dtype = real_dtype(p.z);
  cuda::check_launch(op, cuda::launch_planar_forward(args, current_stream()));
  return {out, logdet};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> planar_flow_backward_cuda(
    const c10::optional<at::Tensor>& grad_out, const c10::optional<at::Tensor>& grad_logdet,
    const at::Tensor& z, const at::Tensor& u_hat, const at::Tensor& w, const at::Tensor& b) {
  const char* op = "gmkernels.planar_flow_backward";
  const c10::cuda::CUDAGuard guard(z.device());
  const PlanarPrep p = planar_backward_prepare(op, grad_out, grad_logdet, z, u_hat, w, b);
  at::Tensor gz = at::empty_like(p.z);
  // shared-parameter gradients are accumulated with atomics: start at zero
  at::Tensor gu = p.per_sample ? at::empty_like(p.u) : at::zeros_like(p.u);
  at::Tensor gw = p.per_sample ? at::empty_like(p.w) : at::zeros_like(p.w);
  at::Tensor gb = p.per_sample ? at::empty_like(p.b) : at::zeros_like(p.b);
  if (p.B == 0) return {gz, gu.zero_(), gw.zero_(), gb.zero_()};
  at::Tensor ws = at::empty({3 * p.K, p.B}, p.z.options());
  at::Tensor zbuf;
  if (p.D > cuda::kPlanarMaxLocalD) zbuf = at::empty({2, p.B, p.D}, p.z.options());
  cuda::PlanarBackwardArgs args{};
  args.grad_out = p.gy.defined() ? p.gy.data_ptr() : nullptr;
  args.grad_logdet = p.gl.defined() ? p.gl.data_ptr() : nullptr;
  args.z = p.z.data_ptr();
  args.u = p.u.data_ptr();
  args.w = p.w.data_ptr();
  args.b = p.b.data_ptr();
  args.gz = gz.data_ptr();
  args.gu = gu.data_ptr();
  args.gw = gw.data_ptr();
  args.gb = gb.data_ptr();
  args.ws = ws.data_ptr();
  args.zbuf = zbuf.defined() ? zbuf.data_ptr() : nullptr;
  args.B = p.B;
  args.K = p.K;
  args.D = p.D;
  args.per_sample = p.per_sample;
  args.dtype = real_dtype(p.z);
  cuda::check_launch(op, cuda::launch_planar_backward(args, current_stream()));
  return {gz, gu, gw, gb};
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) {
  m.impl("planar_flow", &gmk::planar_flow_cuda);
  m.impl("planar_flow_backward", &gmk::planar_flow_backward_cuda);
}
