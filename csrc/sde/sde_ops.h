// Torch-side bodies of the sde family's ops: prepare (sde.cpp: checks, contiguous inputs,
// per-row coefficients, the stream) -> allocate the outputs -> the device's run. Written once
// here and instantiated by the CPU registration (sde_cpu.cpp) and the CUDA glue (sde_cuda.cpp)
// with their Dev, which supplies:
//   Guard                     the device guard (gmk/glue.h NoDeviceGuard, or the CUDA guard);
//   kZeroedSums               whether the per-row sums it accumulates must start at zero (the
//                             CUDA kernels add partial sums with atomics);
//   langevin(op, p, y), langevin_backward(op, p, gx, gg, ga, gc, need_a, need_c),
//   affine(op, p, y, sums), affine_backward(op, p, x, e, gx, ge, sx, se, sn, gn),
//   corrector_norms(op, p, sums, means) (pass 1 of the corrector and its batch means).
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "gmk/checks.h"
#include "gmk/glue.h"
#include "gmk/inplace.h"
#include "sde.h"

namespace gmk {

// Inputs of one Langevin step, checked and made contiguous.
struct LangevinPrep {
  at::Tensor x, g;      // contiguous
  at::Tensor a_t, c_t;  // per-row (rows,) in the compute dtype, or undefined
  double a, c;
  Clamp<double> clamp;
  RowView view;
  PhiloxStream st;
};

LangevinPrep langevin_prepare(const char* op, const at::Tensor& x, const at::Tensor& grad,
                              const std::optional<at::Tensor>& step_size_t, double step_size,
                              const std::optional<at::Tensor>& noise_scale_t, double noise_scale,
                              int64_t seed, int64_t offset, int64_t sample_offset,
                              std::optional<double> clamp_lo, std::optional<double> clamp_hi);

// Inputs of langevin_step_backward: grad_out, out and grad contiguous, the step size.
struct LangevinBackwardPrep {
  at::Tensor gy, y, g;  // contiguous, out's shape and dtype
  at::Tensor a_t;       // per-row step size in the compute dtype, or undefined
  double a = 0.0;
  Clamp<double> clamp{0.0, 0.0, false};
  RowView view{0, 0};
  PhiloxStream st{};
  at::ScalarType acc = at::kFloat;
};

LangevinBackwardPrep langevin_backward_prepare(
    const char* op, const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& grad,
    const std::optional<at::Tensor>& step_size_t, double step_size, int64_t seed,
    int64_t offset, int64_t sample_offset, std::optional<double> clamp_lo,
    std::optional<double> clamp_hi);

Clamp<double> make_clamp(const char* op, std::optional<double> lo, std::optional<double> hi);

// euler_maruyama_step, reverse_sde_step, langevin_corrector_step, affine_noise_step: each op's
// prepare function checks its arguments and lays them out as one AffinePrep, which the CPU
// loops (sde_cpu.cpp) and the CUDA launch (sde_cuda.cpp) run alike.
struct AffinePrep {
  at::Tensor x, e;           // contiguous, x's shape and dtype (e undefined: backward of x only)
  at::Tensor nfull;          // euler_maruyama_step's full diffusion tensor (x's dtype), or undefined
  double nscale = 1.0;       // cn multiplier (sqrt|dt| for Euler-Maruyama)
  bool noise = true;         // false: every cn is 0, no draws
  cuda::CoefSource src = cuda::CoefSource::kRows;
  at::Tensor cx_t, ce_t, cn_t;  // kRows: per-row coefficients (compute dtype) or undefined
  double cx = 1.0, ce = 0.0, cn = 0.0;
  at::Tensor t_t;            // kReverseSde: (rows,) times in the compute dtype
  int kind = 0, predictor = 0;
  bool pf = false;
  double p0 = 0.0, p1 = 0.0, dt = 0.0;
  at::Tensor alpha_t;        // kCorrector
  double alpha = 1.0, snr = 0.0;
  RowView view{0, 0};
  PhiloxStream st{};
  at::ScalarType acc = at::kFloat;
};

AffinePrep euler_maruyama_prepare(const char* op, const at::Tensor& x, const at::Tensor& drift,
                                  const std::optional<at::Tensor>& diffusion_t, double diffusion,
                                  double dt, int64_t seed, int64_t offset, int64_t sample_offset);
// Backward: x is grad_out; sets the coefficients and the mode (returned in *full_diffusion).
AffinePrep euler_maruyama_backward_prepare(const char* op, const at::Tensor& grad_out,
                                           const std::optional<at::Tensor>& diffusion_t,
                                           double dt, int64_t seed, int64_t offset,
                                           int64_t sample_offset, at::IntArrayRef x_shape,
                                           bool need_diffusion_grad, bool* full_diffusion);
AffinePrep reverse_sde_prepare(const char* op, const at::Tensor& x, const at::Tensor* score,
                               const std::optional<at::Tensor>& t_t, double t, double dt,
                               int64_t kind, double p0, double p1, int64_t predictor,
                               bool probability_flow, int64_t seed, int64_t offset,
                               int64_t sample_offset);
// Backward: grad_out must have x_shape; p.x is grad_out (no stream: the step is linear).
AffinePrep reverse_sde_backward_prepare(const char* op, const at::Tensor& grad_out,
                                        const std::optional<at::Tensor>& t_t, double t, double dt,
                                        int64_t kind, double p0, double p1, int64_t predictor,
                                        bool probability_flow, at::IntArrayRef x_shape);
AffinePrep corrector_prepare(const char* op, const at::Tensor& x, const at::Tensor& score,
                             const std::optional<at::Tensor>& alpha_t, double alpha, double snr,
                             int64_t seed, int64_t offset, int64_t sample_offset);
AffinePrep affine_noise_prepare(const char* op, const at::Tensor& x, const at::Tensor* e,
                                const std::optional<at::Tensor>& cx_t, double cx,
                                const std::optional<at::Tensor>& ce_t, double ce,
                                const std::optional<at::Tensor>& cn_t, double cn, int64_t seed,
                                int64_t offset, int64_t sample_offset);

// affine_noise_step_backward: the prep (p.x = grad_out), x / e when their coefficient's
// gradient is needed, and the per-row sums (zero-filled (rows,) or (0,) in the compute dtype).
struct AffineBackwardPrep {
  AffinePrep p;
  at::Tensor x, e;
  at::Tensor sx, se, sn;
};
AffineBackwardPrep affine_noise_backward_prepare(
    const char* op, const at::Tensor& grad_out, const std::optional<at::Tensor>& x,
    const std::optional<at::Tensor>& e, const std::optional<at::Tensor>& cx_t, double cx,
    const std::optional<at::Tensor>& ce_t, double ce, int64_t seed, int64_t offset,
    int64_t sample_offset, bool need_cx_grad, bool need_ce_grad, bool need_cn_grad);

// The launcher view of a prep's coefficients (pointers into its tensors).
inline cuda::CoefArgs coef_args(const AffinePrep& p, const at::Tensor& sums) {
  cuda::CoefArgs c{};
  c.src = p.src;
  c.cx_t = opt_ptr(p.cx_t);
  c.ce_t = opt_ptr(p.ce_t);
  c.cn_t = opt_ptr(p.cn_t);
  c.cx = p.cx;
  c.ce = p.ce;
  c.cn = p.cn;
  c.t_t = opt_ptr(p.t_t);
  c.kind = p.kind;
  c.predictor = p.predictor;
  c.pf = p.pf;
  c.p0 = p.p0;
  c.p1 = p.p1;
  c.dt = p.dt;
  c.alpha_t = opt_ptr(p.alpha_t);
  c.alpha = p.alpha;
  c.snr = p.snr;
  c.sums = opt_ptr(sums);
  return c;
}

// ---------------------------------------------------------------------------------------------
// The op bodies, one per schema (sde.cpp), registered as &op<Dev> by each device file.

template <class Dev>
at::Tensor langevin_step(const at::Tensor& x, const at::Tensor& grad,
                         const std::optional<at::Tensor>& step_size_t, double step_size,
                         const std::optional<at::Tensor>& noise_scale_t, double noise_scale,
                         int64_t seed, int64_t offset, int64_t sample_offset,
                         std::optional<double> clamp_lo, std::optional<double> clamp_hi) {
  const char* op = "gmkernels.langevin_step";
  const typename Dev::Guard guard(x.device());
  const LangevinPrep p = langevin_prepare(op, x, grad, step_size_t, step_size, noise_scale_t,
                                          noise_scale, seed, offset, sample_offset, clamp_lo,
                                          clamp_hi);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  Dev::langevin(op, p, y);
  return y;
}

template <class Dev>
void langevin_step_inplace(at::Tensor x, const at::Tensor& grad,
                           const std::optional<at::Tensor>& step_size_t, double step_size,
                           const std::optional<at::Tensor>& noise_scale_t, double noise_scale,
                           int64_t seed, int64_t offset, int64_t sample_offset,
                           std::optional<double> clamp_lo, std::optional<double> clamp_hi) {
  const char* op = "gmkernels.langevin_step_";
  const typename Dev::Guard guard(x.device());
  check_writable(op, "x", x);
  LangevinPrep p = langevin_prepare(op, x, grad, step_size_t, step_size, noise_scale_t,
                                    noise_scale, seed, offset, sample_offset, clamp_lo, clamp_hi);
  if (p.x.is_same(x)) {
    // The kernel writes x while it reads grad and the per-row coefficients: an input that
    // shares x's memory (a shifted view of the same buffer, x.t(), a column of x) is read from
    // a copy, so that every backend computes the step from the values before it. grad that is
    // x itself (the same view) needs none: each element is read before it is written.
    if (p.g.is_alias_of(x) && !same_view(p.g, x)) p.g = p.g.clone();
    if (p.a_t.defined() && p.a_t.is_alias_of(x)) p.a_t = p.a_t.clone();
    if (p.c_t.defined() && p.c_t.is_alias_of(x)) p.c_t = p.c_t.clone();
    at::Tensor y = x;
    Dev::langevin(op, p, y);
  } else {  // x had other strides: p.x is a contiguous copy; update it and copy back
    at::Tensor y = p.x;
    Dev::langevin(op, p, y);
    x.copy_(y);
  }
}

template <class Dev>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> langevin_step_backward(
    const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& grad,
    const std::optional<at::Tensor>& step_size_t, double step_size, int64_t seed, int64_t offset,
    int64_t sample_offset, std::optional<double> clamp_lo, std::optional<double> clamp_hi,
    bool need_step_grad, bool need_noise_grad) {
  const char* op = "gmkernels.langevin_step_backward";
  const typename Dev::Guard guard(out.device());
  const LangevinBackwardPrep p =
      langevin_backward_prepare(op, grad_out, out, grad, step_size_t, step_size, seed, offset,
                                sample_offset, clamp_lo, clamp_hi);
  at::Tensor gx = at::empty_like(p.y), gg = at::empty_like(p.y);
  const auto acc_opts = p.y.options().dtype(p.acc);
  // Rows of no elements have zero sums.
  auto sums = [&](bool need) {
    if (!need) return at::empty({0}, acc_opts);
    return Dev::kZeroedSums || p.view.M == 0 ? at::zeros({p.view.rows}, acc_opts)
                                             : at::empty({p.view.rows}, acc_opts);
  };
  at::Tensor ga = sums(need_step_grad), gc = sums(need_noise_grad);
  Dev::langevin_backward(op, p, gx, gg, ga, gc, need_step_grad, need_noise_grad);
  return {gx, gg, ga, gc};
}

template <class Dev>
at::Tensor euler_maruyama_step(const at::Tensor& x, const at::Tensor& drift,
                               const std::optional<at::Tensor>& diffusion_t, double diffusion,
                               double dt, int64_t seed, int64_t offset, int64_t sample_offset) {
  const char* op = "gmkernels.euler_maruyama_step";
  const typename Dev::Guard guard(x.device());
  const AffinePrep p = euler_maruyama_prepare(op, x, drift, diffusion_t, diffusion, dt, seed,
                                              offset, sample_offset);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  Dev::affine(op, p, y, at::Tensor());
  return y;
}

template <class Dev>
std::tuple<at::Tensor, at::Tensor, at::Tensor> euler_maruyama_step_backward(
    const at::Tensor& grad_out, const std::optional<at::Tensor>& diffusion_t, double dt,
    int64_t seed, int64_t offset, int64_t sample_offset, at::IntArrayRef x_shape,
    bool need_diffusion_grad) {
  const char* op = "gmkernels.euler_maruyama_step_backward";
  const typename Dev::Guard guard(grad_out.device());
  bool full = false;
  const AffinePrep p = euler_maruyama_backward_prepare(op, grad_out, diffusion_t, dt, seed,
                                                       offset, sample_offset, x_shape,
                                                       need_diffusion_grad, &full);
  const auto acc_opts = p.x.options().dtype(p.acc);
  at::Tensor gx = at::empty_like(p.x), gd = at::empty_like(p.x), none;
  at::Tensor sn =
      need_diffusion_grad && !full ? at::zeros({p.view.rows}, acc_opts) : at::Tensor();
  at::Tensor gn = need_diffusion_grad && full ? at::empty_like(p.x) : at::Tensor();
  Dev::affine_backward(op, p, none, none, gx, gd, none, none, sn, gn);
  return {gx, gd, !need_diffusion_grad ? at::empty({0}, acc_opts) : (full ? gn : sn)};
}

template <class Dev>
at::Tensor reverse_sde_step(const at::Tensor& x, const at::Tensor& score,
                            const std::optional<at::Tensor>& t_t, double t, double dt,
                            int64_t kind, double p0, double p1, int64_t predictor,
                            bool probability_flow, int64_t seed, int64_t offset,
                            int64_t sample_offset) {
  const char* op = "gmkernels.reverse_sde_step";
  const typename Dev::Guard guard(x.device());
  const AffinePrep p = reverse_sde_prepare(op, x, &score, t_t, t, dt, kind, p0, p1, predictor,
                                           probability_flow, seed, offset, sample_offset);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  Dev::affine(op, p, y, at::Tensor());
  return y;
}

template <class Dev>
std::tuple<at::Tensor, at::Tensor> reverse_sde_step_backward(
    const at::Tensor& grad_out, const std::optional<at::Tensor>& t_t, double t, double dt,
    int64_t kind, double p0, double p1, int64_t predictor, bool probability_flow,
    at::IntArrayRef x_shape) {
  const char* op = "gmkernels.reverse_sde_step_backward";
  const typename Dev::Guard guard(grad_out.device());
  const AffinePrep p = reverse_sde_backward_prepare(op, grad_out, t_t, t, dt, kind, p0, p1,
                                                    predictor, probability_flow, x_shape);
  at::Tensor gx = at::empty_like(p.x), gs = at::empty_like(p.x), none;
  Dev::affine_backward(op, p, none, none, gx, gs, none, none, none, none);
  return {gx, gs};
}

template <class Dev>
at::Tensor langevin_corrector_step(const at::Tensor& x, const at::Tensor& score,
                                   const std::optional<at::Tensor>& alpha_t, double alpha,
                                   double snr, int64_t seed, int64_t offset,
                                   int64_t sample_offset) {
  const char* op = "gmkernels.langevin_corrector_step";
  const typename Dev::Guard guard(x.device());
  const AffinePrep p =
      corrector_prepare(op, x, score, alpha_t, alpha, snr, seed, offset, sample_offset);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  if (p.view.rows == 0 || p.view.M == 0) return y;
  // One buffer: (rows, 2) ||xi_r||^2 and ||score_r||^2, zero-filled (the CUDA pass adds with
  // atomics), then the (2,) batch means of the row norms that the update reads.
  at::Tensor buf = at::zeros({2 * p.view.rows + 2}, p.x.options().dtype(p.acc));
  at::Tensor sums = buf.narrow(0, 0, 2 * p.view.rows);
  at::Tensor means = buf.narrow(0, 2 * p.view.rows, 2);
  Dev::corrector_norms(op, p, sums, means);
  Dev::affine(op, p, y, means);
  return y;
}

template <class Dev>
at::Tensor affine_noise_step(const at::Tensor& x, const at::Tensor& e,
                             const std::optional<at::Tensor>& cx_t, double cx,
                             const std::optional<at::Tensor>& ce_t, double ce,
                             const std::optional<at::Tensor>& cn_t, double cn, int64_t seed,
                             int64_t offset, int64_t sample_offset) {
  const char* op = "gmkernels.affine_noise_step";
  const typename Dev::Guard guard(x.device());
  const AffinePrep p = affine_noise_prepare(op, x, &e, cx_t, cx, ce_t, ce, cn_t, cn, seed, offset,
                                            sample_offset);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  Dev::affine(op, p, y, at::Tensor());
  return y;
}

template <class Dev>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> affine_noise_step_backward(
    const at::Tensor& grad_out, const std::optional<at::Tensor>& x,
    const std::optional<at::Tensor>& e, const std::optional<at::Tensor>& cx_t, double cx,
    const std::optional<at::Tensor>& ce_t, double ce, int64_t seed, int64_t offset,
    int64_t sample_offset, bool need_cx_grad, bool need_ce_grad, bool need_cn_grad) {
  const char* op = "gmkernels.affine_noise_step_backward";
  const typename Dev::Guard guard(grad_out.device());
  AffineBackwardPrep b = affine_noise_backward_prepare(op, grad_out, x, e, cx_t, cx, ce_t, ce,
                                                       seed, offset, sample_offset, need_cx_grad,
                                                       need_ce_grad, need_cn_grad);
  at::Tensor gx = at::empty_like(b.p.x), ge = at::empty_like(b.p.x), none;
  Dev::affine_backward(op, b.p, b.x, b.e, gx, ge, b.sx, b.se, b.sn, none);
  // out = cx*x - ce*e + cn*xi: d/dce = -sum gy*e
  return {gx, ge, b.sx, b.se.neg_(), b.sn};
}

// The registration of the ops above for one device: its TORCH_LIBRARY_IMPL block calls this.
template <class Dev>
void register_sde_ops(torch::Library& m) {
  m.impl("langevin_step", &langevin_step<Dev>);
  m.impl("langevin_step_", &langevin_step_inplace<Dev>);
  m.impl("langevin_step_backward", &langevin_step_backward<Dev>);
  m.impl("euler_maruyama_step", &euler_maruyama_step<Dev>);
  m.impl("euler_maruyama_step_backward", &euler_maruyama_step_backward<Dev>);
  m.impl("reverse_sde_step", &reverse_sde_step<Dev>);
  m.impl("reverse_sde_step_backward", &reverse_sde_step_backward<Dev>);
  m.impl("langevin_corrector_step", &langevin_corrector_step<Dev>);
  m.impl("affine_noise_step", &affine_noise_step<Dev>);
  m.impl("affine_noise_step_backward", &affine_noise_step_backward<Dev>);
}

}  // namespace gmk
