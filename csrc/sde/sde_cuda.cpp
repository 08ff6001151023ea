// The sde family on CUDA: the glue of the kernels in sde.cu. Argument checks and layout come
// from the same langevin_prepare / make_clamp as the CPU kernels (sde.cpp), so both devices
// accept and reject the same inputs. Compiled only in CUDA builds (csrc/SOURCES).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "gmk/checks.h"
#include "gmk/cuda_glue.h"
#include "sde.h"
#include "sde_ops.h"

namespace gmk {
namespace {

void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Writes y (which may be p.x itself: the in-place op).
void langevin_cuda_run(const char* op, const LangevinPrep& p, at::Tensor& y) {
  cuda::LangevinArgs args{};
  args.x = p.x.data_ptr();
  args.g = p.g.data_ptr();
  args.y = y.data_ptr();
  args.a_t = p.a_t.defined() ? p.a_t.data_ptr() : nullptr;
  args.c_t = p.c_t.defined() ? p.c_t.data_ptr() : nullptr;
  args.a = p.a;
  args.c = p.c;
  args.lo = p.clamp.lo;
  args.hi = p.clamp.hi;
  args.clamp = p.clamp.on;
  args.rows = p.view.rows;
  args.M = p.view.M;
  args.st = p.st;
  args.dtype = cuda::floating_dtype(op, "x", p.x);
  cuda::check_launch(op, cuda::launch_langevin(args, current_stream()));
}

at::Tensor langevin_step_cuda(const at::Tensor& x, const at::Tensor& grad,
                              const c10::optional<at::Tensor>& step_size_t, double step_size,
                              const c10::optional<at::Tensor>& noise_scale_t, double noise_scale,
                              int64_t seed, int64_t offset, int64_t sample_offset,
                              c10::optional<double> clamp_lo, c10::optional<double> clamp_hi) {
  const char* op = "gmkernels.langevin_step";
  const c10::cuda::CUDAGuard guard(x.device());
  const LangevinPrep p = langevin_prepare(op, x, grad, step_size_t, step_size, noise_scale_t,
                                          noise_scale, seed, offset, sample_offset, clamp_lo,
                                          clamp_hi);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  langevin_cuda_run(op, p, y);
  return y;
}

void langevin_step_inplace_cuda(at::Tensor x, const at::Tensor& grad,
                                const c10::optional<at::Tensor>& step_size_t, double step_size,
                                const c10::optional<at::Tensor>& noise_scale_t,
                                double noise_scale, int64_t seed, int64_t offset,
                                int64_t sample_offset, c10::optional<double> clamp_lo,
                                c10::optional<double> clamp_hi) {
  const char* op = "gmkernels.langevin_step_";
  const c10::cuda::CUDAGuard guard(x.device());
  const LangevinPrep p = langevin_prepare(op, x, grad, step_size_t, step_size, noise_scale_t,
                                          noise_scale, seed, offset, sample_offset, clamp_lo,
                                          clamp_hi);
  if (p.x.is_same(x)) {
    at::Tensor y = x;
    langevin_cuda_run(op, p, y);
  } else {  // x had other strides: p.x is a contiguous copy; update it and copy back
    at::Tensor y = p.x;
    langevin_cuda_run(op, p, y);
    x.copy_(y);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> langevin_step_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& grad,
    const c10::optional<at::Tensor>& step_size_t, double step_size, int64_t seed, int64_t offset,
    int64_t sample_offset, c10::optional<double> clamp_lo, c10::optional<double> clamp_hi,
    bool need_step_grad, bool need_noise_grad) {
  const char* op = "gmkernels.langevin_step_backward";
  check_same(op, out, "out", grad_out, "grad_out");
  check_same(op, out, "out", grad, "grad");
  const cuda::DType dtype = cuda::floating_dtype(op, "out", out);
  const c10::cuda::CUDAGuard guard(out.device());
  const at::ScalarType acc = acc_type_of(out.scalar_type());
  const at::Tensor a_t = per_sample(op, step_size_t, "step_size", out, acc);
  const Clamp<double> clamp = make_clamp(op, clamp_lo, clamp_hi);
  const PhiloxStream st = checked_stream(op, out.sizes(), seed, offset, sample_offset);
  const RowView v = row_view(out.sizes());
  const at::Tensor gy = grad_out.contiguous(), y = out.contiguous(), g = grad.contiguous();
  at::Tensor gx = at::empty_like(y), gg = at::empty_like(y);
  // The kernel accumulates the per-row sums with atomics, so they start at zero.
  const auto acc_opts = y.options().dtype(acc);
  at::Tensor ga = need_step_grad ? at::zeros({v.rows}, acc_opts) : at::empty({0}, acc_opts);
  at::Tensor gc = need_noise_grad ? at::zeros({v.rows}, acc_opts) : at::empty({0}, acc_opts);

  cuda::LangevinBackwardArgs args{};
  args.gy = gy.data_ptr();
  args.y = y.data_ptr();
  args.g = g.data_ptr();
  args.a_t = a_t.defined() ? a_t.data_ptr() : nullptr;
  args.a = step_size;
  args.lo = clamp.lo;
  args.hi = clamp.hi;
  args.clamp = clamp.on;
  args.gx = gx.data_ptr();
  args.gg = gg.data_ptr();
  args.ga = need_step_grad ? ga.data_ptr() : nullptr;
  args.gc = need_noise_grad ? gc.data_ptr() : nullptr;
  args.rows = v.rows;
  args.M = v.M;
  args.st = st;
  args.dtype = dtype;
  cuda::check_launch(op, cuda::launch_langevin_backward(args, current_stream()));
  return {gx, gg, ga, gc};
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) {
  m.impl("langevin_step", &gmk::langevin_step_cuda);
  m.impl("langevin_step_", &gmk::langevin_step_inplace_cuda);
  m.impl("langevin_step_backward", &gmk::langevin_step_backward_cuda);
}
