// bm_gibbs on CUDA: the launch of the kernel in bm.cu and its registration. Argument checks and
// the initial fields (at::addmm: cuBLAS) are the CPU's own body (bm.cpp / bm_ops.h), so both
// devices accept and reject the same inputs. Compiled only in CUDA builds (csrc/SOURCES).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "bm.h"
#include "bm_ops.h"
#include "gmk/cuda_glue.h"
#include "gmk/glue.h"

namespace gmk {
namespace {

struct BmCuda {
  using Guard = cuda::DeviceGuard;

  static void run(const char* op, const BmPrep& p) {
    cuda::BmArgs args{};
    args.y = p.y.data_ptr();
    args.h = p.h.data_ptr();
    args.W = p.W.data_ptr();
    args.beta_t = opt_ptr(p.beta_t);
    args.beta = p.beta;
    args.B = p.B;
    args.D = p.D;
    args.n_sweeps = p.n_sweeps;
    args.order = p.order;
    args.st = p.st;
    args.dtype = cuda::floating_dtype(op, "y", p.y);
    cuda::check_launch(op, cuda::launch_bm_gibbs(args, cuda::current_stream()));
  }
};

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) {
  m.impl("bm_gibbs", &gmk::bm_gibbs<gmk::BmCuda>);
  m.impl("bm_fit_epoch_", &gmk::bm_fit_epoch<gmk::BmCuda>);
}
