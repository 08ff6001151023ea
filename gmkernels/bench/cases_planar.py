"""Benchmark cases of the planar family, the planar flow: K = 32 layers, D = 16, B = 65,536,
float32.

Ops (the case's ``shape`` is (B, K, D)):

* ``planar_flow``: forward + logdet, shared (K, D) parameters;
* ``planar_flow_fwd_bwd``: forward, then the gradients of ``sum(x * r) + sum(logdet)`` with
  respect to z, û, w and b (shared parameters: summed over B);
* ``planar_flow_per_sample`` / ``planar_flow_per_sample_fwd_bwd``: the same with per-sample
  (B, K, D) parameters (amortized inference), which read 2 * B*K*D parameters: memory-bound.

Providers:

* ``eager``: :func:`gmkernels.reference.planar.planar_flow`, the loop over K layers in plain
  PyTorch as a user writes it (the backward is autograd through it, which stores every
  intermediate);
* ``compile``: that same function under ``torch.compile`` (Inductor; for fwd_bwd the compiled
  forward's AOT-autograd backward);
* ``gmkernels``: :func:`gmkernels.planar_flow` (fwd_bwd: its fused backward op);
* ``floor``: ``out.copy_(z)``: reading z and writing x once, the least any forward can move.
"""

from __future__ import annotations

import torch

from .. import planar_flow, planar_u_hat
from ..reference import planar as _ref
from .registry import Case, compiled, register, require_fused, warm_compile, warm_up

B, K, D = 65536, 32, 16


def _setup(case: Case, device: torch.device, per_sample: bool) -> dict:
    b_, k_, d_ = case.shape
    gen = torch.Generator(device="cpu").manual_seed(0)
    pshape = (b_, k_, d_) if per_sample else (k_, d_)
    z = torch.randn(b_, d_, generator=gen)
    u = 0.5 * torch.randn(pshape, generator=gen)
    w = torch.randn(pshape, generator=gen) / d_ ** 0.5
    b = 0.5 * torch.randn(pshape[:-1], generator=gen)
    u_hat = planar_u_hat(u, w)
    r = torch.randn(b_, d_, generator=gen)
    return {k: v.to(device=device, dtype=case.dtype)
            for k, v in dict(z=z, u=u_hat, w=w, b=b, r=r).items()}


def _fwd(fn):
    def build(inp):
        z, u, w, b = inp["z"], inp["u"], inp["w"], inp["b"]

        def run():
            with torch.no_grad():
                return fn(z, u, w, b)
        return run
    return build


def _loss_grads(f, inp):
    """The callable that runs f forward and the gradients of sum(x r) + sum(logdet)."""
    ins = [inp[k].detach().clone().requires_grad_(True) for k in ("z", "u", "w", "b")]
    r = inp["r"]

    def run():
        x, ld = f(*ins)
        return torch.autograd.grad((x * r).sum() + ld.sum(), ins)
    return run


def _eager(inp):
    return _fwd(_ref.planar_flow)(inp)


def _compile_fwd(inp):
    with torch.no_grad():  # dynamo guards on grad mode: compile the graph that is timed
        f = warm_compile(_ref.planar_flow, inp["z"], inp["u"], inp["w"], inp["b"])

    def run():
        with torch.no_grad():
            return f()
    return run


def _gmkernels(inp):
    require_fused("planar_flow", inp["z"].device)
    return _fwd(planar_flow)(inp)


def _floor(inp):
    z = inp["z"]
    out = torch.empty_like(z)
    return lambda: out.copy_(z)


def _eager_bwd(inp):
    return _loss_grads(_ref.planar_flow, inp)


def _compile_bwd(inp):
    f = compiled(_ref.planar_flow)
    return warm_up(_loss_grads(f, inp))  # compiles forward and backward, untimed


def _gmkernels_bwd(inp):
    require_fused("planar_flow", inp["z"].device)
    return _loss_grads(planar_flow, inp)


FWD = {"eager": _eager, "compile": _compile_fwd, "gmkernels": _gmkernels, "floor": _floor}
FWD_BWD = {"eager": _eager_bwd, "compile": _compile_bwd, "gmkernels": _gmkernels_bwd,
           "floor": _floor}

_NOTES = {
    "planar_flow": "target: >= 10x eager, >= 3x compile",
    "planar_flow_fwd_bwd": "target: >= 5x eager; floor = one copy of z",
    "planar_flow_per_sample": "per-sample (B, K, D) parameters: reads 2*B*K*D floats; measured",
    "planar_flow_per_sample_fwd_bwd": "per-sample parameters, forward + backward; measured",
}


def _case(op, shape, per_sample, providers, suites):
    register(Case(family="planar", op=op, shape=shape, dtype=torch.float32,
                  setup=lambda case, device, ps=per_sample: _setup(case, device, ps),
                  providers=providers, suites=frozenset(suites), note=_NOTES[op]))


_case("planar_flow", (B, K, D), False, FWD, {"quick", "full"})
_case("planar_flow_fwd_bwd", (B, K, D), False, FWD_BWD, {"quick", "full"})
# Per sample: --full only (B = 8192, and the target's B = 65,536, whose eager backward holds
# ~2 GB of intermediates): with their compile warm-ups they took minutes of the quick suite.
_case("planar_flow_per_sample", (8192, K, D), True, FWD, {"full"})
_case("planar_flow_per_sample_fwd_bwd", (8192, K, D), True, FWD_BWD, {"full"})
_case("planar_flow_per_sample", (B, K, D), True, FWD, {"full"})
_case("planar_flow_per_sample_fwd_bwd", (B, K, D), True, FWD_BWD, {"full"})
