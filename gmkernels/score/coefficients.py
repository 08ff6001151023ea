"""The coefficient maths of the SDE and DDPM samplers: what an SDE object's parameters are,
the per-row coefficients of a reverse-time step, and the DDPM ancestral step's coefficients
from a schedule. Used by the fused steps (:func:`gmkernels.reverse_sde_step`,
:func:`gmkernels.ddpm_step`), the samplers of :mod:`gmkernels.score` and the Triton backward.

>>> from gmkernels.score import VPSDE, DDPMSchedule
>>> from gmkernels.score.coefficients import ddpm_coefficients, sde_params
>>> sde_params("op", VPSDE(0.1, 20.0))
('vp', 0.1, 20.0)
>>> cx, ce, cn = ddpm_coefficients(0, DDPMSchedule.linear(10), torch.zeros(3, 2))
>>> cn                                          # no noise at t = 0
0.0
"""

from __future__ import annotations

import math
import numbers

import torch

from .. import _checks
from .._checks import rows_of
from .._enums import SDE_KINDS
from ..reference import sde as _ref

__all__ = ["sde_params", "reverse_coefficients", "check_schedule", "ddpm_coefficients"]


def sde_params(op: str, sde) -> tuple[str, float, float]:
    """(kind, p0, p1) of an SDE object: ``kind`` "ve" with ``sigma_min, sigma_max``, or "vp" /
    "subvp" with ``beta_min, beta_max`` (gmkernels.score.VESDE / VPSDE / subVPSDE)."""
    kind = getattr(sde, "kind", None)
    if kind not in SDE_KINDS:
        raise TypeError(f"{op}: sde must have an attribute kind in {tuple(SDE_KINDS)} (e.g. "
                        f"gmkernels.score.VESDE()), got {type(sde).__name__} with kind={kind!r}")
    names = ("sigma_min", "sigma_max") if kind == "ve" else ("beta_min", "beta_max")
    vals = []
    for n in names:
        if not hasattr(sde, n):
            raise TypeError(f"{op}: a {kind!r} sde must have attributes {names}, "
                            f"{type(sde).__name__} has no {n}")
        vals.append(_checks.real(op, f"sde.{n}", getattr(sde, n)))
    p0, p1 = vals
    if kind == "ve" and not 0 < p0 < p1:
        raise ValueError(f"{op}: a VE sde needs 0 < sigma_min < sigma_max, got sigma_min={p0}, "
                         f"sigma_max={p1}")
    if kind != "ve" and (p0 < 0 or p1 < 0):
        raise ValueError(f"{op}: sde.beta_min and sde.beta_max must be >= 0, got {p0}, {p1}")
    return kind, p0, p1


def reverse_coefficients(kind: str, p0: float, p1: float, t_t, t: float, dt: float,
                         predictor: str, probability_flow: bool, dtype, device):
    """Per-row (cx, cs, cn) with reverse_sde_step(x, s) = cx*x + cs*s + cn*xi: (B,) tensors
    for per-sample times t_t, else 0-d tensors; computed in float64, returned in ``dtype``."""
    tt = (t_t.to(device=device, dtype=torch.float64) if t_t is not None
          else torch.tensor(t, dtype=torch.float64, device=device))
    c, g2 = _ref.sde_f_coeff_g2(kind, p0, p1, tt)
    if predictor == "euler_maruyama":
        cx, G2 = 1 - c * dt, g2 * dt
    elif kind == "ve":
        sig = lambda u: p0 * (p1 / p0) ** u  # noqa: E731
        cx, G2 = torch.ones_like(tt), sig(tt) ** 2 - sig(torch.clamp(tt - dt, min=0.0)) ** 2
    elif kind == "vp":
        beta_d = (p0 + tt * (p1 - p0)) * dt
        cx, G2 = 2 - torch.sqrt(1 - beta_d), beta_d
    else:
        cx, G2 = 1 - c * dt, g2 * dt
    if probability_flow:
        cs, cn = 0.5 * G2, torch.zeros_like(G2)
    else:
        cs, cn = G2, torch.sqrt(G2)
    return cx.to(dtype), cs.to(dtype), cn.to(dtype)


def check_schedule(op: str, schedule) -> int:
    tensors = []
    for n in ("betas", "alphas", "alphas_cumprod", "sigmas"):
        v = getattr(schedule, n, None)
        if not isinstance(v, torch.Tensor) or v.dim() != 1:
            raise TypeError(f"{op}: schedule must have 1-D tensors betas, alphas, alphas_cumprod "
                            f"and sigmas (gmkernels.score.DDPMSchedule), got {type(schedule).__name__} "
                            f"with {n}={type(v).__name__}")
        tensors.append(v)
    T = tensors[0].shape[0]
    if T == 0 or any(v.shape[0] != T for v in tensors):
        raise ValueError(f"{op}: schedule tensors must all have the same length T > 0, got lengths "
                         f"{[v.shape[0] for v in tensors]}")
    return T


def ddpm_coefficients(t, schedule, x: torch.Tensor, op: str = "gmkernels.ddpm_step"):
    """(cx, ce, cn) of the DDPM ancestral step at integer step(s) t (see :func:`ddpm_step`):
    floats for an int t, (B,) tensors in x's compute dtype for a (B,) tensor t."""
    T = check_schedule(op, schedule)
    if isinstance(t, torch.Tensor) and t.dim() > 0:
        rows = rows_of(x)
        if t.dim() != 1 or t.shape[0] != rows:
            raise ValueError(f"{op}: t must be an int or a per-sample tensor of shape ({rows},), "
                             f"got shape {tuple(t.shape)}")
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex:
            raise TypeError(f"{op}: t must be an integer tensor (int64), got {t.dtype}")
        idx = t.to(device=schedule.betas.device, dtype=torch.int64)
        # the schedule lives on the CPU, so idx is a host copy: reading it adds no sync
        _checks.values(op, "t", idx, f"in [0, {T}) (the schedule's length)",
                       lambda v: (v >= 0) & (v < T))
        a, ab, sg = (v.to(torch.float64)[idx] for v in (schedule.alphas, schedule.alphas_cumprod,
                                                        schedule.sigmas))
        sg = torch.where(idx == 0, torch.zeros_like(sg), sg)
        cx = 1 / torch.sqrt(a)
        ce = (1 - a) / (torch.sqrt(1 - ab) * torch.sqrt(a))
        cd = torch.float64 if x.dtype == torch.float64 else torch.float32
        return tuple(v.to(device=x.device, dtype=cd) for v in (cx, ce, sg))
    if isinstance(t, torch.Tensor):
        if t.dtype.is_floating_point:
            raise TypeError(f"{op}: t must be an int or an integer tensor, got {t.dtype}")
        t = int(t)
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise TypeError(f"{op}: t must be an int or a (B,) int64 tensor, got {type(t).__name__}")
    t = int(t)
    if not 0 <= t < T:
        raise ValueError(f"{op}: t must be in [0, {T}) (the schedule's length), got {t}")
    a = float(schedule.alphas[t])
    ab = float(schedule.alphas_cumprod[t])
    sg = 0.0 if t == 0 else float(schedule.sigmas[t])
    return 1 / math.sqrt(a), (1 - a) / (math.sqrt(1 - ab) * math.sqrt(a)), sg
