// Torch-side bodies of the planar flow ops: prepare (planar.cpp: checks, contiguous inputs) ->
// allocate -> the device's run, written once and instantiated by the CPU registration
// (planar_cpu.cpp) and the CUDA glue (planar_cuda.cpp) with their Dev, which supplies `Guard`,
// `forward(op, p, out, logdet)` and `backward(op, p, gz, gu, gw, gb)`.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "gmk/glue.h"
#include "planar.h"

namespace gmk {

// Inputs of planar_flow / planar_flow_backward, checked and made contiguous.
struct PlanarPrep {
  at::Tensor z, u, w, b;   // contiguous
  at::Tensor gy, gl;       // backward only: grad_out (B, D) and grad_logdet (B,), or undefined
  int64_t B = 0, K = 0, D = 0;
  bool per_sample = false;
};

PlanarPrep planar_prepare(const char* op, const at::Tensor& z, const at::Tensor& u_hat,
                          const at::Tensor& w, const at::Tensor& b);

// Also checks grad_out (B, D) and grad_logdet (B,), either of which may be absent (zero).
PlanarPrep planar_backward_prepare(const char* op, const std::optional<at::Tensor>& grad_out,
                                   const std::optional<at::Tensor>& grad_logdet,
                                   const at::Tensor& z, const at::Tensor& u_hat,
                                   const at::Tensor& w, const at::Tensor& b);

template <class Dev>
std::tuple<at::Tensor, at::Tensor> planar_flow(const at::Tensor& z, const at::Tensor& u_hat,
                                               const at::Tensor& w, const at::Tensor& b) {
  const char* op = "gmkernels.planar_flow";
  const typename Dev::Guard guard(z.device());
  const PlanarPrep p = planar_prepare(op, z, u_hat, w, b);
  at::Tensor out = at::empty_like(p.z);
  at::Tensor logdet = at::empty({p.B}, p.z.options());
  if (p.B == 0) return {out, logdet};
  Dev::forward(op, p, out, logdet);
  return {out, logdet};
}

// Per-sample parameter gradients are written element by element; shared ones are sums (the
// CPU adds its chunk sums into them, the CUDA kernels add with atomics), so they start at zero.
template <class Dev>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> planar_flow_backward(
    const std::optional<at::Tensor>& grad_out, const std::optional<at::Tensor>& grad_logdet,
    const at::Tensor& z, const at::Tensor& u_hat, const at::Tensor& w, const at::Tensor& b) {
  const char* op = "gmkernels.planar_flow_backward";
  const typename Dev::Guard guard(z.device());
  const PlanarPrep p = planar_backward_prepare(op, grad_out, grad_logdet, z, u_hat, w, b);
  at::Tensor gz = at::empty_like(p.z);
  at::Tensor gu = p.per_sample ? at::empty_like(p.u) : at::zeros_like(p.u);
  at::Tensor gw = p.per_sample ? at::empty_like(p.w) : at::zeros_like(p.w);
  at::Tensor gb = p.per_sample ? at::empty_like(p.b) : at::zeros_like(p.b);
  if (p.B == 0) return {gz, gu.zero_(), gw.zero_(), gb.zero_()};
  Dev::backward(op, p, gz, gu, gw, gb);
  return {gz, gu, gw, gb};
}

// The registration of the ops above for one device: its TORCH_LIBRARY_IMPL block calls this.
template <class Dev>
void register_planar_ops(torch::Library& m) {
  m.impl("planar_flow", &planar_flow<Dev>);
  m.impl("planar_flow_backward", &planar_flow_backward<Dev>);
}

}  // namespace gmk
