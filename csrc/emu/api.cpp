// The C interface of the emulation library (libgmkernels_cuda_emu.so): every CUDA launcher of
// csrc/*/*.cu, run by the CPU execution layer (gmk/emu/runtime.h) on host memory. No torch and
// no Python headers: python_tests/_cuda_emu.py loads it with ctypes, mirrors the launchers'
// argument structs (checked against the gmk_emu_sizeof_* answers below) and passes the data
// pointers of CPU tensors. Every function returns the launcher's LaunchStatus (null, or a message).
#include <cstddef>
#include <cstdint>

#include "gmk/emu/runtime.h"
#include "gmk/launch.h"
#include "gmk/philox.h"

#include "../boltzmann/bm.h"
#include "../boltzmann/rbm.h"
#include "../flows/coupling.h"
#include "../flows/planar.h"
#include "../random/random.h"
#include "../sde/sde.h"

using namespace gmk;
using namespace gmk::cuda;

extern "C" {

// The device the layer pretends to be, and the schedule. sm_count: the SM count the launchers
// size their grids by; index32_limit: the largest work count of the 32-bit index path (< 0: the
// kernels' own, 2^31 - 1); shared_limit: bm_gibbs's shared-memory budget for the fields in bytes
// (< 0: its own, 48 KiB); schedule_seed: 0 runs threads in order, else a seeded permutation.
void gmk_emu_configure(int sm_count, int64_t index32_limit, int64_t shared_limit,
                       uint64_t schedule_seed) {
  emu::Config& c = emu::config();
  c.sm_count = sm_count;
  c.index32_limit = index32_limit;
  c.shared_limit = shared_limit;
  c.schedule_seed = schedule_seed;
  emu::reseed(schedule_seed);
}

// 1 when built with a planted bug (GMK_PLANT), to let the tests tell the builds apart.
int gmk_emu_planted() {
#if defined(GMK_PLANT)
  return GMK_PLANT;
#else
  return 0;
#endif
}

#if defined(GMK_EMU_HAS_RANDOM)
const char* gmk_emu_random_fill(int draw, int dtype, void* out, int64_t rows, int64_t M,
                                const PhiloxStream* st) {
  return launch_random_fill(static_cast<Draw>(draw), static_cast<DType>(dtype), out, rows, M, *st,
                            nullptr);
}
const char* gmk_emu_bernoulli(int dtype, const void* p, void* out, int64_t rows, int64_t M,
                              const PhiloxStream* st) {
  return launch_bernoulli(static_cast<DType>(dtype), p, out, rows, M, *st, nullptr);
}
#endif
#if defined(GMK_EMU_HAS_SDE)
const char* gmk_emu_langevin(const LangevinArgs* a) { return launch_langevin(*a, nullptr); }
const char* gmk_emu_langevin_backward(const LangevinBackwardArgs* a) {
  return launch_langevin_backward(*a, nullptr);
}
const char* gmk_emu_affine(const AffineArgs* a) { return launch_affine(*a, nullptr); }
const char* gmk_emu_affine_backward(const AffineBackwardArgs* a) {
  return launch_affine_backward(*a, nullptr);
}
const char* gmk_emu_corrector_norms(const RowNormsArgs* a) {
  return launch_corrector_norms(*a, nullptr);
}
#endif
#if defined(GMK_EMU_HAS_PLANAR)
const char* gmk_emu_planar_forward(const PlanarArgs* a) {
  return launch_planar_forward(*a, nullptr);
}
const char* gmk_emu_planar_backward(const PlanarBackwardArgs* a) {
  return launch_planar_backward(*a, nullptr);
}
#endif
#if defined(GMK_EMU_HAS_COUPLING)
const char* gmk_emu_affine_coupling(const CouplingArgs* a) {
  return launch_affine_coupling(*a, nullptr);
}
const char* gmk_emu_affine_coupling_backward(const CouplingBackwardArgs* a) {
  return launch_affine_coupling_backward(*a, nullptr);
}
#endif
#if defined(GMK_EMU_HAS_RBM)
const char* gmk_emu_rbm_pass(const RbmPassArgs* a) { return launch_rbm_pass(*a, nullptr); }
#endif
#if defined(GMK_EMU_HAS_BM)
const char* gmk_emu_bm_gibbs(const BmArgs* a) { return launch_bm_gibbs(*a, nullptr); }
#endif

}  // extern "C"

// sizeof and field offsets of the argument structs, so that the ctypes mirrors are checked.
#define GMK_EMU_STRUCTS(X)                                                                      \
  X(PhiloxStream) X(LangevinArgs) X(LangevinBackwardArgs) X(CoefArgs) X(AffineArgs)            \
  X(AffineBackwardArgs) X(RowNormsArgs) X(PlanarArgs) X(PlanarBackwardArgs) X(CouplingArgs)     \
  X(CouplingBackwardArgs) X(RbmPassArgs) X(BmArgs)

extern "C" size_t gmk_emu_sizeof(const char* name) {
  const auto eq = [](const char* a, const char* b) {
    while (*a && *a == *b) ++a, ++b;
    return *a == *b;
  };
#define GMK_EMU_SIZE(S) \
  if (eq(name, #S)) return sizeof(S);
  GMK_EMU_STRUCTS(GMK_EMU_SIZE)
#undef GMK_EMU_SIZE
  return 0;
}
