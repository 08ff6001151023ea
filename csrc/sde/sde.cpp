// The sde family: schemas and the device-agnostic preparation of the fused stochastic steps
// (docs/spec.md §3). The op bodies are sde_ops.h; the CPU kernels sde_cpu.cpp, the CUDA glue
// sde_cuda.cpp (kernels in sde.cu), the per-element math sde.h.
//
// euler_maruyama_step, reverse_sde_step, langevin_corrector_step and affine_noise_step follow
// the decided API (schemas below), with these choices where it is silent or open:
//  * affine_noise_step_backward is this file's schema (the API names none): it returns
//    (grad_x, grad_e, grad_cx, grad_ce, grad_cn), each coefficient gradient (B,) when its
//    need_* flag is set, else (0,); x / e are passed only when grad_cx / grad_ce is needed.
//  * Per-row gradients (euler_maruyama's per-sample grad_diffusion, the affine coefficients)
//    are in the compute dtype (float32, float64 for float64), like langevin_step_backward; the
//    Python autograd casts them to the coefficient's dtype.
//  * euler_maruyama_step: a 1-D diffusion tensor of length B is per-sample (for a 1-D x the
//    two readings agree); otherwise it must have x's shape. need_diffusion_grad without a
//    diffusion tensor is an error.
//  * reverse_sde_step with per-sample t checks t in [0, 1] (one device sync on CUDA): an
//    out-of-range t would otherwise give NaN (VP reverse diffusion takes sqrt(1 - beta dt)) or
//    silently wrong steps. VP reverse diffusion also requires beta(t)*dt <= 1.
//  * langevin_corrector_step has no backward op (not differentiable, as the API says).
// All four run one update, out = cx*x - ce*e + cn*xi, with per-row coefficients (sde.h).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "gmk/checks.h"
#include "gmk/glue.h"
#include "sde.h"
#include "sde_ops.h"

namespace gmk {

Clamp<double> make_clamp(const char* op, std::optional<double> lo, std::optional<double> hi) {
  TORCH_CHECK_VALUE(lo.has_value() == hi.has_value(), op,
                    ": clamp needs both bounds (lo, hi) or neither");
  if (!lo.has_value()) return Clamp<double>{0.0, 0.0, false};
  TORCH_CHECK_VALUE(!std::isnan(*lo) && !std::isnan(*hi) && *lo <= *hi, op,
                    ": clamp must be (lo, hi) with lo <= hi, got (", *lo, ", ", *hi, ")");
  return Clamp<double>{*lo, *hi, true};
}

LangevinPrep langevin_prepare(const char* op, const at::Tensor& x, const at::Tensor& grad,
                              const std::optional<at::Tensor>& step_size_t, double step_size,
                              const std::optional<at::Tensor>& noise_scale_t, double noise_scale,
                              int64_t seed, int64_t offset, int64_t sample_offset,
                              std::optional<double> clamp_lo, std::optional<double> clamp_hi) {
  check_floating(op, "x", x);
  check_same(op, x, "x", grad, "grad");
  TORCH_CHECK_VALUE(std::isfinite(step_size) && step_size >= 0, op,
                    ": step_size must be finite and >= 0, got ", step_size);
  TORCH_CHECK_VALUE(std::isfinite(noise_scale) && noise_scale >= 0, op,
                    ": noise_scale must be finite and >= 0, got ", noise_scale);
  const at::ScalarType acc = acc_type_of(x.scalar_type());
  LangevinPrep p;
  p.a_t = per_sample(op, step_size_t, "step_size", x, acc);
  p.c_t = per_sample(op, noise_scale_t, "noise_scale", x, acc);
  p.a = step_size;
  p.c = noise_scale;
  p.clamp = make_clamp(op, clamp_lo, clamp_hi);
  p.st = checked_stream(op, x.sizes(), seed, offset, sample_offset);
  p.view = row_view(x.sizes());
  p.x = x.contiguous();
  p.g = grad.contiguous();
  return p;
}

LangevinBackwardPrep langevin_backward_prepare(
    const char* op, const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& grad,
    const std::optional<at::Tensor>& step_size_t, double step_size, int64_t seed,
    int64_t offset, int64_t sample_offset, std::optional<double> clamp_lo,
    std::optional<double> clamp_hi) {
  check_floating(op, "out", out);
  check_same(op, out, "out", grad_out, "grad_out");
  check_same(op, out, "out", grad, "grad");
  LangevinBackwardPrep p;
  p.acc = acc_type_of(out.scalar_type());
  p.a_t = per_sample(op, step_size_t, "step_size", out, p.acc);
  p.a = step_size;
  p.clamp = make_clamp(op, clamp_lo, clamp_hi);
  p.st = checked_stream(op, out.sizes(), seed, offset, sample_offset);
  p.view = row_view(out.sizes());
  p.gy = grad_out.contiguous();
  p.y = out.contiguous();
  p.g = grad.contiguous();
  return p;
}

namespace {

void check_finite(const char* op, const char* name, double v) {
  TORCH_CHECK_VALUE(std::isfinite(v), op, ": ", name, " must be finite, got ", v);
}

bool same_shape(at::IntArrayRef a, at::IntArrayRef b) { return a.equals(b); }

// Per-sample t: (rows,) values in [0, 1]. Reading them back costs one device sync on CUDA; the
// check is what keeps an out-of-range t from silently producing NaN or garbage (VP reverse
// diffusion takes sqrt(1 - beta(t) dt)). Returns (min t, max t).
std::pair<double, double> check_t_range(const char* op, const at::Tensor& t_t) {
  if (t_t.numel() == 0) return {0.0, 0.0};
  const at::Tensor mm = at::stack({t_t.min(), t_t.max()}).to(at::kDouble).cpu();
  const double lo = mm[0].item<double>(), hi = mm[1].item<double>();
  TORCH_CHECK_VALUE(lo >= 0.0 && hi <= 1.0, op, ": t must lie in [0, 1], got values in [", lo, ", ",
                    hi, "]");  // a NaN fails both comparisons
  return {lo, hi};
}

}  // namespace

AffinePrep euler_maruyama_prepare(const char* op, const at::Tensor& x, const at::Tensor& drift,
                                  const std::optional<at::Tensor>& diffusion_t, double diffusion,
                                  double dt, int64_t seed, int64_t offset, int64_t sample_offset) {
  check_floating(op, "x", x);
  check_same(op, x, "x", drift, "drift");
  TORCH_CHECK_VALUE(std::isfinite(dt) && dt != 0.0, op, ": dt must be finite and nonzero, got ",
                    dt);
  check_finite(op, "diffusion", diffusion);
  AffinePrep p;
  p.acc = acc_type_of(x.scalar_type());
  p.view = row_view(x.sizes());
  p.st = checked_stream(op, x.sizes(), seed, offset, sample_offset);
  p.src = cuda::CoefSource::kRows;
  p.cx = 1.0;
  p.ce = -dt;
  p.cn = diffusion;
  p.nscale = std::sqrt(std::fabs(dt));
  if (has_tensor(diffusion_t)) {
    const at::Tensor& d = *diffusion_t;
    check_floating(op, "diffusion", d);
    TORCH_CHECK_VALUE(d.device() == x.device(), op, ": diffusion must be on ", x.device(), ", got ",
                      d.device());
    const bool per_row = d.dim() == 1 && d.size(0) == p.view.rows;
    if (per_row) {
      p.cn_t = d.to(p.acc).contiguous();
    } else {
      TORCH_CHECK_VALUE(same_shape(d.sizes(), x.sizes()), op,
                        ": diffusion must be a float, a per-sample tensor of shape (", p.view.rows,
                        ",) or a tensor of x's shape ", x.sizes(), ", got shape ", d.sizes());
      p.nfull = d.to(x.scalar_type()).contiguous();
    }
  } else {
    p.noise = diffusion != 0.0;
  }
  p.x = x.contiguous();
  p.e = drift.contiguous();
  return p;
}

AffinePrep euler_maruyama_backward_prepare(const char* op, const at::Tensor& grad_out,
                                           const std::optional<at::Tensor>& diffusion_t,
                                           double dt, int64_t seed, int64_t offset,
                                           int64_t sample_offset, at::IntArrayRef x_shape,
                                           bool need_diffusion_grad, bool* full_diffusion) {
  check_floating(op, "grad_out", grad_out);
  TORCH_CHECK_VALUE(same_shape(grad_out.sizes(), x_shape), op, ": grad_out must have x's shape ",
                    x_shape, ", got ", grad_out.sizes());
  TORCH_CHECK_VALUE(std::isfinite(dt) && dt != 0.0, op, ": dt must be finite and nonzero, got ",
                    dt);
  const bool has_d = has_tensor(diffusion_t);
  TORCH_CHECK_VALUE(!need_diffusion_grad || has_d, op,
                    ": need_diffusion_grad needs the diffusion tensor (diffusion_t is None)");
  AffinePrep p;
  p.acc = acc_type_of(grad_out.scalar_type());
  p.view = row_view(x_shape);
  p.st = checked_stream(op, x_shape, seed, offset, sample_offset);
  p.cx = 1.0;
  p.ce = -dt;
  p.nscale = std::sqrt(std::fabs(dt));
  *full_diffusion = false;
  if (has_d) {
    const at::Tensor& d = *diffusion_t;
    const bool per_row = d.dim() == 1 && d.size(0) == p.view.rows;
    TORCH_CHECK_VALUE(per_row || same_shape(d.sizes(), x_shape), op,
                      ": diffusion must be a per-sample tensor of shape (", p.view.rows,
                      ",) or a tensor of x's shape ", x_shape, ", got shape ", d.sizes());
    *full_diffusion = !per_row;
  }
  p.x = grad_out.contiguous();
  return p;
}

AffinePrep reverse_sde_prepare(const char* op, const at::Tensor& x, const at::Tensor* score,
                               const std::optional<at::Tensor>& t_t, double t, double dt,
                               int64_t kind, double p0, double p1, int64_t predictor,
                               bool probability_flow, int64_t seed, int64_t offset,
                               int64_t sample_offset) {
  check_floating(op, "x", x);
  if (score) check_same(op, x, "x", *score, "score");
  const SdeKind k = enum_arg<SdeKind>(op, "kind", kind);
  const SdePredictor pred = enum_arg<SdePredictor>(op, "predictor", predictor);
  TORCH_CHECK_VALUE(std::isfinite(dt) && dt > 0.0, op, ": dt must be finite and > 0, got ", dt);
  if (k == kSdeVE) {
    TORCH_CHECK_VALUE(std::isfinite(p0) && std::isfinite(p1) && p0 > 0.0 && p1 >= p0, op,
                      ": a VE SDE needs 0 < sigma_min <= sigma_max (finite), got sigma_min=", p0,
                      " sigma_max=", p1);
  } else {
    TORCH_CHECK_VALUE(std::isfinite(p0) && std::isfinite(p1) && p0 >= 0.0 && p1 >= 0.0, op,
                      ": a VP / sub-VP SDE needs finite beta_min, beta_max >= 0, got beta_min=", p0,
                      " beta_max=", p1);
  }
  AffinePrep p;
  p.acc = acc_type_of(x.scalar_type());
  p.view = row_view(x.sizes());
  p.st = checked_stream(op, x.sizes(), seed, offset, sample_offset);
  p.kind = k;
  p.predictor = pred;
  p.pf = probability_flow;
  p.p0 = p0;
  p.p1 = p1;
  p.dt = dt;
  p.noise = !probability_flow;
  double t_lo = t, t_hi = t;
  if (has_tensor(t_t)) {
    p.t_t = per_sample(op, t_t, "t", x, p.acc);
    std::tie(t_lo, t_hi) = check_t_range(op, p.t_t);
    p.src = cuda::CoefSource::kReverseSde;
  } else {
    TORCH_CHECK_VALUE(std::isfinite(t) && t >= 0.0 && t <= 1.0, op, ": t must lie in [0, 1], got ",
                      t);
    // One t for every row: the coefficients once, on the host, in the compute dtype (the same
    // functor the kernels run per row), then the kernel sees plain scalars.
    auto coefs = [&](auto zero) {
      using acc_t = decltype(zero);
      const SdeSpec<acc_t> s{p.kind, p.predictor, p.pf, static_cast<acc_t>(p0),
                             static_cast<acc_t>(p1), static_cast<acc_t>(dt)};
      const Coef3<acc_t> c = reverse_sde_coefs(s, static_cast<acc_t>(t));
      p.cx = c.cx;
      p.ce = c.ce;
      p.cn = c.cn;
    };
    if (p.acc == at::kDouble) coefs(0.0);
    else coefs(0.0f);
    p.src = cuda::CoefSource::kRows;
  }
  if (k == kSdeVP && pred == kPredReverseDiffusion) {
    // sqrt(1 - beta(t) dt) needs beta(t) dt <= 1; beta is linear in t, so the ends decide.
    const double bd = std::max(p0 + t_lo * (p1 - p0), p0 + t_hi * (p1 - p0)) * dt;
    TORCH_CHECK_VALUE(bd <= 1.0, op, ": reverse_diffusion on a VP SDE needs beta(t)*dt <= 1, got ",
                      bd, " (a smaller dt)");
  }
  p.x = x.contiguous();
  if (score) p.e = score->contiguous();
  return p;
}

AffinePrep corrector_prepare(const char* op, const at::Tensor& x, const at::Tensor& score,
                             const std::optional<at::Tensor>& alpha_t, double alpha, double snr,
                             int64_t seed, int64_t offset, int64_t sample_offset) {
  check_floating(op, "x", x);
  check_same(op, x, "x", score, "score");
  TORCH_CHECK_VALUE(std::isfinite(snr) && snr > 0.0, op, ": snr must be finite and > 0, got ", snr);
  TORCH_CHECK_VALUE(std::isfinite(alpha) && alpha >= 0.0, op,
                    ": alpha must be finite and >= 0, got ", alpha);
  AffinePrep p;
  p.acc = acc_type_of(x.scalar_type());
  p.view = row_view(x.sizes());
  p.st = checked_stream(op, x.sizes(), seed, offset, sample_offset);
  p.src = cuda::CoefSource::kCorrector;
  p.alpha_t = per_sample(op, alpha_t, "alpha", x, p.acc);
  p.alpha = alpha;
  p.snr = snr;
  p.x = x.contiguous();
  p.e = score.contiguous();
  return p;
}

AffinePrep affine_noise_prepare(const char* op, const at::Tensor& x, const at::Tensor* e,
                                const std::optional<at::Tensor>& cx_t, double cx,
                                const std::optional<at::Tensor>& ce_t, double ce,
                                const std::optional<at::Tensor>& cn_t, double cn, int64_t seed,
                                int64_t offset, int64_t sample_offset) {
  check_floating(op, "x", x);
  if (e) check_same(op, x, "x", *e, "e");
  check_finite(op, "cx", cx);
  check_finite(op, "ce", ce);
  check_finite(op, "cn", cn);
  AffinePrep p;
  p.acc = acc_type_of(x.scalar_type());
  p.view = row_view(x.sizes());
  p.st = checked_stream(op, x.sizes(), seed, offset, sample_offset);
  p.src = cuda::CoefSource::kRows;
  p.cx_t = per_sample(op, cx_t, "cx", x, p.acc);
  p.ce_t = per_sample(op, ce_t, "ce", x, p.acc);
  p.cn_t = per_sample(op, cn_t, "cn", x, p.acc);
  p.cx = cx;
  p.ce = ce;
  p.cn = cn;
  p.noise = p.cn_t.defined() || cn != 0.0;
  p.x = x.contiguous();
  if (e) p.e = e->contiguous();
  return p;
}

AffinePrep reverse_sde_backward_prepare(const char* op, const at::Tensor& grad_out,
                                        const std::optional<at::Tensor>& t_t, double t, double dt,
                                        int64_t kind, double p0, double p1, int64_t predictor,
                                        bool probability_flow, at::IntArrayRef x_shape) {
  TORCH_CHECK_VALUE(same_shape(grad_out.sizes(), x_shape), op,
                    ": grad_out must have x's shape ", x_shape, ", got ", grad_out.sizes());
  return reverse_sde_prepare(op, grad_out, nullptr, t_t, t, dt, kind, p0, p1, predictor,
                             probability_flow, 0, 0, 0);
}

// Checks of affine_noise_step_backward shared with the CUDA glue: x / e are needed only for
// the coefficient gradients, and must then have grad_out's shape and dtype.
AffineBackwardPrep affine_noise_backward_prepare(
    const char* op, const at::Tensor& grad_out, const std::optional<at::Tensor>& x,
    const std::optional<at::Tensor>& e, const std::optional<at::Tensor>& cx_t, double cx,
    const std::optional<at::Tensor>& ce_t, double ce, int64_t seed, int64_t offset,
    int64_t sample_offset, bool need_cx_grad, bool need_ce_grad, bool need_cn_grad) {
  AffineBackwardPrep b;
  b.p = affine_noise_prepare(op, grad_out, nullptr, cx_t, cx, ce_t, ce, std::nullopt, 0.0, seed,
                             offset, sample_offset);
  auto take = [&](const std::optional<at::Tensor>& t, const char* name, bool need) {
    if (!need) return at::Tensor();
    TORCH_CHECK_VALUE(has_tensor(t), op, ": ", name,
                      " is needed for the gradient of its coefficient, got None");
    check_same(op, grad_out, "grad_out", *t, name);
    return t->contiguous();
  };
  b.x = take(x, "x", need_cx_grad);
  b.e = take(e, "e", need_ce_grad);
  const auto acc_opts = b.p.x.options().dtype(b.p.acc);
  auto rows_or_empty = [&](bool need) {
    return need ? at::zeros({b.p.view.rows}, acc_opts) : at::empty({0}, acc_opts);
  };
  b.sx = rows_or_empty(need_cx_grad);
  b.se = rows_or_empty(need_ce_grad);
  b.sn = rows_or_empty(need_cn_grad);
  return b;
}

}  // namespace gmk

TORCH_LIBRARY_FRAGMENT(gmkernels, m) {
  // docs/spec.md §3.1: out = clamp(x + a*grad + c*xi), xi = gmkernels.random.normal(x.shape, seed,
  // offset, sample_offset). a and c are floats, or per-row (B,) tensors that override them.
  m.def(
      "langevin_step(Tensor x, Tensor grad, Tensor? step_size_t, float step_size, "
      "Tensor? noise_scale_t, float noise_scale, int seed, int offset, int sample_offset, "
      "float? clamp_lo, float? clamp_hi) -> Tensor");
  // langevin_step_ writes x in place (x must not overlap itself; inputs that share its memory
  // are read as they were before the step: gmk/inplace.h, sde_ops.h).
  m.def(
      "langevin_step_(Tensor(a!) x, Tensor grad, Tensor? step_size_t, float step_size, "
      "Tensor? noise_scale_t, float noise_scale, int seed, int offset, int sample_offset, "
      "float? clamp_lo, float? clamp_hi) -> ()");
  // Returns (grad_x, grad_grad, grad_step_size (B,) or (0,), grad_noise_scale (B,) or (0,)).
  m.def(
      "langevin_step_backward(Tensor grad_out, Tensor out, Tensor grad, Tensor? step_size_t, "
      "float step_size, int seed, int offset, int sample_offset, float? clamp_lo, "
      "float? clamp_hi, bool need_step_grad, bool need_noise_grad) "
      "-> (Tensor, Tensor, Tensor, Tensor)");

  // Euler-Maruyama step of dx = drift dt + diffusion dw (docs/spec.md §3.3):
  // out = x + drift*dt + diffusion*sqrt(|dt|)*xi, xi = gmkernels.random.normal(x.shape, seed,
  // offset, sample_offset). diffusion_t: a per-sample (B,) tensor or a tensor of x's shape
  // (None: the float `diffusion`). dt: finite, nonzero (negative integrates backward in time).
  m.def(
      "euler_maruyama_step(Tensor x, Tensor drift, Tensor? diffusion_t, float diffusion, "
      "float dt, int seed, int offset, int sample_offset) -> Tensor");
  // Returns (grad_x = gy, grad_drift = gy*dt, grad_diffusion): the (B,) row sums of
  // gy*sqrt|dt|*xi in the compute dtype when diffusion_t is per-sample, the full gy*sqrt|dt|*xi
  // (x's dtype) when it has x's shape, or a (0,) tensor when need_diffusion_grad is false.
  m.def(
      "euler_maruyama_step_backward(Tensor grad_out, Tensor? diffusion_t, float dt, int seed, "
      "int offset, int sample_offset, int[] x_shape, bool need_diffusion_grad) "
      "-> (Tensor, Tensor, Tensor)");
  // One reverse-time step of a VE / VP / sub-VP SDE from t to t - dt (docs/spec.md §3.3, Song et al.
  // 2021), f and g computed from (kind, p0, p1) and t inside the kernel. kind: 0 ve (p0, p1 =
  // sigma_min, sigma_max), 1 vp, 2 subvp (p0, p1 = beta_min, beta_max). predictor: 0
  // euler_maruyama, 1 reverse_diffusion. probability_flow: the ODE step (no noise). t_t: (B,)
  // per-sample times in [0, 1] (None: the float t). dt > 0.
  m.def(
      "reverse_sde_step(Tensor x, Tensor score, Tensor? t_t, float t, float dt, int kind, "
      "float p0, float p1, int predictor, bool probability_flow, int seed, int offset, "
      "int sample_offset) -> Tensor");
  // Returns (grad_x, grad_score): the step is linear in x and score with per-row coefficients.
  m.def(
      "reverse_sde_step_backward(Tensor grad_out, Tensor? t_t, float t, float dt, int kind, "
      "float p0, float p1, int predictor, bool probability_flow, int[] x_shape) "
      "-> (Tensor, Tensor)");
  // Predictor-corrector Langevin corrector (Song et al. 2021, Alg. 4/5, the step size of their
  // released code): n = mean_r ||xi_r||, g = mean_r ||score_r|| (norms over each row, the same
  // xi in the norms and the update), eps_r = 2*alpha_r*(snr*n/g)^2, out = x + eps_r*score +
  // sqrt(2 eps_r)*xi: one ratio for the batch, so a row's result depends on the other rows.
  // eps_r = 0 (out = x) when g == 0 or eps_r > 2^120; a NaN score makes every row NaN.
  // alpha_t: (B,) per-sample alpha (None: the float). Not differentiable.
  m.def(
      "langevin_corrector_step(Tensor x, Tensor score, Tensor? alpha_t, float alpha, float snr, "
      "int seed, int offset, int sample_offset) -> Tensor");
  // out = cx*x - ce*e + cn*xi, each coefficient a float or a per-sample (B,) tensor (the DDPM
  // ancestral step of Ho et al. 2020, Alg. 2, with coefficients gathered by the Python side).
  m.def(
      "affine_noise_step(Tensor x, Tensor e, Tensor? cx_t, float cx, Tensor? ce_t, float ce, "
      "Tensor? cn_t, float cn, int seed, int offset, int sample_offset) -> Tensor");
  // Returns (grad_x = gy*cx, grad_e = -gy*ce, grad_cx = sum_row gy*x, grad_ce = -sum_row gy*e,
  // grad_cn = sum_row gy*xi); each coefficient gradient is (B,) in the compute dtype when its
  // need_* flag is set, else (0,). x (e) is needed only for need_cx_grad (need_ce_grad).
  m.def(
      "affine_noise_step_backward(Tensor grad_out, Tensor? x, Tensor? e, Tensor? cx_t, "
      "float cx, Tensor? ce_t, float ce, int seed, int offset, int sample_offset, "
      "bool need_cx_grad, bool need_ce_grad, bool need_cn_grad) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

// langevin_step_ is an in-place op: x's version counter is bumped, and inputs that require
// grad are refused (gmk/inplace.h).
GMK_INPLACE_DISPATCH("langevin_step_")
