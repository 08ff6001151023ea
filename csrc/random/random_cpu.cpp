// The random family on the CPU: the fill and Bernoulli loops over the Philox stream
// (gmk/cpu_stream.h) and their registration. Checks and layout: random.cpp / random_ops.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <limits>

#include "gmk/cpu_stream.h"
#include "gmk/glue.h"
#include "random.h"
#include "random_ops.h"

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

template <template <typename> class DrawT>
void float_fill_cpu(const RandomPrep& p, at::Tensor& o) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, o.scalar_type(), "gmkernels", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    fill_cpu_kernel<scalar_t, acc_t>(o.data_ptr<scalar_t>(), p.view.rows, p.view.M, p.st,
                                     DrawT<acc_t>{});
  });
}

// Uniforms in [0, 1) in every dtype: float16 / bfloat16 clamp below 1 before rounding
// (philox.h uniform_top); float32 / float64 are unchanged.
void uniform_fill_cpu(const RandomPrep& p, at::Tensor& o) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, o.scalar_type(), "gmkernels", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t top = static_cast<acc_t>(uniform_top(std::numeric_limits<scalar_t>::digits));
    fill_cpu_kernel<scalar_t, acc_t>(o.data_ptr<scalar_t>(), p.view.rows, p.view.M, p.st,
                                     cpu::UniformBelowDraw<acc_t>{top});
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
                                o[i] = static_cast<scalar_t>(
                                    bernoulli_of(u[i], static_cast<acc_t>(pr[i])));
                            });
}

struct RandomCpu {
  using Guard = NoDeviceGuard;

  static void fill(const char*, Draw draw, const RandomPrep& p, at::Tensor& o) {
    switch (draw) {
      case Draw::kUint32:
        fill_cpu_kernel<int64_t, int64_t>(o.data_ptr<int64_t>(), p.view.rows, p.view.M, p.st,
                                          cpu::WordDraw{});
        return;
      case Draw::kUniform: return uniform_fill_cpu(p, o);
      case Draw::kNormal: return float_fill_cpu<cpu::NormalDraw>(p, o);
      case Draw::kRademacher: return float_fill_cpu<cpu::RademacherDraw>(p, o);
    }
  }

  static void bernoulli(const char*, const RandomPrep& p, const at::Tensor& pc, at::Tensor& out) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pc.scalar_type(), "gmkernels", [&] {
      bernoulli_cpu_kernel<scalar_t, at::opmath_type<scalar_t>>(
          pc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), p.view.rows, p.view.M, p.st);
    });
  }
};

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CPU, m) { gmk::register_random_ops<gmk::RandomCpu>(m); }
