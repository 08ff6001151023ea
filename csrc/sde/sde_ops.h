// Torch-side argument handling of the sde family, shared by the CPU kernels (sde.cpp) and the
// CUDA glue (sde_cuda.cpp) so both check and lay out their inputs the same way.
#pragma once

#include <ATen/ATen.h>

#include "gmk/checks.h"
#include "sde.h"

namespace gmk {

// Inputs of one Langevin step, checked and made contiguous.
struct LangevinPrep {
  at::Tensor x, g;      // contiguous
  at::Tensor a_t, c_t;  // per-row (rows,) in the compute dtype, or undefined
  double a, c;
  Clamp<double> clamp;
  RowView view;
  PhiloxStream st;
};

LangevinPrep langevin_prepare(const char* op, const at::Tensor& x, const at::Tensor& grad,
                              const c10::optional<at::Tensor>& step_size_t, double step_size,
                              const c10::optional<at::Tensor>& noise_scale_t, double noise_scale,
                              int64_t seed, int64_t offset, int64_t sample_offset,
                              c10::optional<double> clamp_lo, c10::optional<double> clamp_hi);

Clamp<double> make_clamp(const char* op, c10::optional<double> lo, c10::optional<double> hi);


// ---------------------------------------------------------------------------------------------
// Issue 3 ops (euler_maruyama_step, reverse_sde_step, langevin_corrector_step,
// affine_noise_step): each op's prepare function checks its arguments and lays them out as
// one AffinePrep, which the CPU kernels (sde.cpp) and the CUDA glue (sde_cuda.cpp) run alike.
struct AffinePrep {
  at::Tensor x, e;           // contiguous, x's shape and dtype (e undefined: backward of x only)
  at::Tensor nfull;          // euler_maruyama_step's full diffusion tensor (x's dtype), or undefined
  double nscale = 1.0;       // cn multiplier (sqrt|dt| for Euler-Maruyama)
  bool noise = true;         // false: every cn is 0, no draws
  cuda::CoefSource src = cuda::CoefSource::kRows;
  at::Tensor cx_t, ce_t, cn_t;  // kRows: per-row coefficients (compute dtype) or undefined
  double cx = 1.0, ce = 0.0, cn = 0.0;
  at::Tensor t_t;            // kReverseSde: (rows,) times in the compute dtype
  int kind = 0, predictor = 0;
  bool pf = false;
  double p0 = 0.0, p1 = 0.0, dt = 0.0;
  at::Tensor alpha_t;        // kCorrector
  double alpha = 1.0, snr = 0.0;
  RowView view{0, 0};
  PhiloxStream st{};
  at::ScalarType acc = at::kFloat;
};

AffinePrep euler_maruyama_prepare(const char* op, const at::Tensor& x, const at::Tensor& drift,
                                  const c10::optional<at::Tensor>& diffusion_t, double diffusion,
                                  double dt, int64_t seed, int64_t offset, int64_t sample_offset);
// Backward: x is grad_out; sets the coefficients and the mode (returned in *full_diffusion).
AffinePrep euler_maruyama_backward_prepare(const char* op, const at::Tensor& grad_out,
                                           const c10::optional<at::Tensor>& diffusion_t,
                                           double dt, int64_t seed, int64_t offset,
                                           int64_t sample_offset, at::IntArrayRef x_shape,
                                           bool need_diffusion_grad, bool* full_diffusion);
AffinePrep reverse_sde_prepare(const char* op, const at::Tensor& x, const at::Tensor* score,
                               const c10::optional<at::Tensor>& t_t, double t, double dt,
                               int64_t kind, double p0, double p1, int64_t predictor,
                               bool probability_flow, int64_t seed, int64_t offset,
                               int64_t sample_offset);
AffinePrep corrector_prepare(const char* op, const at::Tensor& x, const at::Tensor& score,
                             const c10::optional<at::Tensor>& alpha_t, double alpha, double snr,
                             int64_t seed, int64_t offset, int64_t sample_offset);
AffinePrep affine_noise_prepare(const char* op, const at::Tensor& x, const at::Tensor* e,
                                const c10::optional<at::Tensor>& cx_t, double cx,
                                const c10::optional<at::Tensor>& ce_t, double ce,
                                const c10::optional<at::Tensor>& cn_t, double cn, int64_t seed,
                                int64_t offset, int64_t sample_offset);

// affine_noise_step_backward: the prep (p.x = grad_out), x / e when their coefficient's
// gradient is needed, and the per-row sums (zero-filled (rows,) or (0,) in the compute dtype).
struct AffineBackwardPrep {
  AffinePrep p;
  at::Tensor x, e;
  at::Tensor sx, se, sn;
};
AffineBackwardPrep affine_noise_backward_prepare(
    const char* op, const at::Tensor& grad_out, const c10::optional<at::Tensor>& x,
    const c10::optional<at::Tensor>& e, const c10::optional<at::Tensor>& cx_t, double cx,
    const c10::optional<at::Tensor>& ce_t, double ce, int64_t seed, int64_t offset,
    int64_t sample_offset, bool need_cx_grad, bool need_ce_grad, bool need_cn_grad);

// The launcher view of a prep's coefficients (pointers into its tensors).
inline cuda::CoefArgs coef_args(const AffinePrep& p, const at::Tensor& sums) {
  cuda::CoefArgs c{};
  c.src = p.src;
  c.cx_t = p.cx_t.defined() ? p.cx_t.data_ptr() : nullptr;
  c.ce_t = p.ce_t.defined() ? p.ce_t.data_ptr() : nullptr;
  c.cn_t = p.cn_t.defined() ? p.cn_t.data_ptr() : nullptr;
  c.cx = p.cx;
  c.ce = p.ce;
  c.cn = p.cn;
  c.t_t = p.t_t.defined() ? p.t_t.data_ptr() : nullptr;
  c.kind = p.kind;
  c.predictor = p.predictor;
  c.pf = p.pf;
  c.p0 = p.p0;
  c.p1 = p.p1;
  c.dt = p.dt;
  c.alpha_t = p.alpha_t.defined() ? p.alpha_t.data_ptr() : nullptr;
  c.alpha = p.alpha;
  c.snr = p.snr;
  c.sums = sums.defined() ? sums.data_ptr() : nullptr;
  return c;
}

}  // namespace gmk
