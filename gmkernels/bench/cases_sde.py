"""Benchmark cases of the sde family: the fused Langevin step, the fused stochastic steps
and a whole score-SDE sampling loop.

1. The Langevin step ``y = x + a*g + c*xi`` with ``xi ~ N(0, I)``: unadjusted Langevin with
   ``a = eps = 0.01`` and ``c = sqrt(2 eps)``. Providers:

   * ``eager``: the expression a user writes, ``x + a*g + c*torch.randn_like(x)`` (five passes
     over memory plus torch's RNG; four temporaries);
   * ``compile``: that same function under ``torch.compile``;
   * ``gmkernels``: :func:`gmkernels.langevin_step`, out of place like the two above;
   * ``gmkernels_inplace``: :func:`gmkernels.langevin_step_` (what a sampler loop uses);
   * ``floor``: ``torch.add(x, g, out=o)``: the same bytes moved (read 2 arrays, write 1) with
     no arithmetic or randomness, i.e. the best any step could do.

2. Each fused step at N = 2^22 float32, shape (1024, 4096), t and dt fixed:

   * ``euler_maruyama_step``: ``x + f dt + g sqrt|dt| xi`` with a float diffusion g;
   * ``reverse_sde_step`` VP Euler–Maruyama at t = 0.5 and VE reverse-diffusion at t = 0.5;
   * ``langevin_corrector_step`` (snr 0.16, one step size from the batch means of the row
     norms, as Song et al.'s released code);
   * ``ddpm_step`` (linear schedule, T = 1000, t = 500).

   Providers: ``eager`` (the same step written by hand in plain PyTorch, coefficients
   computed in Python as a user would, noise from ``torch.randn_like``: exactly the op's
   math), ``compile`` (that function under ``torch.compile``), ``gmkernels`` (the fused op,
   offset advancing per call like a sampler) and ``floor`` (``torch.add(x, s, out=o)``).

3. A whole sampling loop: 1000 reverse-SDE Euler–Maruyama steps of the VP SDE from t = 1 to
   t = 1e-3 with the exact score of N(0, I) data (x_t ~ N(0, I) for every t, so s(x, t) = -x),
   on (1024, 2) (--quick) and (64, 3, 32, 32) (--full only: its eager loop alone takes
   seconds to a minute a call on the loaded 2-core machine). Providers: ``eager`` = the
   plain-PyTorch loop (``torch.randn`` prior, then per step
   ``x - (-beta x / 2 - beta s) h + sqrt(beta h) randn``) and ``gmkernels`` =
   :func:`gmkernels.score.sample` (``predictor="euler_maruyama", corrector=None,
   denoise=False``): the library's sampler as a user calls it, i.e. a loop of
   :func:`gmkernels.reverse_sde_step` with its per-step (B,) time tensor and output checks.
   No ``compile`` provider: the loop is 1000 Python iterations around one step, so compiling
   the step gives the 2^22 ``compile`` numbers per step (the per-step cost at these sizes is
   dominated by Python/dispatch overhead, which a compiled step does not remove), and
   compiling the whole loop would unroll 1000 steps into one graph (minutes of compile).

eager/compile draw from torch's generator, gmkernels from Philox (docs/spec.md §0): different streams
of the same distribution. The bit-exact pure-PyTorch Philox reference
(:func:`gmkernels.reference.sde.langevin_step`) is the test oracle, not a provider: its int64
emulation of 32-bit Philox is far slower than anything here.
"""

from __future__ import annotations

import itertools
import math

import torch

from .. import (ddpm_step, euler_maruyama_step, langevin_corrector_step, langevin_step,
                langevin_step_, reverse_sde_step)
from ..score import DDPMSchedule, VESDE, VPSDE, sample
from .registry import Case, register, require_fused, warm_compile

# ---------------------------------------------------------------- the Langevin step

EPS = 0.01
STEP_SIZE = EPS
NOISE_SCALE = math.sqrt(2 * EPS)
LANGEVIN_SEED = 20240531


def langevin_eager(x: torch.Tensor, g: torch.Tensor, a: float, c: float) -> torch.Tensor:
    """The Langevin step as written by hand in plain PyTorch (the ``eager`` provider, and,
    compiled, the ``compile`` provider)."""
    return x + a * g + c * torch.randn_like(x)


def _langevin_setup(case: Case, device: torch.device) -> dict:
    # Fixed-seed inputs so that every run times the same data (values do not change the
    # speed of these ops, but it keeps runs comparable and avoids denormal surprises).
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(case.shape, dtype=case.dtype, generator=gen).to(device)
    g = torch.randn(case.shape, dtype=case.dtype, generator=gen).to(device)
    return {"x": x, "g": g}


def _langevin_eager(inp):
    x, g = inp["x"], inp["g"]
    return lambda: langevin_eager(x, g, STEP_SIZE, NOISE_SCALE)


def _langevin_compile(inp):
    return warm_compile(langevin_eager, inp["x"], inp["g"], STEP_SIZE, NOISE_SCALE)


def _langevin_gmkernels(inp):
    x, g = inp["x"], inp["g"]
    require_fused("langevin_step", x.device)
    # A sampler gives each step its own stream offset; so do we (costs a Python increment).
    step = itertools.count()
    return lambda: langevin_step(x, g, STEP_SIZE, NOISE_SCALE, seed=LANGEVIN_SEED,
                                 offset=next(step))


def _langevin_gmkernels_inplace(inp):
    x, g = inp["x"].clone(), inp["g"]  # its own x: the other providers keep the shared one
    require_fused("langevin_step_", x.device)
    step = itertools.count()
    return lambda: langevin_step_(x, g, STEP_SIZE, NOISE_SCALE, seed=LANGEVIN_SEED,
                                  offset=next(step))


def _langevin_floor(inp):
    x, g = inp["x"], inp["g"]
    out = torch.empty_like(x)
    return lambda: torch.add(x, g, out=out)


LANGEVIN_PROVIDERS = {
    "eager": _langevin_eager,
    "compile": _langevin_compile,
    "gmkernels": _langevin_gmkernels,
    "gmkernels_inplace": _langevin_gmkernels_inplace,
    "floor": _langevin_floor,
}

ROW = 4096  # row length of the 2-D cases: long rows, 4 normals per Philox call
QUICK_N = 1 << 22


def _langevin_note(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return ("1-D: every element is its own row (docs/spec.md §0), one Philox call per element: "
                "the short-row path")
    if shape[-1] < 16:
        return f"{math.prod(shape)} elements: per-call overhead dominates"
    return f"rows of {shape[-1]}: the long-row path"


def _langevin(shape, dtype, suites):
    register(Case(family="sde", op="langevin_step", shape=tuple(shape), dtype=dtype,
                  setup=_langevin_setup, providers=LANGEVIN_PROVIDERS, suites=frozenset(suites),
                  note=_langevin_note(tuple(shape))))


# --quick: the target size (N = 2^22 float32) on both row paths, plus a tiny step.
# --full: sizes 2^16 .. 2^24 in float32 and float64; it contains the quick cases.
for _dtype in (torch.float32, torch.float64):
    for _k in range(16, 25, 2):
        _n = 1 << _k
        _quick = _dtype == torch.float32 and _n == QUICK_N
        _suites = {"quick", "full"} if _quick else {"full"}
        _langevin((_n // ROW, ROW), _dtype, _suites)
        _langevin((_n,), _dtype, _suites)
    _langevin((1024, 2), _dtype, {"quick", "full"} if _dtype == torch.float32 else {"full"})

# ---------------------------------------------------------------- the fused steps

SEED = 20240601  # the fused steps and the sampling loop
SHAPE = (1024, 4096)  # N = 2^22, rows of 4096: the long-row path
T_STEP = 0.5
DT = 1e-3
SNR = 0.16
DDPM_T = 500

VP = VPSDE()  # beta_min 0.1, beta_max 20
VE = VESDE()  # sigma_min 0.01, sigma_max 50
SCHED = DDPMSchedule.linear(1000)


def _setup(case: Case, device: torch.device) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(case.shape, dtype=case.dtype, generator=gen).to(device)
    s = torch.randn(case.shape, dtype=case.dtype, generator=gen).to(device)
    return {"x": x, "s": s}


def _floor(inp):
    x, s = inp["x"], inp["s"]
    out = torch.empty_like(x)
    return lambda: torch.add(x, s, out=out)


# ---------------------------------------------------------------- hand-written eager steps
# Scalar coefficients are Python floats computed outside the tensor expression (what a user
# writes; torch.compile specializes them as constants).

def em_eager(x, drift, g, dt):
    return x + drift * dt + g * math.sqrt(abs(dt)) * torch.randn_like(x)


def vp_em_eager(x, s, beta, dt):
    return x - (-0.5 * beta * x - beta * s) * dt + math.sqrt(beta * dt) * torch.randn_like(x)


def ve_rd_eager(x, s, g2):
    # reverse diffusion on VE: F = 0, G^2 = sigma(t)^2 - sigma(t - dt)^2
    return x + g2 * s + math.sqrt(g2) * torch.randn_like(x)


def corrector_eager(x, s, snr, alpha):
    # score_sde_pytorch's LangevinCorrector: one step size from the batch means of the norms
    xi = torch.randn_like(x)
    B = x.shape[0]
    nx = xi.reshape(B, -1).norm(dim=1).mean()
    ns = s.reshape(B, -1).norm(dim=1).mean()
    eps = 2 * alpha * (snr * nx / ns) ** 2
    return x + eps * s + torch.sqrt(2 * eps) * xi


def ddpm_eager(x, e, a, abar, sigma):
    return (x - (1 - a) / math.sqrt(1 - abar) * e) / math.sqrt(a) + sigma * torch.randn_like(x)


_BETA = VP.beta_min + T_STEP * (VP.beta_max - VP.beta_min)
_G2_VE = VE.sigma(T_STEP) ** 2 - VE.sigma(T_STEP - DT) ** 2
_A = float(SCHED.alphas[DDPM_T])
_ABAR = float(SCHED.alphas_cumprod[DDPM_T])
_SIGMA = float(SCHED.sigmas[DDPM_T])
_EM_G = math.sqrt(2.0)

# name -> (eager fn, its args after (x, s), fused call (x, s, offset), fused op name, note)
STEPS = {
    "euler_maruyama_step": (
        em_eager, (_EM_G, DT),
        lambda x, s, k: euler_maruyama_step(x, s, _EM_G, DT, seed=SEED, offset=k),
        "euler_maruyama_step", "float diffusion g = sqrt(2), dt = 1e-3"),
    "reverse_sde_step[vp,em]": (
        vp_em_eager, (_BETA, DT),
        lambda x, s, k: reverse_sde_step(x, s, T_STEP, DT, VP, predictor="euler_maruyama",
                                         seed=SEED, offset=k),
        "reverse_sde_step", "VP SDE, Euler–Maruyama predictor, t = 0.5, dt = 1e-3"),
    "reverse_sde_step[ve,rd]": (
        ve_rd_eager, (_G2_VE,),
        lambda x, s, k: reverse_sde_step(x, s, T_STEP, DT, VE, predictor="reverse_diffusion",
                                         seed=SEED, offset=k),
        "reverse_sde_step", "VE SDE, reverse-diffusion predictor, t = 0.5, dt = 1e-3"),
    "langevin_corrector_step": (
        corrector_eager, (SNR, 1.0),
        lambda x, s, k: langevin_corrector_step(x, s, SNR, alpha=1.0, seed=SEED, offset=k),
        "langevin_corrector_step", "snr 0.16, alpha 1, one step size from the batch-mean norms"),
    "ddpm_step": (
        ddpm_eager, (_A, _ABAR, _SIGMA),
        lambda x, s, k: ddpm_step(x, s, DDPM_T, SCHED, seed=SEED, offset=k),
        "affine_noise_step",  # ddpm_step runs the affine_noise_step kernel
        "linear schedule (T = 1000), t = 500"),
}


def _providers(name: str) -> dict:
    fn, args, fused, opname, _ = STEPS[name]

    def eager(inp):
        x, s = inp["x"], inp["s"]
        return lambda: fn(x, s, *args)

    def compile_(inp):
        return warm_compile(fn, inp["x"], inp["s"], *args)

    def gmk(inp):
        x, s = inp["x"], inp["s"]
        require_fused(opname, x.device)
        step = itertools.count()
        return lambda: fused(x, s, next(step))

    return {"eager": eager, "compile": compile_, "gmkernels": gmk, "floor": _floor}


# --quick keeps two of the steps: with all five, a fresh clone's first run (cold Inductor cache,
# one compile per case) took 200 s of timing (3 min 25 s with the build, `bash tools/bench.sh`),
# over the quick suite's 3-minute budget. --full has all five.
QUICK_STEPS = ("euler_maruyama_step", "reverse_sde_step[vp,em]")
for _name, (_fn, _args, _fused, _opname, _note) in STEPS.items():
    _suites = {"quick", "full"} if _name in QUICK_STEPS else {"full"}
    register(Case(family="sde", op=_name, shape=SHAPE, dtype=torch.float32, setup=_setup,
                  providers=_providers(_name), suites=frozenset(_suites), note=_note))


# ---------------------------------------------------------------- whole sampling loop
N_LOOP = 1000
EPS_T = 1e-3


def sample_loop_eager(shape, n_steps=N_LOOP, eps=EPS_T, beta_min=VP.beta_min,
                      beta_max=VP.beta_max, device=None):
    """Reverse-SDE Euler–Maruyama sampling of the VP SDE in plain PyTorch, score -x."""
    h = (1.0 - eps) / n_steps
    x = torch.randn(shape, device=device)
    for i in range(n_steps):
        t = 1.0 - i * h
        s = -x
        beta = beta_min + t * (beta_max - beta_min)
        x = x - (-0.5 * beta * x - beta * s) * h + math.sqrt(beta * h) * torch.randn_like(x)
    return x


def _score(x, t):
    return -x


def _loop_setup(case: Case, device: torch.device) -> dict:
    return {"shape": case.shape, "device": device}


def _loop_eager(inp):
    shape, device = inp["shape"], inp["device"]
    return lambda: sample_loop_eager(shape, device=device)


def _loop_gmk(inp):
    shape, device = inp["shape"], inp["device"]
    require_fused("reverse_sde_step", device)
    seeds = itertools.count(SEED)
    return lambda: sample(_score, VP, shape, n_steps=N_LOOP, predictor="euler_maruyama",
                          corrector=None, denoise=False, eps=EPS_T, seed=next(seeds),
                          device=device)


# (64, 3, 32, 32) is --full only: its eager loop takes 2-60 s a call on the loaded 2-core
# machine (7 calls at least: 2 warm-up + 5 samples), which alone would break the quick budget.
for _shape, _suites in (((1024, 2), {"quick", "full"}), ((64, 3, 32, 32), {"full"})):
    register(Case(family="sde", op="sample_vp_em_1000", shape=_shape, dtype=torch.float32,
                  setup=_loop_setup, providers={"eager": _loop_eager, "gmkernels": _loop_gmk},
                  suites=frozenset(_suites),
                  note="whole loop, 1000 reverse-SDE EM steps (VP, score -x): eager = the "
                       "plain-PyTorch loop, gmkernels = gmkernels.score.sample; no compile "
                       "(1000 Python iterations around a compiled step)"))
