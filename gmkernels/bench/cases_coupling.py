"""Benchmark cases of the coupling family, the affine coupling transform: forward + logdet,
and forward + backward, on (B, D) = (65536, 64) and on (256, 16, 32, 32) images with a checkerboard mask.

Providers:

* ``eager``: the docs/spec.md §1.2 formula as a user writes it,
  ``y = mask*x + (1-mask)*(x*exp(s) + t)``, ``logdet = ((1-mask)*s).sum(dims)`` with a float
  mask (six elementwise passes and a reduction, four full-size temporaries);
* ``compile``: that function under ``torch.compile``;
* ``gmkernels``: :func:`gmkernels.affine_coupling` with a bool mask (one pass: read x, s, t,
  write y and the (B,) logdet);
* ``floor``: the same bytes with no arithmetic: ``torch.addcmul(t, x, s, out=y)`` (reads 3,
  writes 1) for the forward; for forward + backward, the backward's reads of grad_y, x, s, t
  and writes of the three gradients added as ``addcmul`` + ``add`` (11 arrays in all).

The ``*_fwd_bwd`` ops time forward and backward together (``torch.autograd.backward`` of
``(y, logdet)`` with fixed output gradients); ``floor`` there is the 11-array copy above.
"""

from __future__ import annotations

import torch

from .. import affine_coupling
from .registry import Case, compiled, register, require_fused, warm_compile, warm_up


def coupling_eager(x: torch.Tensor, s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor):
    """The coupling step as written by hand (the ``eager`` provider; compiled, ``compile``)."""
    inv = 1 - mask
    y = mask * x + inv * (x * torch.exp(s) + t)
    logdet = (inv * s).flatten(1).sum(1)
    return y, logdet


def _mask_for(shape) -> torch.Tensor:
    if len(shape) == 2:  # alternate coordinates, (D,)
        return torch.arange(shape[1]) % 2 == 0
    h, w = shape[-2:]   # checkerboard (1, 1, H, W)
    return ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2 == 0)[None, None]


def _setup(case: Case, device: torch.device) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(0)
    x, s, t, gy = (torch.randn(case.shape, dtype=case.dtype, generator=gen).to(device)
                   for _ in range(4))
    gld = torch.randn(case.shape[0], dtype=case.dtype, generator=gen).to(device)
    mask = _mask_for(case.shape).to(device)
    return {"x": x, "s": s, "t": t, "mask": mask, "maskf": mask.to(case.dtype), "gy": gy,
            "gld": gld}


# ---- forward + logdet

def _eager(inp):
    x, s, t, m = inp["x"], inp["s"], inp["t"], inp["maskf"]
    return lambda: coupling_eager(x, s, t, m)


def _compile(inp):
    return warm_compile(coupling_eager, inp["x"], inp["s"], inp["t"], inp["maskf"])


def _gmkernels(inp):
    x, s, t, m = inp["x"], inp["s"], inp["t"], inp["mask"]
    require_fused("affine_coupling", x.device)
    return lambda: affine_coupling(x, s, t, m)


def _floor(inp):
    x, s, t = inp["x"], inp["s"], inp["t"]
    out = torch.empty_like(x)
    return lambda: torch.addcmul(t, x, s, out=out)


# ---- forward + backward

def _fwd_bwd(fn, inp, mask_key):
    x, s, t = (inp[k].detach().clone().requires_grad_() for k in ("x", "s", "t"))
    m, gy, gld = inp[mask_key], inp["gy"], inp["gld"]

    def run():
        y, ld = fn(x, s, t, m)
        torch.autograd.backward((y, ld), (gy, gld))
        x.grad = s.grad = t.grad = None  # like optimizer.zero_grad(set_to_none=True)
    return run


def _eager_fb(inp):
    return _fwd_bwd(coupling_eager, inp, "maskf")


def _compile_fb(inp):
    f = compiled(coupling_eager)
    return warm_up(_fwd_bwd(f, inp, "maskf"))  # compiles forward and backward, untimed


def _gmkernels_fb(inp):
    require_fused("affine_coupling", inp["x"].device)
    return _fwd_bwd(lambda x, s, t, m: affine_coupling(x, s, t, m), inp, "mask")


def _floor_fb(inp):
    x, s, t, gy = inp["x"], inp["s"], inp["t"], inp["gy"]
    y, gx, gs, gt = (torch.empty_like(x) for _ in range(4))

    def run():
        torch.addcmul(t, x, s, out=y)     # forward: read x, s, t; write y
        torch.addcmul(x, s, gy, out=gx)   # backward: read gy, x, s (t below); write gx
        torch.add(t, gy, out=gs)          # read t; write gs
        gt.copy_(gs)                      # write gt (and one extra read)
    return run


PROVIDERS = {"eager": _eager, "compile": _compile, "gmkernels": _gmkernels, "floor": _floor}
PROVIDERS_FB = {"eager": _eager_fb, "compile": _compile_fb, "gmkernels": _gmkernels_fb,
                "floor": _floor_fb}

_NOTES = {
    (65536, 64): "target: forward+logdet >= 3x eager and >= 1.2x compile",
    (256, 16, 32, 32): "images, checkerboard mask (1, 1, 32, 32): measured",
}

for _shape in ((65536, 64), (256, 16, 32, 32)):
    register(Case(family="coupling", op="affine_coupling", shape=_shape, dtype=torch.float32,
                  setup=_setup, providers=PROVIDERS, suites=frozenset({"quick", "full"}),
                  note=_NOTES[_shape]))
    register(Case(family="coupling", op="affine_coupling_fwd_bwd", shape=_shape,
                  dtype=torch.float32, setup=_setup, providers=PROVIDERS_FB,
                  suites=frozenset({"quick", "full"}),
                  note="forward + backward (grads of x, s, t): measured"))
    register(Case(family="coupling", op="affine_coupling", shape=_shape, dtype=torch.float64,
                  setup=_setup, providers=PROVIDERS, suites=frozenset({"full"}),
                  note="float64"))
