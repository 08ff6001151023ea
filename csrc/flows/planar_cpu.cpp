// The planar flow (docs/spec.md §1.1) on the CPU: the kernels of the fused K-layer stack and its
// backward, and their registration. Checks and layout: planar.cpp; the op bodies: planar_ops.h.
//
// CPU layout. Rows are independent, so work is split over tiles of kTile rows
// (at::parallel_for). Inside a tile every layer runs as a few short loops over the tile's rows:
// a = b + w·z, then (h, s) = (tanh a, 1 - tanh² a) and log1p, then z += û h. With shared
// parameters the tile is stored dimension-major (z[d][row]) so every one of these loops is a
// unit-stride loop over rows with w_k[d] / û_k[d] broadcast: GCC vectorizes all of them,
// including the branch-free tanh / log of planar.h (libm's would be one scalar call per row and
// layer). With per-sample parameters each row has its own (K, D) parameters, read
// contiguously, so that tile is row-major and the dot products run over d.
//
// Backward without a (B, K, D) store of the intermediate z_k. The reverse sweep needs, per
// layer, h_k and s_k (scalars) and the gradient flowing into z_{k+1}; z_k itself is needed only
// for d/dw_k = ga_k z_k. So, per tile: (0) rerun the forward, keeping h_k, s_k (K scalars per
// row); (1) sweep k = K-1..0 computing ga_k, c_k, the grads of û, b and the input (no z_k
// needed); (2) sweep forward again, rebuilding z_k from z_0 with the same h_k (bit for bit the
// forward's z_k) and forming d/dw_k. Scratch is O(K + D) per row and lives in cache.
//
// Shared-parameter gradients are summed per chunk of tiles into a (chunks, 2KD + K) buffer and
// then over chunks; the chunking depends only on B, so results do not depend on the thread
// count or scheduling.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <vector>

#include "gmk/cpu_stream.h"
#include "gmk/glue.h"
#include "planar.h"
#include "planar_ops.h"

namespace gmk {

namespace {

constexpr int64_t kTile = 32;  // rows per tile: the tile's z, h, s fit in L1 for K, D <= 32

// Parameter views of one tile: shared (K, D) or per-sample (B, K, D), and the element index of
// row i, dimension d in the tile buffers (dimension-major for shared, row-major per sample).
template <typename T, bool kPS>
struct Tile {
  const T* u;
  const T* w;
  const T* b;
  int64_t r0, nr, K, D;
  GMK_FORCEINLINE int64_t at(int64_t i, int64_t d) const { return kPS ? i * D + d : d * kTile + i; }
  GMK_FORCEINLINE const T* uk(int64_t i, int64_t k) const {
    return kPS ? u + ((r0 + i) * K + k) * D : u + k * D;
  }
  GMK_FORCEINLINE const T* wk(int64_t i, int64_t k) const {
    return kPS ? w + ((r0 + i) * K + k) * D : w + k * D;
  }
  GMK_FORCEINLINE T bk(int64_t i, int64_t k) const { return kPS ? b[(r0 + i) * K + k] : b[k]; }
};

// a[i] = b_k + w_k·z_i and, per sample, uw[i] = û_k·w_k.
template <typename T, bool kPS>
GMK_FORCEINLINE void preact(const Tile<T, kPS>& t, int64_t k, const T* zt, T* a, T* uw) {
  const int64_t nr = t.nr, D = t.D;
  if (!kPS) {
    const T* wk = t.wk(0, k);
    const T bk = t.bk(0, k);
#pragma omp simd
    for (int64_t i = 0; i < kTile; ++i) a[i] = bk;
    for (int64_t d = 0; d < D; ++d) {
      const T wd = wk[d];
      const T* zd = zt + d * kTile;
#pragma omp simd
      for (int64_t i = 0; i < kTile; ++i) a[i] += wd * zd[i];
    }
  } else {
    for (int64_t i = 0; i < nr; ++i) {
      const T* wr = t.wk(i, k);
      const T* ur = t.uk(i, k);
      const T* zr = zt + i * D;
      T acc = T(0), accu = T(0);
#pragma omp simd reduction(+ : acc, accu)
      for (int64_t d = 0; d < D; ++d) {
        acc += wr[d] * zr[d];
        accu += ur[d] * wr[d];
      }
      a[i] = t.bk(i, k) + acc;
      uw[i] = accu;
    }
  }
}

// z_i += û_k h_i.
template <typename T, bool kPS>
GMK_FORCEINLINE void update(const Tile<T, kPS>& t, int64_t k, T* zt, const T* h) {
  const int64_t D = t.D;
  if (!kPS) {
    const T* uk = t.uk(0, k);
    for (int64_t d = 0; d < D; ++d) {
      const T ud = uk[d];
      T* zd = zt + d * kTile;
#pragma omp simd
      for (int64_t i = 0; i < kTile; ++i) zd[i] += ud * h[i];
    }
  } else {
    for (int64_t i = 0; i < t.nr; ++i) {
      const T* ur = t.uk(i, k);
      T* zr = zt + i * D;
      const T hi = h[i];
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) zr[d] += ur[d] * hi;
    }
  }
}

template <typename T, bool kPS>
GMK_FORCEINLINE void load_tile(const Tile<T, kPS>& t, const T* src, T* zt) {
  if (!kPS) std::fill(zt, zt + t.D * kTile, T(0));  // lanes past nr: zeros, computed and dropped
  for (int64_t i = 0; i < t.nr; ++i)
    for (int64_t d = 0; d < t.D; ++d) zt[t.at(i, d)] = src[(t.r0 + i) * t.D + d];
}

template <typename T, bool kPS>
GMK_FORCEINLINE void store_tile(const Tile<T, kPS>& t, const T* zt, T* dst) {
  for (int64_t i = 0; i < t.nr; ++i)
    for (int64_t d = 0; d < t.D; ++d) dst[(t.r0 + i) * t.D + d] = zt[t.at(i, d)];
}

// Scratch of one task (one thread's range of tiles).
template <typename T>
struct Scratch {
  std::vector<T> buf;
  T *z0, *z, *gz, *a, *uw, *gl, *dot, *ld, *H, *S, *UW, *GA, *C;
  Scratch(int64_t K, int64_t D, bool backward) {
    const int64_t nd = std::max<int64_t>(D, 1) * kTile;
    const int64_t nk = std::max<int64_t>(K, 1) * kTile;
    buf.assign(3 * nd + 5 * kTile + (backward ? 5 * nk : 0), T(0));
    T* p = buf.data();
    z0 = p; p += nd;
    z = p; p += nd;
    gz = p; p += nd;
    a = p; p += kTile;
    uw = p; p += kTile;
    gl = p; p += kTile;
    dot = p; p += kTile;
    ld = p; p += kTile;
    H = S = UW = GA = C = nullptr;
    if (backward) {
      H = p; p += nk;
      S = p; p += nk;
      UW = p; p += nk;
      GA = p; p += nk;
      C = p;
    }
  }
};

// float32, shared parameters: the forward of one tile with the preactivations held in
// registers (GCC vector extensions, 8 floats: one AVX2 register, two SSE ones on the baseline
// build). The update of layer k and the preactivation of layer k+1 share one pass over z:
// z_d += û_k[d] h;  a += w_{k+1}[d] z_d, with two accumulators per 8 rows (even / odd d) so
// the FMA chains overlap. The per-row scalars (tanh, running |psi| product) run as before in a
// vectorized loop over the tile's 32 rows.
typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4)));

GMK_FORCEINLINE v8f ld8(const float* p) { return *reinterpret_cast<const v8f_u*>(p); }
GMK_FORCEINLINE void st8(float* p, v8f v) { *reinterpret_cast<v8f_u*>(p) = v; }
GMK_FORCEINLINE v8f bc8(float x) { return v8f{} + x; }  // scalar operands broadcast

GMK_FORCEINLINE void forward_tile_f32_shared(const Tile<float, false>& t, const float* z,
                                             const float* uw_shared, float* out,
                                             float* logdet, Scratch<float>& s) {
  static_assert(kTile == 32, "four 8-float vectors per tile");
  load_tile(t, z, s.z);
  const int64_t K = t.K, D = t.D;
  float* zt = s.z;
  float* a = s.a;
  float m[kTile];
  int32_t ex[kTile], zr[kTile];
#pragma omp simd
  for (int64_t i = 0; i < kTile; ++i) {
    m[i] = 1.0f;
    ex[i] = 0;
    zr[i] = 0;
  }
  // a = b_0 + w_0·z
  v8f a0, a1, a2, a3, c0, c1, c2, c3;
  {
    const float* w0 = t.w;
    a0 = a1 = a2 = a3 = bc8(t.b[0]);
    c0 = c1 = c2 = c3 = bc8(0.0f);
    int64_t d = 0;
    for (; d + 1 < D; d += 2) {
      const float* zd = zt + d * kTile;
      const float wa = w0[d], wb = w0[d + 1];
      a0 += wa * ld8(zd); a1 += wa * ld8(zd + 8); a2 += wa * ld8(zd + 16); a3 += wa * ld8(zd + 24);
      zd += kTile;
      c0 += wb * ld8(zd); c1 += wb * ld8(zd + 8); c2 += wb * ld8(zd + 16); c3 += wb * ld8(zd + 24);
    }
    if (d < D) {
      const float* zd = zt + d * kTile;
      const float wa = w0[d];
      a0 += wa * ld8(zd); a1 += wa * ld8(zd + 8); a2 += wa * ld8(zd + 16); a3 += wa * ld8(zd + 24);
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    st8(a, a0 + c0); st8(a + 8, a1 + c1); st8(a + 16, a2 + c2); st8(a + 24, a3 + c3);
    const float uwk = uw_shared[k];
#pragma omp simd
    for (int64_t i = 0; i < kTile; ++i) {
      float h, sh;
      planar::act(a[i], &h, &sh);
      planar::prod_step(h, sh, uwk, &m[i], &ex[i], &zr[i]);
      a[i] = h;
    }
    const v8f h0 = ld8(a), h1 = ld8(a + 8), h2 = ld8(a + 16), h3 = ld8(a + 24);
    const float* uk = t.u + k * D;
    if (k + 1 < K) {
      const float* wn = t.w + (k + 1) * D;
      a0 = a1 = a2 = a3 = bc8(t.b[k + 1]);
      c0 = c1 = c2 = c3 = bc8(0.0f);
      int64_t d = 0;
      for (; d + 1 < D; d += 2) {
        float* zd = zt + d * kTile;
        const float ua = uk[d], wa = wn[d];
        v8f z0 = ld8(zd) + ua * h0, z1 = ld8(zd + 8) + ua * h1, z2 = ld8(zd + 16) + ua * h2,
            z3 = ld8(zd + 24) + ua * h3;
        st8(zd, z0); st8(zd + 8, z1); st8(zd + 16, z2); st8(zd + 24, z3);
        a0 += wa * z0; a1 += wa * z1; a2 += wa * z2; a3 += wa * z3;
        zd += kTile;
        const float ub = uk[d + 1], wb = wn[d + 1];
        z0 = ld8(zd) + ub * h0; z1 = ld8(zd + 8) + ub * h1; z2 = ld8(zd + 16) + ub * h2;
        z3 = ld8(zd + 24) + ub * h3;
        st8(zd, z0); st8(zd + 8, z1); st8(zd + 16, z2); st8(zd + 24, z3);
        c0 += wb * z0; c1 += wb * z1; c2 += wb * z2; c3 += wb * z3;
      }
      if (d < D) {
        float* zd = zt + d * kTile;
        const float ua = uk[d], wa = wn[d];
        const v8f z0 = ld8(zd) + ua * h0, z1 = ld8(zd + 8) + ua * h1,
                  z2 = ld8(zd + 16) + ua * h2, z3 = ld8(zd + 24) + ua * h3;
        st8(zd, z0); st8(zd + 8, z1); st8(zd + 16, z2); st8(zd + 24, z3);
        a0 += wa * z0; a1 += wa * z1; a2 += wa * z2; a3 += wa * z3;
      }
    } else {
      for (int64_t d = 0; d < D; ++d) {
        float* zd = zt + d * kTile;
        const float ua = uk[d];
        st8(zd, ld8(zd) + ua * h0); st8(zd + 8, ld8(zd + 8) + ua * h1);
        st8(zd + 16, ld8(zd + 16) + ua * h2); st8(zd + 24, ld8(zd + 24) + ua * h3);
      }
    }
  }
#pragma omp simd
  for (int64_t i = 0; i < kTile; ++i) s.ld[i] = planar::log_prod(m[i], ex[i], zr[i]);
  store_tile(t, s.z, out);
  for (int64_t i = 0; i < t.nr; ++i) logdet[t.r0 + i] = s.ld[i];
}

template <typename T, bool kPS>
GMK_FORCEINLINE void forward_tile(const Tile<T, kPS>& t, const T* z, const T* uw_shared, T* out,
                                  T* logdet, Scratch<T>& s) {
  if constexpr (std::is_same<T, float>::value && !kPS) {
    if (t.K > 0) return forward_tile_f32_shared(t, z, uw_shared, out, logdet, s);
  }
  load_tile(t, z, s.z);
  if constexpr (std::is_same<T, float>::value) {
    // float32: |psi| multiplied into a running mantissa / exponent product, one log per row
    // at the end (planar.h prod_step / log_prod) instead of one per layer.
    float m[kTile];
    int32_t ex[kTile], zr[kTile];
#pragma omp simd
    for (int64_t i = 0; i < kTile; ++i) {
      m[i] = 1.0f;
      ex[i] = 0;
      zr[i] = 0;
    }
    for (int64_t k = 0; k < t.K; ++k) {
      preact(t, k, s.z, s.a, s.uw);
      const int64_t n = kPS ? t.nr : kTile;
      const float uwk = kPS ? 0.0f : uw_shared[k];
      const float* uwv = s.uw;
      float* a = s.a;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        float h, sh;
        planar::act(a[i], &h, &sh);
        planar::prod_step(h, sh, kPS ? uwv[i] : uwk, &m[i], &ex[i], &zr[i]);
        a[i] = h;
      }
      update(t, k, s.z, s.a);
    }
#pragma omp simd
    for (int64_t i = 0; i < kTile; ++i) s.ld[i] = planar::log_prod(m[i], ex[i], zr[i]);
    store_tile(t, s.z, out);
    for (int64_t i = 0; i < t.nr; ++i) logdet[t.r0 + i] = s.ld[i];
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < kTile; ++i) s.ld[i] = T(0);
  for (int64_t k = 0; k < t.K; ++k) {
    preact(t, k, s.z, s.a, s.uw);
    const int64_t n = kPS ? t.nr : kTile;
    const T uwk = kPS ? T(0) : uw_shared[k];
    const T* uwv = s.uw;
    T* a = s.a;
    T* ld = s.ld;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      T h, sh;
      planar::act(a[i], &h, &sh);
      ld[i] += planar::layer_log_psi(h, sh, kPS ? uwv[i] : uwk);
      a[i] = h;
    }
    update(t, k, s.z, s.a);
  }
  store_tile(t, s.z, out);
  for (int64_t i = 0; i < t.nr; ++i) logdet[t.r0 + i] = s.ld[i];
}

// Shared-parameter gradient accumulators of one chunk: gu (K, D), gw (K, D), gb (K).
template <typename T>
struct SharedAcc {
  T* gu;
  T* gw;
  T* gb;
};

template <typename T, bool kPS>
GMK_FORCEINLINE void backward_tile(const Tile<T, kPS>& t, const T* z, const T* gy, const T* gl,
                                   const T* uw_shared, T* gz, T* gu, T* gw, T* gb,
                                   SharedAcc<T> acc, Scratch<T>& s) {
  const int64_t K = t.K, D = t.D, nr = t.nr;
  const int64_t n = kPS ? nr : kTile;
  // (0) forward again, keeping h_k and s_k (and û_k·w_k per sample).
  load_tile(t, z, s.z0);
  std::copy(s.z0, s.z0 + std::max<int64_t>(D, 1) * kTile, s.z);
  for (int64_t k = 0; k < K; ++k) {
    T* UWk = s.UW + k * kTile;
    preact(t, k, s.z, s.a, UWk);
    T* Hk = s.H + k * kTile;
    T* Sk = s.S + k * kTile;
    const T* a = s.a;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) planar::act(a[i], &Hk[i], &Sk[i]);
    update(t, k, s.z, Hk);
  }
  // (1) reverse sweep.
  if (gy) {
    load_tile(t, gy, s.gz);
  } else {
    std::fill(s.gz, s.gz + std::max<int64_t>(D, 1) * kTile, T(0));
  }
  for (int64_t i = 0; i < kTile; ++i) s.gl[i] = (gl && i < nr) ? gl[t.r0 + i] : T(0);
  for (int64_t k = K - 1; k >= 0; --k) {
    const T* Hk = s.H + k * kTile;
    const T* Sk = s.S + k * kTile;
    const T* UWk = s.UW + k * kTile;
    T* GAk = s.GA + k * kTile;
    T* Ck = s.C + k * kTile;
    T* dot = s.dot;
    if (!kPS) {
      const T* uk = t.uk(0, k);
#pragma omp simd
      for (int64_t i = 0; i < kTile; ++i) dot[i] = T(0);
      for (int64_t d = 0; d < D; ++d) {
        const T ud = uk[d];
        const T* gd = s.gz + d * kTile;
#pragma omp simd
        for (int64_t i = 0; i < kTile; ++i) dot[i] += ud * gd[i];
      }
    } else {
      for (int64_t i = 0; i < nr; ++i) {
        const T* ur = t.uk(i, k);
        const T* gr = s.gz + i * D;
        T v = T(0);
#pragma omp simd reduction(+ : v)
        for (int64_t d = 0; d < D; ++d) v += ur[d] * gr[d];
        dot[i] = v;
      }
    }
    const T uwk = kPS ? T(0) : uw_shared[k];
    const T* glv = s.gl;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i)
      planar::layer_grads(dot[i], glv[i], Hk[i], Sk[i], kPS ? UWk[i] : uwk, &GAk[i], &Ck[i]);
    if (!kPS) {
      // lanes past nr carry gz = 0 and gl = 0, hence GA = C = 0: they add nothing.
      const T* wk = t.wk(0, k);
      T csum = T(0), gasum = T(0);
#pragma omp simd reduction(+ : csum, gasum)
      for (int64_t i = 0; i < kTile; ++i) {
        csum += Ck[i];
        gasum += GAk[i];
      }
      acc.gb[k] += gasum;
      for (int64_t d = 0; d < D; ++d) {
        T* gd = s.gz + d * kTile;
        T v = T(0);
#pragma omp simd reduction(+ : v)
        for (int64_t i = 0; i < kTile; ++i) v += gd[i] * Hk[i];
        acc.gu[k * D + d] += v + csum * wk[d];
        const T wd = wk[d];
#pragma omp simd
        for (int64_t i = 0; i < kTile; ++i) gd[i] += GAk[i] * wd;
      }
    } else {
      for (int64_t i = 0; i < nr; ++i) {
        const int64_t row = t.r0 + i;
        const T* wr = t.wk(i, k);
        T* gr = s.gz + i * D;
        T* gur = gu + (row * K + k) * D;
        const T hi = Hk[i], ci = Ck[i], gai = GAk[i];
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) {
          gur[d] = gr[d] * hi + ci * wr[d];
          gr[d] += gai * wr[d];
        }
        gb[row * K + k] = gai;
      }
    }
  }
  store_tile(t, s.gz, gz);
  // (2) forward sweep rebuilding z_k: d/dw_k = ga_k z_k + c_k û_k.
  std::copy(s.z0, s.z0 + std::max<int64_t>(D, 1) * kTile, s.z);
  for (int64_t k = 0; k < K; ++k) {
    const T* Hk = s.H + k * kTile;
    const T* GAk = s.GA + k * kTile;
    const T* Ck = s.C + k * kTile;
    if (!kPS) {
      const T* uk = t.uk(0, k);
      T csum = T(0);
#pragma omp simd reduction(+ : csum)
      for (int64_t i = 0; i < kTile; ++i) csum += Ck[i];
      for (int64_t d = 0; d < D; ++d) {
        const T* zd = s.z + d * kTile;
        T v = T(0);
#pragma omp simd reduction(+ : v)
        for (int64_t i = 0; i < kTile; ++i) v += GAk[i] * zd[i];
        acc.gw[k * D + d] += v + csum * uk[d];
      }
    } else {
      for (int64_t i = 0; i < nr; ++i) {
        const int64_t row = t.r0 + i;
        const T* ur = t.uk(i, k);
        const T* zr = s.z + i * D;
        T* gwr = gw + (row * K + k) * D;
        const T gai = GAk[i], ci = Ck[i];
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) gwr[d] = gai * zr[d] + ci * ur[d];
      }
    }
    update(t, k, s.z, Hk);
  }
}

// ISA variants: the same template body compiled for AVX-512, AVX2+FMA and the baseline, chosen
// at run time (gmk/cpu_stream.h detect_isa), like the other families' CPU kernels.
template <typename T, bool kPS>
GMK_FORCEINLINE void forward_tiles(int64_t t0, int64_t t1, const Tile<T, kPS>& base, int64_t B, const T* z,
                   const T* uw, T* out, T* logdet) {
  Scratch<T> s(base.K, base.D, false);
  for (int64_t ti = t0; ti < t1; ++ti) {
    Tile<T, kPS> t = base;
    t.r0 = ti * kTile;
    t.nr = std::min<int64_t>(kTile, B - t.r0);
    forward_tile(t, z, uw, out, logdet, s);
  }
}

template <typename T, bool kPS>
GMK_FORCEINLINE void backward_tiles(int64_t t0, int64_t t1, const Tile<T, kPS>& base, int64_t B, const T* z,
                    const T* gy, const T* gl, const T* uw, T* gz, T* gu, T* gw, T* gb,
                    SharedAcc<T> acc) {
  Scratch<T> s(base.K, base.D, true);
  for (int64_t ti = t0; ti < t1; ++ti) {
    Tile<T, kPS> t = base;
    t.r0 = ti * kTile;
    t.nr = std::min<int64_t>(kTile, B - t.r0);
    backward_tile(t, z, gy, gl, uw, gz, gu, gw, gb, acc, s);
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
template <typename T, bool kPS>
GMK_TARGET_AVX512 void forward_tiles_avx512(int64_t t0, int64_t t1, const Tile<T, kPS>& base,
                                            int64_t B, const T* z, const T* uw, T* out,
                                            T* logdet) {
  forward_tiles(t0, t1, base, B, z, uw, out, logdet);
}
template <typename T, bool kPS>
GMK_TARGET_AVX2 void forward_tiles_avx2(int64_t t0, int64_t t1, const Tile<T, kPS>& base,
                                        int64_t B, const T* z, const T* uw, T* out, T* logdet) {
  forward_tiles(t0, t1, base, B, z, uw, out, logdet);
}
template <typename T, bool kPS>
GMK_TARGET_AVX512 void backward_tiles_avx512(int64_t t0, int64_t t1, const Tile<T, kPS>& base,
                                             int64_t B, const T* z, const T* gy, const T* gl,
                                             const T* uw, T* gz, T* gu, T* gw, T* gb,
                                             SharedAcc<T> acc) {
  backward_tiles(t0, t1, base, B, z, gy, gl, uw, gz, gu, gw, gb, acc);
}
template <typename T, bool kPS>
GMK_TARGET_AVX2 void backward_tiles_avx2(int64_t t0, int64_t t1, const Tile<T, kPS>& base,
                                         int64_t B, const T* z, const T* gy, const T* gl,
                                         const T* uw, T* gz, T* gu, T* gw, T* gb,
                                         SharedAcc<T> acc) {
  backward_tiles(t0, t1, base, B, z, gy, gl, uw, gz, gu, gw, gb, acc);
}
#endif

int64_t num_tiles(int64_t B) { return (B + kTile - 1) / kTile; }

// Grain: about 2^20 units of layer work (row x layer x (D + 8), ~0.1-0.3 ms) per task. Small
// batches stay on one thread: on the loaded 2-core machine a parallel region around a
// ~0.1 ms call measured up to 20 ms (a descheduled OpenMP thread stalls the barrier), which
// made a B = 512 training step of the example 30x slower.
int64_t tile_grain(int64_t K, int64_t D) {
  return std::max<int64_t>(1, (int64_t{1} << 20) / (kTile * std::max<int64_t>(K, 1) *
                                                    (std::max<int64_t>(D, 1) + 8)));
}

template <typename T>
std::vector<T> shared_uw(const PlanarPrep& p) {
  std::vector<T> uw(std::max<int64_t>(p.K, 1), T(0));
  if (p.per_sample) return uw;
  const T* u = p.u.data_ptr<T>();
  const T* w = p.w.data_ptr<T>();
  for (int64_t k = 0; k < p.K; ++k) {
    T v = T(0);
    for (int64_t d = 0; d < p.D; ++d) v += u[k * p.D + d] * w[k * p.D + d];
    uw[k] = v;
  }
  return uw;
}

template <typename T, bool kPS>
void forward_run(const PlanarPrep& p, at::Tensor& out, at::Tensor& logdet) {
  const std::vector<T> uw = shared_uw<T>(p);
  const Tile<T, kPS> base{p.u.data_ptr<T>(), p.w.data_ptr<T>(), p.b.data_ptr<T>(), 0, 0, p.K, p.D};
  const T* z = p.z.data_ptr<T>();
  T* o = out.data_ptr<T>();
  T* ld = logdet.data_ptr<T>();
  const int64_t B = p.B;
  const cpu::Isa isa = cpu::detect_isa();
  at::parallel_for(0, num_tiles(B), tile_grain(p.K, p.D), [&](int64_t t0, int64_t t1) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == cpu::Isa::kAvx512) return forward_tiles_avx512<T, kPS>(t0, t1, base, B, z, uw.data(), o, ld);
    if (isa == cpu::Isa::kAvx2) return forward_tiles_avx2<T, kPS>(t0, t1, base, B, z, uw.data(), o, ld);
#endif
    forward_tiles<T, kPS>(t0, t1, base, B, z, uw.data(), o, ld);
  });
}

template <typename T, bool kPS>
void backward_run(const PlanarPrep& p, at::Tensor& gz, at::Tensor& gu, at::Tensor& gw,
                  at::Tensor& gb) {
  const std::vector<T> uw = shared_uw<T>(p);
  const Tile<T, kPS> base{p.u.data_ptr<T>(), p.w.data_ptr<T>(), p.b.data_ptr<T>(), 0, 0, p.K, p.D};
  const T* z = p.z.data_ptr<T>();
  const T* gy = opt_ptr<T>(p.gy);
  const T* gl = opt_ptr<T>(p.gl);
  const int64_t B = p.B, K = p.K, D = p.D;
  const int64_t tiles = num_tiles(B);
  // Shared parameters: fixed chunks of tiles, each with its own accumulator row; about one
  // task's worth of work (tile_grain) per chunk, so a small batch is one chunk run inline (a
  // parallel region for a few microseconds of work measured 20 ms on the loaded 2-core
  // machine: a descheduled OpenMP thread stalls the barrier), at most 64 chunks.
  const int64_t chunks =
      kPS ? 1 : std::max<int64_t>(1, std::min<int64_t>(tiles / tile_grain(K, D), 64));
  const int64_t per_chunk = (tiles + chunks - 1) / chunks;
  const int64_t width = 2 * K * D + K;
  at::Tensor partial = kPS ? at::Tensor() : at::zeros({chunks, width}, p.z.options());
  T* gzp = gz.data_ptr<T>();
  T* gup = kPS ? gu.data_ptr<T>() : nullptr;
  T* gwp = kPS ? gw.data_ptr<T>() : nullptr;
  T* gbp = kPS ? gb.data_ptr<T>() : nullptr;
  const cpu::Isa isa = cpu::detect_isa();
  auto run = [&](int64_t t0, int64_t t1, SharedAcc<T> acc) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == cpu::Isa::kAvx512)
      return backward_tiles_avx512<T, kPS>(t0, t1, base, B, z, gy, gl, uw.data(), gzp, gup, gwp, gbp, acc);
    if (isa == cpu::Isa::kAvx2)
      return backward_tiles_avx2<T, kPS>(t0, t1, base, B, z, gy, gl, uw.data(), gzp, gup, gwp, gbp, acc);
#endif
    backward_tiles<T, kPS>(t0, t1, base, B, z, gy, gl, uw.data(), gzp, gup, gwp, gbp, acc);
  };
  if (kPS) {
    at::parallel_for(0, tiles, tile_grain(K, D), [&](int64_t t0, int64_t t1) {
      run(t0, t1, SharedAcc<T>{nullptr, nullptr, nullptr});
    });
    return;
  }
  T* part = partial.data_ptr<T>();
  // at::parallel_for(0, 1, 1) still opens a parallel region (it runs inline only below the
  // grain): call one chunk directly.
  if (chunks == 1) {
    run(0, tiles, SharedAcc<T>{part, part + K * D, part + 2 * K * D});
  } else at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      T* row = part + c * width;
      const int64_t t0 = c * per_chunk, t1 = std::min<int64_t>(tiles, t0 + per_chunk);
      if (t0 < t1) run(t0, t1, SharedAcc<T>{row, row + K * D, row + 2 * K * D});
    }
  });
  const at::Tensor total = partial.sum(0);
  gu.copy_(total.narrow(0, 0, K * D).view({K, D}));
  gw.copy_(total.narrow(0, K * D, K * D).view({K, D}));
  gb.copy_(total.narrow(0, 2 * K * D, K));
}

struct PlanarCpu {
  using Guard = NoDeviceGuard;

  static void forward(const char*, const PlanarPrep& p, at::Tensor& out, at::Tensor& logdet) {
    AT_DISPATCH_FLOATING_TYPES(p.z.scalar_type(), "planar_flow", [&] {
      if (p.per_sample) forward_run<scalar_t, true>(p, out, logdet);
      else forward_run<scalar_t, false>(p, out, logdet);
    });
  }

  static void backward(const char*, const PlanarPrep& p, at::Tensor& gz, at::Tensor& gu,
                       at::Tensor& gw, at::Tensor& gb) {
    AT_DISPATCH_FLOATING_TYPES(p.z.scalar_type(), "planar_flow_backward", [&] {
      if (p.per_sample) backward_run<scalar_t, true>(p, gz, gu, gw, gb);
      else backward_run<scalar_t, false>(p, gz, gu, gw, gb);
    });
  }
};

}  // namespace
}  // namespace gmk

TORCH_LIBRARY_IMPL(gmkernels, CPU, m) { gmk::register_planar_ops<gmk::PlanarCpu>(m); }
