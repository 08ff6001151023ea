// The random family: schemas and CPU kernels of the Philox fill ops (SPEC §0).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "gmk/checks.h"
#include "gmk/cpu_stream.h"
#include "random.h"

namespace gmk {
namespace {

template <typename scalar_t, typename acc_t, typename DrawF>
void fill_cpu_kernel(scalar_t* out, int64_t rows, int64_t M, const PhiloxStream& st,
                     const DrawF& draw) {
  cpu::for_each_draw<acc_t>(rows, M, st, draw,
                            [=](int64_t r, int64_t m0, int64_t n, const acc_t* d) {
                              scalar_t* o = out + r * M + m0;
#pragma omp simd
                              for (int64_t i = 0; i < n; ++i) o[i] = static_cast<scalar_t>(d[i]);
                            });
}

void check_float_out(const char* op, const at::Tensor& out) {
  TORCH_CHECK(at::isFloatingType(out.scalar_type()), op,
              ": out must be a floating-point tensor, got ", out.scalar_type());
}

template <template <typename> class DrawT>
void float_fill_cpu(const char* op, at::Tensor& out, int64_t seed, int64_t offset,
                    int64_t sample_offset) {
  check_float_out(op, out);
  const PhiloxStream st = checked_stream(op, out.sizes(), seed, offset, sample_offset);
  const RowView v = row_view(out.sizes());
  fill_any_layout(out, [&](at::Tensor& o) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, o.scalar_type(), "gmkernels", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      fill_cpu_kernel<scalar_t, acc_t>(o.data_ptr<scalar_t>(), v.rows, v.M, st, DrawT<acc_t>{});
    });
  });
}

void uniform_cpu(at::Tensor out, int64_t seed, int64_t offset, int64_t sample_offset) {
  float_fill_cpu<cpu::UniformDraw>("gmkernels.random.uniform", out, seed, offset, sample_offset);
}

void normal_cpu(at::Tensor out, int64_t seed, int64_t offset, int64_t sample_offset) {
  float_fill_cpu<cpu::NormalDraw>("gmkernels.random.normal", out, seed, offset, sample_offset);
}

void rademacher_cpu(at::Tensor out, int64_t seed, int64_t offset, int64_t sample_offset) {
  float_fill_cpu<cpu::RademacherDraw>("gmkernels.random.rademacher", out, seed, offset,
                                 sample_offset);
}

void uint32_cpu(at::Tensor out, int64_t seed, int64_t offset, int64_t sample_offset) {
  const char* op = "gmkernels.random.uint32";
  TORCH_CHECK(out.scalar_type() == at::kLong, op, ": out must be int64, got ", out.scalar_type());
  const PhiloxStream st = checked_stream(op, out.sizes(), seed, offset, sample_offset);
  const RowView v = row_view(out.sizes());
  fill_any_layout(out, [&](at::Tensor& o) {
    fill_cpu_kernel<int64_t, int64_t>(o.data_ptr<int64_t>(), v.rows, v.M, st, cpu::WordDraw{});
  });
}

// Kept out of the AT_DISPATCH lambda: a #pragma cannot sit inside a macro argument.
template <typename scalar_t, typename acc_t>
void bernoulli_cpu_kernel(const scalar_t* p, scalar_t* out, int64_t rows, int64_t M,
                          const PhiloxStream& st) {
  cpu::for_each_draw<acc_t>(rows, M, st, cpu::UniformDraw<acc_t>{},
                            [=](int64_t r, int64_t m0, int64_t n, const acc_t* u) {
                              const scalar_t* pr = p + r * M + m0;
                              scalar_t* o = out + r * M + m0;
#pragma omp simd
                              for (int64_t i = 0; i < n; ++i)
                                o[i] = u[i] < static_cast<acc_t>(pr[i]) ? scalar_t(1) : scalar_t(0);
                            });
}

at::Tensor bernoulli_cpu(const at::Tensor& p, int64_t seed, int64_t offset,
                         int64_t sample_offset) {
  const char* op = "gmkernels.random.bernoulli";
  TORCH_CHECK(at::isFloatingType(p.scalar_type()), op,
              ": p must be a floating-point tensor, got ", p.scalar_type());
  const PhiloxStream st = checked_stream(op, p.sizes(), seed, offset, sample_offset);
  const RowView v = row_view(p.sizes());
  const at::Tensor pc = p.contiguous();
  at::Tensor out = at::empty(p.sizes(), p.options().memory_format(at::MemoryFormat::Contiguous));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.scalar_type(), "gmkernels", [&] {
    bernoulli_cpu_kernel<scalar_t, at::opmath_type<scalar_t>>(
        pc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), v.rows, v.M, st);
  });
  return out;
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_FRAGMENT(gmkernels, m) {
  // Fill ops write `out` in place; the Python wrappers in gmkernels/random.py allocate it.
  // seed/offset carry the bits of uint64 values (SPEC §0); rows are dim 0 of out.
  m.def("random_uint32_(Tensor(a!) out, int seed, int offset, int sample_offset) -> ()");
  m.def("random_uniform_(Tensor(a!) out, int seed, int offset, int sample_offset) -> ()");
  m.def("random_normal_(Tensor(a!) out, int seed, int offset, int sample_offset) -> ()");
  m.def("random_rademacher_(Tensor(a!) out, int seed, int offset, int sample_offset) -> ()");
  m.def("random_bernoulli(Tensor p, int seed, int offset, int sample_offset) -> Tensor");
}

TORCH_LIBRARY_IMPL(gmkernels, CPU, m) {
  m.impl("random_uint32_", &gmk::uint32_cpu);
  m.impl("random_uniform_", &gmk::uniform_cpu);
  m.impl("random_normal_", &gmk::normal_cpu);
  m.impl("random_rademacher_", &gmk::rademacher_cpu);
  m.impl("random_bernoulli", &gmk::bernoulli_cpu);
}
