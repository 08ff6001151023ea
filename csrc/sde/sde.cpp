// The sde family: schemas and CPU kernels of the fused stochastic steps (SPEC §3).
//
// Issue 3 ops (euler_maruyama_step, reverse_sde_step, langevin_corrector_step,
// affine_noise_step) follow the decided API (schemas below), with these choices where it is
// silent or open:
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
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "gmk/checks.h"
#include "gmk/cpu_stream.h"
#include "sde.h"
#include "sde_ops.h"

namespace gmk {

Clamp<double> make_clamp(const char* op, c10::optional<double> lo, c10::optional<double> hi) {
  TORCH_CHECK(lo.has_value() == hi.has_value(), op,
              ": clamp needs both bounds (lo, hi) or neither");
  if (!lo.has_value()) return Clamp<double>{0.0, 0.0, false};
  TORCH_CHECK(!std::isnan(*lo) && !std::isnan(*hi) && *lo <= *hi, op,
              ": clamp must be (lo, hi) with lo <= hi, got (", *lo, ", ", *hi, ")");
  return Clamp<double>{*lo, *hi, true};
}

LangevinPrep langevin_prepare(const char* op, const at::Tensor& x, const at::Tensor& grad,
                              const c10::optional<at::Tensor>& step_size_t, double step_size,
                              const c10::optional<at::Tensor>& noise_scale_t, double noise_scale,
                              int64_t seed, int64_t offset, int64_t sample_offset,
                              c10::optional<double> clamp_lo, c10::optional<double> clamp_hi) {
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op,
              ": x must be a floating-point tensor, got ", x.scalar_type());
  check_same(op, x, "x", grad, "grad");
  TORCH_CHECK(std::isfinite(step_size) && step_size >= 0, op,
              ": step_size must be finite and >= 0, got ", step_size);
  TORCH_CHECK(std::isfinite(noise_scale) && noise_scale >= 0, op,
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

namespace {

template <typename acc_t>
Clamp<acc_t> cast_clamp(const Clamp<double>& c) {
  return Clamp<acc_t>{static_cast<acc_t>(c.lo), static_cast<acc_t>(c.hi), c.on};
}

template <typename scalar_t, typename acc_t>
void langevin_cpu_kernel(const scalar_t* x, const scalar_t* g, scalar_t* y, const acc_t* a_t,
                         acc_t a, const acc_t* c_t, acc_t c, Clamp<acc_t> cl, int64_t rows,
                         int64_t M, const PhiloxStream& st) {
  cpu::for_each_draw<acc_t>(
      rows, M, st, cpu::NormalDraw<acc_t>{},
      [=](int64_t r, int64_t m0, int64_t n, const acc_t* xi) {
        const scalar_t* xr = x + r * M + m0;
        const scalar_t* gr = g + r * M + m0;
        scalar_t* yr = y + r * M + m0;
        if (!a_t && !c_t) {
#pragma omp simd
          for (int64_t i = 0; i < n; ++i)
            yr[i] = static_cast<scalar_t>(langevin_update<acc_t>(
                static_cast<acc_t>(xr[i]), static_cast<acc_t>(gr[i]), xi[i], a, c, cl));
          return;
        }
        cpu::for_rows(r, m0, n, M, [&](int64_t row, int64_t, int64_t len, int64_t k) {
          const acc_t ar = a_t ? a_t[row] : a;
          const acc_t cr = c_t ? c_t[row] : c;
#pragma omp simd
          for (int64_t i = k; i < k + len; ++i)
            yr[i] = static_cast<scalar_t>(langevin_update<acc_t>(
                static_cast<acc_t>(xr[i]), static_cast<acc_t>(gr[i]), xi[i], ar, cr, cl));
        });
      });
}

// Writes y (which may be p.x itself: the in-place op).
void langevin_cpu_run(const char* op, const LangevinPrep& p, at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "gmkernels", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    langevin_cpu_kernel<scalar_t, acc_t>(
        p.x.data_ptr<scalar_t>(), p.g.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
        p.a_t.defined() ? p.a_t.data_ptr<acc_t>() : nullptr, static_cast<acc_t>(p.a),
        p.c_t.defined() ? p.c_t.data_ptr<acc_t>() : nullptr, static_cast<acc_t>(p.c),
        cast_clamp<acc_t>(p.clamp), p.view.rows, p.view.M, p.st);
  });
}

at::Tensor langevin_step_cpu(const at::Tensor& x, const at::Tensor& grad,
                             const c10::optional<at::Tensor>& step_size_t, double step_size,
                             const c10::optional<at::Tensor>& noise_scale_t, double noise_scale,
                             int64_t seed, int64_t offset, int64_t sample_offset,
                             c10::optional<double> clamp_lo, c10::optional<double> clamp_hi) {
  const char* op = "gmkernels.langevin_step";
  const LangevinPrep p = langevin_prepare(op, x, grad, step_size_t, step_size, noise_scale_t,
                                          noise_scale, seed, offset, sample_offset, clamp_lo,
                                          clamp_hi);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  langevin_cpu_run(op, p, y);
  return y;
}

void langevin_step_inplace_cpu(at::Tensor x, const at::Tensor& grad,
                               const c10::optional<at::Tensor>& step_size_t, double step_size,
                               const c10::optional<at::Tensor>& noise_scale_t,
                               double noise_scale, int64_t seed, int64_t offset,
                               int64_t sample_offset, c10::optional<double> clamp_lo,
                               c10::optional<double> clamp_hi) {
  const char* op = "gmkernels.langevin_step_";
  const LangevinPrep p = langevin_prepare(op, x, grad, step_size_t, step_size, noise_scale_t,
                                          noise_scale, seed, offset, sample_offset, clamp_lo,
                                          clamp_hi);
  if (p.x.is_same(x)) {
    at::Tensor y = x;
    langevin_cpu_run(op, p, y);
  } else {  // x had other strides: p.x is a contiguous copy; update it and copy back
    at::Tensor y = p.x;
    langevin_cpu_run(op, p, y);
    x.copy_(y);
  }
}

// Backward of one row segment [e0, e0 + n): gx = gy*pass, gg = gy*pass*a, and the sums that
// give d/da and d/dc of a per-sample step size / noise scale.
template <typename scalar_t, typename acc_t>
GMK_FORCEINLINE void langevin_bwd_segment(const scalar_t* gy, const scalar_t* y,
                                          const scalar_t* g, acc_t ar, Clamp<acc_t> cl,
                                          scalar_t* gx, scalar_t* gg, int64_t n, const acc_t* xi,
                                          acc_t* sum_a, acc_t* sum_c) {
  acc_t sa = 0, sc = 0;
  if (xi) {
#pragma omp simd reduction(+ : sa, sc)
    for (int64_t i = 0; i < n; ++i) {
      const acc_t go = static_cast<acc_t>(gy[i]) * clamp_pass(static_cast<acc_t>(y[i]), cl);
      gx[i] = static_cast<scalar_t>(go);
      gg[i] = static_cast<scalar_t>(go * ar);
      sa += go * static_cast<acc_t>(g[i]);
      sc += go * xi[i];
    }
  } else {
#pragma omp simd reduction(+ : sa)
    for (int64_t i = 0; i < n; ++i) {
      const acc_t go = static_cast<acc_t>(gy[i]) * clamp_pass(static_cast<acc_t>(y[i]), cl);
      gx[i] = static_cast<scalar_t>(go);
      gg[i] = static_cast<scalar_t>(go * ar);
      sa += go * static_cast<acc_t>(g[i]);
    }
  }
  *sum_a = sa;
  *sum_c = sc;
}

template <typename scalar_t, typename acc_t>
void langevin_bwd_cpu_kernel(const scalar_t* gy, const scalar_t* y, const scalar_t* g,
                             const acc_t* a_t, acc_t a, Clamp<acc_t> cl, scalar_t* gx,
                             scalar_t* gg, acc_t* ga, acc_t* gc, int64_t rows, int64_t M,
                             const PhiloxStream& st) {
  if (rows == 0 || M == 0) return;
  if (!gc) {
    // No noise needed: one parallel pass over rows.
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / M);
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t e0 = r * M;
        acc_t sa, sc;
        langevin_bwd_segment<scalar_t, acc_t>(gy + e0, y + e0, g + e0, a_t ? a_t[r] : a, cl,
                                              gx + e0, gg + e0, M, nullptr, &sa, &sc);
        if (ga) ga[r] = sa;
      }
    });
    return;
  }
  // d/dc needs the noise again: regenerate it from the stream, tile by tile, with one partial
  // sum per tile (long rows span several tiles) reduced per row afterwards.
  const bool long_rows = M >= cpu::kLongRow;
  const int64_t tiles_per_row = long_rows ? (M + cpu::kTileElems - 1) / cpu::kTileElems : 1;
  std::vector<acc_t> part_a(rows * tiles_per_row), part_c(rows * tiles_per_row);
  acc_t* pa = part_a.data();
  acc_t* pc = part_c.data();
  cpu::for_each_draw<acc_t>(
      rows, M, st, cpu::NormalDraw<acc_t>{},
      [=](int64_t r0, int64_t m00, int64_t n0, const acc_t* xi0) {
        cpu::for_rows(r0, m00, n0, M, [&](int64_t r, int64_t m0, int64_t n, int64_t k) {
          const int64_t e0 = r * M + m0;
          const int64_t slot = r * tiles_per_row + m0 / cpu::kTileElems;
          langevin_bwd_segment<scalar_t, acc_t>(gy + e0, y + e0, g + e0, a_t ? a_t[r] : a, cl,
                                                gx + e0, gg + e0, n, xi0 + k, pa + slot,
                                                pc + slot);
        });
      });
  for (int64_t r = 0; r < rows; ++r) {
    acc_t sa = 0, sc = 0;
    for (int64_t t = 0; t < tiles_per_row; ++t) {
      sa += pa[r * tiles_per_row + t];
      sc += pc[r * tiles_per_row + t];
    }
    if (ga) ga[r] = sa;
    gc[r] = sc;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> langevin_step_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& grad,
    const c10::optional<at::Tensor>& step_size_t, double step_size, int64_t seed, int64_t offset,
    int64_t sample_offset, c10::optional<double> clamp_lo, c10::optional<double> clamp_hi,
    bool need_step_grad, bool need_noise_grad) {
  const char* op = "gmkernels.langevin_step_backward";
  check_same(op, out, "out", grad_out, "grad_out");
  check_same(op, out, "out", grad, "grad");
  const at::ScalarType acc = acc_type_of(out.scalar_type());
  const at::Tensor a_t = per_sample(op, step_size_t, "step_size", out, acc);
  const Clamp<double> clamp = make_clamp(op, clamp_lo, clamp_hi);
  const PhiloxStream st = checked_stream(op, out.sizes(), seed, offset, sample_offset);
  const RowView v = row_view(out.sizes());
  const at::Tensor gy = grad_out.contiguous(), y = out.contiguous(), g = grad.contiguous();
  at::Tensor gx = at::empty_like(y), gg = at::empty_like(y);
  const auto acc_opts = y.options().dtype(acc);
  at::Tensor ga = need_step_grad ? at::empty({v.rows}, acc_opts) : at::empty({0}, acc_opts);
  at::Tensor gc = need_noise_grad ? at::empty({v.rows}, acc_opts) : at::empty({0}, acc_opts);
  if (v.M == 0) {  // empty rows: the sums are zero
    ga.zero_();
    gc.zero_();
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "gmkernels", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    langevin_bwd_cpu_kernel<scalar_t, acc_t>(
        gy.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
        a_t.defined() ? a_t.data_ptr<acc_t>() : nullptr, static_cast<acc_t>(step_size),
        cast_clamp<acc_t>(clamp), gx.data_ptr<scalar_t>(), gg.data_ptr<scalar_t>(),
        need_step_grad ? ga.data_ptr<acc_t>() : nullptr,
        need_noise_grad ? gc.data_ptr<acc_t>() : nullptr, v.rows, v.M, st);
  });
  return {gx, gg, ga, gc};
}

}  // namespace
}  // namespace gmk

// =============================================================================================
// Issue 3: euler_maruyama_step, reverse_sde_step, langevin_corrector_step, affine_noise_step.
// All four are affine_update (sde.h) with per-row coefficients from a provider; see sde.h.
namespace gmk {
namespace {

void check_floating_x(const char* op, const at::Tensor& x) {
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op,
              ": x must be a floating-point tensor, got ", x.scalar_type());
}

void check_finite(const char* op, const char* name, double v) {
  TORCH_CHECK(std::isfinite(v), op, ": ", name, " must be finite, got ", v);
}

bool same_shape(at::IntArrayRef a, at::IntArrayRef b) { return a.equals(b); }

// Per-sample t: (rows,) values in [0, 1]. Reading them back costs one device sync on CUDA; the
// check is what keeps an out-of-range t from silently producing NaN or garbage (VP reverse
// diffusion takes sqrt(1 - beta(t) dt)). Returns (min t, max t).
std::pair<double, double> check_t_range(const char* op, const at::Tensor& t_t) {
  if (t_t.numel() == 0) return {0.0, 0.0};
  const at::Tensor mm = at::stack({t_t.min(), t_t.max()}).to(at::kDouble).cpu();
  const double lo = mm[0].item<double>(), hi = mm[1].item<double>();
  TORCH_CHECK(lo >= 0.0 && hi <= 1.0, op, ": t must lie in [0, 1], got values in [", lo, ", ",
              hi, "]");  // a NaN fails both comparisons
  return {lo, hi};
}

}  // namespace

AffinePrep euler_maruyama_prepare(const char* op, const at::Tensor& x, const at::Tensor& drift,
                                  const c10::optional<at::Tensor>& diffusion_t, double diffusion,
                                  double dt, int64_t seed, int64_t offset, int64_t sample_offset) {
  check_floating_x(op, x);
  check_same(op, x, "x", drift, "drift");
  TORCH_CHECK(std::isfinite(dt) && dt != 0.0, op, ": dt must be finite and nonzero, got ", dt);
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
  if (diffusion_t.has_value() && diffusion_t->defined()) {
    const at::Tensor& d = *diffusion_t;
    TORCH_CHECK(at::isFloatingType(d.scalar_type()), op,
                ": diffusion must be a floating-point tensor, got ", d.scalar_type());
    TORCH_CHECK(d.device() == x.device(), op, ": diffusion must be on ", x.device(), ", got ",
                d.device());
    const bool per_row = d.dim() == 1 && d.size(0) == p.view.rows;
    if (per_row) {
      p.cn_t = d.to(p.acc).contiguous();
    } else {
      TORCH_CHECK(same_shape(d.sizes(), x.sizes()), op,
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
                                           const c10::optional<at::Tensor>& diffusion_t,
                                           double dt, int64_t seed, int64_t offset,
                                           int64_t sample_offset, at::IntArrayRef x_shape,
                                           bool need_diffusion_grad, bool* full_diffusion) {
  TORCH_CHECK(at::isFloatingType(grad_out.scalar_type()), op,
              ": grad_out must be a floating-point tensor, got ", grad_out.scalar_type());
  TORCH_CHECK(same_shape(grad_out.sizes(), x_shape), op, ": grad_out must have x's shape ",
              x_shape, ", got ", grad_out.sizes());
  TORCH_CHECK(std::isfinite(dt) && dt != 0.0, op, ": dt must be finite and nonzero, got ", dt);
  const bool has_d = diffusion_t.has_value() && diffusion_t->defined();
  TORCH_CHECK(!need_diffusion_grad || has_d, op,
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
    TORCH_CHECK(per_row || same_shape(d.sizes(), x_shape), op,
                ": diffusion must be a per-sample tensor of shape (", p.view.rows,
                ",) or a tensor of x's shape ", x_shape, ", got shape ", d.sizes());
    *full_diffusion = !per_row;
  }
  p.x = grad_out.contiguous();
  return p;
}

AffinePrep reverse_sde_prepare(const char* op, const at::Tensor& x, const at::Tensor* score,
                               const c10::optional<at::Tensor>& t_t, double t, double dt,
                               int64_t kind, double p0, double p1, int64_t predictor,
                               bool probability_flow, int64_t seed, int64_t offset,
                               int64_t sample_offset) {
  check_floating_x(op, x);
  if (score) check_same(op, x, "x", *score, "score");
  TORCH_CHECK(kind == kSdeVE || kind == kSdeVP || kind == kSdeSubVP, op,
              ": kind must be 0 (ve), 1 (vp) or 2 (subvp), got ", kind);
  TORCH_CHECK(predictor == kPredEulerMaruyama || predictor == kPredReverseDiffusion, op,
              ": predictor must be 0 (euler_maruyama) or 1 (reverse_diffusion), got ", predictor);
  TORCH_CHECK(std::isfinite(dt) && dt > 0.0, op, ": dt must be finite and > 0, got ", dt);
  if (kind == kSdeVE) {
    TORCH_CHECK(std::isfinite(p0) && std::isfinite(p1) && p0 > 0.0 && p1 >= p0, op,
                ": a VE SDE needs 0 < sigma_min <= sigma_max (finite), got sigma_min=", p0,
                " sigma_max=", p1);
  } else {
    TORCH_CHECK(std::isfinite(p0) && std::isfinite(p1) && p0 >= 0.0 && p1 >= 0.0, op,
                ": a VP / sub-VP SDE needs finite beta_min, beta_max >= 0, got beta_min=", p0,
                " beta_max=", p1);
  }
  AffinePrep p;
  p.acc = acc_type_of(x.scalar_type());
  p.view = row_view(x.sizes());
  p.st = checked_stream(op, x.sizes(), seed, offset, sample_offset);
  p.kind = static_cast<int>(kind);
  p.predictor = static_cast<int>(predictor);
  p.pf = probability_flow;
  p.p0 = p0;
  p.p1 = p1;
  p.dt = dt;
  p.noise = !probability_flow;
  double t_lo = t, t_hi = t;
  if (t_t.has_value() && t_t->defined()) {
    p.t_t = per_sample(op, t_t, "t", x, p.acc);
    std::tie(t_lo, t_hi) = check_t_range(op, p.t_t);
    p.src = cuda::CoefSource::kReverseSde;
  } else {
    TORCH_CHECK(std::isfinite(t) && t >= 0.0 && t <= 1.0, op, ": t must lie in [0, 1], got ", t);
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
  if (kind == kSdeVP && predictor == kPredReverseDiffusion) {
    // sqrt(1 - beta(t) dt) needs beta(t) dt <= 1; beta is linear in t, so the ends decide.
    const double bd = std::max(p0 + t_lo * (p1 - p0), p0 + t_hi * (p1 - p0)) * dt;
    TORCH_CHECK(bd <= 1.0, op, ": reverse_diffusion on a VP SDE needs beta(t)*dt <= 1, got ",
                bd, " (a smaller dt)");
  }
  p.x = x.contiguous();
  if (score) p.e = score->contiguous();
  return p;
}

AffinePrep corrector_prepare(const char* op, const at::Tensor& x, const at::Tensor& score,
                             const c10::optional<at::Tensor>& alpha_t, double alpha, double snr,
                             int64_t seed, int64_t offset, int64_t sample_offset) {
  check_floating_x(op, x);
  check_same(op, x, "x", score, "score");
  TORCH_CHECK(std::isfinite(snr) && snr > 0.0, op, ": snr must be finite and > 0, got ", snr);
  TORCH_CHECK(std::isfinite(alpha) && alpha >= 0.0, op,
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
                                const c10::optional<at::Tensor>& cx_t, double cx,
                                const c10::optional<at::Tensor>& ce_t, double ce,
                                const c10::optional<at::Tensor>& cn_t, double cn, int64_t seed,
                                int64_t offset, int64_t sample_offset) {
  check_floating_x(op, x);
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

namespace {

// Calls f(provider, per_row) with the coefficient provider of p (sde.h). per_row = false: every
// row has the same coefficients (provider.row(0)), so the loops need not split at rows.
template <typename acc_t, typename F>
void with_coefs(const AffinePrep& p, const at::Tensor& sums, const F& f) {
  auto ptr = [](const at::Tensor& t) -> const acc_t* {
    return t.defined() ? t.data_ptr<acc_t>() : nullptr;
  };
  switch (p.src) {
    case cuda::CoefSource::kRows: {
      const RowCoefs<acc_t> c{ptr(p.cx_t), ptr(p.ce_t), ptr(p.cn_t), static_cast<acc_t>(p.cx),
                              static_cast<acc_t>(p.ce), static_cast<acc_t>(p.cn)};
      f(c, c.cx_t || c.ce_t || c.cn_t);
      return;
    }
    case cuda::CoefSource::kReverseSde: {
      const ReverseSdeCoefs<acc_t> c{
          ptr(p.t_t), SdeSpec<acc_t>{p.kind, p.predictor, p.pf, static_cast<acc_t>(p.p0),
                                     static_cast<acc_t>(p.p1), static_cast<acc_t>(p.dt)}};
      f(c, true);
      return;
    }
    case cuda::CoefSource::kCorrector: {
      const CorrectorCoefs<acc_t> c{ptr(p.alpha_t), static_cast<acc_t>(p.alpha),
                                    static_cast<acc_t>(p.snr), ptr(sums)};
      f(c, true);
      return;
    }
  }
}

// Grain of a row-parallel loop without draws: about 16K elements per task (as for_each_draw).
int64_t row_grain(int64_t M) { return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(M, 1)); }

// y = affine_update(x, e, cx, ce, cn*nscale | nfull*nscale, xi) over a rows x M stream.
template <typename scalar_t, typename acc_t, typename Coefs>
void affine_fwd_cpu(const scalar_t* x, const scalar_t* e, const scalar_t* nf, acc_t ns,
                    scalar_t* y, const Coefs& cf, bool per_row, bool noise, int64_t rows,
                    int64_t M, const PhiloxStream& st) {
  if (rows == 0 || M == 0) return;
  // One run of n elements from flat index e0 with one set of coefficients; xi null: no noise.
  auto seg = [=](const Coef3<acc_t>& c, int64_t e0, int64_t n, const acc_t* xi) {
    const scalar_t* xr = x + e0;
    const scalar_t* er = e + e0;
    scalar_t* yr = y + e0;
    if (!xi) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i)
        yr[i] = static_cast<scalar_t>(affine_update<acc_t>(
            static_cast<acc_t>(xr[i]), static_cast<acc_t>(er[i]), c.cx, c.ce, acc_t(0), acc_t(0)));
    } else if (nf) {
      const scalar_t* nr = nf + e0;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i)
        yr[i] = static_cast<scalar_t>(affine_update<acc_t>(
            static_cast<acc_t>(xr[i]), static_cast<acc_t>(er[i]), c.cx, c.ce,
            static_cast<acc_t>(nr[i]) * ns, xi[i]));
    } else {
      const acc_t cn = c.cn * ns;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i)
        yr[i] = static_cast<scalar_t>(affine_update<acc_t>(
            static_cast<acc_t>(xr[i]), static_cast<acc_t>(er[i]), c.cx, c.ce, cn, xi[i]));
    }
  };
  if (!noise) {
    at::parallel_for(0, rows, row_grain(M), [&](int64_t r0, int64_t r1) {
      if (!per_row) return seg(cf.row(0), r0 * M, (r1 - r0) * M, nullptr);
      for (int64_t r = r0; r < r1; ++r) seg(cf.row(r), r * M, M, nullptr);
    });
    return;
  }
  const Coef3<acc_t> c0 = cf.row(0);  // used only when !per_row
  cpu::for_each_draw<acc_t>(
      rows, M, st, cpu::NormalDraw<acc_t>{},
      [=](int64_t r, int64_t m0, int64_t n, const acc_t* xi) {
        if (!per_row) return seg(c0, r * M + m0, n, xi);
        cpu::for_rows(r, m0, n, M, [&](int64_t row, int64_t mm, int64_t len, int64_t k) {
          seg(cf.row(row), row * M + mm, len, xi + k);
        });
      });
}

// Backward of affine_update: gx = gy*cx, ge = -gy*ce (affine_grad_* in sde.h), and the per-row
// sums sx = sum gy*x, se = sum gy*e, sn = sum gy*nscale*xi, or the per-element gn =
// gy*nscale*xi. ge, sx, se, sn, gn may be null. Long rows span several tiles: one partial sum
// per (row, tile) slot, reduced per row afterwards (as langevin_step_backward).
template <typename scalar_t, typename acc_t, typename Coefs>
void affine_bwd_cpu(const scalar_t* gy, const scalar_t* x, const scalar_t* e, scalar_t* gx,
                    scalar_t* ge, acc_t* sx, acc_t* se, acc_t* sn, scalar_t* gn, acc_t ns,
                    const Coefs& cf, bool per_row, int64_t rows, int64_t M,
                    const PhiloxStream& st) {
  if (rows == 0 || M == 0) return;
  const bool noise = sn || gn;
  const int64_t tiles_per_row =
      noise && M >= cpu::kLongRow ? (M + cpu::kTileElems - 1) / cpu::kTileElems : 1;
  std::vector<acc_t> part(3 * rows * tiles_per_row, acc_t(0));
  acc_t* pp = part.data();
  // One run within one row; writes the run's sums to slot[0..2].
  auto seg = [=](const Coef3<acc_t>& c, int64_t e0, int64_t n, const acc_t* xi, acc_t* slot) {
    const scalar_t* g = gy + e0;
    scalar_t* gxr = gx + e0;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i)
      gxr[i] = static_cast<scalar_t>(affine_grad_x<acc_t>(static_cast<acc_t>(g[i]), c.cx));
    if (ge) {
      scalar_t* ger = ge + e0;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i)
        ger[i] = static_cast<scalar_t>(affine_grad_e<acc_t>(static_cast<acc_t>(g[i]), c.ce));
    }
    if (sx) {
      const scalar_t* xr = x + e0;
      acc_t s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < n; ++i) s += static_cast<acc_t>(g[i]) * static_cast<acc_t>(xr[i]);
      slot[0] = s;
    }
    if (se) {
      const scalar_t* er = e + e0;
      acc_t s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < n; ++i) s += static_cast<acc_t>(g[i]) * static_cast<acc_t>(er[i]);
      slot[1] = s;
    }
    if (gn) {
      scalar_t* gnr = gn + e0;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i)
        gnr[i] = static_cast<scalar_t>(static_cast<acc_t>(g[i]) * ns * xi[i]);
    } else if (sn) {
      acc_t s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < n; ++i) s += static_cast<acc_t>(g[i]) * ns * xi[i];
      slot[2] = s;
    }
  };
  if (!noise) {
    at::parallel_for(0, rows, row_grain(M), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) seg(cf.row(per_row ? r : 0), r * M, M, nullptr, pp + 3 * r);
    });
  } else {
    cpu::for_each_draw<acc_t>(
        rows, M, st, cpu::NormalDraw<acc_t>{},
        [=](int64_t r0, int64_t m00, int64_t n0, const acc_t* xi) {
          cpu::for_rows(r0, m00, n0, M, [&](int64_t r, int64_t m0, int64_t n, int64_t k) {
            const int64_t slot = r * tiles_per_row + m0 / cpu::kTileElems;
            seg(cf.row(per_row ? r : 0), r * M + m0, n, xi + k, pp + 3 * slot);
          });
        });
  }
  for (int64_t r = 0; r < rows; ++r) {
    acc_t a = 0, b = 0, d = 0;
    for (int64_t t = 0; t < tiles_per_row; ++t) {
      const acc_t* q = pp + 3 * (r * tiles_per_row + t);
      a += q[0];
      b += q[1];
      d += q[2];
    }
    if (sx) sx[r] = a;
    if (se) se[r] = b;
    if (sn) sn[r] = d;
  }
}

// The corrector's first pass: sums[2r] = ||xi_r||^2, sums[2r+1] = ||s_r||^2, with the noise
// regenerated from the stream (the second pass draws the same xi again).
template <typename scalar_t, typename acc_t>
void corrector_norms_cpu(const scalar_t* s, acc_t* sums, int64_t rows, int64_t M,
                         const PhiloxStream& st) {
  if (rows == 0 || M == 0) return;
  const int64_t tiles_per_row = M >= cpu::kLongRow ? (M + cpu::kTileElems - 1) / cpu::kTileElems : 1;
  std::vector<acc_t> part(2 * rows * tiles_per_row, acc_t(0));
  acc_t* pp = part.data();
  cpu::for_each_draw<acc_t>(
      rows, M, st, cpu::NormalDraw<acc_t>{},
      [=](int64_t r0, int64_t m00, int64_t n0, const acc_t* xi0) {
        cpu::for_rows(r0, m00, n0, M, [&](int64_t r, int64_t m0, int64_t n, int64_t k) {
          const acc_t* xi = xi0 + k;
          const scalar_t* sr = s + r * M + m0;
          acc_t a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
          for (int64_t i = 0; i < n; ++i) {
            const acc_t sv = static_cast<acc_t>(sr[i]);
            a += xi[i] * xi[i];
            b += sv * sv;
          }
          acc_t* slot = pp + 2 * (r * tiles_per_row + m0 / cpu::kTileElems);
          slot[0] = a;
          slot[1] = b;
        });
      });
  for (int64_t r = 0; r < rows; ++r) {
    acc_t a = 0, b = 0;
    for (int64_t t = 0; t < tiles_per_row; ++t) {
      a += pp[2 * (r * tiles_per_row + t)];
      b += pp[2 * (r * tiles_per_row + t) + 1];
    }
    sums[2 * r] = a;
    sums[2 * r + 1] = b;
  }
}

template <typename T>
T* opt_ptr(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr<T>() : nullptr;
}

// y = the forward of p (sums: the corrector's norms, else undefined).
void affine_cpu_run(const AffinePrep& p, at::Tensor& y, const at::Tensor& sums) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "gmkernels", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    with_coefs<acc_t>(p, sums, [&](const auto& cf, bool per_row) {
      affine_fwd_cpu<scalar_t, acc_t>(
          p.x.data_ptr<scalar_t>(), p.e.data_ptr<scalar_t>(),
          p.nfull.defined() ? p.nfull.data_ptr<scalar_t>() : nullptr,
          static_cast<acc_t>(p.nscale), y.data_ptr<scalar_t>(), cf, per_row, p.noise,
          p.view.rows, p.view.M, p.st);
    });
  });
}

// Backward of p (p.x is grad_out): outputs as affine_bwd_cpu; undefined / empty tensors skip.
void affine_bwd_cpu_run(const AffinePrep& p, const at::Tensor& x, const at::Tensor& e,
                        at::Tensor& gx, at::Tensor& ge, at::Tensor& sx, at::Tensor& se,
                        at::Tensor& sn, at::Tensor& gn) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "gmkernels", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    with_coefs<acc_t>(p, at::Tensor(), [&](const auto& cf, bool per_row) {
      affine_bwd_cpu<scalar_t, acc_t>(
          p.x.data_ptr<scalar_t>(), opt_ptr<scalar_t>(x), opt_ptr<scalar_t>(e),
          gx.data_ptr<scalar_t>(), opt_ptr<scalar_t>(ge), opt_ptr<acc_t>(sx), opt_ptr<acc_t>(se),
          opt_ptr<acc_t>(sn), opt_ptr<scalar_t>(gn), static_cast<acc_t>(p.nscale), cf, per_row,
          p.view.rows, p.view.M, p.st);
    });
  });
}

at::Tensor empty_acc(const AffinePrep& p) { return at::empty({0}, p.x.options().dtype(p.acc)); }
at::Tensor zeros_rows(const AffinePrep& p) {
  return at::zeros({p.view.rows}, p.x.options().dtype(p.acc));
}

at::Tensor euler_maruyama_step_cpu(const at::Tensor& x, const at::Tensor& drift,
                                   const c10::optional<at::Tensor>& diffusion_t, double diffusion,
                                   double dt, int64_t seed, int64_t offset,
                                   int64_t sample_offset) {
  const AffinePrep p = euler_maruyama_prepare("gmkernels.euler_maruyama_step", x, drift,
                                              diffusion_t, diffusion, dt, seed, offset,
                                              sample_offset);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  affine_cpu_run(p, y, at::Tensor());
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> euler_maruyama_step_backward_cpu(
    const at::Tensor& grad_out, const c10::optional<at::Tensor>& diffusion_t, double dt,
    int64_t seed, int64_t offset, int64_t sample_offset, at::IntArrayRef x_shape,
    bool need_diffusion_grad) {
  bool full = false;
  const AffinePrep p = euler_maruyama_backward_prepare(
      "gmkernels.euler_maruyama_step_backward", grad_out, diffusion_t, dt, seed, offset,
      sample_offset, x_shape, need_diffusion_grad, &full);
  at::Tensor gx = at::empty_like(p.x), gd = at::empty_like(p.x), none;
  at::Tensor sn = need_diffusion_grad && !full ? zeros_rows(p) : at::Tensor();
  at::Tensor gn = need_diffusion_grad && full ? at::empty_like(p.x) : at::Tensor();
  affine_bwd_cpu_run(p, none, none, gx, gd, none, none, sn, gn);
  return {gx, gd, !need_diffusion_grad ? empty_acc(p) : (full ? gn : sn)};
}

at::Tensor reverse_sde_step_cpu(const at::Tensor& x, const at::Tensor& score,
                                const c10::optional<at::Tensor>& t_t, double t, double dt,
                                int64_t kind, double p0, double p1, int64_t predictor,
                                bool probability_flow, int64_t seed, int64_t offset,
                                int64_t sample_offset) {
  const AffinePrep p = reverse_sde_prepare("gmkernels.reverse_sde_step", x, &score, t_t, t, dt,
                                           kind, p0, p1, predictor, probability_flow, seed,
                                           offset, sample_offset);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  affine_cpu_run(p, y, at::Tensor());
  return y;
}

std::tuple<at::Tensor, at::Tensor> reverse_sde_step_backward_cpu(
    const at::Tensor& grad_out, const c10::optional<at::Tensor>& t_t, double t, double dt,
    int64_t kind, double p0, double p1, int64_t predictor, bool probability_flow,
    at::IntArrayRef x_shape) {
  const char* op = "gmkernels.reverse_sde_step_backward";
  TORCH_CHECK(same_shape(grad_out.sizes(), x_shape), op, ": grad_out must have x's shape ",
              x_shape, ", got ", grad_out.sizes());
  const AffinePrep p = reverse_sde_prepare(op, grad_out, nullptr, t_t, t, dt, kind, p0, p1,
                                           predictor, probability_flow, 0, 0, 0);
  at::Tensor gx = at::empty_like(p.x), gs = at::empty_like(p.x), none;
  affine_bwd_cpu_run(p, none, none, gx, gs, none, none, none, none);
  return {gx, gs};
}

at::Tensor langevin_corrector_step_cpu(const at::Tensor& x, const at::Tensor& score,
                                       const c10::optional<at::Tensor>& alpha_t, double alpha,
                                       double snr, int64_t seed, int64_t offset,
                                       int64_t sample_offset) {
  const AffinePrep p = corrector_prepare("gmkernels.langevin_corrector_step", x, score, alpha_t,
                                         alpha, snr, seed, offset, sample_offset);
  at::Tensor sums = at::zeros({p.view.rows, 2}, p.x.options().dtype(p.acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "gmkernels", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    corrector_norms_cpu<scalar_t, acc_t>(p.e.data_ptr<scalar_t>(), sums.data_ptr<acc_t>(),
                                         p.view.rows, p.view.M, p.st);
  });
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  affine_cpu_run(p, y, sums);
  return y;
}

at::Tensor affine_noise_step_cpu(const at::Tensor& x, const at::Tensor& e,
                                 const c10::optional<at::Tensor>& cx_t, double cx,
                                 const c10::optional<at::Tensor>& ce_t, double ce,
                                 const c10::optional<at::Tensor>& cn_t, double cn, int64_t seed,
                                 int64_t offset, int64_t sample_offset) {
  const AffinePrep p = affine_noise_prepare("gmkernels.affine_noise_step", x, &e, cx_t, cx, ce_t,
                                            ce, cn_t, cn, seed, offset, sample_offset);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  affine_cpu_run(p, y, at::Tensor());
  return y;
}

}  // namespace

// Checks of affine_noise_step_backward shared with the CUDA glue: x / e are needed only for
// the coefficient gradients, and must then have grad_out's shape and dtype.
AffineBackwardPrep affine_noise_backward_prepare(
    const char* op, const at::Tensor& grad_out, const c10::optional<at::Tensor>& x,
    const c10::optional<at::Tensor>& e, const c10::optional<at::Tensor>& cx_t, double cx,
    const c10::optional<at::Tensor>& ce_t, double ce, int64_t seed, int64_t offset,
    int64_t sample_offset, bool need_cx_grad, bool need_ce_grad, bool need_cn_grad) {
  AffineBackwardPrep b;
  b.p = affine_noise_prepare(op, grad_out, nullptr, cx_t, cx, ce_t, ce, c10::nullopt, 0.0, seed,
                             offset, sample_offset);
  auto take = [&](const c10::optional<at::Tensor>& t, const char* name, bool need) {
    if (!need) return at::Tensor();
    TORCH_CHECK(t.has_value() && t->defined(), op, ": ", name,
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

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
affine_noise_step_backward_cpu(const at::Tensor& grad_out, const c10::optional<at::Tensor>& x,
                               const c10::optional<at::Tensor>& e,
                               const c10::optional<at::Tensor>& cx_t, double cx,
                               const c10::optional<at::Tensor>& ce_t, double ce, int64_t seed,
                               int64_t offset, int64_t sample_offset, bool need_cx_grad,
                               bool need_ce_grad, bool need_cn_grad) {
  AffineBackwardPrep b = affine_noise_backward_prepare(
      "gmkernels.affine_noise_step_backward", grad_out, x, e, cx_t, cx, ce_t, ce, seed, offset,
      sample_offset, need_cx_grad, need_ce_grad, need_cn_grad);
  at::Tensor gx = at::empty_like(b.p.x), ge = at::empty_like(b.p.x), none;
  affine_bwd_cpu_run(b.p, b.x, b.e, gx, ge, b.sx, b.se, b.sn, none);
  // out = cx*x - ce*e + cn*xi: d/dce = -sum gy*e
  return {gx, ge, b.sx, b.se.neg_(), b.sn};
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_FRAGMENT(gmkernels, m) {
  // SPEC §3.1: out = clamp(x + a*grad + c*xi), xi = gmkernels.random.normal(x.shape, seed,
  // offset, sample_offset). a and c are floats, or per-row (B,) tensors that override them.
  m.def(
      "langevin_step(Tensor x, Tensor grad, Tensor? step_size_t, float step_size, "
      "Tensor? noise_scale_t, float noise_scale, int seed, int offset, int sample_offset, "
      "float? clamp_lo, float? clamp_hi) -> Tensor");
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

  // Euler-Maruyama step of dx = drift dt + diffusion dw (SPEC §3.3):
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
  // One reverse-time step of a VE / VP / sub-VP SDE from t to t - dt (SPEC §3.3, Song et al.
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
  // Predictor-corrector Langevin corrector (Song et al. 2021, Alg. 4/5), per row r:
  // eps_r = 2*alpha_r*(snr*||xi_r|| / ||score_r||)^2, out = x + eps_r*score + sqrt(2 eps_r)*xi,
  // norms over the row, the same xi in the norm and the update. eps_r = 0 (out_r = x_r) when
  // ||score_r|| = 0. alpha_t: (B,) per-sample alpha (None: the float). Not differentiable.
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

TORCH_LIBRARY_IMPL(gmkernels, CPU, m) {
  m.impl("langevin_step", &gmk::langevin_step_cpu);
  m.impl("langevin_step_", &gmk::langevin_step_inplace_cpu);
  m.impl("langevin_step_backward", &gmk::langevin_step_backward_cpu);
  m.impl("euler_maruyama_step", &gmk::euler_maruyama_step_cpu);
  m.impl("euler_maruyama_step_backward", &gmk::euler_maruyama_step_backward_cpu);
  m.impl("reverse_sde_step", &gmk::reverse_sde_step_cpu);
  m.impl("reverse_sde_step_backward", &gmk::reverse_sde_step_backward_cpu);
  m.impl("langevin_corrector_step", &gmk::langevin_corrector_step_cpu);
  m.impl("affine_noise_step", &gmk::affine_noise_step_cpu);
  m.impl("affine_noise_step_backward", &gmk::affine_noise_step_backward_cpu);
}
