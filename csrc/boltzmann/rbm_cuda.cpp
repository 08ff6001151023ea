// The RBM ops on CUDA: the fused pass of rbm.cu as the Pass of the shared Gibbs / AIS loops
// (rbm_ops.h), and the registration of rbm_gibbs / rbm_ais. Argument checks are rbm_prepare
// (rbm.cpp), so both devices accept and reject the same inputs and draw the same numbers; the
// GEMMs go to cuBLAS through ATen on the current stream. The composite ops (free energy, exact
// log Z) are registered once for every device in rbm.cpp. Compiled only in CUDA builds.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "gmk/cuda_glue.h"
#include "gmk/glue.h"
#include "rbm.h"
#include "rbm_ops.h"

namespace gmk {
namespace {

struct CudaPass {
  using Guard = cuda::DeviceGuard;

  void operator()(const at::Tensor& pre, const at::Tensor& bias, const at::Tensor& base,
                  const at::Tensor& beta_t, double beta, const PhiloxStream& st,
                  at::Tensor& sample, const at::Tensor& prob) const {
    const char* op = "gmkernels.rbm_gibbs";
    cuda::RbmPassArgs args{};
    args.pre = pre.data_ptr();
    args.bias = bias.data_ptr();
    args.base = opt_ptr(base);
    args.beta_t = opt_ptr(beta_t);
    args.beta = beta;
    args.sample = sample.data_ptr();
    args.prob = opt_ptr(prob);
    args.rows = pre.size(0);
    args.M = pre.size(1);
    args.st = st;
    args.dtype = cuda::floating_dtype(op, "v", pre);
    cuda::check_launch(op, cuda::launch_rbm_pass(args, cuda::current_stream()));
  }
  // The AIS weight increment: a handful of ATen kernels per beta (small next to the GEMMs).
  void ais_weight(const at::Tensor& pre_h, const at::Tensor& c, const at::Tensor& v,
                  const at::Tensor& db, double b0, double b1, at::Tensor& logw) const {
    ais_weight_aten(pre_h, c, v, db, b0, b1, logw);
  }
};

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) { gmk::register_rbm_ops<gmk::CudaPass>(m); }
