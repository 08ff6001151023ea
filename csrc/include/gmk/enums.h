// The integer codes that dispatcher schemas take for enumerated arguments, in one place.
// The Python wrappers pass these ints (gmkernels/_enums.py holds the same table); the C++
// checks each one once, in its op's prepare, with gmk::enum_arg (gmk/checks.h), which names the
// argument and the valid codes. No torch headers: the .cu kernels include this too.
#pragma once

#include <cstdint>

namespace gmk {

// reverse_sde_step's `kind`: the SDE (docs/spec.md §3.2). VE: (p0, p1) = (sigma_min, sigma_max);
// VP and sub-VP: (p0, p1) = (beta_min, beta_max).
enum SdeKind : int { kSdeVE = 0, kSdeVP = 1, kSdeSubVP = 2 };

// reverse_sde_step's `predictor`.
enum SdePredictor : int { kPredEulerMaruyama = 0, kPredReverseDiffusion = 1 };

// affine_coupling's `scale`: exp(s), or the nflows sigmoid scale sigmoid(s + 2) + 1e-3.
enum class CouplingScale : int { kExp = 0, kSigmoid = 1 };

// bm_gibbs's `order`: sites 0..D-1 in turn, or D random-scan updates per sweep.
enum BmOrder : int { kBmSequential = 0, kBmRandom = 1 };

// For each enum: how many codes (0 .. kCount-1 are valid) and the text of the valid choices,
// as the error message prints them.
template <typename E>
struct EnumInfo;

template <>
struct EnumInfo<SdeKind> {
  static constexpr int kCount = 3;
  static constexpr const char* kChoices = "0 (ve), 1 (vp) or 2 (subvp)";
};
template <>
struct EnumInfo<SdePredictor> {
  static constexpr int kCount = 2;
  static constexpr const char* kChoices = "0 (euler_maruyama) or 1 (reverse_diffusion)";
};
template <>
struct EnumInfo<CouplingScale> {
  static constexpr int kCount = 2;
  static constexpr const char* kChoices = "0 (\"exp\") or 1 (\"sigmoid\")";
};
template <>
struct EnumInfo<BmOrder> {
  static constexpr int kCount = 2;
  static constexpr const char* kChoices = "0 (sequential) or 1 (random)";
};

template <typename E>
constexpr bool enum_code_valid(int64_t v) {
  return v >= 0 && v < EnumInfo<E>::kCount;
}

}  // namespace gmk
