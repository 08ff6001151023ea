// The sde family on CUDA: the launches of the kernels in sde.cu and their registration. The
// op bodies (checks and layout from sde.cpp, allocation) are the CPU's own, sde_ops.h, so both
// devices accept and reject the same inputs. Compiled only in CUDA builds (csrc/SOURCES).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "gmk/cuda_glue.h"
#include "gmk/glue.h"
#include "sde.h"
#include "sde_ops.h"

namespace gmk {
namespace {

struct SdeCuda {
  using Guard = cuda::DeviceGuard;
  // The kernels add per-warp partial sums with atomics: the sums start at zero.
  static constexpr bool kZeroedSums = true;

  // Writes y (which may be p.x itself: the in-place op).
  static void langevin(const char* op, const LangevinPrep& p, at::Tensor& y) {
    cuda::LangevinArgs args{};
    args.x = p.x.data_ptr();
    args.g = p.g.data_ptr();
    args.y = y.data_ptr();
    args.a_t = opt_ptr(p.a_t);
    args.c_t = opt_ptr(p.c_t);
    args.a = p.a;
    args.c = p.c;
    args.lo = p.clamp.lo;
    args.hi = p.clamp.hi;
    args.clamp = p.clamp.on;
    args.rows = p.view.rows;
    args.M = p.view.M;
    args.st = p.st;
    args.dtype = cuda::floating_dtype(op, "x", p.x);
    cuda::check_launch(op, cuda::launch_langevin(args, cuda::current_stream()));
  }

  static void langevin_backward(const char* op, const LangevinBackwardPrep& p, at::Tensor& gx,
                                at::Tensor& gg, at::Tensor& ga, at::Tensor& gc,
                                bool need_step_grad, bool need_noise_grad) {
    cuda::LangevinBackwardArgs args{};
    args.gy = p.gy.data_ptr();
    args.y = p.y.data_ptr();
    args.g = p.g.data_ptr();
    args.a_t = opt_ptr(p.a_t);
    args.a = p.a;
    args.lo = p.clamp.lo;
    args.hi = p.clamp.hi;
    args.clamp = p.clamp.on;
    args.gx = gx.data_ptr();
    args.gg = gg.data_ptr();
    args.ga = need_step_grad ? ga.data_ptr() : nullptr;
    args.gc = need_noise_grad ? gc.data_ptr() : nullptr;
    args.rows = p.view.rows;
    args.M = p.view.M;
    args.st = p.st;
    args.dtype = cuda::floating_dtype(op, "out", p.y);
    cuda::check_launch(op, cuda::launch_langevin_backward(args, cuda::current_stream()));
  }

  // y = the forward of p (sums: the corrector's (2,) batch means, else undefined).
  static void affine(const char* op, const AffinePrep& p, at::Tensor& y, const at::Tensor& sums) {
    cuda::AffineArgs args{};
    args.x = p.x.data_ptr();
    args.e = p.e.data_ptr();
    args.nfull = opt_ptr(p.nfull);
    args.y = y.data_ptr();
    args.nscale = p.nscale;
    args.noise = p.noise;
    args.coefs = coef_args(p, sums);
    args.rows = p.view.rows;
    args.M = p.view.M;
    args.st = p.st;
    args.dtype = cuda::floating_dtype(op, "x", p.x);
    cuda::check_launch(op, cuda::launch_affine(args, cuda::current_stream()));
  }

  // Backward of p (p.x is grad_out); undefined or empty outputs are skipped. sx, se, sn must be
  // zero-filled: the kernel adds to them.
  static void affine_backward(const char* op, const AffinePrep& p, const at::Tensor& x,
                              const at::Tensor& e, at::Tensor& gx, at::Tensor& ge, at::Tensor& sx,
                              at::Tensor& se, at::Tensor& sn, at::Tensor& gn) {
    cuda::AffineBackwardArgs args{};
    args.gy = p.x.data_ptr();
    args.x = opt_ptr_nonempty(x);
    args.e = opt_ptr_nonempty(e);
    args.gx = gx.data_ptr();
    args.ge = ge.data_ptr();
    args.sx = opt_ptr_nonempty(sx);
    args.se = opt_ptr_nonempty(se);
    args.sn = opt_ptr_nonempty(sn);
    args.gn = opt_ptr_nonempty(gn);
    args.nscale = p.nscale;
    args.coefs = coef_args(p, at::Tensor());
    args.rows = p.view.rows;
    args.M = p.view.M;
    args.st = p.st;
    args.dtype = cuda::floating_dtype(op, "grad_out", p.x);
    cuda::check_launch(op, cuda::launch_affine_backward(args, cuda::current_stream()));
  }

  // Pass 1 of the corrector: each warp adds its partial norms into the zeroed sums; then one
  // block reduces them to the batch means (on the stream: no host synchronisation).
  static void corrector_norms(const char* op, const AffinePrep& p, at::Tensor& sums,
                              at::Tensor& means) {
    cuda::RowNormsArgs nargs{};
    nargs.s = p.e.data_ptr();
    nargs.sums = sums.data_ptr();
    nargs.means = means.data_ptr();
    nargs.rows = p.view.rows;
    nargs.M = p.view.M;
    nargs.st = p.st;
    nargs.dtype = cuda::floating_dtype(op, "x", p.x);
    cuda::check_launch(op, cuda::launch_corrector_norms(nargs, cuda::current_stream()));
  }
};

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) { gmk::register_sde_ops<gmk::SdeCuda>(m); }
