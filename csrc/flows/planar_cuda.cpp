// The planar flow on CUDA: the launches of the kernels in planar.cu (with their scratch
// buffers) and their registration. Checks, layout and outputs are the CPU's own bodies
// (planar.cpp / planar_ops.h). Compiled only in CUDA builds (csrc/SOURCES).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "gmk/cuda_glue.h"
#include "gmk/glue.h"
#include "planar.h"
#include "planar_ops.h"

namespace gmk {
namespace {

struct PlanarCuda {
  using Guard = cuda::DeviceGuard;

  static void forward(const char* op, const PlanarPrep& p, at::Tensor& out, at::Tensor& logdet) {
    at::Tensor zbuf;
    if (p.D > cuda::kPlanarMaxLocalD) zbuf = at::empty({p.B, p.D}, p.z.options());
    cuda::PlanarArgs args{};
    args.z = p.z.data_ptr();
    args.u = p.u.data_ptr();
    args.w = p.w.data_ptr();
    args.b = p.b.data_ptr();
    args.out = out.data_ptr();
    args.logdet = logdet.data_ptr();
    args.B = p.B;
    args.K = p.K;
    args.D = p.D;
    args.per_sample = p.per_sample;
    args.zbuf = opt_ptr(zbuf);
    args.dtype = cuda::real_dtype(p.z);
    cuda::check_launch(op, cuda::launch_planar_forward(args, cuda::current_stream()));
  }

  static void backward(const char* op, const PlanarPrep& p, at::Tensor& gz, at::Tensor& gu,
                       at::Tensor& gw, at::Tensor& gb) {
    at::Tensor ws = at::empty({3 * p.K, p.B}, p.z.options());
    at::Tensor zbuf;
    if (p.D > cuda::kPlanarMaxLocalD) zbuf = at::empty({2, p.B, p.D}, p.z.options());
    cuda::PlanarBackwardArgs args{};
    args.grad_out = opt_ptr(p.gy);
    args.grad_logdet = opt_ptr(p.gl);
    args.z = p.z.data_ptr();
    args.u = p.u.data_ptr();
    args.w = p.w.data_ptr();
    args.b = p.b.data_ptr();
    args.gz = gz.data_ptr();
    args.gu = gu.data_ptr();
    args.gw = gw.data_ptr();
    args.gb = gb.data_ptr();
    args.ws = ws.data_ptr();
    args.zbuf = opt_ptr(zbuf);
    args.B = p.B;
    args.K = p.K;
    args.D = p.D;
    args.per_sample = p.per_sample;
    args.dtype = cuda::real_dtype(p.z);
    cuda::check_launch(op, cuda::launch_planar_backward(args, cuda::current_stream()));
  }
};

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) { gmk::register_planar_ops<gmk::PlanarCuda>(m); }
