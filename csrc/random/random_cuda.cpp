// The random family on CUDA: argument checks, device guard, current stream, and the
// dispatcher registration of the kernels in random.cu. Mirrors the CPU functions in random.cpp
// (same checks, same layout handling), so the ops behave alike on both devices.
// Compiled only in CUDA builds (csrc/SOURCES).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "gmk/checks.h"
#include "gmk/cuda_glue.h"
#include "random.h"

namespace gmk {
namespace {

void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void float_fill_cuda(const char* op, Draw draw, at::Tensor& out, int64_t seed, int64_t offset,
                     int64_t sample_offset) {
  TORCH_CHECK(at::isFloatingType(out.scalar_type()), op,
              ": out must be a floating-point tensor, got ", out.scalar_type());
  const cuda::DType dtype = cuda::floating_dtype(op, "out", out);
  const c10::cuda::CUDAGuard guard(out.device());
  const PhiloxStream st = checked_stream(op, out.sizes(), seed, offset, sample_offset);
  const RowView v = row_view(out.sizes());
  fill_any_layout(out, [&](at::Tensor& o) {
    cuda::check_launch(op, cuda::launch_random_fill(draw, dtype, o.data_ptr(), v.rows, v.M, st,
                                                    current_stream()));
  });
}

void uniform_cuda(at::Tensor out, int64_t seed, int64_t offset, int64_t sample_offset) {
  float_fill_cuda("gmkernels.random.uniform", Draw::kUniform, out, seed, offset, sample_offset);
}

void normal_cuda(at::Tensor out, int64_t seed, int64_t offset, int64_t sample_offset) {
  float_fill_cuda("gmkernels.random.normal", Draw::kNormal, out, seed, offset, sample_offset);
}

void rademacher_cuda(at::Tensor out, int64_t seed, int64_t offset, int64_t sample_offset) {
  float_fill_cuda("gmkernels.random.rademacher", Draw::kRademacher, out, seed, offset,
                  sample_offset);
}

void uint32_cuda(at::Tensor out, int64_t seed, int64_t offset, int64_t sample_offset) {
  const char* op = "gmkernels.random.uint32";
  TORCH_CHECK(out.scalar_type() == at::kLong, op, ": out must be int64, got ", out.scalar_type());
  const c10::cuda::CUDAGuard guard(out.device());
  const PhiloxStream st = checked_stream(op, out.sizes(), seed, offset, sample_offset);
  const RowView v = row_view(out.sizes());
  fill_any_layout(out, [&](at::Tensor& o) {
    cuda::check_launch(op, cuda::launch_random_fill(Draw::kUint32, cuda::DType::kInt64,
                                                    o.data_ptr(), v.rows, v.M, st,
                                                    current_stream()));
  });
}

at::Tensor bernoulli_cuda(const at::Tensor& p, int64_t seed, int64_t offset,
                          int64_t sample_offset) {
  const char* op = "gmkernels.random.bernoulli";
  TORCH_CHECK(at::isFloatingType(p.scalar_type()), op,
              ": p must be a floating-point tensor, got ", p.scalar_type());
  const cuda::DType dtype = cuda::floating_dtype(op, "p", p);
  const c10::cuda::CUDAGuard guard(p.device());
  const PhiloxStream st = checked_stream(op, p.sizes(), seed, offset, sample_offset);
  const RowView v = row_view(p.sizes());
  const at::Tensor pc = p.contiguous();
  at::Tensor out = at::empty(p.sizes(), p.options().memory_format(at::MemoryFormat::Contiguous));
  cuda::check_launch(op, cuda::launch_bernoulli(dtype, pc.data_ptr(), out.data_ptr(), v.rows,
                                                v.M, st, current_stream()));
  return out;
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CUDA, m) {
  m.impl("random_uint32_", &gmk::uint32_cuda);
  m.impl("random_uniform_", &gmk::uniform_cuda);
  m.impl("random_normal_", &gmk::normal_cuda);
  m.impl("random_rademacher_", &gmk::rademacher_cuda);
  m.impl("random_bernoulli", &gmk::bernoulli_cuda);
}
