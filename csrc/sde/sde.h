// Per-element math of the stochastic-step family (docs/spec.md §3), host and device.
// No torch headers: sde.cu includes this with the plain CUDA toolkit.
#pragma once

#include <cstdint>

#include "gmk/enums.h"
#include "gmk/launch.h"
#include "gmk/macros.h"
#include "gmk/mathfn.h"
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

// docs/spec.md §3.1: x + a*g + c*xi, then the optional clamp to [lo, hi].
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

// ---------------------------------------------------------------------------------------------
// The SDE steps (euler_maruyama_step, reverse_sde_step, langevin_corrector_step,
// affine_noise_step; docs/spec.md §3.2-3.3) are all one per-element update,
//     out = cx*x - ce*e + cn*xi,
// with per-row coefficients (cx, ce, cn) that each op derives from its own arguments:
//   euler_maruyama_step:     e = drift,  cx = 1, ce = -dt, cn = diffusion * sqrt|dt|
//   reverse_sde_step:        e = score,  (cx, ce, cn) from the SDE at t_r (reverse_sde_coefs)
//   langevin_corrector_step: e = score,  cx = 1, ce = -eps_r, cn = sqrt(2 eps_r) (corrector_coefs)
//   affine_noise_step:       the coefficients as given (DDPM's ancestral step).
// So the CPU loops and the CUDA kernels hold one update (affine_update) and one backward, and
// only the per-row coefficient providers differ. A provider's row(r) runs once per row on the
// CPU and once per counter (4 elements) on CUDA, where recomputing a few transcendentals is
// cheaper than a second launch and a buffer (the counter's Philox costs far more).

template <typename acc_t>
GMK_HD_INLINE acc_t affine_update(acc_t x, acc_t e, acc_t cx, acc_t ce, acc_t cn, acc_t xi) {
  return cx * x - ce * e + cn * xi;
}

// Backward of affine_update with respect to x and e.
template <typename acc_t>
GMK_HD_INLINE acc_t affine_grad_x(acc_t gy, acc_t cx) {
  return gy * cx;
}
template <typename acc_t>
GMK_HD_INLINE acc_t affine_grad_e(acc_t gy, acc_t ce) {
  return -(gy * ce);
}

template <typename acc_t>
struct Coef3 {
  acc_t cx, ce, cn;
};

// Host/device math in the compute dtype (float32 inputs get float32 coefficients on both
// devices, double for float64): gmk::exp_t, log_t, sqrt_t, pow_t of gmk/mathfn.h.

// Coefficients given per row (a (rows,) array in the compute dtype) or as one scalar each.
template <typename acc_t>
struct RowCoefs {
  const acc_t* cx_t;
  const acc_t* ce_t;
  const acc_t* cn_t;
  acc_t cx, ce, cn;
  GMK_HD_INLINE Coef3<acc_t> row(int64_t r) const {
    return Coef3<acc_t>{cx_t ? cx_t[r] : cx, ce_t ? ce_t[r] : ce, cn_t ? cn_t[r] : cn};
  }
};

// The SDEs of docs/spec.md §3.2: kind and predictor are the codes of gmk/enums.h (SdeKind,
// SdePredictor).

template <typename acc_t>
struct SdeSpec {
  int kind, predictor;
  bool pf;         // probability flow: half the score term, no noise
  acc_t p0, p1;
  acc_t dt;        // > 0: the step goes from t to t - dt
};

template <typename acc_t>
GMK_HD_INLINE acc_t ve_sigma(acc_t smin, acc_t smax, acc_t t) {
  return smin * pow_t(smax / smin, t);
}

// f(x, t) = fc * x and g(t)^2 of the forward SDE (docs/spec.md §3.2) at time t.
template <typename acc_t>
GMK_HD_INLINE void sde_f_g2(const SdeSpec<acc_t>& s, acc_t t, acc_t* fc, acc_t* g2) {
  if (s.kind == kSdeVE) {
    const acc_t sigma = ve_sigma(s.p0, s.p1, t);
    *fc = acc_t(0);
    *g2 = acc_t(2) * sigma * sigma * log_t(s.p1 / s.p0);
    return;
  }
  const acc_t beta = s.p0 + t * (s.p1 - s.p0);
  *fc = acc_t(-0.5) * beta;
  if (s.kind == kSdeVP) {
    *g2 = beta;
  } else {  // sub-VP: beta * (1 - exp(-2 * int_0^t beta))
    const acc_t integral = s.p0 * t + acc_t(0.5) * t * t * (s.p1 - s.p0);
    *g2 = beta * (acc_t(1) - exp_t(acc_t(-2) * integral));
  }
}

// One reverse-time step from t to t - dt as (cx, ce, cn) of affine_update with e = score:
//   Euler-Maruyama:    out = x - (f - g2*s)*dt + sqrt(g2*dt)*xi      (pf: - (f - g2*s/2)*dt)
//   reverse diffusion: out = x - (F - G2*s) + sqrt(G2)*xi             (pf: - (F - G2*s/2))
// with the discretized (F, G2) of Song et al. 2021's ReverseDiffusionPredictor: VE F = 0,
// G2 = sigma(t)^2 - sigma(max(t - dt, 0))^2; VP beta_d = beta(t)*dt, F = (sqrt(1 - beta_d) - 1)x,
// G2 = beta_d; sub-VP F = f*dt, G2 = g2*dt (its discretization is Euler's).
template <typename acc_t>
GMK_HD_INLINE Coef3<acc_t> reverse_sde_coefs(const SdeSpec<acc_t>& s, acc_t t) {
  acc_t Fc, G2;  // F = Fc * x
  if (s.predictor == kPredReverseDiffusion && s.kind == kSdeVE) {
    const acc_t tp = t - s.dt > acc_t(0) ? t - s.dt : acc_t(0);
    const acc_t sg = ve_sigma(s.p0, s.p1, t), sp = ve_sigma(s.p0, s.p1, tp);
    Fc = acc_t(0);
    G2 = sg * sg - sp * sp;
  } else if (s.predictor == kPredReverseDiffusion && s.kind == kSdeVP) {
    const acc_t beta_d = (s.p0 + t * (s.p1 - s.p0)) * s.dt;
    Fc = sqrt_t(acc_t(1) - beta_d) - acc_t(1);
    G2 = beta_d;
  } else {  // Euler-Maruyama of any SDE, and reverse diffusion of sub-VP
    acc_t fc, g2;
    sde_f_g2(s, t, &fc, &g2);
    Fc = fc * s.dt;
    G2 = g2 * s.dt;
  }
  if (s.pf) return Coef3<acc_t>{acc_t(1) - Fc, acc_t(-0.5) * G2, acc_t(0)};
  return Coef3<acc_t>{acc_t(1) - Fc, -G2, sqrt_t(G2)};
}

template <typename acc_t>
struct ReverseSdeCoefs {
  const acc_t* t_t;  // (rows,) times
  SdeSpec<acc_t> spec;
  GMK_HD_INLINE Coef3<acc_t> row(int64_t r) const { return reverse_sde_coefs(spec, t_t[r]); }
};

// Predictor-corrector Langevin step (Song et al. 2021, Alg. 4/5, with the step size of their
// released code's LangevinCorrector): one ratio for the whole batch from the batch means of the
// row norms, nn = mean_r ||xi_r||, gn = mean_r ||s_r||, then per row
//     eps_r = 2*alpha_r*(snr*nn/gn)^2,   out = x + eps_r*s + sqrt(2*eps_r)*xi.
// eps_r = 0 (out = x) when gn == 0 (the formula is 0/0 or inf) or eps_r > kCorrectorMaxStep (a
// tiny but nonzero score, whose ratio overflows): finite input never gives inf or NaN. A NaN
// gn (a NaN in the score) fails both tests and reaches every row, as the formula says.
constexpr double kCorrectorMaxStep = 1.329227995784916e36;  // 2^120

template <typename acc_t>
GMK_HD_INLINE Coef3<acc_t> corrector_coefs(acc_t alpha, acc_t snr, acc_t nn, acc_t gn) {
  if (gn == acc_t(0)) return Coef3<acc_t>{acc_t(1), acc_t(0), acc_t(0)};
  const acc_t ratio = snr * nn / gn;
  const acc_t eps = acc_t(2) * alpha * ratio * ratio;
  if (eps > acc_t(kCorrectorMaxStep)) return Coef3<acc_t>{acc_t(1), acc_t(0), acc_t(0)};
  return Coef3<acc_t>{acc_t(1), -eps, sqrt_t(acc_t(2) * eps)};
}

// The corrector's batch means from its first pass's (rows, 2) squared row norms: means[0] =
// mean_r sqrt(sums[2r]), means[1] = mean_r sqrt(sums[2r+1]), summed in double. rows > 0.
template <typename acc_t>
inline void corrector_means(const acc_t* sums, int64_t rows, acc_t* means) {
  double a = 0.0, b = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    a += static_cast<double>(sqrt_t(sums[2 * r]));
    b += static_cast<double>(sqrt_t(sums[2 * r + 1]));
  }
  means[0] = static_cast<acc_t>(a / static_cast<double>(rows));
  means[1] = static_cast<acc_t>(b / static_cast<double>(rows));
}

template <typename acc_t>
struct CorrectorCoefs {
  const acc_t* alpha_t;  // (rows,) or null
  acc_t alpha, snr;
  const acc_t* means;    // (2,): mean_r ||xi_r||, mean_r ||s_r|| (corrector_means)
  GMK_HD_INLINE Coef3<acc_t> row(int64_t r) const {
    return corrector_coefs(alpha_t ? alpha_t[r] : alpha, snr, means[0], means[1]);
  }
};

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


// The affine steps: where the coefficients of affine_update come from (see above).
enum class CoefSource : int { kRows = 0, kReverseSde = 1, kCorrector = 2 };

struct CoefArgs {
  CoefSource src;
  // kRows: per-row arrays in the compute dtype (or null) and scalars.
  const void* cx_t;
  const void* ce_t;
  const void* cn_t;
  double cx, ce, cn;
  // kReverseSde: (rows,) times in the compute dtype and the SDE.
  const void* t_t;
  int kind, predictor;
  bool pf;
  double p0, p1, dt;
  // kCorrector: per-row alpha (or null), alpha, snr and the (2,) batch means of the row norms.
  const void* alpha_t;
  double alpha, snr;
  const void* sums;
};

// out = cx*x - ce*e + cn_eff*xi with cn_eff = cn*nscale, or nfull[i]*nscale when nfull is set
// (a per-element noise scale of x's dtype: the full diffusion tensor of euler_maruyama_step).
// noise = false: no draws at all (every cn is 0: probability flow).
struct AffineArgs {
  const void* x;
  const void* e;
  const void* nfull;
  void* y;
  double nscale;
  bool noise;
  CoefArgs coefs;
  int64_t rows, M;
  PhiloxStream st;
  DType dtype;
};
LaunchStatus launch_affine(const AffineArgs& args, void* stream);

// Backward of affine_update: gx = gy*cx, ge = -gy*ce, and the optional per-row sums
// sx[r] = sum gy*x, se[r] = sum gy*e, sn[r] = sum gy*nscale*xi (compute dtype, zero-filled:
// the kernel adds to them) and the per-element gn = gy*nscale*xi (x's dtype).
struct AffineBackwardArgs {
  const void* gy;
  const void* x;   // needed only for sx
  const void* e;   // needed only for se
  void* gx;
  void* ge;
  void* sx;
  void* se;
  void* sn;
  void* gn;
  double nscale;
  CoefArgs coefs;
  int64_t rows, M;
  PhiloxStream st;
  DType dtype;
};
LaunchStatus launch_affine_backward(const AffineBackwardArgs& args, void* stream);

// First pass of the corrector: sums[2r] += ||xi_r||^2, sums[2r+1] += ||s_r||^2 (compute dtype,
// zero-filled), then, on the same stream, means[0] = mean_r ||xi_r||, means[1] = mean_r ||s_r||
// (compute dtype, (2,); a one-block reduction kernel, no host synchronisation).
struct RowNormsArgs {
  const void* s;
  void* sums;
  void* means;
  int64_t rows, M;
  PhiloxStream st;
  DType dtype;
};
LaunchStatus launch_corrector_norms(const RowNormsArgs& args, void* stream);

}  // namespace cuda
}  // namespace gmk
