// The RBM ops on the CPU: the fused pass of one block-Gibbs half-step and the AIS weight
// increment as CPU loops, and the registration of rbm_gibbs / rbm_ais. The loops over steps and
// temperatures are rbm_ops.h (shared with CUDA), the checks rbm_prepare (rbm.cpp).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "gmk/cpu_stream.h"
#include "gmk/glue.h"
#include "rbm.h"
#include "rbm_ops.h"

namespace gmk {

namespace {

// The fused pass on the CPU: a loop over Philox tiles (cpu::for_each_draw, parallel over
// tiles), each element done by rbm_sample_prob. kProb: write the probabilities; kBase: AIS's
// base-rate bias term.
template <typename scalar_t, bool kProb, bool kBase>
void rbm_pass_cpu_kernel(const scalar_t* pre, const scalar_t* bias, const scalar_t* base,
                         const scalar_t* beta_t, scalar_t beta, scalar_t* sample, scalar_t* prob,
                         int64_t rows, int64_t M, const PhiloxStream& st) {
  cpu::for_each_draw<scalar_t>(
      rows, M, st, cpu::UniformDraw<scalar_t>{},
      [=](int64_t r, int64_t m0, int64_t n, const scalar_t* u) {
        cpu::for_rows(r, m0, n, M, [&](int64_t row, int64_t mm, int64_t len, int64_t k) {
          const scalar_t br = beta_t ? beta_t[row] : beta;
          const scalar_t* pr = pre + row * M + mm;
          const scalar_t* bi = bias + mm;
          const scalar_t* ba = kBase ? base + mm : nullptr;
          scalar_t* sr = sample + row * M + mm;
          scalar_t* qr = kProb ? prob + row * M + mm : nullptr;
          const scalar_t* ur = u + k;
#pragma omp simd
          for (int64_t i = 0; i < len; ++i) {
            scalar_t q;
            sr[i] = rbm_sample_prob<scalar_t>(pr[i], bi[i], br, kBase ? ba[i] : scalar_t(0),
                                              ur[i], &q);
            if (kProb) qr[i] = q;
          }
        });
      });
}

// The AIS weight increment of every chain r (rbm_ais_run), in float64:
// logw[r] += (b1 - b0) Σ_i v_ri db_i + Σ_j [softplus(b1 x_rj) - softplus(b0 x_rj)],
// x = pre_h + c. One task per block of chains; libm exp / log1p in double.
template <typename scalar_t>
void ais_weight_cpu_kernel(const scalar_t* pre, const scalar_t* c, const scalar_t* v,
                           const double* db, double b0, double b1, double* logw, int64_t n,
                           int64_t nh, int64_t nv) {
  auto sp = [](double x) { return (x > 0 ? x : 0.0) + std::log1p(std::exp(-std::fabs(x))); };
  at::parallel_for(0, n, std::max<int64_t>(1, 4096 / std::max<int64_t>(nh + nv, 1)),
                   [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      double acc = 0.0, dv = 0.0;
      const scalar_t* pr = pre + r * nh;
      for (int64_t j = 0; j < nh; ++j) {
        const double x = static_cast<double>(pr[j]) + static_cast<double>(c[j]);
        acc += sp(b1 * x) - sp(b0 * x);
      }
      const scalar_t* vr = v + r * nv;
      for (int64_t i = 0; i < nv; ++i) dv += static_cast<double>(vr[i]) * db[i];
      logw[r] += (b1 - b0) * dv + acc;
    }
  });
}

struct CpuPass {
  using Guard = NoDeviceGuard;

  void ais_weight(const at::Tensor& pre_h, const at::Tensor& c, const at::Tensor& v,
                  const at::Tensor& db, double b0, double b1, at::Tensor& logw) const {
    AT_DISPATCH_FLOATING_TYPES(pre_h.scalar_type(), "gmkernels.rbm_ais", [&] {
      ais_weight_cpu_kernel<scalar_t>(pre_h.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(),
                                      v.data_ptr<scalar_t>(), db.data_ptr<double>(), b0, b1,
                                      logw.data_ptr<double>(), pre_h.size(0), pre_h.size(1),
                                      v.size(1));
    });
  }

  void operator()(const at::Tensor& pre, const at::Tensor& bias, const at::Tensor& base,
                  const at::Tensor& beta_t, double beta, const PhiloxStream& st,
                  at::Tensor& sample, const at::Tensor& prob) const {
    const int64_t rows = pre.size(0), M = pre.size(1);
    AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "gmkernels.rbm_pass", [&] {
      const scalar_t* pp = pre.data_ptr<scalar_t>();
      const scalar_t* bi = bias.data_ptr<scalar_t>();
      const scalar_t* ba = opt_ptr<scalar_t>(base);
      const scalar_t* bt = opt_ptr<scalar_t>(beta_t);
      scalar_t* s = sample.data_ptr<scalar_t>();
      scalar_t* q = opt_ptr<scalar_t>(prob);
      const scalar_t be = static_cast<scalar_t>(beta);
      if (q && ba) rbm_pass_cpu_kernel<scalar_t, true, true>(pp, bi, ba, bt, be, s, q, rows, M, st);
      else if (q) rbm_pass_cpu_kernel<scalar_t, true, false>(pp, bi, ba, bt, be, s, q, rows, M, st);
      else if (ba) rbm_pass_cpu_kernel<scalar_t, false, true>(pp, bi, ba, bt, be, s, q, rows, M, st);
      else rbm_pass_cpu_kernel<scalar_t, false, false>(pp, bi, ba, bt, be, s, q, rows, M, st);
    });
  }
};
}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CPU, m) { gmk::register_rbm_ops<gmk::CpuPass>(m); }
