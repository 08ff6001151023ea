// Torch-side bodies of the random family's ops (docs/spec.md §0): prepare (random.cpp) -> allocate ->
// the device's run, written once and instantiated by the CPU registration (random_cpu.cpp) and
// the CUDA glue (random_cuda.cpp). Dev supplies `Guard`, `fill` and `bernoulli`.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstdint>

#include "gmk/checks.h"
#include "gmk/glue.h"
#include "random.h"

namespace gmk {

// A fill op's stream and row view, its arguments checked.
struct RandomPrep {
  PhiloxStream st{};
  RowView view{0, 0};
};

// The dispatcher name of each draw's op (the prefix of its error messages).
constexpr const char* random_op_name(Draw d) {
  return d == Draw::kUint32    ? "gmkernels.random.uint32"
         : d == Draw::kUniform ? "gmkernels.random.uniform"
         : d == Draw::kNormal  ? "gmkernels.random.normal"
                               : "gmkernels.random.rademacher";
}

// out's dtype (int64 for kUint32, floating otherwise) and the docs/spec.md §0 limits of the stream.
RandomPrep random_fill_prepare(const char* op, Draw draw, const at::Tensor& out, int64_t seed,
                               int64_t offset, int64_t sample_offset);
// p floating, and the docs/spec.md §0 limits.
RandomPrep random_bernoulli_prepare(const char* op, const at::Tensor& p, int64_t seed,
                                    int64_t offset, int64_t sample_offset);

// random_<draw>_(out, seed, offset, sample_offset): fills `out` in place, any layout
// (a non-contiguous out is filled through a contiguous temporary).
// Dev::fill(op, draw, prep, contiguous out).
template <class Dev, Draw kDraw>
void random_fill(at::Tensor out, int64_t seed, int64_t offset, int64_t sample_offset) {
  constexpr const char* op = random_op_name(kDraw);
  const typename Dev::Guard guard(out.device());
  const RandomPrep p = random_fill_prepare(op, kDraw, out, seed, offset, sample_offset);
  fill_any_layout(out, [&](at::Tensor& o) { Dev::fill(op, kDraw, p, o); });
}

// random_bernoulli(p, ...): a new contiguous tensor of p's shape and dtype.
// Dev::bernoulli(op, prep, contiguous p, out).
template <class Dev>
at::Tensor random_bernoulli(const at::Tensor& p, int64_t seed, int64_t offset,
                            int64_t sample_offset) {
  const char* op = "gmkernels.random.bernoulli";
  const typename Dev::Guard guard(p.device());
  const RandomPrep prep = random_bernoulli_prepare(op, p, seed, offset, sample_offset);
  const at::Tensor pc = p.contiguous();
  at::Tensor out = at::empty(p.sizes(), p.options().memory_format(at::MemoryFormat::Contiguous));
  Dev::bernoulli(op, prep, pc, out);
  return out;
}

// The registration of the ops above for one device: its TORCH_LIBRARY_IMPL block calls this.
template <class Dev>
void register_random_ops(torch::Library& m) {
  m.impl("random_uint32_", &random_fill<Dev, Draw::kUint32>);
  m.impl("random_uniform_", &random_fill<Dev, Draw::kUniform>);
  m.impl("random_normal_", &random_fill<Dev, Draw::kNormal>);
  m.impl("random_rademacher_", &random_fill<Dev, Draw::kRademacher>);
  m.impl("random_bernoulli", &random_bernoulli<Dev>);
}

}  // namespace gmk
