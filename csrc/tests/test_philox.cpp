// ctest: Philox known-answer vectors and the host/device functors, with no torch involved.
// Build with CMake (see CMakeLists.txt) and run `ctest`.
#include <cmath>
#include <cstdint>
#include <cstdio>

#include "gmk/enums.h"
#include "gmk/fastmath.h"
#include "gmk/mathfn.h"
#include "gmk/philox.h"
#include "../sde/sde.h"

static int failures = 0;

#define EXPECT(cond, ...)                                   \
  do {                                                      \
    if (!(cond)) {                                          \
      ++failures;                                           \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__);      \
      std::printf(__VA_ARGS__);                             \
      std::printf("\n");                                    \
    }                                                       \
  } while (0)

static void test_known_answers() {
  // Random123 kat_vectors, philox4x32_10 (also in docs/spec.md §0).
  struct Kat {
    gmk::u32x4 ctr;
    uint32_t k0, k1;
    gmk::u32x4 out;
  } kats[] = {
      {{0, 0, 0, 0}, 0, 0, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, 0xffffffffu, 0xffffffffu,
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, 0xa4093822u, 0x299f31d0u,
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const auto& k : kats) {
    const gmk::u32x4 o = gmk::philox4x32_10(k.ctr, k.k0, k.k1);
    EXPECT(o.x == k.out.x && o.y == k.out.y && o.z == k.out.z && o.w == k.out.w,
           "philox KAT: got %08x %08x %08x %08x want %08x %08x %08x %08x", o.x, o.y, o.z, o.w,
           k.out.x, k.out.y, k.out.z, k.out.w);
  }
  // The stream maps (seed, offset, row, group) onto (key, counter) as docs/spec.md §0 says.
  const gmk::PhiloxStream s = gmk::make_stream(0x299f31d0a4093822ull, 0x0370734413198a2eull, 5);
  const gmk::u32x4 o = s.words(0x243f6a88u, 0x85a308d3u - 5u);
  EXPECT(o.x == 0xd16cfe09u && o.w == 0x24126ea1u, "stream mapping: got %08x .. %08x", o.x, o.w);
}

static void test_fastmath() {
  // log over every Box-Muller argument k * 2^-24, k = 1..2^24 (stepping to keep it quick).
  double worst_log = 0;
  for (uint32_t k = 1; k <= (1u << 24); k += (k < 4096 ? 1 : 97)) {
    const float u = static_cast<float>(k) * 5.9604644775390625e-08f;
    const double want = std::log(static_cast<double>(u));
    const double got = gmk::fast_logf(u);
    const double ulp = std::fabs(std::nextafter(static_cast<float>(want), 0.f) - static_cast<float>(want));
    if (want != 0) worst_log = std::fmax(worst_log, std::fabs(got - want) / ulp);
  }
  EXPECT(worst_log <= 2.0, "fast_logf worst error %.2f ulp", worst_log);
  double worst_sc = 0;
  for (uint32_t k = 0; k < (1u << 24); k += 61) {
    const float x = (static_cast<float>(k) * 5.9604644775390625e-08f) * 6.28318530717958647692f;
    float s, c;
    gmk::fast_sincosf(x, &s, &c);
    worst_sc = std::fmax(worst_sc, std::fabs(s - std::sin(static_cast<double>(x))));
    worst_sc = std::fmax(worst_sc, std::fabs(c - std::cos(static_cast<double>(x))));
  }
  EXPECT(worst_sc <= 1.2e-7, "fast_sincosf worst abs error %.3g", worst_sc);
  std::printf("fast_logf worst %.2f ulp, fast_sincosf worst abs %.3g\n", worst_log, worst_sc);
}

static void test_draws() {
  EXPECT(gmk::uniform_from_word<float>(0) == 0.0f, "uniform(0)");
  EXPECT(gmk::uniform_from_word<float>(0xffffffffu) == 1.0f - 5.9604644775390625e-08f, "uniform(max)");
  EXPECT(gmk::uniform_open0_from_word<float>(0xffffffffu) == 1.0f, "uniform_open0(max)");
  EXPECT(gmk::rademacher_from_word<float>(0x7fffffffu) == 1.0f, "rademacher(+)");
  EXPECT(gmk::rademacher_from_word<float>(0x80000000u) == -1.0f, "rademacher(-)");
  EXPECT(gmk::bernoulli_from_word(0x00000000u, 0.5f) == 1.0f, "bernoulli(0 < p)");
  EXPECT(gmk::bernoulli_from_word(0xffffffffu, 0.5f) == 0.0f, "bernoulli(~1 >= p)");
  EXPECT(gmk::bernoulli_from_word(0xffffffffu, 1.0f) == 1.0f, "bernoulli(p = 1)");
  EXPECT(gmk::bernoulli_from_word(0x00000000u, 0.0f) == 0.0f, "bernoulli(p = 0)");
  // no valid draw: NaN for a p that is NaN or outside [0, 1]
  EXPECT(std::isnan(gmk::bernoulli_from_word(0u, NAN)), "bernoulli(p = NaN)");
  EXPECT(std::isnan(gmk::bernoulli_from_word(0u, 1.5f)), "bernoulli(p = 1.5)");
  EXPECT(std::isnan(gmk::bernoulli_from_word(0u, -0.5)), "bernoulli(p = -0.5, double)");
  EXPECT(std::isnan(gmk::bernoulli_from_word(0u, INFINITY)), "bernoulli(p = inf)");
  // uniforms stored in float16 / bfloat16 clamp to 1 - 2^-digits; float32 is unchanged
  EXPECT(gmk::uniform_top(11) == 1.0f - 1.0f / 2048, "uniform_top(float16)");
  EXPECT(gmk::uniform_top(8) == 1.0f - 1.0f / 256, "uniform_top(bfloat16)");
  EXPECT(gmk::uniform_top(24) == gmk::uniform_from_word<float>(0xffffffffu), "uniform_top(float32)");
  EXPECT(gmk::uniforms4_below<float>(gmk::u32x4{0xffffffffu, 0u, 0u, 0u}, gmk::uniform_top(11)).v0 ==
             1.0f - 1.0f / 2048,
         "uniforms4_below clamps");
  // Float and double normals of the same words agree to float rounding.
  const gmk::PhiloxStream s = gmk::make_stream(1234, 7, 0);
  double worst = 0;
  for (uint32_t g = 0; g < 20000; ++g) {
    const gmk::u32x4 w = s.words(g, g % 13);
    const gmk::Quad<float> nf = gmk::normals4<float>(w);
    const gmk::Quad<double> nd = gmk::normals4<double>(w);
    worst = std::fmax(worst, std::fabs(nf.v0 - nd.v0));
    worst = std::fmax(worst, std::fabs(nf.v1 - nd.v1));
    worst = std::fmax(worst, std::fabs(nf.v2 - nd.v2));
    worst = std::fmax(worst, std::fabs(nf.v3 - nd.v3));
  }
  EXPECT(worst < 2e-6, "float vs double normals differ by %.3g", worst);
}

static void test_langevin_functor() {
  const gmk::Clamp<float> p{-1.0f, 1.0f, true};
  EXPECT(gmk::langevin_update(0.1f, 0.2f, 0.0f, 0.5f, 2.0f, p) == 0.2f, "langevin no noise");
  EXPECT(gmk::langevin_update(0.1f, 0.2f, 3.0f, 0.5f, 2.0f, p) == 1.0f, "langevin clamp hi");
  EXPECT(gmk::langevin_update(0.1f, 0.2f, -3.0f, 0.5f, 2.0f, p) == -1.0f, "langevin clamp lo");
}

// The schema codes are a contract with the Python side (gmkernels/_enums.py): fixed ints.
static void test_enum_codes() {
  EXPECT(gmk::kSdeVE == 0 && gmk::kSdeVP == 1 && gmk::kSdeSubVP == 2, "SdeKind codes");
  EXPECT(gmk::kPredEulerMaruyama == 0 && gmk::kPredReverseDiffusion == 1, "SdePredictor codes");
  EXPECT(static_cast<int>(gmk::CouplingScale::kExp) == 0 &&
             static_cast<int>(gmk::CouplingScale::kSigmoid) == 1,
         "CouplingScale codes");
  EXPECT(gmk::kBmSequential == 0 && gmk::kBmRandom == 1, "BmOrder codes");
  for (int64_t v = -2; v < 5; ++v) {
    EXPECT(gmk::enum_code_valid<gmk::SdeKind>(v) == (v >= 0 && v <= 2), "SdeKind valid %d",
           static_cast<int>(v));
    EXPECT(gmk::enum_code_valid<gmk::BmOrder>(v) == (v >= 0 && v <= 1), "BmOrder valid %d",
           static_cast<int>(v));
  }
}

// gmk/mathfn.h: each family is the function it names, for float and double.
static void test_mathfn() {
  const float xs[] = {-100.0f, -87.5f, -3.25f, -1e-3f, 0.0f, 0.7f, 10.0f, 87.5f, 100.0f};
  for (float x : xs) {
    EXPECT(gmk::exp_t(x) == std::exp(x), "exp_t(%g)", x);
    EXPECT(gmk::exp_t(static_cast<double>(x)) == std::exp(static_cast<double>(x)), "exp_t d");
    EXPECT(gmk::exp_vec(x) == gmk::fast_expf(x), "exp_vec(%g) is fast_expf on the host", x);
    EXPECT(gmk::tanh_vec(x) == gmk::fast_tanhf(x), "tanh_vec(%g) is fast_tanhf on the host", x);
    EXPECT(gmk::tanh_t(x) == std::tanh(x), "tanh_t(%g)", x);
    const float xc = x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
    EXPECT(gmk::exp_fast_clamped(x) == gmk::fast_expf(xc), "exp_fast_clamped(%g)", x);
    EXPECT(gmk::exp_fast_clamped(static_cast<double>(x)) == std::exp(static_cast<double>(x)),
           "exp_fast_clamped double (%g)", x);
    EXPECT(std::fabs(gmk::fast_tanhf(x) - std::tanh(x)) <= 4e-7f * (1.0f + std::fabs(x)),
           "fast_tanhf(%g) accuracy", x);
  }
  const float pos[] = {1e-3f, 0.5f, 1.0f, 1.001f};
  for (float v : pos) EXPECT(gmk::log_vec(v) == gmk::fast_logf(v), "log_vec(%g)", v);
}

int main() {
  test_enum_codes();
  test_mathfn();
  test_known_answers();
  test_fastmath();
  test_draws();
  test_langevin_functor();
  if (failures) {
    std::printf("%d failure(s)\n", failures);
    return 1;
  }
  std::printf("all C++ tests passed\n");
  return 0;
}
