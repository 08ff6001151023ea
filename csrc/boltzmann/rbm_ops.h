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
#include <utility>
#include <vector>

#include "gmk/checks.h"
#include "gmk/glue.h"
#include "gmk/inplace.h"
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

// The k steps on caller-owned buffers: v (B, nv) is the state, updated in place; h and pre_h
// (B, nh), pre_v (B, nv) are work space. All contiguous, of W's dtype and device. On return
// pre_h / pre_v hold the probabilities of the last step's halves (k >= 1). Streams as below.
template <class Pass>
void rbm_gibbs_into(const at::Tensor& W, const at::Tensor& Wt, const at::Tensor& b,
                    const at::Tensor& c, const at::Tensor& beta_t, double beta, int64_t k,
                    int64_t seed, int64_t offset, int64_t sample_offset, at::Tensor& v,
                    at::Tensor& h, at::Tensor& pre_h, at::Tensor& pre_v, const Pass& pass) {
  const at::Tensor none;
  for (int64_t s = 0; s < k; ++s) {
    const bool last = s == k - 1;
    const uint64_t d = 2 * static_cast<uint64_t>(s);
    at::mm_out(pre_h, v, W);
    pass(pre_h, c, none, beta_t, beta, rbm_stream(seed, offset, d, sample_offset), h,
         last ? pre_h : none);
    at::mm_out(pre_v, h, Wt);
    pass(pre_v, b, none, beta_t, beta, rbm_stream(seed, offset, d + 1, sample_offset), v,
         last ? pre_v : none);
  }
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
  rbm_gibbs_into(p.W, p.W.t(), p.b, p.c, p.beta_t, p.beta, k, seed, offset, sample_offset, v, h,
                 pre_h, pre_v, pass);
  return {v, h, pre_v, pre_h};
}

// One epoch of CD-k (persistent = false: each batch's chains start at the batch) or PCD-k
// (persistent: `chains` (n_chains, nv) carry over, updated in place), as RBM.fit's update
// (gmkernels/boltzmann/rbm.py; docs/spec.md §2.1): for the batches v = data[perm[s : s + bs]],
//   ph = σ(vW + c);  v_k from k Gibbs steps at stream position offset + 2k·(batch index);
//   phk = σ(v_k W + c);
//   gW = vᵀph / |v| - v_kᵀphk / |v_k| - weight_decay W;  gb = mean(v) - mean(v_k);
//   gc = mean(ph) - mean(phk);  vel = momentum vel + lr g;  param += vel  (W, b, c in place).
// The GEMMs are ATen calls into buffers allocated once per epoch; the loop runs here, so an
// epoch is one op call with no host synchronization. Returns the sum over the batches of the
// mean squared reconstruction error (float64, 0-d, on W's device): |v - pv_k|² for CD,
// |v - σ(ph Wᵀ + b)|² (after the update) for PCD.
template <class Pass>
at::Tensor rbm_fit_epoch_run(const char* op, at::Tensor& W, at::Tensor& b, at::Tensor& c,
                             at::Tensor& vW, at::Tensor& vb, at::Tensor& vc, at::Tensor& chains,
                             const at::Tensor& data, const at::Tensor& perm, int64_t batch_size,
                             int64_t k, bool persistent, double lr, double momentum,
                             double weight_decay, int64_t seed, int64_t offset, const Pass& pass) {
  const RbmPrep p = rbm_prepare(op, &data, W, b, c, std::nullopt, 1.0);
  check_state(op, W, {{&W, "W"}, {&b, "b"}, {&c, "c"}, {&vW, "vel_W"}, {&vb, "vel_b"},
                      {&vc, "vel_c"}, {&chains, "chains"}});
  TORCH_CHECK_VALUE(vW.sizes() == W.sizes() && vb.sizes() == b.sizes() && vc.sizes() == c.sizes(),
                    op, ": vel_W, vel_b, vel_c must have the shapes of W, b, c, got ", vW.sizes(),
                    ", ", vb.sizes(), ", ", vc.sizes());
  const int64_t N = p.B;
  TORCH_CHECK_VALUE(N >= 1, op, ": data must have at least one row, got ", data.sizes());
  TORCH_CHECK_VALUE(batch_size >= 1, op, ": batch_size must be >= 1, got ", batch_size);
  TORCH_CHECK_VALUE(k >= 1, op, ": k must be >= 1, got ", k);
  TORCH_CHECK_VALUE(perm.dim() == 1 && perm.size(0) == N && perm.scalar_type() == at::kLong &&
                        perm.device() == W.device(),
                    op, ": perm must be an int64 permutation of the ", N, " rows on W's device, "
                    "got shape ", perm.sizes(), ", dtype ", perm.scalar_type());
  if (persistent) {
    TORCH_CHECK_VALUE(chains.dim() == 2 && chains.size(1) == p.nv && chains.size(0) >= 1, op,
                      ": chains must have shape (n_chains, n_visible) = (n_chains, ", p.nv,
                      "), got ", chains.sizes());
  }
  const int64_t bs = std::min(batch_size, N);
  const int64_t n_batches = (N + bs - 1) / bs;
  const int64_t nc = persistent ? chains.size(0) : bs;
  // The whole epoch's stream range: offset + 2k · n_batches must fit in 64 bits.
  const uint64_t per = 2 * static_cast<uint64_t>(k);
  const uint64_t room = ~uint64_t{0} - static_cast<uint64_t>(offset);
  check_span(op, "k", k, offset, per, "2k");  // rbm_gibbs's limit on k, and the first batch
  TORCH_CHECK_VALUE(static_cast<uint64_t>(n_batches) <= room / per,
                    op, ": k and the batches must fit the stream: offset + 2 k * batches <= 2^64, "
                    "got offset ", static_cast<uint64_t>(offset), ", k ", k, ", ", n_batches,
                    " batches");
  checked_stream(op, {nc, std::max(p.nv, p.nh)}, seed, offset, 0);
  const auto opts = W.options();
  at::Tensor vbuf = at::empty({bs, p.nv}, opts), phbuf = at::empty({bs, p.nh}, opts);
  at::Tensor vk_cd = persistent ? at::Tensor() : at::empty({bs, p.nv}, opts);
  at::Tensor h = at::empty({nc, p.nh}, opts), pre_h = at::empty({nc, p.nh}, opts);
  at::Tensor pre_v = at::empty({nc, p.nv}, opts), phk = at::empty({nc, p.nh}, opts);
  at::Tensor dbuf = at::empty({bs, p.nv}, opts);
  const at::Tensor ones = at::ones({std::max(bs, nc)}, opts);  // column sums as GEMVs
  at::Tensor errs = at::empty({n_batches}, opts);  // per-batch squared errors, summed at the end
  const at::Tensor Wt = W.t();
  const at::Tensor none;
  // The work per batch is a few small GEMMs: every ATen call counts, so the buffers' views
  // for a full batch are made once and the statistics are fused into GEMMs / GEMVs with
  // their scale factors (alpha, beta) instead of separate divisions and means.
  auto rows = [](const at::Tensor& t, int64_t m) { return m == t.size(0) ? t : t.narrow(0, 0, m); };
  // the transposed views the statistics read, made once for full batches (each view is a
  // TensorImpl: ~1 µs apiece, against ~60 µs of work per digits-sized batch)
  const at::Tensor vbuf_t = vbuf.t(), phbuf_t = phbuf.t();
  const at::Tensor chains_t = persistent ? chains.t() : at::Tensor(), phk_t = phk.t();
  auto tr = [](const at::Tensor& t, const at::Tensor& full, const at::Tensor& full_t) {
    return t.size(0) == full.size(0) ? full_t : t.t();
  };
  for (int64_t i = 0; i < n_batches; ++i) {
    const int64_t s0 = i * bs, m = std::min(bs, N - s0);
    at::Tensor v = rows(vbuf, m), ph = rows(phbuf, m);
    at::index_select_out(v, p.v, 0, perm.narrow(0, s0, m));
    at::mm_out(ph, v, W);  // (mm + add: cheaper than addmm's broadcast copy at these sizes)
    ph.add_(c).sigmoid_();
    at::Tensor vk = persistent ? chains : rows(vk_cd, m);
    if (!persistent) vk.copy_(v);
    const int64_t r = vk.size(0);
    at::Tensor hh = rows(h, r), prh = rows(pre_h, r), prv = rows(pre_v, r);
    const uint64_t at_i = static_cast<uint64_t>(offset) + per * static_cast<uint64_t>(i);
    rbm_gibbs_into(W, Wt, b, c, none, 1.0, k, seed, static_cast<int64_t>(at_i), 0, vk, hh, prh,
                   prv, pass);
    at::Tensor err_i = errs.select(0, i);
    at::Tensor d = rows(dbuf, m);
    if (!persistent) {
      at::sub_out(d, v, prv);
      at::sum_out(err_i, d.square_(), {0, 1});
    }
    at::Tensor pk = rows(phk, r);
    at::mm_out(pk, vk, W);
    pk.add_(c).sigmoid_();
    // vel = momentum vel + lr g with g = (vᵀph / m - v_kᵀphk / r - weight_decay W) for W and
    // the same with column means for b and c: the scale factors go into the GEMMs / GEMVs
    // (beta = momentum, alpha = ±lr / rows), so there is no gradient buffer, division or
    // mean. (beta = 0 ignores the old velocity, as BLAS does.)
    const double am = lr / static_cast<double>(m), ar = -lr / static_cast<double>(r);
    const at::Tensor vt = tr(v, vbuf, vbuf_t), pht = tr(ph, phbuf, phbuf_t);
    const at::Tensor vkt = persistent ? chains_t : vk.t(), pkt = tr(pk, phk, phk_t);
    const at::Tensor om = rows(ones, m), orr = rows(ones, r);
    vW.addmm_(vt, ph, momentum, am).addmm_(vkt, pk, 1.0, ar);
    if (weight_decay != 0.0) vW.add_(W, -lr * weight_decay);
    vb.addmv_(vt, om, momentum, am).addmv_(vkt, orr, 1.0, ar);
    vc.addmv_(pht, om, momentum, am).addmv_(pkt, orr, 1.0, ar);
    W.add_(vW);
    b.add_(vb);
    c.add_(vc);
    if (persistent) {  // reconstruction error of a one-step reconstruction, with the new W, b
      at::mm_out(d, ph, Wt);
      d.add_(b).sigmoid_();
      at::sub_out(d, v, d);
      at::sum_out(err_i, d.square_(), {0, 1});
    }
  }
  // sums of squares -> means (every batch has bs rows but the last), then their sum
  at::Tensor scale = at::full({n_batches}, 1.0 / static_cast<double>(bs * p.nv),
                              opts.dtype(at::kDouble));
  const int64_t last = N - (n_batches - 1) * bs;
  scale[n_batches - 1] = 1.0 / static_cast<double>(last * p.nv);
  at::Tensor err = errs.to(at::kDouble).mul_(scale).sum();
  return err;
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
template <class Pass>
at::Tensor rbm_fit_epoch(at::Tensor& W, at::Tensor& b, at::Tensor& c, at::Tensor& vW,
                         at::Tensor& vb, at::Tensor& vc, at::Tensor& chains,
                         const at::Tensor& data, const at::Tensor& perm, int64_t batch_size,
                         int64_t k, bool persistent, double lr, double momentum,
                         double weight_decay, int64_t seed, int64_t offset) {
  const char* op = "gmkernels.rbm_fit_epoch_";
  const typename Pass::Guard guard(W.device());
  return rbm_fit_epoch_run(op, W, b, c, vW, vb, vc, chains, data, perm, batch_size, k,
                           persistent, lr, momentum, weight_decay, seed, offset, Pass{});
}

template <class Dev>
void register_rbm_ops(torch::Library& m) {
  m.impl("rbm_gibbs", &rbm_gibbs<Dev>);
  m.impl("rbm_fit_epoch_", &rbm_fit_epoch<Dev>);
  m.impl("rbm_ais", &rbm_ais<Dev>);
}

}  // namespace gmk
