// bm_gibbs on CUDA: the glue of the kernel in bm.cu. Argument checks and the initial fields
// (at::addmm: cuBLAS) come from the same bm_prepare as the CPU kernel (bm.cpp), so both devices
// accept and reject the same inputs. Compiled only in CUDA builds (csrc/SOURCES).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "gmk/checks.h"
#include "gmk/cuda_glue.h"
#include "bm.h"
#include "bm_ops.h"

namespace gmk {
namespace {

at::Tensor bm_gibbs_cuda(const at::Tensor& y, const at::Tensor& W, const at::Tensor& b,
                         int64_t n_sweeps, const c10::optional<at::Tensor>& beta_t, double beta,
                         int64_t order, int64_t seed, int64_t offset, int64_t sample_offset) {
  const char* op = "gmkernels.bm_gibbs";
  const c10::cuda::CUDAGuard guard(y.device());
  BmPrep p = bm_prepare(op, y, W, b, n_sweeps, beta_t, beta, order, seed, offset, sample_offset);
  cuda::BmArgs args{};
  args.y = p.y.data_ptr();
  args.h = p.h.data_ptr();
  args.W = p.W.data_ptr();
  args.beta_t = p.beta_t.defined() ? p.beta_t.data_ptr() : nullptr;
  args.beta = p.beta;
  args.B = p.B;
  args.D = p.D;
  args.n_sweeps = p.n_sweeps;
  args.order = p.order;
  args.st = p.st;
  args.dtype = cuda::floating_dtype(op, "y", p.y);
  cuda::check_launch(op, cuda::launch_bm_gibbs(args, c10::cuda::getCurrentCUDAStream().stream()));
  return p.y;
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) { m.impl("bm_gibbs", &gmk::bm_gibbs_cuda); }
