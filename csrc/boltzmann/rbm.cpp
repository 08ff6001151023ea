// The RBM ops (SPEC §2.1): schemas and CPU kernels.
//
//  * rbm_gibbs: k block-Gibbs steps in one call. GEMMs by ATen (BLAS) into buffers allocated
//    once, then one fused pass per half-step (bias add, beta, sigmoid, Bernoulli draw; rbm.h)
//    over the GEMM output: the CPU loop below, vectorized over Philox lanes and run with
//    at::parallel_for (gmk/cpu_stream.h). The loop over steps is rbm_gibbs_run (rbm_ops.h).
//  * rbm_ais: the same fused pass inside a C++ loop over the inverse temperatures.
//  * rbm_free_energy (+ backward) and rbm_log_z_exact: composite ATen ops (GEMM-bound; the
//    elementwise tail is a few ATen ops), one device-generic body registered for CPU and CUDA.
// Supported dtypes: float32 and float64 (the GEMMs run in the input dtype).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>

#include "gmk/checks.h"
#include "gmk/cpu_stream.h"
#include "rbm.h"
#include "rbm_ops.h"

namespace gmk {

namespace {

void check_vec(const char* op, const at::Tensor& t, const char* name, int64_t n, const char* what,
               const at::Tensor& W) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, op, ": ", name, " must have shape (", what,
              ",) = (", n, ",), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == W.scalar_type(), op, ": ", name, " must have the dtype of W (",
              W.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == W.device(), op, ": ", name, " must be on W's device (", W.device(),
              "), got ", t.device());
}

}  // namespace

RbmPrep rbm_prepare(const char* op, const at::Tensor* v, const at::Tensor& W, const at::Tensor& b,
                    const at::Tensor& c, const c10::optional<at::Tensor>& beta_t, double beta) {
  TORCH_CHECK(W.dim() == 2, op, ": W must be 2-D (n_visible, n_hidden), got shape ", W.sizes());
  TORCH_CHECK(W.scalar_type() == at::kFloat || W.scalar_type() == at::kDouble, op,
              ": W must be float32 or float64, got ", W.scalar_type());
  RbmPrep p;
  p.nv = W.size(0);
  p.nh = W.size(1);
  check_vec(op, b, "b", p.nv, "n_visible", W);
  check_vec(op, c, "c", p.nh, "n_hidden", W);
  p.W = W.contiguous();
  p.b = b.contiguous();
  p.c = c.contiguous();
  if (v != nullptr) {
    TORCH_CHECK(v->dim() == 2 && v->size(1) == p.nv, op,
                ": v must have shape (B, n_visible) = (B, ", p.nv, "), got ", v->sizes());
    TORCH_CHECK(v->scalar_type() == W.scalar_type(), op, ": v must have the dtype of W (",
                W.scalar_type(), "), got ", v->scalar_type());
    TORCH_CHECK(v->device() == W.device(), op, ": v must be on W's device (", W.device(),
                "), got ", v->device());
    p.v = v->contiguous();
    p.B = v->size(0);
    p.beta_t = per_sample(op, beta_t, "beta", p.v, W.scalar_type());
  }
  TORCH_CHECK(std::isfinite(beta), op, ": beta must be finite, got ", beta);
  p.beta = beta;
  return p;
}

at::Tensor rbm_free_energy_impl(const at::Tensor& v, const at::Tensor& W, const at::Tensor& b,
                                const at::Tensor& c) {
  const RbmPrep p = rbm_prepare("gmkernels.rbm_free_energy", &v, W, b, c, c10::nullopt, 1.0);
  // F(v) = -bᵀv - Σ_j softplus(c_j + (vW)_j)
  return rbm_softplus(at::addmm(p.c, p.v, p.W)).sum(1).add_(at::mv(p.v, p.b)).neg_();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rbm_free_energy_backward_impl(
    const at::Tensor& grad, const at::Tensor& v, const at::Tensor& W, const at::Tensor& b,
    const at::Tensor& c) {
  const char* op = "gmkernels.rbm_free_energy_backward";
  const RbmPrep p = rbm_prepare(op, &v, W, b, c, c10::nullopt, 1.0);
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == p.B, op, ": grad must have shape (", p.B,
              ",), got ", grad.sizes());
  const at::Tensor g = grad.to(p.W.scalar_type()).contiguous();
  // dF/dpre = -σ(pre) per row, weighted by the incoming gradient: S = g ⊙ σ(vW + c)
  const at::Tensor s = at::sigmoid(at::addmm(p.c, p.v, p.W)).mul_(g.unsqueeze(1));
  at::Tensor gv = at::addmm(at::outer(g, p.b), s, p.W.t()).neg_();
  at::Tensor gW = at::mm(p.v.t(), s).neg_();
  at::Tensor gb = at::mv(p.v.t(), g).neg_();
  at::Tensor gc = s.sum(0).neg_();
  return {gv, gW, gb, gc};
}

// log Z = logsumexp over the smaller layer of its marginal's log-weight:
//   hidden enumerated: cᵀh + Σ_i softplus(b_i + (Wh)_i);  visible: bᵀv + Σ_j softplus(c_j + (vW)_j)
// in float64, over chunks of states (each chunk one GEMM), combined by logsumexp.
at::Tensor rbm_log_z_exact_impl(const at::Tensor& W, const at::Tensor& b, const at::Tensor& c) {
  const char* op = "gmkernels.rbm_log_z_exact";
  const RbmPrep p = rbm_prepare(op, nullptr, W, b, c, c10::nullopt, 1.0);
  const bool over_hidden = p.nh <= p.nv;
  const int64_t n = over_hidden ? p.nh : p.nv;
  const int64_t other = over_hidden ? p.nv : p.nh;
  TORCH_CHECK(n <= 32, op, ": enumerating the smaller layer needs min(n_visible, n_hidden) <= 32"
              " (2^n states), got ", n);
  const at::Tensor Wd = over_hidden ? p.W.to(at::kDouble).t().contiguous() : p.W.to(at::kDouble);
  const at::Tensor bias_e = (over_hidden ? p.c : p.b).to(at::kDouble);  // enumerated layer
  const at::Tensor bias_o = (over_hidden ? p.b : p.c).to(at::kDouble);  // summed-out layer
  const auto dopts = Wd.options();
  const int64_t total = int64_t{1} << n;
  // About 2^22 float64 values per chunk of the (states, other) GEMM output (32 MiB).
  int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(other, 1));
  chunk = std::min(chunk, total);
  const at::Tensor shifts = at::arange(n, dopts.dtype(at::kLong));
  std::vector<at::Tensor> parts;
  for (int64_t s0 = 0; s0 < total; s0 += chunk) {
    const int64_t m = std::min(chunk, total - s0);
    const at::Tensor idx = at::arange(s0, s0 + m, dopts.dtype(at::kLong)).unsqueeze(1);
    const at::Tensor states = at::bitwise_and(at::bitwise_right_shift(idx, shifts), 1).to(at::kDouble);
    at::Tensor lw = at::mv(states, bias_e);
    if (other > 0) lw.add_(rbm_softplus(at::addmm(bias_o, states, Wd)).sum(1));
    parts.push_back(at::logsumexp(lw, 0, /*keepdim=*/true));
  }
  return at::logsumexp(at::cat(parts), 0);
}

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
      const scalar_t* ba = base.defined() ? base.data_ptr<scalar_t>() : nullptr;
      const scalar_t* bt = beta_t.defined() ? beta_t.data_ptr<scalar_t>() : nullptr;
      scalar_t* s = sample.data_ptr<scalar_t>();
      scalar_t* q = prob.defined() ? prob.data_ptr<scalar_t>() : nullptr;
      const scalar_t be = static_cast<scalar_t>(beta);
      if (q && ba) rbm_pass_cpu_kernel<scalar_t, true, true>(pp, bi, ba, bt, be, s, q, rows, M, st);
      else if (q) rbm_pass_cpu_kernel<scalar_t, true, false>(pp, bi, ba, bt, be, s, q, rows, M, st);
      else if (ba) rbm_pass_cpu_kernel<scalar_t, false, true>(pp, bi, ba, bt, be, s, q, rows, M, st);
      else rbm_pass_cpu_kernel<scalar_t, false, false>(pp, bi, ba, bt, be, s, q, rows, M, st);
    });
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rbm_gibbs_cpu(
    const at::Tensor& v0, const at::Tensor& W, const at::Tensor& b, const at::Tensor& c,
    int64_t k, const c10::optional<at::Tensor>& beta_t, double beta, int64_t seed,
    int64_t offset, int64_t sample_offset) {
  const char* op = "gmkernels.rbm_gibbs";
  const RbmPrep p = rbm_prepare(op, &v0, W, b, c, beta_t, beta);
  return rbm_gibbs_run(op, p, k, seed, offset, sample_offset, CpuPass{});
}

std::tuple<at::Tensor, at::Tensor> rbm_ais_cpu(const at::Tensor& W, const at::Tensor& b,
                                               const at::Tensor& c, const at::Tensor& betas,
                                               int64_t n_chains,
                                               const c10::optional<at::Tensor>& base,
                                               int64_t seed, int64_t offset) {
  const char* op = "gmkernels.rbm_ais";
  const RbmPrep p = rbm_prepare(op, nullptr, W, b, c, c10::nullopt, 1.0);
  return rbm_ais_run(op, p, betas, n_chains, base, seed, offset, CpuPass{});
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_FRAGMENT(gmkernels, m) {
  // SPEC §2.1: k block-Gibbs steps h ~ Bern(σ(β(vW + c))), v ~ Bern(σ(β(hWᵀ + b))); step s
  // draws hidden at offset + 2s, visible at offset + 2s + 1 (rows = chains, SPEC §0). beta_t:
  // per-chain (B,) inverse temperatures (None: the float beta). Returns (v_k, h_k, pv_k, ph_k):
  // see rbm_gibbs_run in rbm_ops.h (k = 0: the hidden half of step 0).
  m.def(
      "rbm_gibbs(Tensor v0, Tensor W, Tensor b, Tensor c, int k, Tensor? beta_t, float beta, "
      "int seed, int offset, int sample_offset) -> (Tensor, Tensor, Tensor, Tensor)");
  // F(v) = -bᵀv - Σ_j softplus(c_j + (vW)_j), shape (B,).
  m.def("rbm_free_energy(Tensor v, Tensor W, Tensor b, Tensor c) -> Tensor");
  // (grad_v, grad_W, grad_b, grad_c) of Σ_r grad_r F(v_r).
  m.def(
      "rbm_free_energy_backward(Tensor grad, Tensor v, Tensor W, Tensor b, Tensor c) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  // log Z by enumerating the smaller layer (float64, 0-d).
  m.def("rbm_log_z_exact(Tensor W, Tensor b, Tensor c) -> Tensor");
  // AIS estimate of log Z and its standard error (float64, 0-d each); see rbm_ais_run.
  m.def(
      "rbm_ais(Tensor W, Tensor b, Tensor c, Tensor betas, int n_chains, "
      "Tensor? base_visible_bias, int seed, int offset) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(gmkernels, CPU, m) {
  m.impl("rbm_gibbs", &gmk::rbm_gibbs_cpu);
  m.impl("rbm_free_energy", &gmk::rbm_free_energy_impl);
  m.impl("rbm_free_energy_backward", &gmk::rbm_free_energy_backward_impl);
  m.impl("rbm_log_z_exact", &gmk::rbm_log_z_exact_impl);
  m.impl("rbm_ais", &gmk::rbm_ais_cpu);
}
