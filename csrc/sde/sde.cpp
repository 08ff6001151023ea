// The sde family: schemas and CPU kernels of the fused stochastic steps (SPEC §3).
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
}

TORCH_LIBRARY_IMPL(gmkernels, CPU, m) {
  m.impl("langevin_step", &gmk::langevin_step_cpu);
  m.impl("langevin_step_", &gmk::langevin_step_inplace_cpu);
  m.impl("langevin_step_backward", &gmk::langevin_step_backward_cpu);
}
