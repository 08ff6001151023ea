// The affine coupling transform (docs/spec.md §1.2): schemas and the device-agnostic preparation. The
// op bodies are coupling_ops.h; the CPU kernels coupling_cpu.cpp, the CUDA glue
// coupling_cuda.cpp (kernels in coupling.cu).
//
//   affine_coupling(x, s, t, mask, inverse, scale, clamp) -> (y, logdet)
//   affine_coupling_backward(grad_y, grad_logdet, x, s, t, mask, inverse, scale, clamp)
//       -> (grad_x, grad_s, grad_t)
//
// The per-element math is coupling.h (shared with coupling.cu). Choices where the API is
// silent:
//  * x has rank >= 1, dim 0 is the batch; s and t have x's shape, dtype and device.
//  * mask is bool, integer or floating, broadcastable to x; an element passes through where the
//    mask is nonzero (the Python wrapper checks that a non-bool mask holds only 0 and 1). A mask
//    without a batch dimension (or with size 1 there) becomes one int32 pattern of M = numel/B
//    values that every row reads (64 KiB for a 16x32x32 image, L2-resident); only a mask that
//    varies over the batch is laid out at full size.
//  * scale: 0 = "exp", 1 = "sigmoid"; clamp: None or a finite c > 0.
//  * logdet has x's dtype (accumulated in float32, float64 for float64). The backward recomputes
//    the scale from s instead of saving it: the fused forward writes y and logdet only.
//  * The backward has no gradient for the mask (a fixed, discrete choice).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

#include "coupling.h"
#include "coupling_ops.h"
#include "gmk/checks.h"

namespace gmk {

CouplingPrep coupling_prepare(const char* op, const at::Tensor& x, const at::Tensor& s,
                              const at::Tensor& t, const at::Tensor& mask, bool inverse,
                              int64_t scale, std::optional<double> clamp,
                              at::ScalarType mask_dtype) {
  TORCH_CHECK_VALUE(x.dim() >= 1, op,
                    ": x must have a batch dimension (rank >= 1), got a 0-d tensor");
  check_floating(op, "x", x);
  check_same(op, x, "x", s, "s");
  check_same(op, x, "x", t, "t");
  const CouplingScale sc = enum_arg<CouplingScale>(op, "scale", scale);
  if (clamp.has_value())
    TORCH_CHECK_VALUE(std::isfinite(*clamp) && *clamp > 0, op,
                      ": clamp must be None or a finite float > 0, got ", *clamp);
  TORCH_CHECK_VALUE(mask.device() == x.device(), op, ": mask must be on x's device (", x.device(),
                    "), got ", mask.device());
  TORCH_CHECK_TYPE(!at::isComplexType(mask.scalar_type()), op,
                   ": mask must be a bool, integer or floating tensor of 0/1, got ", mask.scalar_type());
  TORCH_CHECK_VALUE(mask.dim() <= x.dim(), op, ": mask of shape ", mask.sizes(),
                    " is not broadcastable to x of shape ", x.sizes());
  for (int64_t i = 1; i <= mask.dim(); ++i) {
    const int64_t ms = mask.size(-i), xs = x.size(-i);
    TORCH_CHECK_VALUE(ms == 1 || ms == xs, op, ": mask of shape ", mask.sizes(),
                      " is not broadcastable to x of shape ", x.sizes());
  }
  CouplingPrep p;
  p.rows = x.size(0);
  p.M = p.rows == 0 ? 0 : x.numel() / p.rows;
  if (p.rows == 0) {  // numel / rows is undefined; M is the product of the other sizes
    p.M = 1;
    for (int64_t d = 1; d < x.dim(); ++d) p.M *= x.size(d);
  }
  // A bool mask converts to 0/1 directly; other dtypes go through != 0 first.
  const auto as_pattern = [&](const at::Tensor& m) {
    const at::Tensor b = m.scalar_type() == at::kBool ? m : m.ne(0);
    return b.to(mask_dtype).contiguous();
  };
  const bool per_row = mask.dim() == x.dim() && mask.size(0) != 1;
  if (per_row) {
    p.mask = as_pattern(mask.expand(x.sizes()));
    p.mask_row_stride = p.M;
  } else {
    const at::Tensor m = mask.dim() == x.dim() ? mask.squeeze(0) : mask;
    p.mask = as_pattern(m.expand(x.sizes().slice(1)));
    p.mask_row_stride = 0;
  }
  p.x = x.contiguous();
  p.s = s.contiguous();
  p.t = t.contiguous();
  p.scale = static_cast<int>(sc);
  p.inverse = inverse;
  p.clamp_on = clamp.has_value();
  p.clamp = clamp.has_value() ? *clamp : 0.0;
  return p;
}

void coupling_backward_prepare(const char* op, CouplingPrep& p, const at::Tensor& grad_y,
                               const at::Tensor& grad_logdet) {
  check_same(op, p.x, "x", grad_y, "grad_y");
  TORCH_CHECK_VALUE(grad_logdet.dim() == 1 && grad_logdet.size(0) == p.rows, op,
                    ": grad_logdet must have shape (", p.rows, ",), got ", grad_logdet.sizes());
  TORCH_CHECK_TYPE(grad_logdet.scalar_type() == p.x.scalar_type(), op,
                   ": grad_logdet must have x's dtype (", p.x.scalar_type(), "), got ",
                   grad_logdet.scalar_type());
  TORCH_CHECK_VALUE(grad_logdet.device() == p.x.device(), op,
                    ": grad_logdet must be on x's device (",
                    p.x.device(), "), got ", grad_logdet.device());
  p.gy = grad_y.contiguous();
  p.gld = grad_logdet.contiguous();
}

}  // namespace gmk

TORCH_LIBRARY_FRAGMENT(gmkernels, m) {
  // docs/spec.md §1.2 (coupling.h has the exact per-element formulas): y = x where mask != 0, else
  // x*e^l + t (inverse: (x - t)*e^-l), l the log-scale of s (scale 0: s, 1: log(sigmoid(s+2) +
  // 1e-3)), s soft-clamped to c*tanh(s/c) first when clamp is given. logdet (B,) = +-sum of l
  // over the non-pass elements of each row (minus for the inverse).
  m.def(
      "affine_coupling(Tensor x, Tensor s, Tensor t, Tensor mask, bool inverse, int scale, "
      "float? clamp) -> (Tensor, Tensor)");
  // Returns (grad_x, grad_s, grad_t); the scale is recomputed from s. grad_logdet: (B,).
  m.def(
      "affine_coupling_backward(Tensor grad_y, Tensor grad_logdet, Tensor x, Tensor s, Tensor t, "
      "Tensor mask, bool inverse, int scale, float? clamp) -> (Tensor, Tensor, Tensor)");
}

