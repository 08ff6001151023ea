// The random family: schemas and the device-agnostic preparation of the Philox fill ops
// (docs/spec.md §0). The bodies are random_ops.h; the CPU kernels random_cpu.cpp, the CUDA glue
// random_cuda.cpp.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "gmk/checks.h"
#include "gmk/inplace.h"
#include "random.h"
#include "random_ops.h"

namespace gmk {

RandomPrep random_fill_prepare(const char* op, Draw draw, const at::Tensor& out, int64_t seed,
                               int64_t offset, int64_t sample_offset) {
  if (draw == Draw::kUint32) {
    TORCH_CHECK_TYPE(out.scalar_type() == at::kLong, op, ": out must be int64, got ",
                     out.scalar_type());
  } else {
    check_floating(op, "out", out);
  }
  check_writable(op, "out", out);
  RandomPrep p;
  p.st = checked_stream(op, out.sizes(), seed, offset, sample_offset);
  p.view = row_view(out.sizes());
  return p;
}

RandomPrep random_bernoulli_prepare(const char* op, const at::Tensor& p, int64_t seed,
                                    int64_t offset, int64_t sample_offset) {
  check_floating(op, "p", p);
  RandomPrep r;
  r.st = checked_stream(op, p.sizes(), seed, offset, sample_offset);
  r.view = row_view(p.sizes());
  return r;
}

}  // namespace gmk

TORCH_LIBRARY_FRAGMENT(gmkernels, m) {
  // Fill ops write `out` in place (any strides that do not overlap themselves: gmk/inplace.h);
  // gmkernels.random.<draw> allocates it, gmkernels.random.<draw>_ takes the caller's.
  // seed/offset carry the bits of uint64 values (docs/spec.md §0); rows are dim 0 of out.
  m.def("random_uint32_(Tensor(a!) out, int seed, int offset, int sample_offset) -> ()");
  m.def("random_uniform_(Tensor(a!) out, int seed, int offset, int sample_offset) -> ()");
  m.def("random_normal_(Tensor(a!) out, int seed, int offset, int sample_offset) -> ()");
  m.def("random_rademacher_(Tensor(a!) out, int seed, int offset, int sample_offset) -> ()");
  m.def("random_bernoulli(Tensor p, int seed, int offset, int sample_offset) -> Tensor");
}

// The fills are in-place ops: their version counter is bumped, and inputs that require grad
// are refused (gmk/inplace.h).
GMK_INPLACE_DISPATCH("random_uint32_", "random_uniform_", "random_normal_", "random_rademacher_")
