// bm_gibbs on the CPU (docs/spec.md §2.2; the sweep order and stream use are described in bm.cpp) and
// its registration. Checks and initial fields: bm_prepare (bm.cpp); the op body: bm_ops.h.
//
// CPU kernel: at::parallel_for over chains. Per chain and sweep the row's Philox words are made
// at once (64 counters per AVX2 call), then the sites run in order: one sigmoid per site, and
// when the spin flips a field update h += 2 y_new W[i, :] over D contiguous values (the loop the
// compiler vectorizes; a sweep costs O(D * flips)). The loops are compiled for AVX-512, AVX2 and
// baseline x86-64 and chosen by cpuid (gmk/cpu_stream.h), like the Philox driver.
// float32 in sequential order on AVX2 machines takes bm_tile8_avx2 instead: 8 chains in lockstep
// with an exp-free banded decision and fused field updates, bit-identical to the loop above
// (bm_avx2.h explains why; benchmarks/NOTES.md has the numbers).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "bm.h"
#include "bm_avx2.h"
#include "bm_ops.h"
#include "gmk/cpu_stream.h"
#include "gmk/glue.h"

namespace gmk {

namespace {

template <typename acc_t>
struct BmCpu {
  acc_t* y;
  acc_t* h;
  const acc_t* W;
  const acc_t* beta_t;
  acc_t beta;
  int64_t D, n_sweeps;
  int order;
  PhiloxStream st;
};

// h += s * w over D contiguous values (s = +-2: the product is exact).
template <typename acc_t>
GMK_FORCEINLINE void field_update(acc_t* __restrict h, const acc_t* __restrict w, acc_t s,
                                  int64_t D) {
#pragma omp simd
  for (int64_t j = 0; j < D; ++j) h[j] += s * w[j];
}

// The Philox words of elements 0..M-1 of row `row` (0-based in the call) into words[0..4G).
template <bool kAvx2>
GMK_FORCEINLINE void row_words(const PhiloxStream& st, uint32_t row, int64_t G,
                               uint32_t* words) {
#if defined(__x86_64__) && defined(__GNUC__)
  // The AVX2 Philox makes 64 counters per call: worth it only for rows of 128+ elements; a
  // short row (D = 16: 4 counters) takes the scalar loop instead of 16x the work.
  if (kAvx2 && G >= cpu::kLanes / 2) {
    alignas(64) uint32_t lanes[4][cpu::kLanes];
    for (int64_t g0 = 0; g0 < G; g0 += cpu::kLanes) {
      cpu::philox_words_avx2(static_cast<uint32_t>(g0), 1u, row + st.row0, 0u, st, lanes);
      const int64_t n = std::min<int64_t>(cpu::kLanes, G - g0);
      for (int64_t i = 0; i < n; ++i) {
        uint32_t* o = words + 4 * (g0 + i);
        o[0] = lanes[0][i];
        o[1] = lanes[1][i];
        o[2] = lanes[2][i];
        o[3] = lanes[3][i];
      }
    }
    return;
  }
#endif
  for (int64_t g = 0; g < G; ++g) {
    const u32x4 w = st.words(static_cast<uint32_t>(g), row);
    uint32_t* o = words + 4 * g;
    o[0] = w.x;
    o[1] = w.y;
    o[2] = w.z;
    o[3] = w.w;
  }
}

// Chains [c0, c1): every sweep of each, one chain at a time (its fields stay in L1/L2).
template <typename acc_t, bool kAvx2>
GMK_FORCEINLINE void bm_chains(const BmCpu<acc_t>& a, int64_t c0, int64_t c1) {
  const int64_t D = a.D;
  const int64_t M = a.order == kBmRandom ? 2 * D : D;
  const int64_t G = (M + 3) / 4;
  std::vector<uint32_t> words(static_cast<size_t>(4 * G));
  uint32_t* wd = words.data();
  for (int64_t c = c0; c < c1; ++c) {
    acc_t* __restrict y = a.y + c * D;
    acc_t* __restrict h = a.h + c * D;
    const acc_t beta = a.beta_t ? a.beta_t[c] : a.beta;
    for (int64_t s = 0; s < a.n_sweeps; ++s) {
      row_words<kAvx2>(bm_sweep_stream(a.st, static_cast<uint64_t>(s)),
                       static_cast<uint32_t>(c), G, wd);
      for (int64_t j = 0; j < D; ++j) {
        const int64_t i = a.order == kBmRandom
                              ? static_cast<int64_t>(bm_site(wd[D + j], static_cast<uint32_t>(D)))
                              : j;
        const acc_t yn = bm_new_spin<acc_t>(wd[j], h[i], beta);
        if (yn != y[i]) {
          y[i] = yn;
          field_update<acc_t>(h, a.W + i * D, acc_t(2) * yn, D);
        }
      }
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
template <typename acc_t>
GMK_TARGET_AVX512 __attribute__((noinline)) void bm_chains_avx512(const BmCpu<acc_t>& a,
                                                                  int64_t c0, int64_t c1) {
  bm_chains<acc_t, true>(a, c0, c1);
}
template <typename acc_t>
GMK_TARGET_AVX2 __attribute__((noinline)) void bm_chains_avx2(const BmCpu<acc_t>& a, int64_t c0,
                                                              int64_t c1) {
  bm_chains<acc_t, true>(a, c0, c1);
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
// float32, sequential order: 8 chains [c0, c0 + 8) in lockstep, sites in blocks of 8. Per block
// the 8x8 fields, spins and words are loaded and transposed (lane = chain); the 8 decisions run
// on vectors with the exp-free band test of bm_avx2.h (bit-identical to bm_new_spin), and each
// decision's flips move the block's later fields in registers (f += 2 y_new W[i, i'], the same
// single rounding as the full update). The latency chain per site is then a multiply, a compare
// and an FMA; the full-row field updates of the block's flips (memory, in site order per chain)
// come after the block and overlap with the next block's decisions. Sites D & ~7 .. D-1 of each
// sweep run the scalar loop per chain.
GMK_BM_AVX2 __attribute__((noinline)) void bm_tile8_avx2(const BmCpu<float>& a, int64_t c0,
                                                         uint32_t* wbuf) {
  using namespace bm_avx2;
  const int64_t D = a.D, D8 = D & ~int64_t{7};
  const int64_t G = (D + 3) / 4, ld = 4 * G;
  float* __restrict y = a.y + c0 * D;
  float* __restrict h = a.h + c0 * D;
  const float* __restrict W = a.W;
  alignas(32) float betas[8];
  for (int c = 0; c < 8; ++c) betas[c] = a.beta_t ? a.beta_t[c0 + c] : a.beta;
  const __m256 vb = _mm256_load_ps(betas);
  for (int64_t s = 0; s < a.n_sweeps; ++s) {
    const PhiloxStream st = bm_sweep_stream(a.st, static_cast<uint64_t>(s));
    for (int c = 0; c < 8; ++c) row_words<true>(st, static_cast<uint32_t>(c0 + c), G, wbuf + c * ld);
    for (int64_t i0 = 0; i0 < D8; i0 += 8) {
      __m256 f[8], yv[8], wv[8];
      for (int c = 0; c < 8; ++c) {
        f[c] = _mm256_loadu_ps(h + c * D + i0);
        yv[c] = _mm256_loadu_ps(y + c * D + i0);
        wv[c] = _mm256_loadu_ps(reinterpret_cast<const float*>(wbuf + c * ld + i0));
      }
      transpose8(f);
      transpose8(yv);
      transpose8(wv);
      __m256 z[8], dz[8];
      for (int k = 0; k < 8; ++k) band8(_mm256_castps_si256(wv[k]), &z[k], &dz[k]);
      unsigned masks[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m256 t = _mm256_mul_ps(vb, f[k]);
        int band;
        __m256 up = decide8(_mm256_add_ps(t, t), z[k], dz[k], &band);
        if (__builtin_expect(band != 0, 0)) {
          alignas(32) float fs[8], ups[8];
          alignas(32) uint32_t ws[8];
          _mm256_store_ps(fs, f[k]);
          _mm256_store_ps(ups, up);
          _mm256_store_ps(reinterpret_cast<float*>(ws), wv[k]);
          for (int c = 0; c < 8; ++c) {
            if (band >> c & 1) {
              const bool u = bm_new_spin<float>(ws[c], fs[c], betas[c]) > 0.0f;
              uint32_t bits = u ? 0xFFFFFFFFu : 0u;
              __builtin_memcpy(&ups[c], &bits, 4);
            }
          }
          up = _mm256_load_ps(ups);
        }
        // flip where the new sign differs from the old; delta = 2 y_new = -2 y_old there, else 0
        const __m256 yp = _mm256_cmp_ps(yv[k], _mm256_setzero_ps(), _CMP_GT_OQ);
        const __m256 flip = _mm256_xor_ps(up, yp);
        const __m256 delta = _mm256_and_ps(flip, _mm256_mul_ps(yv[k], _mm256_set1_ps(-2.0f)));
        const float* wr = W + (i0 + k) * D + i0;
#pragma GCC unroll 8
        for (int k2 = k + 1; k2 < 8; ++k2)
          f[k2] = _mm256_fmadd_ps(delta, _mm256_broadcast_ss(wr + k2), f[k2]);
        masks[k] = static_cast<unsigned>(_mm256_movemask_ps(flip));
      }
      // Each chain's flips of the block, in site order, fused into one pass over its fields.
      const float* rows[8][8];
      float svals[8][8];
      int nf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int k = 0; k < 8; ++k) {
        const int64_t i = i0 + k;
        for (unsigned m = masks[k]; m; m &= m - 1) {
          const int c = __builtin_ctz(m);
          const float yn = -y[c * D + i];
          y[c * D + i] = yn;
          rows[c][nf[c]] = W + i * D;
          svals[c][nf[c]++] = 2.0f * yn;
        }
      }
      for (int c = 0; c < 8; ++c)
        if (nf[c]) field_update_rows(h + c * D, rows[c], svals[c], nf[c], D);
    }
    for (int c = 0; c < 8 && D8 < D; ++c) {
      float* yc = y + c * D;
      float* hc = h + c * D;
      const uint32_t* wd = wbuf + c * ld;
      for (int64_t i = D8; i < D; ++i) {
        const float yn = bm_new_spin<float>(wd[i], hc[i], betas[c]);
        if (yn != yc[i]) {
          yc[i] = yn;
          field_update(hc, W + i * D, 2.0f * yn, D);
        }
      }
    }
  }
}
#endif

template <typename acc_t>
__attribute__((noinline)) void bm_chains_baseline(const BmCpu<acc_t>& a, int64_t c0,
                                                  int64_t c1) {
  bm_chains<acc_t, false>(a, c0, c1);
}

template <typename acc_t>
void bm_cpu_run(const BmPrep& p) {
  BmCpu<acc_t> a{p.y.data_ptr<acc_t>(),
                 p.h.data_ptr<acc_t>(),
                 p.W.data_ptr<acc_t>(),
                 opt_ptr<acc_t>(p.beta_t),
                 static_cast<acc_t>(p.beta),
                 p.D,
                 p.n_sweeps,
                 p.order,
                 p.st};
  const cpu::Isa isa = cpu::detect_isa();
#if defined(__x86_64__) && defined(__GNUC__)
  if constexpr (std::is_same<acc_t, float>::value) {
    if (isa != cpu::Isa::kBaseline && p.order == kBmSequential && p.D >= 8) {
      // Tiles of 8 chains (the last B % 8 chains: the per-chain loop).
      const int64_t G = (p.D + 3) / 4;
      at::parallel_for(0, (p.B + 7) / 8, 1, [&](int64_t t0, int64_t t1) {
        std::vector<uint32_t> wbuf(static_cast<size_t>(8 * 4 * G));
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t c0 = 8 * t, c1 = std::min(p.B, c0 + 8);
          if (c1 - c0 == 8) bm_tile8_avx2(a, c0, wbuf.data());
          else if (isa == cpu::Isa::kAvx512) bm_chains_avx512<acc_t>(a, c0, c1);
          else bm_chains_avx2<acc_t>(a, c0, c1);
        }
      });
      return;
    }
  }
#endif
  // One chain is n_sweeps * D site updates: always worth a task of its own.
  at::parallel_for(0, p.B, 1, [&](int64_t c0, int64_t c1) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == cpu::Isa::kAvx512) return bm_chains_avx512<acc_t>(a, c0, c1);
    if (isa == cpu::Isa::kAvx2) return bm_chains_avx2<acc_t>(a, c0, c1);
#endif
    (void)isa;
    bm_chains_baseline<acc_t>(a, c0, c1);
  });
}

struct BmCpuDev {
  using Guard = NoDeviceGuard;

  static void run(const char*, const BmPrep& p) {
    if (p.B == 0 || p.D == 0 || p.n_sweeps == 0) return;
    if (p.y.scalar_type() == at::kDouble) bm_cpu_run<double>(p);
    else bm_cpu_run<float>(p);
  }
};

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CPU, m) {
  m.impl("bm_gibbs", &gmk::bm_gibbs<gmk::BmCpuDev>);
  m.impl("bm_fit_epoch_", &gmk::bm_fit_epoch<gmk::BmCpuDev>);
}
