// Exhaustive check of the band of bm_gibbs's float32 AVX2 decision (csrc/boltzmann/bm_avx2.h):
// for every 24-bit uniform u, the x just outside the band on each side must get the decision the
// exact rule (bm.h: u < fl(1 / (1 + expf(-x)))) gives; the exact rule is monotone in x, so every
// x further out does too. Build and run (a few seconds):
//   g++ -O2 -fno-math-errno -fno-trapping-math -I csrc -I csrc/include \
//       benchmarks/micro/bm_band_check.cpp -o /tmp/bm_band_check && /tmp/bm_band_check
#include <cmath>
#include <cstdio>
#include <cstdint>

#include "boltzmann/bm_avx2.h"

static bool exact_up(uint32_t w, float x) {
  const float u = static_cast<float>(w >> 8) * 5.9604644775390625e-08f;
  return u < 1.0f / (1.0f + expf(-x));
}

GMK_BM_AVX2 int main() {
  using namespace gmk::bm_avx2;
  long bad = 0, inband_total = 0;
  double widest = 0;
  for (uint32_t k0 = 0; k0 < (1u << 24); k0 += 8) {
    alignas(32) uint32_t w[8];
    for (int l = 0; l < 8; ++l) w[l] = (k0 + l) << 8;
    __m256 z, dz;
    band8(_mm256_load_si256(reinterpret_cast<const __m256i*>(w)), &z, &dz);
    alignas(32) float zs[8], ds[8];
    _mm256_store_ps(zs, z);
    _mm256_store_ps(ds, dz);
    for (int l = 0; l < 8; ++l) {
      if (std::isinf(ds[l])) continue;  // u = 0: always exact
      if (ds[l] > widest) widest = ds[l];
      // smallest x with fl(x - z) > dz (the code's "+1 outside the band")
      float x = zs[l] + ds[l];
      while (x - zs[l] > ds[l]) x = nextafterf(x, -INFINITY);
      while (!(x - zs[l] > ds[l])) x = nextafterf(x, INFINITY);
      if (!exact_up(w[l], x)) { if (bad++ < 10) printf("u=%u x=%.9g should be +1\n", k0 + l, x); }
      // largest x with fl(x - z) < -dz
      float xl = zs[l] - ds[l];
      while (xl - zs[l] < -ds[l]) xl = nextafterf(xl, INFINITY);
      while (!(xl - zs[l] < -ds[l])) xl = nextafterf(xl, -INFINITY);
      if (exact_up(w[l], xl)) { if (bad++ < 10) printf("u=%u x=%.9g should be -1\n", k0 + l, xl); }
      // and the approximate decision must be what decide8 returns there
      int band;
      const int up = _mm256_movemask_ps(decide8(_mm256_set1_ps(x), _mm256_set1_ps(zs[l]),
                                                _mm256_set1_ps(ds[l]), &band));
      const int dn = _mm256_movemask_ps(decide8(_mm256_set1_ps(xl), _mm256_set1_ps(zs[l]),
                                                _mm256_set1_ps(ds[l]), &band));
      if (up != 0xFF || dn != 0) { if (bad++ < 10) printf("decide8 mismatch u=%u\n", k0 + l); }
      ++inband_total;
    }
  }
  printf("%ld uniforms checked, %ld failures, widest band %.3g\n", inband_total, bad, widest);
  return bad != 0;
}
