"""Benchmark cases of the trace family (issue 13, part 1): the Hutchinson divergence of an MLP
with K probes batched in one pass, against a Python loop over the probes, the way FFJORD and
score_sde_pytorch compute it. The case's ``shape`` is (B, K, D) = (1024, 8, 64); the MLP is
D -> 256 -> 256 -> D with tanh (FFJORD's ODE nets are MLPs of this width), float32.

Ops:

* ``divergence``: ``fn(x)`` and its divergence estimate, no graph kept (evaluation, a
  likelihood);
* ``divergence_create_graph``: the same with the graph kept (``create_graph=True``), as in
  training a CNF or a sliced score matching step.

Providers:

* ``eager``: one ``fn(x)``, then K calls of ``torch.autograd.grad(y, x, v_k,
  retain_graph=True)`` and ``(g * v_k).sum(1)`` in a Python loop (FFJORD's
  ``divergence_approx``, one probe per call), probes drawn with ``torch.randint`` beforehand;
* ``gmkernels``: :func:`gmkernels.trace.divergence` (``n_probes=K``, Rademacher, vjp): one
  ``fn(x)`` and one pullback batched over the K probes (``torch.func.vjp`` under ``vmap``),
  the probes drawn from the Philox stream inside the timed call.

There is no ``compile`` provider (a double-backward loop under torch.compile is not what these
projects run) and no ``floor``.
"""

from __future__ import annotations

import torch

from .. import trace as _trace
from .registry import Case, register

B, K, D, WIDTH = 1024, 8, 64, 256


def _setup(case: Case, device: torch.device) -> dict:
    b_, k_, d_ = case.shape
    gen = torch.Generator(device="cpu").manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(d_, WIDTH), torch.nn.Tanh(),
                              torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh(),
                              torch.nn.Linear(WIDTH, d_))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
    net = net.to(device=device, dtype=case.dtype)
    x = torch.randn(b_, d_, generator=gen).to(device=device, dtype=case.dtype)
    v = (torch.randint(0, 2, (k_, b_, d_), generator=gen) * 2 - 1).to(device=device,
                                                                       dtype=case.dtype)
    return dict(net=net, x=x, v=v, K=k_)


def _loop(create_graph):
    def build(inp):
        net, x0, v = inp["net"], inp["x"], inp["v"]

        def run():
            x = x0.detach().requires_grad_(True)
            y = net(x)
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for k in range(v.shape[0]):
                (g,) = torch.autograd.grad(y, x, v[k], retain_graph=True, create_graph=create_graph)
                div = div + (g * v[k]).sum(1)
            return y, div / v.shape[0]
        return run
    return build


def _batched(create_graph):
    def build(inp):
        net, x, n = inp["net"], inp["x"], inp["K"]
        return lambda: _trace.divergence(net, x, n_probes=n, seed=0, create_graph=create_graph)
    return build


for _op, _cg in (("divergence", False), ("divergence_create_graph", True)):
    register(Case(family="trace", op=_op, shape=(B, K, D), dtype=torch.float32, setup=_setup,
                  providers={"eager": _loop(_cg), "gmkernels": _batched(_cg)},
                  suites=frozenset({"quick", "full"}),
                  note="MLP D-256-256-D tanh; eager = Python loop over the K probes "
                       "(FFJORD); target gmkernels >= 5x eager"))
