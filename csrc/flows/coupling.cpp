// The affine coupling transform (SPEC §1.2): schemas and CPU kernels.
//
//   affine_coupling(x, s, t, mask, inverse, scale, clamp) -> (y, logdet)
//   affine_coupling_backward(grad_y, grad_logdet, x, s, t, mask, inverse, scale, clamp)
//       -> (grad_x, grad_s, grad_t)
//
// The per-element math is coupling.h (shared with coupling.cu). Choices where the issue is
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
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "coupling.h"
#include "coupling_ops.h"
#include "gmk/checks.h"
#include "gmk/cpu_stream.h"

namespace gmk {

CouplingPrep coupling_prepare(const char* op, const at::Tensor& x, const at::Tensor& s,
                              const at::Tensor& t, const at::Tensor& mask, bool inverse,
                              int64_t scale, c10::optional<double> clamp,
                              at::ScalarType mask_dtype) {
  TORCH_CHECK(x.dim() >= 1, op, ": x must have a batch dimension (rank >= 1), got a 0-d tensor");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op,
              ": x must be a floating-point tensor, got ", x.scalar_type());
  check_same(op, x, "x", s, "s");
  check_same(op, x, "x", t, "t");
  TORCH_CHECK(scale == static_cast<int64_t>(CouplingScale::kExp) ||
                  scale == static_cast<int64_t>(CouplingScale::kSigmoid),
              op, ": scale must be 0 (\"exp\") or 1 (\"sigmoid\"), got ", scale);
  if (clamp.has_value())
    TORCH_CHECK(std::isfinite(*clamp) && *clamp > 0, op,
                ": clamp must be None or a finite float > 0, got ", *clamp);
  TORCH_CHECK(mask.device() == x.device(), op, ": mask must be on x's device (", x.device(),
              "), got ", mask.device());
  TORCH_CHECK(!at::isComplexType(mask.scalar_type()), op,
              ": mask must be a bool, integer or floating tensor of 0/1, got ", mask.scalar_type());
  TORCH_CHECK(mask.dim() <= x.dim(), op, ": mask of shape ", mask.sizes(),
              " is not broadcastable to x of shape ", x.sizes());
  for (int64_t i = 1; i <= mask.dim(); ++i) {
    const int64_t ms = mask.size(-i), xs = x.size(-i);
    TORCH_CHECK(ms == 1 || ms == xs, op, ": mask of shape ", mask.sizes(),
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
  p.scale = static_cast<int>(scale);
  p.inverse = inverse;
  p.clamp_on = clamp.has_value();
  p.clamp = clamp.has_value() ? *clamp : 0.0;
  return p;
}

namespace {

// Rows longer than this are cut into chunks of this many elements, so that a few long rows
// (images) still spread over the threads. The chunking depends only on M, never on the thread
// count, and the chunk sums are added in order: the logdet is the same on any machine.
constexpr int64_t kChunk = 16384;

template <typename scalar_t, typename acc_t>
struct FwdArgs {
  const scalar_t *x, *s, *t;
  const int32_t* mask;
  int64_t mask_row_stride;
  scalar_t* y;
  scalar_t* logdet;  // used when nchunks == 1
  acc_t* partial;    // rows * nchunks chunk sums, when nchunks > 1
  int64_t M, nchunks;
  acc_t c, inv_c, sign;
};

// One segment of a row: writes y, returns the sum of the log-scale contributions.
template <typename V, typename scalar_t, typename acc_t>
GMK_FORCEINLINE acc_t fwd_segment(const FwdArgs<scalar_t, acc_t>& a, int64_t r, int64_t e0,
                                  int64_t n) {
  const int64_t off = r * a.M + e0;
  const scalar_t* x = a.x + off;
  const scalar_t* s = a.s + off;
  const scalar_t* t = a.t + off;
  const int32_t* m = a.mask + r * a.mask_row_stride + e0;
  scalar_t* y = a.y + off;
  const acc_t c = a.c, ic = a.inv_c;
  acc_t sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    acc_t contrib;
    const acc_t yi = coupling_elem<V, acc_t>(static_cast<acc_t>(x[i]), static_cast<acc_t>(s[i]),
                                             static_cast<acc_t>(t[i]), m[i] != 0, c, ic,
                                             &contrib);
    y[i] = static_cast<scalar_t>(yi);
    sum += contrib;
  }
  return sum;
}

// Short rows (M <= kShortRow): a tile of whole rows is one flat vectorized loop that writes y
// and parks each element's log-scale contribution in an L1 buffer; the row sums follow from
// the buffer. Measured on (65536, 64) float32: the per-row loop set-up and reduction epilogue
// of the plain row loop made it ~1.5x slower per element than long rows.
constexpr int64_t kShortRow = 256;
constexpr int64_t kTileElems = 2048;

template <typename V, typename scalar_t, typename acc_t>
GMK_FORCEINLINE void fwd_short_rows(const FwdArgs<scalar_t, acc_t>& a, int64_t r0, int64_t r1) {
  const int64_t M = a.M;
  const int64_t R = std::max<int64_t>(1, kTileElems / M);
  alignas(64) acc_t lbuf[kTileElems];
  alignas(64) int32_t mtile[kTileElems];
  const bool shared_mask = a.mask_row_stride == 0;
  if (shared_mask)  // the pattern repeated for R rows, so the tile is one flat loop
    for (int64_t j = 0; j < R; ++j)
      for (int64_t i = 0; i < M; ++i) mtile[j * M + i] = a.mask[i];
  const acc_t c = a.c, ic = a.inv_c;
  for (int64_t r = r0; r < r1; r += R) {
    const int64_t rr = std::min(R, r1 - r), n = rr * M, off = r * M;
    const scalar_t* x = a.x + off;
    const scalar_t* s = a.s + off;
    const scalar_t* t = a.t + off;
    const int32_t* m = shared_mask ? mtile : a.mask + off;
    scalar_t* y = a.y + off;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      acc_t contrib;
      const acc_t yi = coupling_elem<V, acc_t>(static_cast<acc_t>(x[i]),
                                               static_cast<acc_t>(s[i]),
                                               static_cast<acc_t>(t[i]), m[i] != 0, c, ic,
                                               &contrib);
      y[i] = static_cast<scalar_t>(yi);
      lbuf[i] = contrib;
    }
    for (int64_t j = 0; j < rr; ++j) {
      const acc_t* l = lbuf + j * M;
      acc_t sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < M; ++i) sum += l[i];
      a.logdet[r + j] = static_cast<scalar_t>(a.sign * sum);
    }
  }
}

template <typename V, typename scalar_t, typename acc_t>
GMK_FORCEINLINE void fwd_items(const FwdArgs<scalar_t, acc_t>& a, int64_t i0, int64_t i1) {
  if (a.M <= kShortRow) return fwd_short_rows<V>(a, i0, i1);
  if (a.nchunks == 1) {
    // Whole rows: items are rows. No index division per item (a 64-bit idiv per row cost
    // about a quarter of the time of a (65536, 64) call).
    for (int64_t r = i0; r < i1; ++r)
      a.logdet[r] = static_cast<scalar_t>(a.sign * fwd_segment<V>(a, r, 0, a.M));
    return;
  }
  for (int64_t it = i0; it < i1; ++it) {
    const int64_t r = it / a.nchunks, k = it - r * a.nchunks;
    const int64_t e0 = k * kChunk;
    a.partial[it] = fwd_segment<V>(a, r, e0, std::min(kChunk, a.M - e0));
  }
}

template <typename scalar_t, typename acc_t>
struct BwdArgs {
  const scalar_t *gy, *gld, *x, *s, *t;
  const int32_t* mask;
  int64_t mask_row_stride;
  scalar_t *gx, *gs, *gt;
  int64_t M, nchunks;
  acc_t c, inv_c;
};

template <typename V, typename scalar_t, typename acc_t>
GMK_FORCEINLINE void bwd_items(const BwdArgs<scalar_t, acc_t>& a, int64_t i0, int64_t i1) {
  for (int64_t it = i0; it < i1; ++it) {
    const int64_t r = a.nchunks == 1 ? it : it / a.nchunks, k = it - r * a.nchunks;
    const int64_t e0 = k * kChunk, n = std::min(kChunk, a.M - e0), off = r * a.M + e0;
    const scalar_t* gy = a.gy + off;
    const scalar_t* x = a.x + off;
    const scalar_t* s = a.s + off;
    const scalar_t* t = a.t + off;
    const int32_t* m = a.mask + r * a.mask_row_stride + e0;
    scalar_t* gx = a.gx + off;
    scalar_t* gs = a.gs + off;
    scalar_t* gt = a.gt + off;
    const acc_t gld = static_cast<acc_t>(a.gld[r]);
    const acc_t c = a.c, ic = a.inv_c;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      acc_t vx, vs, vt;
      coupling_elem_backward<V, acc_t>(static_cast<acc_t>(gy[i]), gld, static_cast<acc_t>(x[i]),
                                       static_cast<acc_t>(s[i]), static_cast<acc_t>(t[i]),
                                       m[i] != 0, c, ic, &vx, &vs, &vt);
      gx[i] = static_cast<scalar_t>(vx);
      gs[i] = static_cast<scalar_t>(vs);
      gt[i] = static_cast<scalar_t>(vt);
    }
  }
}

// The loops compiled for each ISA and chosen by cpuid at run time (as cpu_stream.h does), so
// that one build vectorizes 8 (AVX2) or 16 (AVX-512) floats wide and still runs everywhere.
template <typename V, typename scalar_t, typename acc_t>
__attribute__((noinline)) void fwd_baseline(const FwdArgs<scalar_t, acc_t>& a, int64_t i0,
                                            int64_t i1) {
  fwd_items<V>(a, i0, i1);
}
template <typename V, typename scalar_t, typename acc_t>
__attribute__((noinline)) void bwd_baseline(const BwdArgs<scalar_t, acc_t>& a, int64_t i0,
                                            int64_t i1) {
  bwd_items<V>(a, i0, i1);
}
#if defined(__x86_64__) && defined(__GNUC__)
template <typename V, typename scalar_t, typename acc_t>
GMK_TARGET_AVX2 __attribute__((noinline)) void fwd_avx2(const FwdArgs<scalar_t, acc_t>& a,
                                                        int64_t i0, int64_t i1) {
  fwd_items<V>(a, i0, i1);
}
template <typename V, typename scalar_t, typename acc_t>
GMK_TARGET_AVX512 __attribute__((noinline)) void fwd_avx512(const FwdArgs<scalar_t, acc_t>& a,
                                                            int64_t i0, int64_t i1) {
  fwd_items<V>(a, i0, i1);
}
template <typename V, typename scalar_t, typename acc_t>
GMK_TARGET_AVX2 __attribute__((noinline)) void bwd_avx2(const BwdArgs<scalar_t, acc_t>& a,
                                                        int64_t i0, int64_t i1) {
  bwd_items<V>(a, i0, i1);
}
template <typename V, typename scalar_t, typename acc_t>
GMK_TARGET_AVX512 __attribute__((noinline)) void bwd_avx512(const BwdArgs<scalar_t, acc_t>& a,
                                                            int64_t i0, int64_t i1) {
  bwd_items<V>(a, i0, i1);
}
#endif

int64_t num_chunks(int64_t M) { return (M + kChunk - 1) / kChunk; }

// at::parallel_for grain in work items: about 32K elements per task.
int64_t item_grain(int64_t M) {
  return std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, std::min(M, kChunk)));
}

template <typename scalar_t>
void coupling_fwd_cpu_typed(const CouplingPrep& p, at::Tensor& y, at::Tensor& logdet) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t nchunks = num_chunks(p.M), items = p.rows * nchunks;
  at::Tensor partial;
  if (nchunks > 1) partial = at::empty({items}, p.x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  FwdArgs<scalar_t, acc_t> a{};
  a.x = p.x.data_ptr<scalar_t>();
  a.s = p.s.data_ptr<scalar_t>();
  a.t = p.t.data_ptr<scalar_t>();
  a.mask = p.mask.data_ptr<int32_t>();
  a.mask_row_stride = p.mask_row_stride;
  a.y = y.data_ptr<scalar_t>();
  a.logdet = logdet.data_ptr<scalar_t>();
  a.partial = nchunks > 1 ? partial.data_ptr<acc_t>() : nullptr;
  a.M = p.M;
  a.nchunks = nchunks;
  a.c = static_cast<acc_t>(p.clamp_on ? p.clamp : 1.0);
  a.inv_c = static_cast<acc_t>(p.clamp_on ? 1.0 / p.clamp : 1.0);
  a.sign = p.inverse ? acc_t(-1) : acc_t(1);
  const cpu::Isa isa = cpu::detect_isa();
  with_coupling_variant(p.scale, p.clamp_on, p.inverse, [&](auto v) {
    using V = decltype(v);
    at::parallel_for(0, items, item_grain(p.M), [&](int64_t i0, int64_t i1) {
#if defined(__x86_64__) && defined(__GNUC__)
      if (isa == cpu::Isa::kAvx512) return fwd_avx512<V>(a, i0, i1);
      if (isa == cpu::Isa::kAvx2) return fwd_avx2<V>(a, i0, i1);
#endif
      fwd_baseline<V>(a, i0, i1);
    });
    return 0;
  });
  if (nchunks > 1) {
    const acc_t* part = a.partial;
    scalar_t* ld = a.logdet;
    for (int64_t r = 0; r < p.rows; ++r) {
      acc_t sum = 0;
      for (int64_t k = 0; k < nchunks; ++k) sum += part[r * nchunks + k];
      ld[r] = static_cast<scalar_t>(a.sign * sum);
    }
  }
}

template <typename scalar_t>
void coupling_bwd_cpu_typed(const CouplingPrep& p, at::Tensor& gx, at::Tensor& gs,
                            at::Tensor& gt) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t nchunks = num_chunks(p.M), items = p.rows * nchunks;
  BwdArgs<scalar_t, acc_t> a{};
  a.gy = p.gy.data_ptr<scalar_t>();
  a.gld = p.gld.data_ptr<scalar_t>();
  a.x = p.x.data_ptr<scalar_t>();
  a.s = p.s.data_ptr<scalar_t>();
  a.t = p.t.data_ptr<scalar_t>();
  a.mask = p.mask.data_ptr<int32_t>();
  a.mask_row_stride = p.mask_row_stride;
  a.gx = gx.data_ptr<scalar_t>();
  a.gs = gs.data_ptr<scalar_t>();
  a.gt = gt.data_ptr<scalar_t>();
  a.M = p.M;
  a.nchunks = nchunks;
  a.c = static_cast<acc_t>(p.clamp_on ? p.clamp : 1.0);
  a.inv_c = static_cast<acc_t>(p.clamp_on ? 1.0 / p.clamp : 1.0);
  const cpu::Isa isa = cpu::detect_isa();
  with_coupling_variant(p.scale, p.clamp_on, p.inverse, [&](auto v) {
    using V = decltype(v);
    at::parallel_for(0, items, item_grain(p.M), [&](int64_t i0, int64_t i1) {
#if defined(__x86_64__) && defined(__GNUC__)
      if (isa == cpu::Isa::kAvx512) return bwd_avx512<V>(a, i0, i1);
      if (isa == cpu::Isa::kAvx2) return bwd_avx2<V>(a, i0, i1);
#endif
      bwd_baseline<V>(a, i0, i1);
    });
    return 0;
  });
}

std::tuple<at::Tensor, at::Tensor> affine_coupling_cpu(const at::Tensor& x, const at::Tensor& s,
                                                       const at::Tensor& t, const at::Tensor& mask,
                                                       bool inverse, int64_t scale,
                                                       c10::optional<double> clamp) {
  const CouplingPrep p =
      coupling_prepare("gmkernels.affine_coupling", x, s, t, mask, inverse, scale, clamp,
                       at::kInt);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  // every row's logdet is written when M > 0; rows of no elements have logdet 0
  at::Tensor logdet = p.M > 0 ? at::empty({p.rows}, p.x.options()) : at::zeros({p.rows}, p.x.options());
  if (p.rows > 0 && p.M > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(),
                                    "affine_coupling", [&] {
      coupling_fwd_cpu_typed<scalar_t>(p, y, logdet);
    });
  }
  return {y, logdet};
}

}  // namespace

// Shared with the CUDA glue: the backward's extra inputs.
void coupling_backward_prepare(const char* op, CouplingPrep& p, const at::Tensor& grad_y,
                               const at::Tensor& grad_logdet) {
  check_same(op, p.x, "x", grad_y, "grad_y");
  TORCH_CHECK(grad_logdet.dim() == 1 && grad_logdet.size(0) == p.rows, op,
              ": grad_logdet must have shape (", p.rows, ",), got ", grad_logdet.sizes());
  TORCH_CHECK(grad_logdet.scalar_type() == p.x.scalar_type(), op,
              ": grad_logdet must have x's dtype (", p.x.scalar_type(), "), got ",
              grad_logdet.scalar_type());
  TORCH_CHECK(grad_logdet.device() == p.x.device(), op, ": grad_logdet must be on x's device (",
              p.x.device(), "), got ", grad_logdet.device());
  p.gy = grad_y.contiguous();
  p.gld = grad_logdet.contiguous();
}

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_coupling_backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& grad_logdet, const at::Tensor& x,
    const at::Tensor& s, const at::Tensor& t, const at::Tensor& mask, bool inverse,
    int64_t scale, c10::optional<double> clamp) {
  const char* op = "gmkernels.affine_coupling_backward";
  CouplingPrep p = coupling_prepare(op, x, s, t, mask, inverse, scale, clamp, at::kInt);
  coupling_backward_prepare(op, p, grad_y, grad_logdet);
  at::Tensor gx = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  at::Tensor gs = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  at::Tensor gt = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  if (p.rows > 0 && p.M > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(),
                                    "affine_coupling_backward", [&] {
      coupling_bwd_cpu_typed<scalar_t>(p, gx, gs, gt);
    });
  }
  return {gx, gs, gt};
}

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_FRAGMENT(gmkernels, m) {
  // SPEC §1.2 (coupling.h has the exact per-element formulas): y = x where mask != 0, else
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

TORCH_LIBRARY_IMPL(gmkernels, CPU, m) {
  m.impl("affine_coupling", &gmk::affine_coupling_cpu);
  m.impl("affine_coupling_backward", &gmk::affine_coupling_backward_cpu);
}
