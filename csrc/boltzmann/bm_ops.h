// Torch-side body of bm_gibbs: prepare (bm.cpp: checks, the initial fields) -> the device's run
// (bm_cpu.cpp or bm_cuda.cpp, on the prep's copy of the spins, which is the output). Written
// once here, instantiated by each device file with its Dev (`Guard`, `run(op, prep)`), so both
// devices accept and reject the same inputs.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>

#include "bm.h"
#include "gmk/checks.h"
#include "gmk/glue.h"
#include "gmk/inplace.h"

namespace gmk {

struct BmPrep {
  at::Tensor y;       // (B, D) contiguous copy of the input spins: the output, updated in place
  at::Tensor h;       // (B, D) contiguous initial fields y W + b (W symmetric: = (W y)ᵀ + b)
  at::Tensor W;       // (D, D) contiguous
  at::Tensor beta_t;  // (B,) contiguous in y's dtype, or undefined
  double beta = 1.0;
  int64_t B = 0, D = 0, n_sweeps = 0;
  int order = kBmSequential;
  PhiloxStream st{};
};

// Checks every argument (names it in the error) and computes the initial fields with one GEMM
// (at::addmm: BLAS on the CPU, cuBLAS on CUDA). The value checks (W symmetric with a zero
// diagonal, finite W and b, spins in {-1, +1}) read the tensors: one host sync on CUDA.
BmPrep bm_prepare(const char* op, const at::Tensor& y, const at::Tensor& W, const at::Tensor& b,
                  int64_t n_sweeps, const std::optional<at::Tensor>& beta_t, double beta,
                  int64_t order, int64_t seed, int64_t offset, int64_t sample_offset);

template <class Dev>
at::Tensor bm_gibbs(const at::Tensor& y, const at::Tensor& W, const at::Tensor& b,
                    int64_t n_sweeps, const std::optional<at::Tensor>& beta_t, double beta,
                    int64_t order, int64_t seed, int64_t offset, int64_t sample_offset) {
  const char* op = "gmkernels.bm_gibbs";
  const typename Dev::Guard guard(y.device());
  BmPrep p = bm_prepare(op, y, W, b, n_sweeps, beta_t, beta, order, seed, offset, sample_offset);
  Dev::run(op, p);
  return p.y;
}

// One epoch of BoltzmannMachine.fit (gmkernels/boltzmann/bm.py; docs/spec.md §2.2), with W, b,
// their momenta and the persistent chains updated in place. Batch i (data[perm[i bs:(i+1) bs]],
// or all of data when perm is None) advances the chains by n_sweeps sweeps at stream position
// offset + n_sweeps·i, then
//   D = <y yᵀ>_batch - <y yᵀ>_chains;  gW = D - weight_decay W (zero diagonal);
//   gb = <y>_batch - <y>_chains;  vel = momentum vel + g;  step = lr / (1 + t / tau) when
//   lr_decay (t = t0 + i) else lr;  W += step vel_W, b += step vel_b;  W <- (W + Wᵀ) / 2.
// The arguments are checked once (bm_prepare on the chains: W symmetric with a zero diagonal,
// finite, spins); the batches then run on buffers allocated once, with no host sync. Returns
// max |D| of each batch, (n_batches,) in W's dtype on W's device (the fit's progress signal).
template <class Dev>
at::Tensor bm_fit_epoch(at::Tensor& W, at::Tensor& b, at::Tensor& vW, at::Tensor& vb,
                        at::Tensor& chains, const at::Tensor& data,
                        const std::optional<at::Tensor>& perm, int64_t batch_size,
                        int64_t n_sweeps, int64_t order, double lr, double momentum,
                        double weight_decay, bool lr_decay, double tau, int64_t t0,
                        int64_t seed, int64_t offset) {
  const char* op = "gmkernels.bm_fit_epoch_";
  const typename Dev::Guard guard(W.device());
  check_state(op, W, {{&W, "W"}, {&b, "b"}, {&vW, "vel_W"}, {&vb, "vel_b"}, {&chains, "chains"}});
  // the chains, W and b as bm_gibbs checks them (one host sync for the value checks)
  BmPrep p = bm_prepare(op, chains, W, b, n_sweeps, std::nullopt, 1.0, order, seed, offset, 0);
  TORCH_CHECK_VALUE(vW.sizes() == W.sizes() && vb.sizes() == b.sizes(), op,
                    ": vel_W, vel_b must have the shapes of W, b, got ", vW.sizes(), ", ",
                    vb.sizes());
  const int64_t D = p.D, nc = p.B;
  TORCH_CHECK_VALUE(nc >= 1, op, ": chains must have at least one row, got ", chains.sizes());
  TORCH_CHECK_VALUE(data.dim() == 2 && data.size(1) == D && data.size(0) >= 1, op,
                    ": data must have shape (N, D) = (N, ", D, ") with N >= 1, got ", data.sizes());
  TORCH_CHECK_TYPE(data.scalar_type() == W.scalar_type(), op, ": data must have the dtype of W (",
                   W.scalar_type(), "), got ", data.scalar_type());
  TORCH_CHECK_VALUE(data.device() == W.device(), op, ": data must be on W's device (", W.device(),
                    "), got ", data.device());
  const int64_t N = data.size(0);
  TORCH_CHECK_VALUE(batch_size >= 1, op, ": batch_size must be >= 1, got ", batch_size);
  const bool permuted = has_tensor(perm);
  if (permuted) {
    TORCH_CHECK_VALUE(perm->dim() == 1 && perm->size(0) == N && perm->scalar_type() == at::kLong &&
                          perm->device() == W.device(),
                      op, ": perm must be None or an int64 permutation of the ", N,
                      " rows on W's device, got shape ", perm->sizes(), ", dtype ",
                      perm->scalar_type());
  }
  TORCH_CHECK_VALUE(std::isfinite(tau) && tau > 0, op, ": tau must be finite and > 0, got ", tau);
  const int64_t bs = std::min(batch_size, N);
  const int64_t n_batches = (N + bs - 1) / bs;
  const uint64_t sw = static_cast<uint64_t>(n_sweeps);
  TORCH_CHECK_VALUE(sw == 0 || static_cast<uint64_t>(n_batches) <=
                                   (~uint64_t{0} - static_cast<uint64_t>(offset)) / sw,
                    op, ": n_sweeps and the batches must fit the stream: offset + n_sweeps * "
                    "batches <= 2^64, got offset ", static_cast<uint64_t>(offset), ", n_sweeps ",
                    n_sweeps, ", ", n_batches, " batches");
  const at::Tensor y = data.contiguous();
  const auto opts = W.options();
  at::Tensor ybuf = permuted ? at::empty({bs, D}, opts) : at::Tensor();
  at::Tensor diff = at::empty({D, D}, opts), gb = at::empty({D}, opts);
  const at::Tensor ones = at::ones({std::max(bs, nc)}, opts);
  at::Tensor worst = at::empty({n_batches}, opts);
  at::Tensor Wdiag = W.diagonal(), vdiag = vW.diagonal();
  const double inc = 1.0 / static_cast<double>(nc);
  p.y = chains;  // the sweeps update the chains in place
  for (int64_t i = 0; i < n_batches; ++i) {
    const int64_t s0 = i * bs, m = std::min(bs, N - s0);
    at::Tensor yb;
    if (permuted) {
      yb = m == bs ? ybuf : ybuf.narrow(0, 0, m);
      at::index_select_out(yb, y, 0, perm->narrow(0, s0, m));
    } else {
      yb = y.narrow(0, s0, m);
    }
    if (i > 0) at::mm_out(p.h, chains, W).add_(b);  // the fields of the current chains, W, b
    p.st = make_stream(static_cast<uint64_t>(seed),
                       static_cast<uint64_t>(offset) + sw * static_cast<uint64_t>(i), 0);
    Dev::run(op, p);
    const double im = 1.0 / static_cast<double>(m);
    const at::Tensor ybt = yb.t(), om = ones.narrow(0, 0, m), oc = ones.narrow(0, 0, nc);
    at::mm_out(diff, ybt, yb);
    diff.addmm_(chains.t(), chains, im, -inc);  // <y yᵀ>_batch - <y yᵀ>_chains
    at::Tensor worst_i = worst.select(0, i);
    at::amax_out(worst_i, diff.abs(), {0, 1});
    at::mv_out(gb, ybt, om);
    gb.addmv_(chains.t(), oc, im, -inc);
    // vel_W = momentum vel_W + D - weight_decay W, with a zero diagonal (W's stays 0)
    vW.mul_(momentum).add_(diff);
    if (weight_decay != 0.0) vW.add_(W, -weight_decay);
    vdiag.zero_();
    vb.mul_(momentum).add_(gb);
    const double step = lr_decay ? lr / (1.0 + static_cast<double>(t0 + i) / tau) : lr;
    W.add_(vW, step);
    b.add_(vb, step);
    // W <- (W + Wᵀ) / 2, exact in floating point; the diagonal stays zero
    W.copy_(at::add(W, W.t()).mul_(0.5));
    Wdiag.zero_();
  }
  return worst;
}

}  // namespace gmk
