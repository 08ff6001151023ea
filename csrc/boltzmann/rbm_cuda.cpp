// The RBM ops on CUDA: the glue of the fused pass in rbm.cu. Argument checks and the Gibbs / AIS
// loops are the CPU kernels' own (rbm_prepare in rbm.cpp, rbm_gibbs_run / rbm_ais_run in
// rbm_ops.h), so both devices accept and reject the same inputs and draw the same numbers; the
// GEMMs go to cuBLAS through ATen on the current stream. The composite ops (free energy, exact
// log Z) register the same device-generic body as on the CPU. Compiled only in CUDA builds.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "gmk/checks.h"
#include "gmk/cuda_glue.h"
#include "rbm.h"
#include "rbm_ops.h"

namespace gmk {
namespace {

struct CudaPass {
  void operator()(const at::Tensor& pre, const at::Tensor& bias, const at::Tensor& base,
                  const at::Tensor& beta_t, double beta, const PhiloxStream& st,
                  at::Tensor& sample, const at::Tensor& prob) const {
    const char* op = "gmkernels.rbm_gibbs";
    cuda::RbmPassArgs args{};
    args.pre = pre.data_ptr();
    args.bias = bias.data_ptr();
    args.base = base.defined() ? base.data_ptr() : nullptr;
    args.beta_t = beta_t.defined() ? beta_t.data_ptr() : nullptr;
    args.beta = beta;
    args.sample = sample.data_ptr();
    args.prob = prob.defined() ? prob.data_ptr() : nullptr;
    args.rows = pre.size(0);
    args.M = pre.size(1);
    args.st = st;
    args.dtype = cuda::floating_dtype(op, "v", pre);
    cuda::check_launch(op, cuda::launch_rbm_pass(
                               args, c10::cuda::getCurrentCUDAStream().stream()));
  }
  // The AIS weight increment: a handful of ATen kernels per beta (small next to the GEMMs).
  void ais_weight(const at::Tensor& pre_h, const at::Tensor& c, const at::Tensor& v,
                  const at::Tensor& db, double b0, double b1, at::Tensor& logw) const {
    ais_weight_aten(pre_h, c, v, db, b0, b1, logw);
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rbm_gibbs_cuda(
    const at::Tensor& v0, const at::Tensor& W, const at::Tensor& b, const at::Tensor& c,
    int64_t k, const c10::optional<at::Tensor>& beta_t, double beta, int64_t seed,
    int64_t offset, int64_t sample_offset) {
  const char* op = "gmkernels.rbm_gibbs";
  const c10::cuda::CUDAGuard guard(W.device());
  const RbmPrep p = rbm_prepare(op, &v0, W, b, c, beta_t, beta);
  return rbm_gibbs_run(op, p, k, seed, offset, sample_offset, CudaPass{});
}

std::tuple<at::Tensor, at::Tensor> rbm_ais_cuda(const at::Tensor& W, const at::Tensor& b,
                                                const at::Tensor& c, const at::Tensor& betas,
                                                int64_t n_chains,
                                                const c10::optional<at::Tensor>& base,
                                                int64_t seed, int64_t offset) {
  const char* op = "gmkernels.rbm_ais";
  const c10::cuda::CUDAGuard guard(W.device());
  const RbmPrep p = rbm_prepare(op, nullptr, W, b, c, c10::nullopt, 1.0);
  return rbm_ais_run(op, p, betas, n_chains, base, seed, offset, CudaPass{});
}

at::Tensor rbm_free_energy_cuda(const at::Tensor& v, const at::Tensor& W, const at::Tensor& b,
                                const at::Tensor& c) {
  const c10::cuda::CUDAGuard guard(W.device());
  return rbm_free_energy_impl(v, W, b, c);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rbm_free_energy_backward_cuda(
    const at::Tensor& grad, const at::Tensor& v, const at::Tensor& W, const at::Tensor& b,
    const at::Tensor& c) {
  const c10::cuda::CUDAGuard guard(W.device());
  return rbm_free_energy_backward_impl(grad, v, W, b, c);
}

at::Tensor rbm_log_z_exact_cuda(const at::Tensor& W, const at::Tensor& b, const at::Tensor& c) {
  const c10::cuda::CUDAGuard guard(W.device());
  return rbm_log_z_exact_impl(W, b, c);
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) {
  m.impl("rbm_gibbs", &gmk::rbm_gibbs_cuda);
  m.impl("rbm_free_energy", &gmk::rbm_free_energy_cuda);
  m.impl("rbm_free_energy_backward", &gmk::rbm_free_energy_backward_cuda);
  m.impl("rbm_log_z_exact", &gmk::rbm_log_z_exact_cuda);
  m.impl("rbm_ais", &gmk::rbm_ais_cuda);
}
