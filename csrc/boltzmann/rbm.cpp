// The RBM ops (docs/spec.md §2.1): schemas, the device-agnostic preparation (rbm_prepare) and the
// composite ops.
//
//  * rbm_gibbs: k block-Gibbs steps in one call. GEMMs by ATen (BLAS / cuBLAS) into buffers
//    allocated once, then one fused pass per half-step (bias add, beta, sigmoid, Bernoulli draw;
//    rbm.h) over the GEMM output. The loop over steps is rbm_gibbs_run (rbm_ops.h); the fused
//    pass is the device's: rbm_cpu.cpp (a loop over Philox lanes, at::parallel_for) or
//    rbm_cuda.cpp (rbm.cu).
//  * rbm_ais: the same fused pass inside a C++ loop over the inverse temperatures.
//  * rbm_free_energy (+ backward) and rbm_log_z_exact: composite ATen ops (GEMM-bound; the
//    elementwise tail is a few ATen ops): one device-generic kernel each, registered below for
//    the CPU and, in CUDA builds, for CUDA (every tensor they create takes its device from the
//    inputs, and each ATen call guards its own device).
// Supported dtypes: float32 and float64 (the GEMMs run in the input dtype).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "gmk/checks.h"
#include "gmk/glue.h"
#include "gmk/inplace.h"
#include "rbm.h"
#include "rbm_ops.h"

namespace gmk {

namespace {

void check_vec(const char* op, const at::Tensor& t, const char* name, int64_t n, const char* what,
               const at::Tensor& W) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, op, ": ", name, " must have shape (", what,
                    ",) = (", n, ",), got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == W.scalar_type(), op, ": ", name,
                   " must have the dtype of W (", W.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == W.device(), op, ": ", name, " must be on W's device (",
                    W.device(), "), got ", t.device());
}

}  // namespace

RbmPrep rbm_prepare(const char* op, const at::Tensor* v, const at::Tensor& W, const at::Tensor& b,
                    const at::Tensor& c, const std::optional<at::Tensor>& beta_t, double beta) {
  TORCH_CHECK_VALUE(W.dim() == 2, op, ": W must be 2-D (n_visible, n_hidden), got shape ",
                    W.sizes());
  TORCH_CHECK_TYPE(W.scalar_type() == at::kFloat || W.scalar_type() == at::kDouble, op,
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
    TORCH_CHECK_VALUE(v->dim() == 2 && v->size(1) == p.nv, op,
                      ": v must have shape (B, n_visible) = (B, ", p.nv, "), got ", v->sizes());
    TORCH_CHECK_TYPE(v->scalar_type() == W.scalar_type(), op, ": v must have the dtype of W (",
                     W.scalar_type(), "), got ", v->scalar_type());
    TORCH_CHECK_VALUE(v->device() == W.device(), op, ": v must be on W's device (", W.device(),
                      "), got ", v->device());
    p.v = v->contiguous();
    p.B = v->size(0);
    p.beta_t = per_sample(op, beta_t, "beta", p.v, W.scalar_type());
  }
  TORCH_CHECK_VALUE(std::isfinite(beta), op, ": beta must be finite, got ", beta);
  p.beta = beta;
  return p;
}

at::Tensor rbm_free_energy_impl(const at::Tensor& v, const at::Tensor& W, const at::Tensor& b,
                                const at::Tensor& c) {
  const RbmPrep p = rbm_prepare("gmkernels.rbm_free_energy", &v, W, b, c, std::nullopt, 1.0);
  // F(v) = -bᵀv - Σ_j softplus(c_j + (vW)_j)
  return rbm_softplus(at::addmm(p.c, p.v, p.W)).sum(1).add_(at::mv(p.v, p.b)).neg_();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rbm_free_energy_backward_impl(
    const at::Tensor& grad, const at::Tensor& v, const at::Tensor& W, const at::Tensor& b,
    const at::Tensor& c) {
  const char* op = "gmkernels.rbm_free_energy_backward";
  const RbmPrep p = rbm_prepare(op, &v, W, b, c, std::nullopt, 1.0);
  TORCH_CHECK_VALUE(grad.dim() == 1 && grad.size(0) == p.B, op, ": grad must have shape (", p.B,
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
  const RbmPrep p = rbm_prepare(op, nullptr, W, b, c, std::nullopt, 1.0);
  const bool over_hidden = p.nh <= p.nv;
  const int64_t n = over_hidden ? p.nh : p.nv;
  const int64_t other = over_hidden ? p.nv : p.nh;
  TORCH_CHECK_VALUE(n <= 32, op,
                    ": enumerating the smaller layer needs min(n_visible, n_hidden) <= 32"
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

// The composites are the same kernel on every device.
void register_composites(torch::Library& m) {
  m.impl("rbm_free_energy", &rbm_free_energy_impl);
  m.impl("rbm_free_energy_backward", &rbm_free_energy_backward_impl);
  m.impl("rbm_log_z_exact", &rbm_log_z_exact_impl);
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_FRAGMENT(gmkernels, m) {
  // docs/spec.md §2.1: k block-Gibbs steps h ~ Bern(σ(β(vW + c))), v ~ Bern(σ(β(hWᵀ + b))); step s
  // draws hidden at offset + 2s, visible at offset + 2s + 1 (rows = chains, docs/spec.md §0). beta_t:
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
  // One epoch of CD-k / PCD-k updates of W, b, c and their momenta, in place (rbm_fit_epoch_run
  // in rbm_ops.h); returns the summed per-batch reconstruction error (float64, 0-d).
  m.def(
      "rbm_fit_epoch_(Tensor(a!) W, Tensor(b!) b, Tensor(c!) c, Tensor(d!) vel_W, "
      "Tensor(e!) vel_b, Tensor(f!) vel_c, Tensor(g!) chains, Tensor data, Tensor perm, "
      "int batch_size, int k, bool persistent, float lr, float momentum, float weight_decay, "
      "int seed, int offset) -> Tensor");
}

// rbm_fit_epoch_ writes its parameters in place: their version counters are bumped, and
// tensors that require grad are refused while grad mode is on (gmk/inplace.h).
GMK_INPLACE_DISPATCH("rbm_fit_epoch_")


TORCH_LIBRARY_IMPL(gmkernels, CPU, m) { gmk::register_composites(m); }
#ifdef GMK_WITH_CUDA
TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) { gmk::register_composites(m); }
#endif
