// The fully connected Boltzmann machine (docs/spec.md §2.2): the schema of bm_gibbs and its
// device-agnostic preparation (bm_prepare). The op body is bm_ops.h, the CPU kernel bm_cpu.cpp,
// the CUDA glue bm_cuda.cpp (kernel in bm.cu).
//
// bm_gibbs runs n_sweeps Gibbs sweeps on B independent chains of D spins in {-1, +1}:
//  * sequential order: sweep s visits sites 0..D-1; site i of chain b takes the uniform of
//    element i of row b at offset + s (docs/spec.md §0);
//  * random order: sweep s makes D single-site updates; update j picks site
//    floor(u'_j D) with u'_j the uniform of element D + j, and decides it with the uniform of
//    element j, both of row b at offset + s (a row of 2D elements).
// Either way sweep s uses exactly the stream position offset + s, so a caller that runs
// n sweeps advances its offset by n.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

#include "bm.h"
#include "bm_ops.h"
#include "gmk/checks.h"
#include "gmk/inplace.h"

namespace gmk {

namespace {
// Value checks of contiguous tensors: one pass over the data on the CPU (the tensor-op forms
// below cost ~1 ms per call at (1024, 256), as much as a sweep), tensor ops elsewhere.
bool all_finite(const at::Tensor& t) {
  if (!t.is_cpu()) return at::isfinite(t).all().item<bool>();
  return AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "bm_all_finite", [&] {
    const scalar_t* v = t.data_ptr<scalar_t>();
    bool ok = true;
    for (int64_t i = 0, n = t.numel(); i < n; ++i) ok &= (v[i] - v[i] == scalar_t(0));
    return ok;
  });
}
bool all_spins(const at::Tensor& t) {
  if (!t.is_cpu()) return !at::logical_and(t != 1, t != -1).any().item<bool>();
  return AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "bm_all_spins", [&] {
    const scalar_t* v = t.data_ptr<scalar_t>();
    bool ok = true;
    for (int64_t i = 0, n = t.numel(); i < n; ++i)
      ok &= (v[i] == scalar_t(1)) | (v[i] == scalar_t(-1));
    return ok;
  });
}
}  // namespace

BmPrep bm_prepare(const char* op, const at::Tensor& y, const at::Tensor& W, const at::Tensor& b,
                  int64_t n_sweeps, const std::optional<at::Tensor>& beta_t, double beta,
                  int64_t order, int64_t seed, int64_t offset, int64_t sample_offset) {
  TORCH_CHECK_VALUE(y.dim() == 2, op, ": y must be a (B, D) tensor of spins, got shape ",
                    y.sizes());
  TORCH_CHECK_TYPE(y.scalar_type() == at::kFloat || y.scalar_type() == at::kDouble, op,
                   ": y must be float32 or float64, got ", y.scalar_type());
  const int64_t B = y.size(0), D = y.size(1);
  TORCH_CHECK_VALUE(W.dim() == 2 && W.size(0) == D && W.size(1) == D, op, ": W must have shape (",
                    D, ", ", D, ") for y of shape ", y.sizes(), ", got ", W.sizes());
  TORCH_CHECK_VALUE(b.dim() == 1 && b.size(0) == D, op, ": b must have shape (", D, ",), got ",
                    b.sizes());
  TORCH_CHECK_TYPE(W.scalar_type() == y.scalar_type(), op, ": W must have the dtype of y (",
                   y.scalar_type(), "), got ", W.scalar_type());
  TORCH_CHECK_TYPE(b.scalar_type() == y.scalar_type(), op, ": b must have the dtype of y (",
                   y.scalar_type(), "), got ", b.scalar_type());
  TORCH_CHECK_VALUE(W.device() == y.device(), op, ": W must be on y's device (", y.device(),
                    "), got ", W.device());
  TORCH_CHECK_VALUE(b.device() == y.device(), op, ": b must be on y's device (", y.device(),
                    "), got ", b.device());
  TORCH_CHECK_VALUE(n_sweeps >= 0, op, ": n_sweeps must be >= 0, got ", n_sweeps);
  // sweep s uses offset + s
  check_span(op, "n_sweeps", n_sweeps, offset, static_cast<uint64_t>(n_sweeps), "n_sweeps");
  const BmOrder ord = enum_arg<BmOrder>(op, "order", order);
  TORCH_CHECK_VALUE(D < (int64_t{1} << 24), op, ": D must be < 2^24, got ", D);
  TORCH_CHECK_VALUE(std::isfinite(beta) && beta >= 0, op, ": beta must be finite and >= 0, got ",
                    beta);
  BmPrep p;
  p.beta_t = per_sample(op, beta_t, "beta", y, y.scalar_type());
  if (p.beta_t.defined()) {
    TORCH_CHECK_VALUE(at::isfinite(p.beta_t).all().item<bool>() && !(p.beta_t < 0).any().item<bool>(),
                      op, ": every beta must be finite and >= 0");
  }
  // Value checks. Exact symmetry: the kernel reads row i of W for both the initial fields
  // (through y W) and the updates, which only agree when W equals its transpose exactly; build
  // W as (A + A^T) / 2 to symmetrize (that is exact in floating point).
  p.W = W.contiguous();
  p.y = at::empty({B, D}, y.options());
  p.y.copy_(y);
  if (D > 0) {
    TORCH_CHECK_VALUE(all_finite(p.W), op, ": W must be finite");
    TORCH_CHECK_VALUE(at::equal(W, W.t()), op,
                      ": W must be symmetric (W == W.T exactly; symmetrize with (W + W.T) / 2), max "
                      "|W - W.T| = ", (W - W.t()).abs().max().item<double>());
    TORCH_CHECK_VALUE(!(W.diagonal() != 0).any().item<bool>(), op,
                      ": W must have a zero diagonal, max |diag(W)| = ",
                      W.diagonal().abs().max().item<double>());
    TORCH_CHECK_VALUE(at::isfinite(b).all().item<bool>(), op, ": b must be finite");
    if (B > 0) TORCH_CHECK_VALUE(all_spins(p.y), op, ": y must hold spins in {-1, +1} only");
  }
  p.st = checked_stream(op, y.sizes(), seed, offset, sample_offset);
  p.h = at::addmm(b, p.y, p.W).contiguous();
  p.beta = beta;
  p.B = B;
  p.D = D;
  p.n_sweeps = n_sweeps;
  p.order = ord;
  return p;
}

}  // namespace gmk

TORCH_LIBRARY_FRAGMENT(gmkernels, m) {
  // Spins y (B, D) in {-1, +1}; returns the spins after n_sweeps sweeps (docs/spec.md §2.2, bm.cpp top).
  // order: 0 sequential, 1 random scan. beta_t: per-chain (B,) inverse temperatures, else beta.
  m.def(
      "bm_gibbs(Tensor y, Tensor W, Tensor b, int n_sweeps, Tensor? beta_t, float beta, "
      "int order, int seed, int offset, int sample_offset) -> Tensor");
  // One epoch of BoltzmannMachine.fit: W, b, their momenta and the persistent chains updated in
  // place (bm_fit_epoch in bm_ops.h); returns max |<yyᵀ>_batch - <yyᵀ>_chains| per batch.
  m.def(
      "bm_fit_epoch_(Tensor(a!) W, Tensor(b!) b, Tensor(c!) vel_W, Tensor(d!) vel_b, "
      "Tensor(e!) chains, Tensor data, Tensor? perm, int batch_size, int n_sweeps, int order, "
      "float lr, float momentum, float weight_decay, bool lr_decay, float tau, int t0, int seed, "
      "int offset) -> Tensor");
}

// bm_fit_epoch_ writes in place (gmk/inplace.h: version counters, no tensors requiring grad).
GMK_INPLACE_DISPATCH("bm_fit_epoch_")
