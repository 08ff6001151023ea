// The sde family on CUDA: the glue of the kernels in sde.cu. Argument checks and layout come
// from the same langevin_prepare / make_clamp / *_prepare functions as the CPU kernels
// (sde.cpp), so both devices accept and reject the same inputs. Compiled only in CUDA builds (csrc/SOURCES).
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

// ---------------------------------------------------------------------------------------------
// Issue 3 ops: the prepare functions of sde.cpp check and lay out the arguments (so CPU and
// CUDA accept and reject the same inputs), then one affine launch (sde.cu) runs the step.

// y = the forward of p (sums: the corrector's (rows, 2) norms, else undefined).
void affine_cuda_run(const char* op, const AffinePrep& p, at::Tensor& y, const at::Tensor& sums) {
  cuda::AffineArgs args{};
  args.x = p.x.data_ptr();
  args.e = p.e.data_ptr();
  args.nfull = p.nfull.defined() ? p.nfull.data_ptr() : nullptr;
  args.y = y.data_ptr();
  args.nscale = p.nscale;
  args.noise = p.noise;
  args.coefs = coef_args(p, sums);
  args.rows = p.view.rows;
  args.M = p.view.M;
  args.st = p.st;
  args.dtype = cuda::floating_dtype(op, "x", p.x);
  cuda::check_launch(op, cuda::launch_affine(args, current_stream()));
}

void* ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr() : nullptr;
}

// Backward of p (p.x is grad_out); undefined or empty outputs are skipped. sx, se, sn must be
// zero-filled: the kernel adds to them.
void affine_bwd_cuda_run(const char* op, const AffinePrep& p, const at::Tensor& x,
                         const at::Tensor& e, at::Tensor& gx, at::Tensor& ge, at::Tensor& sx,
                         at::Tensor& se, at::Tensor& sn, at::Tensor& gn) {
  cuda::AffineBackwardArgs args{};
  args.gy = p.x.data_ptr();
  args.x = ptr_or_null(x);
  args.e = ptr_or_null(e);
  args.gx = gx.data_ptr();
  args.ge = ge.data_ptr();
  args.sx = ptr_or_null(sx);
  args.se = ptr_or_null(se);
  args.sn = ptr_or_null(sn);
  args.gn = ptr_or_null(gn);
  args.nscale = p.nscale;
  args.coefs = coef_args(p, at::Tensor());
  args.rows = p.view.rows;
  args.M = p.view.M;
  args.st = p.st;
  args.dtype = cuda::floating_dtype(op, "grad_out", p.x);
  cuda::check_launch(op, cuda::launch_affine_backward(args, current_stream()));
}

at::Tensor euler_maruyama_step_cuda(const at::Tensor& x, const at::Tensor& drift,
                                    const c10::optional<at::Tensor>& diffusion_t,
                                    double diffusion, double dt, int64_t seed, int64_t offset,
                                    int64_t sample_offset) {
  const char* op = "gmkernels.euler_maruyama_step";
  const c10::cuda::CUDAGuard guard(x.device());
  const AffinePrep p = euler_maruyama_prepare(op, x, drift, diffusion_t, diffusion, dt, seed,
                                              offset, sample_offset);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  affine_cuda_run(op, p, y, at::Tensor());
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> euler_maruyama_step_backward_cuda(
    const at::Tensor& grad_out, const c10::optional<at::Tensor>& diffusion_t, double dt,
    int64_t seed, int64_t offset, int64_t sample_offset, at::IntArrayRef x_shape,
    bool need_diffusion_grad) {
  const char* op = "gmkernels.euler_maruyama_step_backward";
  const c10::cuda::CUDAGuard guard(grad_out.device());
  bool full = false;
  const AffinePrep p = euler_maruyama_backward_prepare(op, grad_out, diffusion_t, dt, seed,
                                                       offset, sample_offset, x_shape,
                                                       need_diffusion_grad, &full);
  const auto acc_opts = p.x.options().dtype(p.acc);
  at::Tensor gx = at::empty_like(p.x), gd = at::empty_like(p.x), none;
  at::Tensor sn = need_diffusion_grad && !full ? at::zeros({p.view.rows}, acc_opts) : at::Tensor();
  at::Tensor gn = need_diffusion_grad && full ? at::empty_like(p.x) : at::Tensor();
  affine_bwd_cuda_run(op, p, none, none, gx, gd, none, none, sn, gn);
  return {gx, gd, !need_diffusion_grad ? at::empty({0}, acc_opts) : (full ? gn : sn)};
}

at::Tensor reverse_sde_step_cuda(const at::Tensor& x, const at::Tensor& score,
                                 const c10::optional<at::Tensor>& t_t, double t, double dt,
                                 int64_t kind, double p0, double p1, int64_t predictor,
                                 bool probability_flow, int64_t seed, int64_t offset,
                                 int64_t sample_offset) {
  const char* op = "gmkernels.reverse_sde_step";
  const c10::cuda::CUDAGuard guard(x.device());
  const AffinePrep p = reverse_sde_prepare(op, x, &score, t_t, t, dt, kind, p0, p1, predictor,
                                           probability_flow, seed, offset, sample_offset);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  affine_cuda_run(op, p, y, at::Tensor());
  return y;
}

std::tuple<at::Tensor, at::Tensor> reverse_sde_step_backward_cuda(
    const at::Tensor& grad_out, const c10::optional<at::Tensor>& t_t, double t, double dt,
    int64_t kind, double p0, double p1, int64_t predictor, bool probability_flow,
    at::IntArrayRef x_shape) {
  const char* op = "gmkernels.reverse_sde_step_backward";
  TORCH_CHECK(grad_out.sizes().equals(x_shape), op, ": grad_out must have x's shape ", x_shape,
              ", got ", grad_out.sizes());
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const AffinePrep p = reverse_sde_prepare(op, grad_out, nullptr, t_t, t, dt, kind, p0, p1,
                                           predictor, probability_flow, 0, 0, 0);
  at::Tensor gx = at::empty_like(p.x), gs = at::empty_like(p.x), none;
  affine_bwd_cuda_run(op, p, none, none, gx, gs, none, none, none, none);
  return {gx, gs};
}

at::Tensor langevin_corrector_step_cuda(const at::Tensor& x, const at::Tensor& score,
                                        const c10::optional<at::Tensor>& alpha_t, double alpha,
                                        double snr, int64_t seed, int64_t offset,
                                        int64_t sample_offset) {
  const char* op = "gmkernels.langevin_corrector_step";
  const c10::cuda::CUDAGuard guard(x.device());
  const AffinePrep p =
      corrector_prepare(op, x, score, alpha_t, alpha, snr, seed, offset, sample_offset);
  // Pass 1 adds each warp's partial norms with atomics, so the buffer starts at zero.
  at::Tensor sums = at::zeros({p.view.rows, 2}, p.x.options().dtype(p.acc));
  cuda::RowNormsArgs nargs{};
  nargs.s = p.e.data_ptr();
  nargs.sums = sums.data_ptr();
  nargs.rows = p.view.rows;
  nargs.M = p.view.M;
  nargs.st = p.st;
  nargs.dtype = cuda::floating_dtype(op, "x", p.x);
  cuda::check_launch(op, cuda::launch_corrector_norms(nargs, current_stream()));
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  affine_cuda_run(op, p, y, sums);
  return y;
}

at::Tensor affine_noise_step_cuda(const at::Tensor& x, const at::Tensor& e,
                                  const c10::optional<at::Tensor>& cx_t, double cx,
                                  const c10::optional<at::Tensor>& ce_t, double ce,
                                  const c10::optional<at::Tensor>& cn_t, double cn, int64_t seed,
                                  int64_t offset, int64_t sample_offset) {
  const char* op = "gmkernels.affine_noise_step";
  const c10::cuda::CUDAGuard guard(x.device());
  const AffinePrep p = affine_noise_prepare(op, x, &e, cx_t, cx, ce_t, ce, cn_t, cn, seed, offset,
                                            sample_offset);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  affine_cuda_run(op, p, y, at::Tensor());
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
affine_noise_step_backward_cuda(const at::Tensor& grad_out, const c10::optional<at::Tensor>& x,
                                const c10::optional<at::Tensor>& e,
                                const c10::optional<at::Tensor>& cx_t, double cx,
                                const c10::optional<at::Tensor>& ce_t, double ce, int64_t seed,
                                int64_t offset, int64_t sample_offset, bool need_cx_grad,
                                bool need_ce_grad, bool need_cn_grad) {
  const char* op = "gmkernels.affine_noise_step_backward";
  const c10::cuda::CUDAGuard guard(grad_out.device());
  AffineBackwardPrep b = affine_noise_backward_prepare(op, grad_out, x, e, cx_t, cx, ce_t, ce,
                                                       seed, offset, sample_offset, need_cx_grad,
                                                       need_ce_grad, need_cn_grad);
  at::Tensor gx = at::empty_like(b.p.x), ge = at::empty_like(b.p.x), none;
  affine_bwd_cuda_run(op, b.p, b.x, b.e, gx, ge, b.sx, b.se, b.sn, none);
  // out = cx*x - ce*e + cn*xi: d/dce = -sum gy*e
  return {gx, ge, b.sx, b.se.neg_(), b.sn};
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) {
  m.impl("langevin_step", &gmk::langevin_step_cuda);
  m.impl("langevin_step_", &gmk::langevin_step_inplace_cuda);
  m.impl("langevin_step_backward", &gmk::langevin_step_backward_cuda);
  m.impl("euler_maruyama_step", &gmk::euler_maruyama_step_cuda);
  m.impl("euler_maruyama_step_backward", &gmk::euler_maruyama_step_backward_cuda);
  m.impl("reverse_sde_step", &gmk::reverse_sde_step_cuda);
  m.impl("reverse_sde_step_backward", &gmk::reverse_sde_step_backward_cuda);
  m.impl("langevin_corrector_step", &gmk::langevin_corrector_step_cuda);
  m.impl("affine_noise_step", &gmk::affine_noise_step_cuda);
  m.impl("affine_noise_step_backward", &gmk::affine_noise_step_backward_cuda);
}
