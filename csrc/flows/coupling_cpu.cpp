// The affine coupling transform (docs/spec.md §1.2) on the CPU: the fused forward and backward loops
// and their registration. Checks and layout: coupling.cpp; the op bodies: coupling_ops.h; the
// per-element math: coupling.h.
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
#include "gmk/cpu_stream.h"
#include "gmk/glue.h"

namespace gmk {

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

struct CouplingCpu {
  using Guard = NoDeviceGuard;
  // The loops read an int32 mask: a uint8 mask next to float data made GCC pick 128-bit vectors
  // for the whole loop, half the AVX2 width.
  static constexpr at::ScalarType kMaskDtype = at::kInt;
  // Every row's logdet is written when M > 0 (rows of no elements: zero-filled by the body).
  static constexpr bool kZeroedSums = false;

  static void forward(const char*, const CouplingPrep& p, at::Tensor& y, at::Tensor& logdet) {
    if (p.rows > 0 && p.M > 0) {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(),
                                      "affine_coupling", [&] {
        coupling_fwd_cpu_typed<scalar_t>(p, y, logdet);
      });
    }
  }

  static void backward(const char*, const CouplingPrep& p, at::Tensor& gx, at::Tensor& gs,
                       at::Tensor& gt) {
    if (p.rows > 0 && p.M > 0) {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(),
                                      "affine_coupling_backward", [&] {
        coupling_bwd_cpu_typed<scalar_t>(p, gx, gs, gt);
      });
    }
  }
};

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CPU, m) { gmk::register_coupling_ops<gmk::CouplingCpu>(m); }
