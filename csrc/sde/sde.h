// Per-element math of the stochastic-step family (SPEC §3), host and device.
// No torch headers: sde.cu includes this with the plain CUDA toolkit.
#pragma once

#include <cstdint>

#include "gmk/macros.h"
#include "gmk/launch.h"
#include "gmk/philox.h"

namespace gmk {

template <typename T>
struct Clamp {
  T lo, hi;
  bool on;
};

template <typename T>
GMK_HD_INLINE T clamp_to(T y, const Clamp<T>& cl) {
  return cl.on ? (y < cl.lo ? cl.lo : (y > cl.hi ? cl.hi : y)) : y;
}

// SPEC §3.1: x + a*g + c*xi, then the optional clamp to [lo, hi].
template <typename T>
GMK_HD_INLINE T langevin_update(T x, T g, T xi, T a, T c, const Clamp<T>& cl) {
  return clamp_to(x + a * g + c * xi, cl);
}

// Backward: where the output was clamped (on or outside the bounds) nothing flows back.
// The test uses the saved output: y strictly inside (lo, hi), which differs from torch.clamp's
// inclusive rule only when the unclamped value lands exactly on a bound.
template <typename T>
GMK_HD_INLINE T clamp_pass(T y, const Clamp<T>& cl) {
  return (!cl.on || (y > cl.lo && y < cl.hi)) ? T(1) : T(0);
}

namespace cuda {

// Launchers, defined in sde.cu (raw pointers, no torch). `stream` is a cudaStream_t; they
// return a LaunchStatus (null on success, see gmk/launch.h). Pointers are contiguous rows x M
// arrays of `dtype` unless noted.

struct LangevinArgs {
  const void* x;
  const void* g;
  void* y;                 // may alias x (in-place)
  const void* a_t;         // per-row step sizes in the compute dtype, or null
  const void* c_t;         // per-row noise scales in the compute dtype, or null
  double a, c, lo, hi;
  bool clamp;
  int64_t rows, M;
  PhiloxStream st;
  DType dtype;
};
LaunchStatus launch_langevin(const LangevinArgs& args, void* stream);

struct LangevinBackwardArgs {
  const void* gy;          // grad of the output
  const void* y;           // saved output (for the clamp mask)
  const void* g;           // grad input of the forward (for d/da)
  const void* a_t;
  double a, lo, hi;
  bool clamp;
  void* gx;                // grad wrt x
  void* gg;                // grad wrt g
  void* ga;                // (rows,) compute dtype, zero-filled, or null
  void* gc;                // (rows,) compute dtype, zero-filled, or null
  int64_t rows, M;
  PhiloxStream st;
  DType dtype;
};
LaunchStatus launch_langevin_backward(const LangevinBackwardArgs& args, void* stream);

}  // namespace cuda
}  // namespace gmk
