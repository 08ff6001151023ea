// Torch-side bodies of the RBM ops (docs/spec.md §2.1), shared by the CPU registration (rbm_cpu.cpp)
// and the CUDA glue (rbm_cuda.cpp). The k-step Gibbs loop and the AIS loop are written once
// here, templated on the device's fused pass (a CPU loop or a CUDA launch; the Pass also names
// the device guard, `Pass::Guard`); the GEMMs are ATen calls
// (BLAS / cuBLAS) into buffers allocated once per op call, so there is no per-step Python and
// no per-step allocation.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <cstdint>
#include <tuple>
#include <vector>

#include "gmk/checks.h"
#include "gmk/glue.h"
#include "rbm.h"

namespace gmk {

// Inputs of the RBM ops, checked (rbm_prepare in rbm.cpp) and made contiguous.
struct RbmPrep {
  at::Tensor v, W, b, c;  // v (B, nv) (undefined for ops without v), W (nv, nh), b (nv,), c (nh,)
  at::Tensor beta_t;      // (B,) per-chain beta in v's dtype, or undefined
  double beta = 1.0;
  int64_t B = 0, nv = 0, nh = 0;
};

// Checks shapes, dtypes (float32 / float64) and devices; v may be undefined (W-only ops).
RbmPrep rbm_prepare(const char* op, const at::Tensor* v, const at::Tensor& W, const at::Tensor& b,
                    const at::Tensor& c, const std::optional<at::Tensor>& beta_t, double beta);

// Composite (device-generic ATen) ops, defined and registered (CPU, and CUDA in CUDA builds) in
// rbm.cpp.
at::Tensor rbm_free_energy_impl(const at::Tensor& v, const at::Tensor& W, const at::Tensor& b,
                                const at::Tensor& c);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rbm_free_energy_backward_impl(
    const at::Tensor& grad, const at::Tensor& v, const at::Tensor& W, const at::Tensor& b,
    const at::Tensor& c);
at::Tensor rbm_log_z_exact_impl(const at::Tensor& W, const at::Tensor& b, const at::Tensor& c);

// The stream of one half-step: stream position offset + delta (uint64 arithmetic).
inline PhiloxStream rbm_stream(int64_t seed, int64_t offset, uint64_t delta, int64_t sample_offset) {
  return make_stream(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset) + delta,
                     static_cast<uint64_t>(sample_offset));
}

// Pass (a functor with operator() and ais_weight, see CpuPass in rbm_cpu.cpp):
//   void(const at::Tensor& pre, const at::Tensor& bias, const at::Tensor& base,
//        const at::Tensor& beta_t, double beta, const PhiloxStream& st,
//        at::Tensor& sample, const at::Tensor& prob)
// writes sample (and prob when defined; prob may be pre itself) from the contiguous
// (rows, M) pre-activation, as rbm.h's rbm_sample_prob.
//
// Step s draws the hidden units at offset + 2s and the visible units at offset + 2s + 1.
// Returns (v_k, h_k, pv_k, ph_k): the visible sample and probabilities of the last step, and
// the hidden sample and probabilities it was drawn from (computed from v_{k-1}). k = 0 is the
// hidden half of step 0: v_k = pv_k = v0, and h_k, ph_k are drawn from v0 at `offset`.
template <class Pass>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rbm_gibbs_run(
    const char* op, const RbmPrep& p, int64_t k, int64_t seed, int64_t offset,
    int64_t sample_offset, const Pass& pass) {
  TORCH_CHECK_VALUE(k >= 0, op, ": k must be >= 0, got ", k);
  // positions offset .. offset + 2k - 1 (k = 0: offset alone)
  check_span(op, "k", k, offset, k == 0 ? 1 : 2 * static_cast<uint64_t>(k), "2k");
  // The docs/spec.md §0 limits (rows + sample_offset < 2^32, row length) for both layers.
  checked_stream(op, p.v.sizes(), seed, offset, sample_offset);
  checked_stream(op, {p.B, p.nh}, seed, offset, sample_offset);
  const auto opts = p.v.options();
  at::Tensor v = p.v.clone(at::MemoryFormat::Contiguous);  // the visible state, updated in place
  at::Tensor h = at::empty({p.B, p.nh}, opts);
  at::Tensor pre_h = at::empty({p.B, p.nh}, opts);
  const at::Tensor none;
  if (k == 0) {
    at::mm_out(pre_h, v, p.W);
    pass(pre_h, p.c, none, p.beta_t, p.beta, rbm_stream(seed, offset, 0, sample_offset), h, pre_h);
    return {v, h, v.clone(), pre_h};
  }
  at::Tensor pre_v = at::empty({p.B, p.nv}, opts);
  const at::Tensor Wt = p.W.t();
  for (int64_t s = 0; s < k; ++s) {
    const bool last = s == k - 1;
    const uint64_t d = 2 * static_cast<uint64_t>(s);
    at::mm_out(pre_h, v, p.W);
    pass(pre_h, p.c, none, p.beta_t, p.beta, rbm_stream(seed, offset, d, sample_offset), h,
         last ? pre_h : none);
    at::mm_out(pre_v, h, Wt);
    pass(pre_v, p.b, none, p.beta_t, p.beta, rbm_stream(seed, offset, d + 1, sample_offset), v,
         last ? pre_v : none);
  }
  return {v, h, pre_v, pre_h};
}

// Stable softplus, log(1 + e^x) = max(x, 0) + log1p(e^{-|x|}), in ATen ops.
inline at::Tensor rbm_softplus(const at::Tensor& x) {
  return at::clamp_min(x, 0).add_(at::log1p(at::exp(-at::abs(x))));
}

// The AIS weight increment in ATen ops (the CUDA path; the CPU has a fused loop in rbm_cpu.cpp):
// logw += (b1 - b0) vᵀ(b - b_A) + Σ_j [softplus(b1 x_j) - softplus(b0 x_j)], x = pre_h + c,
// all in float64.
inline void ais_weight_aten(const at::Tensor& pre_h, const at::Tensor& c, const at::Tensor& v,
                            const at::Tensor& db, double b0, double b1, at::Tensor& logw) {
  const at::Tensor x = at::add(pre_h.to(at::kDouble), c.to(at::kDouble));  // a new tensor
  logw.add_(at::mv(v.to(at::kDouble), db), b1 - b0);
  logw.add_((rbm_softplus(x * b1) - rbm_softplus(x * b0)).sum(1));
}

// AIS (Salakhutdinov & Murray 2008) from the base-rate model A (W = 0, visible bias b_A,
// hidden bias 0) to the RBM B. Intermediate k has unnormalized marginal
//   log p*_k(v) = (1 - beta_k) b_Aᵀv + beta_k bᵀv + Σ_j softplus(beta_k (c_j + (vW)_j)),
// so log Z_0 = Σ_i softplus(b_A,i) + nh log 2 and v ~ Bern(σ(b_A)) samples p_0 exactly.
// Transition at beta_k: h ~ Bern(σ(beta_k (vW + c))), v ~ Bern(σ(beta_k (hWᵀ + b) + (1 -
// beta_k) b_A)) (one fused Gibbs step with the base bias). Streams: the base sample draws at
// `offset`, the transition of level k (1 <= k < K-1) at offset + 2k - 1 (hidden) and offset + 2k
// (visible). log w accumulates in float64. Returns (log Z, SE of log Z by the delta method:
// std(w) / (mean(w) sqrt(n))), both float64 0-d tensors.
template <class Pass>
std::tuple<at::Tensor, at::Tensor> rbm_ais_run(const char* op, const RbmPrep& p,
                                               const at::Tensor& betas_in, int64_t n_chains,
                                               const std::optional<at::Tensor>& base_in,
                                               int64_t seed, int64_t offset, const Pass& pass) {
  TORCH_CHECK_VALUE(n_chains >= 2, op,
                    ": n_chains must be >= 2 (the standard error needs two), got ", n_chains);
  TORCH_CHECK_VALUE(n_chains < (int64_t{1} << 32), op, ": n_chains must be < 2^32, got ", n_chains);
  TORCH_CHECK_VALUE(betas_in.dim() == 1 && betas_in.size(0) >= 2, op,
                    ": betas must be a 1-D tensor of at least 2 inverse temperatures, got shape ",
                    betas_in.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(betas_in.scalar_type()), op,
                   ": betas must be a floating-point tensor, got ", betas_in.scalar_type());
  const at::Tensor betas_h = betas_in.to(at::kCPU, at::kDouble).contiguous();
  const double* bt = betas_h.data_ptr<double>();
  const int64_t K = betas_h.size(0);
  TORCH_CHECK_VALUE(bt[0] == 0.0 && bt[K - 1] == 1.0, op,
                    ": betas must start at 0 and end at 1, got ", bt[0], " ... ", bt[K - 1]);
  for (int64_t i = 1; i < K; ++i)
    TORCH_CHECK_VALUE(std::isfinite(bt[i]) && bt[i] >= bt[i - 1], op,
                      ": betas must be finite and nondecreasing, got betas[", i - 1, "] = ", bt[i - 1],
                      ", betas[", i, "] = ", bt[i]);
  const auto opts = p.W.options();
  at::Tensor bA;
  if (has_tensor(base_in)) {
    const at::Tensor& t = *base_in;
    TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == p.nv, op,
                      ": base_visible_bias must have shape (n_visible,) = (", p.nv, ",), got ",
                      t.sizes());
    TORCH_CHECK_VALUE(t.device() == p.W.device(), op, ": base_visible_bias must be on ",
                      p.W.device(), ", got ", t.device());
    TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), op,
                     ": base_visible_bias must be a floating-point tensor, got ", t.scalar_type());
    bA = t.to(p.W.scalar_type()).contiguous();
  } else {
    bA = at::zeros({p.nv}, opts);
  }
  const int64_t n = n_chains;
  checked_stream(op, {n, std::max(p.nv, p.nh)}, seed, offset, 0);
  // positions offset .. offset + 2K - 2
  check_span(op, "len(betas)", K, offset, 2 * static_cast<uint64_t>(K) - 1, "2 len(betas) - 1");
  at::Tensor v = at::empty({n, p.nv}, opts);
  at::Tensor h = at::empty({n, p.nh}, opts);
  at::Tensor pre_h = at::empty({n, p.nh}, opts);
  at::Tensor pre_v = at::zeros({n, p.nv}, opts);
  const at::Tensor none;
  // Exact sample of p_0: v ~ Bern(σ(b_A)).
  pass(pre_v, bA, none, none, 1.0, rbm_stream(seed, offset, 0, 0), v, none);
  const at::Tensor Wt = p.W.t();
  const at::Tensor db = (p.b.to(at::kDouble) - bA.to(at::kDouble)).contiguous();  // b - b_A
  at::Tensor logw = at::zeros({n}, opts.dtype(at::kDouble));
  for (int64_t k = 1; k < K; ++k) {
    const double b1 = bt[k], b0 = bt[k - 1];
    at::mm_out(pre_h, v, p.W);
    // log p*_k(v) - log p*_{k-1}(v) at the current state
    if (b1 != b0) pass.ais_weight(pre_h, p.c, v, db, b0, b1, logw);
    if (k == K - 1) break;  // the last transition would not change the estimate
    const uint64_t d = 2 * static_cast<uint64_t>(k);
    pass(pre_h, p.c, none, none, b1, rbm_stream(seed, offset, d - 1, 0), h, none);
    at::mm_out(pre_v, h, Wt);
    pass(pre_v, p.b, bA, none, b1, rbm_stream(seed, offset, d, 0), v, none);
  }
  const double log_za = rbm_softplus(bA.to(at::kDouble)).sum().item<double>() +
                        static_cast<double>(p.nh) * std::log(2.0);
  const at::Tensor mx = logw.max();
  const at::Tensor w = at::exp(logw - mx);
  const at::Tensor mean = w.mean();
  const at::Tensor log_z = at::log(mean) + mx + log_za;
  const at::Tensor se = w.std() / (mean * std::sqrt(static_cast<double>(n)));
  return {log_z, se};
}

// The op bodies, registered as &op<Pass> by rbm_cpu.cpp and rbm_cuda.cpp.
template <class Pass>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rbm_gibbs(
    const at::Tensor& v0, const at::Tensor& W, const at::Tensor& b, const at::Tensor& c,
    int64_t k, const std::optional<at::Tensor>& beta_t, double beta, int64_t seed,
    int64_t offset, int64_t sample_offset) {
  const char* op = "gmkernels.rbm_gibbs";
  const typename Pass::Guard guard(W.device());
  const RbmPrep p = rbm_prepare(op, &v0, W, b, c, beta_t, beta);
  return rbm_gibbs_run(op, p, k, seed, offset, sample_offset, Pass{});
}

template <class Pass>
std::tuple<at::Tensor, at::Tensor> rbm_ais(const at::Tensor& W, const at::Tensor& b,
                                           const at::Tensor& c, const at::Tensor& betas,
                                           int64_t n_chains,
                                           const std::optional<at::Tensor>& base, int64_t seed,
                                           int64_t offset) {
  const char* op = "gmkernels.rbm_ais";
  const typename Pass::Guard guard(W.device());
  const RbmPrep p = rbm_prepare(op, nullptr, W, b, c, std::nullopt, 1.0);
  return rbm_ais_run(op, p, betas, n_chains, base, seed, offset, Pass{});
}

// The registration of the ops above for one device: its TORCH_LIBRARY_IMPL block calls this.
template <class Dev>
void register_rbm_ops(torch::Library& m) {
  m.impl("rbm_gibbs", &rbm_gibbs<Dev>);
  m.impl("rbm_ais", &rbm_ais<Dev>);
}

}  // namespace gmk
