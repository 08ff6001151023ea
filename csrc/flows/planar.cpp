// The planar flow (docs/spec.md §1.1): schemas and the device-agnostic preparation of the fused
// K-layer stack and its backward. The op bodies are planar_ops.h; the CPU kernels
// planar_cpu.cpp, the CUDA glue planar_cuda.cpp (kernels in planar.cu), the per-element math
// planar.h.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>

#include "gmk/checks.h"
#include "gmk/glue.h"
#include "planar.h"
#include "planar_ops.h"

namespace gmk {

namespace {

void check_param(const char* op, const at::Tensor& t, const char* name, const at::Tensor& z) {
  TORCH_CHECK_TYPE(t.scalar_type() == z.scalar_type(), op, ": ", name, " must have z's dtype (",
                   z.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == z.device(), op, ": ", name, " must be on z's device (",
                    z.device(), "), got ", t.device());
}

}  // namespace

PlanarPrep planar_prepare(const char* op, const at::Tensor& z, const at::Tensor& u_hat,
                          const at::Tensor& w, const at::Tensor& b) {
  TORCH_CHECK_VALUE(z.dim() == 2, op, ": z must be a (B, D) tensor, got shape ", z.sizes());
  TORCH_CHECK_TYPE(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble, op,
                   ": z must be float32 or float64, got ", z.scalar_type());
  const int64_t B = z.size(0), D = z.size(1);
  TORCH_CHECK_VALUE(u_hat.dim() == 2 || u_hat.dim() == 3, op,
                    ": u_hat must be (K, D) (shared) or (B, K, D) (per sample), got shape ",
                    u_hat.sizes());
  const bool ps = u_hat.dim() == 3;
  const int64_t K = u_hat.size(ps ? 1 : 0);
  if (ps) {
    TORCH_CHECK_VALUE(u_hat.size(0) == B && u_hat.size(2) == D, op,
                      ": per-sample u_hat must be (B, K, D) = (",
                      B, ", K, ", D, "), got shape ", u_hat.sizes());
  } else {
    TORCH_CHECK_VALUE(u_hat.size(1) == D, op, ": u_hat must be (K, ", D, "), got shape ",
                      u_hat.sizes());
  }
  TORCH_CHECK_VALUE(w.sizes() == u_hat.sizes(), op, ": w must have u_hat's shape ", u_hat.sizes(),
                    ", got ", w.sizes());
  if (ps) {
    TORCH_CHECK_VALUE(b.dim() == 2 && b.size(0) == B && b.size(1) == K, op,
                      ": per-sample b must be (B, K) = (", B, ", ", K, "), got shape ", b.sizes());
  } else {
    TORCH_CHECK_VALUE(b.dim() == 1 && b.size(0) == K, op, ": b must be (K,) = (", K,
                      ",), got shape ", b.sizes());
  }
  check_param(op, u_hat, "u_hat", z);
  check_param(op, w, "w", z);
  check_param(op, b, "b", z);
  PlanarPrep p;
  p.z = z.contiguous();
  p.u = u_hat.contiguous();
  p.w = w.contiguous();
  p.b = b.contiguous();
  p.B = B;
  p.K = K;
  p.D = D;
  p.per_sample = ps;
  return p;
}

PlanarPrep planar_backward_prepare(const char* op, const std::optional<at::Tensor>& grad_out,
                                   const std::optional<at::Tensor>& grad_logdet,
                                   const at::Tensor& z, const at::Tensor& u_hat,
                                   const at::Tensor& w, const at::Tensor& b) {
  PlanarPrep p = planar_prepare(op, z, u_hat, w, b);
  if (has_tensor(grad_out)) {
    check_same(op, z, "z", *grad_out, "grad_out");
    p.gy = grad_out->contiguous();
  }
  if (has_tensor(grad_logdet)) {
    const at::Tensor& g = *grad_logdet;
    TORCH_CHECK_VALUE(g.dim() == 1 && g.size(0) == p.B, op, ": grad_logdet must be (B,) = (", p.B,
                      ",), got shape ", g.sizes());
    check_param(op, g, "grad_logdet", z);
    p.gl = g.contiguous();
  }
  return p;
}

}  // namespace gmk

TORCH_LIBRARY_FRAGMENT(gmkernels, m) {
  // docs/spec.md §1.1: K planar layers z <- z + û_k tanh(w_k·z + b_k) in one pass; returns (z_K,
  // logdet) with logdet = sum_k log|1 + (1 - tanh²(a_k)) û_k·w_k|, shape (B,). z (B, D);
  // u_hat, w (K, D) and b (K,) shared, or (B, K, D) and (B, K) per sample. float32/float64,
  // every tensor of z's dtype and device. û·w > -1 (invertibility) is the caller's contract
  // (gmkernels.planar_u_hat); the op does not check it.
  m.def("planar_flow(Tensor z, Tensor u_hat, Tensor w, Tensor b) -> (Tensor, Tensor)");
  // Returns (grad_z, grad_u_hat, grad_w, grad_b) of the shapes of z, u_hat, w, b (shared
  // parameter gradients summed over B). grad_out / grad_logdet: None means zero. Recomputes
  // the forward from z; stores nothing of size (B, K, D).
  m.def(
      "planar_flow_backward(Tensor? grad_out, Tensor? grad_logdet, Tensor z, Tensor u_hat, "
      "Tensor w, Tensor b) -> (Tensor, Tensor, Tensor, Tensor)");
}
