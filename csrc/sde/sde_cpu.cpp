// The sde family on the CPU: the fused Langevin and affine-step loops over the Philox stream
// (gmk/cpu_stream.h, docs/spec.md §3) and their registration. Checks and layout: sde.cpp; the op bodies
// (prepare -> allocate -> run): sde_ops.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "gmk/cpu_stream.h"
#include "gmk/glue.h"
#include "sde.h"
#include "sde_ops.h"

namespace gmk {
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
        opt_ptr<acc_t>(p.a_t), static_cast<acc_t>(p.a),
        opt_ptr<acc_t>(p.c_t), static_cast<acc_t>(p.c),
        cast_clamp<acc_t>(p.clamp), p.view.rows, p.view.M, p.st);
  });
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

// The backward of langevin_step into gx, gg and the per-row sums ga, gc (null when not needed).
void langevin_bwd_cpu_run(const LangevinBackwardPrep& p, at::Tensor& gx, at::Tensor& gg,
                          at::Tensor& ga, at::Tensor& gc, bool need_step_grad,
                          bool need_noise_grad) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.y.scalar_type(), "gmkernels", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    langevin_bwd_cpu_kernel<scalar_t, acc_t>(
        p.gy.data_ptr<scalar_t>(), p.y.data_ptr<scalar_t>(), p.g.data_ptr<scalar_t>(),
        opt_ptr<acc_t>(p.a_t), static_cast<acc_t>(p.a), cast_clamp<acc_t>(p.clamp),
        gx.data_ptr<scalar_t>(), gg.data_ptr<scalar_t>(),
        need_step_grad ? ga.data_ptr<acc_t>() : nullptr,
        need_noise_grad ? gc.data_ptr<acc_t>() : nullptr, p.view.rows, p.view.M, p.st);
  });
}

// Calls f(provider, per_row) with the coefficient provider of p (sde.h). per_row = false: every
// row has the same coefficients (provider.row(0)), so the loops need not split at rows.
template <typename acc_t, typename F>
void with_coefs(const AffinePrep& p, const at::Tensor& sums, const F& f) {
  auto ptr = [](const at::Tensor& t) -> const acc_t* { return opt_ptr<acc_t>(t); };
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
      f(c, c.alpha_t != nullptr);  // one step size for the batch unless alpha is per row
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

// y = the forward of p (sums: the corrector's (2,) batch means, else undefined).
void affine_cpu_run(const AffinePrep& p, at::Tensor& y, const at::Tensor& sums) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "gmkernels", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    with_coefs<acc_t>(p, sums, [&](const auto& cf, bool per_row) {
      affine_fwd_cpu<scalar_t, acc_t>(
          p.x.data_ptr<scalar_t>(), p.e.data_ptr<scalar_t>(), opt_ptr<scalar_t>(p.nfull),
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
          p.x.data_ptr<scalar_t>(), opt_ptr_nonempty<scalar_t>(x), opt_ptr_nonempty<scalar_t>(e),
          gx.data_ptr<scalar_t>(), opt_ptr_nonempty<scalar_t>(ge), opt_ptr_nonempty<acc_t>(sx),
          opt_ptr_nonempty<acc_t>(se), opt_ptr_nonempty<acc_t>(sn),
          opt_ptr_nonempty<scalar_t>(gn), static_cast<acc_t>(p.nscale), cf, per_row, p.view.rows,
          p.view.M, p.st);
    });
  });
}

struct SdeCpu {
  using Guard = NoDeviceGuard;
  // The CPU loops write every per-row sum: no zero fill needed.
  static constexpr bool kZeroedSums = false;

  static void langevin(const char* op, const LangevinPrep& p, at::Tensor& y) {
    langevin_cpu_run(op, p, y);
  }
  static void langevin_backward(const char*, const LangevinBackwardPrep& p, at::Tensor& gx,
                                at::Tensor& gg, at::Tensor& ga, at::Tensor& gc,
                                bool need_step_grad, bool need_noise_grad) {
    langevin_bwd_cpu_run(p, gx, gg, ga, gc, need_step_grad, need_noise_grad);
  }
  static void affine(const char*, const AffinePrep& p, at::Tensor& y, const at::Tensor& sums) {
    affine_cpu_run(p, y, sums);
  }
  static void affine_backward(const char*, const AffinePrep& p, const at::Tensor& x,
                              const at::Tensor& e, at::Tensor& gx, at::Tensor& ge, at::Tensor& sx,
                              at::Tensor& se, at::Tensor& sn, at::Tensor& gn) {
    affine_bwd_cpu_run(p, x, e, gx, ge, sx, se, sn, gn);
  }
  static void corrector_norms(const char*, const AffinePrep& p, at::Tensor& sums,
                              at::Tensor& means) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "gmkernels", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      corrector_norms_cpu<scalar_t, acc_t>(p.e.data_ptr<scalar_t>(), sums.data_ptr<acc_t>(),
                                           p.view.rows, p.view.M, p.st);
      corrector_means<acc_t>(sums.data_ptr<acc_t>(), p.view.rows, means.data_ptr<acc_t>());
    });
  }
};

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CPU, m) { gmk::register_sde_ops<gmk::SdeCpu>(m); }
