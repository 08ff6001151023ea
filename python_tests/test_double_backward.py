"""Double backward (``torch.autograd.grad(..., create_graph=True)`` and a second grad through
it) of every differentiable op, on every backend and the reference.

A fused backward op returns gradients that carry no graph, so a second backward through it
misses every term that flows through the first gradient, silently. Every op's backward runs a
composite backward (differentiable torch maths, gmkernels/_autograd.py) when it must build a
graph, and the fused op otherwise. The tests:

* ``gradgradcheck`` in float64 on small inputs of each op (per-sample tensor coefficients
  where the op takes them, clamp on and off where it has one); on Triton, whose interpreter
  is slow, in fast mode and on one or two cases of each op;
* the first and second derivatives of a (4, 3) case against the reference backend's, with the
  op's score / network input computed from x by ``tanh(x W)`` (as users differentiate through
  a score network twice), and a nonlinear loss on the first gradient;
* the first-order gradients taken with ``create_graph=True`` (the composite path) against
  the fused backward's (noise included), in float32 and float64;
* on the native backend, which path ran: the fused ``<op>_backward`` for a first-order
  backward, never under ``create_graph=True``.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gmkernels
from _helpers import assert_close
from conftest import BACKENDS
from gmkernels.score import DDPMSchedule, VESDE, VPSDE, subVPSDE

F64 = torch.float64
B, D = 4, 3          # the comparison case
GB, GD = 3, 2        # gradgradcheck's (it evaluates the op ~4 times per input element)
SEED = 11
SCHED = DDPMSchedule.linear(20)
SDES = {"ve": VESDE(), "vp": VPSDE(), "subvp": subVPSDE()}


# --------------------------------------------------------------------------------------------
# The cases. Each is (width, params, fn): fn(x, h, *params) calls the op, where x is (B, D),
# h is (B, width(D)) the op's network input (a free leaf for gradgradcheck, tanh(x W) in the
# comparison; None when the width is 0) and params(B, D, gen, dtype) the op's other
# differentiable inputs (a list of leaves). `op` is the dispatcher op whose fused backward a
# first-order backward on the native backend must run (None: a composite of torch ops).

class Case:
    def __init__(self, name, width, params, fn, op, kinds=("grad", "row_sum")):
        self.name, self.width, self.params, self.fn, self.op = name, width, params, fn, op
        self.kind64, self.kind32 = kinds  # tolerance kinds: float64 comparisons, float32

    def __repr__(self):
        return self.name


def _rows(lo, hi):
    """A per-sample (n,) coefficient factory: uniform in [lo, hi)."""
    return lambda b, gen, dtype: lo + (hi - lo) * torch.rand(b, generator=gen, dtype=dtype)


def _coeffs(*factories):
    return lambda b, d, gen, dtype: [f(b, gen, dtype) for f in factories]


def _none(b, d, gen, dtype):
    return []


def _SAME(d):  # h of x's shape (the score, drift, grad or predicted noise)
    return d


def _NO_H(d):
    return 0


CASES = []

# langevin_step: float or per-sample step_size / noise_scale, clamp off and on
for coef in ("float", "tensor"):
    for clamp in (None, (-1.5, 1.5)):
        if coef == "float":
            fn = (lambda clamp: lambda x, h: gmkernels.langevin_step(
                x, h, 0.3, 0.7, seed=SEED, offset=2, clamp=clamp))(clamp)
            params = _none
        else:
            fn = (lambda clamp: lambda x, h, a, c: gmkernels.langevin_step(
                x, h, a, c, seed=SEED, offset=2, clamp=clamp))(clamp)
            params = _coeffs(_rows(0.2, 0.6), _rows(0.3, 0.9))
        CASES.append(Case(f"langevin_step-{coef}-clamp_{clamp is not None}", _SAME, params, fn,
                          "langevin_step_backward"))

# euler_maruyama_step: diffusion a float, a per-sample (B,) tensor or a tensor of x's shape;
# forward and backward in time
for diff in ("float", "per_sample", "full"):
    for dt in (0.1, -0.05):
        if diff == "float":
            fn = (lambda dt: lambda x, h: gmkernels.euler_maruyama_step(
                x, h, 0.8, dt, seed=SEED, offset=1))(dt)
            params = _none
        else:
            fn = (lambda dt: lambda x, h, g: gmkernels.euler_maruyama_step(
                x, h, g, dt, seed=SEED, offset=1))(dt)
            params = (_coeffs(_rows(0.5, 1.5)) if diff == "per_sample" else
                      lambda b, d, gen, dtype: [0.5 + torch.rand(b, d, generator=gen, dtype=dtype)])
        CASES.append(Case(f"euler_maruyama_step-{diff}-dt_{dt}", _SAME, params, fn,
                          "euler_maruyama_step_backward"))

# reverse_sde_step: every SDE, predictor and probability flow, per-sample t
for kind in ("ve", "vp", "subvp"):
    for pred in ("euler_maruyama", "reverse_diffusion"):
        for pf in (False, True):
            fn = (lambda kind, pred, pf: lambda x, h: gmkernels.reverse_sde_step(
                x, h, torch.linspace(0.3, 0.9, x.shape[0], dtype=x.dtype), 0.01, SDES[kind],
                predictor=pred, probability_flow=pf, seed=SEED, offset=4))(kind, pred, pf)
            CASES.append(Case(f"reverse_sde_step-{kind}-{pred}-pf_{pf}", _SAME, _none, fn,
                              "reverse_sde_step_backward"))

# affine_noise_step: float coefficients, per-sample ones (any sign)
CASES.append(Case("affine_noise_step-float", _SAME, _none,
                  lambda x, h: gmkernels.affine_noise_step(x, h, 1.1, 0.3, 0.5, seed=SEED),
                  "affine_noise_step_backward"))
CASES.append(Case("affine_noise_step-tensor", _SAME,
                  _coeffs(_rows(0.8, 1.2), _rows(-0.5, 0.5), _rows(0.1, 0.6)),
                  lambda x, h, cx, ce, cn: gmkernels.affine_noise_step(x, h, cx, ce, cn,
                                                                       seed=SEED, offset=3),
                  "affine_noise_step_backward"))

# ddpm_step: one step for the batch, a per-sample step (including t = 0, no noise)
CASES.append(Case("ddpm_step-int", _SAME, _none,
                  lambda x, h: gmkernels.ddpm_step(x, h, 7, SCHED, seed=SEED, offset=5),
                  "affine_noise_step_backward"))
CASES.append(Case("ddpm_step-per_sample", _SAME, _none,
                  lambda x, h: gmkernels.ddpm_step(
                      x, h, torch.arange(x.shape[0]) * 5 % 20, SCHED, seed=SEED, offset=5),
                  "affine_noise_step_backward"))

# affine_coupling: both scales, soft clamp off and on, forward and inverse; h = (s, t)
def _first(x):  # a pattern mask without a batch dim: feature 0 passes through
    return torch.arange(x.shape[1]) == 0



def _coupling(scale, clamp, inverse, mask):
    def fn(x, h):
        s, t = h.chunk(2, dim=1)
        m = mask(x) if callable(mask) else mask
        return gmkernels.affine_coupling(x, s, t, m, inverse=inverse, scale=scale, clamp=clamp)
    return fn


for scale in ("exp", "sigmoid"):
    for clamp in (None, 2.0):
        for inverse in (False, True):
            mask = _first if inverse else 0
            CASES.append(Case(f"affine_coupling-{scale}-clamp_{clamp}-inverse_{inverse}",
                              lambda d: 2 * d,
                              _none, _coupling(scale, clamp, inverse, mask),
                              "affine_coupling_backward", ("grad", "transcendental")))
# a mask that differs per row
CASES.append(Case("affine_coupling-row_mask", lambda d: 2 * d, _none,
                  _coupling("exp", None, False,
                            lambda x: (torch.arange(x.numel()).reshape(x.shape) % 3) == 0),
                  "affine_coupling_backward", ("grad", "transcendental")))

# planar_flow: K = 2 layers, shared parameters (leaves) or per sample from h (amortized, with
# the u_hat reparameterization applied per row)
K = 2


def _planar_shared(b, d, gen, dtype):
    u = 0.5 * torch.randn(K, d, generator=gen, dtype=dtype)
    w = torch.randn(K, d, generator=gen, dtype=dtype)
    return [u, w, 0.3 * torch.randn(K, generator=gen, dtype=dtype)]


def _planar_per_sample(x, h):
    b, d = x.shape
    u, w = h[:, :K * d].reshape(b, K, d), h[:, K * d:2 * K * d].reshape(b, K, d)
    bias = h[:, 2 * K * d:]
    return gmkernels.planar_flow(x, gmkernels.planar_u_hat(u, w), w, bias)


def _planar_shared_fn(x, h, u, w, b):
    return gmkernels.planar_flow(x, gmkernels.planar_u_hat(u, w), w, b)


CASES.append(Case("planar_flow-shared", _NO_H, _planar_shared, _planar_shared_fn,
                  "planar_flow_backward", ("chain_grad", "chain_grad")))
CASES.append(Case("planar_flow-per_sample", lambda d: 2 * K * d + K, _none, _planar_per_sample,
                  "planar_flow_backward", ("chain_grad", "chain_grad")))

# planar_u_hat: a composite of torch ops (double backward is torch's)
CASES.append(Case("planar_u_hat", _SAME, _none, lambda x, h: gmkernels.planar_u_hat(x, h), None))



# rbm_free_energy: v = x (n_visible = D), W, b, c leaves with n_hidden = 4
def _rbm_params(b, d, gen, dtype):
    return [0.5 * torch.randn(d, 4, generator=gen, dtype=dtype),
            torch.randn(d, generator=gen, dtype=dtype), torch.randn(4, generator=gen, dtype=dtype)]


CASES.append(Case("rbm_free_energy", _NO_H, _rbm_params,
                  lambda x, h, W, b, c: gmkernels.rbm_free_energy(x, W, b, c),
                  "rbm_free_energy_backward", ("grad", "softplus_sum")))


def inputs(case, b, d, dtype, seed=0):
    """(x, h or None, params) as fresh leaves from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=gen, dtype=dtype)
    width = case.width(d)
    h = torch.randn(b, width, generator=gen, dtype=dtype) if width else None
    params = case.params(b, d, gen, dtype)
    return x, h, params


def outputs(case, x, h, params):
    out = case.fn(x, h, *params)
    return out if isinstance(out, tuple) else (out,)


# --------------------------------------------------------------------------------------------
# gradgradcheck on the op's own inputs

# On Triton the interpreter takes ~50 ms a launch and gradgradcheck launches the forward a few
# hundred times (5-15 s a case on this machine even in fast mode), so Triton runs it on one
# or two cases of each op (TRITON_GRADGRAD, the code paths that differ: the backward kernel's
# replacement, every clamp / mask / scale variant of coupling, shared and per-sample planar);
# its other cases are held to the reference's second derivatives below, as every case is.
TRITON_GRADGRAD = {"langevin_step-float-clamp_False", "langevin_step-tensor-clamp_True",
                   "euler_maruyama_step-per_sample-dt_0.1", "euler_maruyama_step-full-dt_-0.05",
                   "reverse_sde_step-vp-euler_maruyama-pf_False",
                   "reverse_sde_step-ve-reverse_diffusion-pf_True", "affine_noise_step-tensor",
                   "ddpm_step-per_sample", "affine_coupling-exp-clamp_2.0-inverse_True",
                   "affine_coupling-sigmoid-clamp_None-inverse_False", "affine_coupling-row_mask",
                   "planar_flow-shared", "planar_flow-per_sample", "planar_u_hat",
                   "rbm_free_energy"}
assert TRITON_GRADGRAD <= {c.name for c in CASES}
GRADGRAD = [(b, c) for b in BACKENDS + ["reference"] for c in CASES
            if b != "triton" or c.name in TRITON_GRADGRAD]


@pytest.mark.parametrize("any_backend,case", GRADGRAD, ids=[f"{b}-{c}" for b, c in GRADGRAD])
def test_gradgradcheck(any_backend, case):
    with gmkernels.use_backend(any_backend):
        _gradgradcheck(any_backend, case)


def _gradgradcheck(any_backend, case):
    x, h, params = inputs(case, GB, GD, F64)
    leaves = [t.requires_grad_() for t in [x] + ([h] if h is not None else []) + params]
    has_h = h is not None

    def f(*ts):
        x, rest = ts[0], list(ts[1:])
        hh = rest.pop(0) if has_h else None
        return outputs(case, x, hh, rest)

    # On Triton the checks run in fast mode (the full one, differentiating numerically along
    # every input element, takes 25-50 s a case in the interpreter): along random directions,
    # Jacobian-vector products against vector-Jacobian products, which still fail on any wrong
    # derivative with probability 1.
    fast = any_backend == "triton"
    assert torch.autograd.gradcheck(f, leaves, fast_mode=fast)
    assert torch.autograd.gradgradcheck(f, leaves, fast_mode=fast)


# --------------------------------------------------------------------------------------------
# first and second derivatives through a network input h = tanh(x W), against the reference

def derivatives(case, dtype, create_graph=True, seed=0):
    """(first, second): the gradients of a nonlinear loss L of the op's outputs with respect
    to (x, W, params), and the gradients of S = sum_i sum(q_i * g_i^2) of those first
    gradients (None when create_graph is False). Current backend."""
    x, h, params = inputs(case, B, D, dtype, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    width = 0 if h is None else h.shape[1]
    W = (torch.randn(D, width, generator=gen, dtype=dtype) / D ** 0.5) if width else None
    leaves = [t.requires_grad_() for t in [x] + ([W] if W is not None else []) + params]
    net = torch.tanh(x @ W) if W is not None else None
    outs = outputs(case, x, net, params)
    weights = [torch.randn(o.shape, generator=gen, dtype=dtype) for o in outs]
    loss = sum((torch.sin(o) * r).sum() + 0.5 * (o * o).sum() for o, r in zip(outs, weights))
    first = torch.autograd.grad(loss, leaves, create_graph=create_graph)
    if not create_graph:
        return first, None
    qs = [torch.rand(g.shape, generator=gen, dtype=dtype) for g in first]
    s = sum((q * g * g).sum() for q, g in zip(qs, first))
    second = torch.autograd.grad(s, leaves)
    return first, second


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_second_derivatives_match_reference(backend, case):
    first, second = derivatives(case, F64)
    with gmkernels.use_backend("reference"):
        first_ref, second_ref = derivatives(case, F64)
    names = ["x", "W"] + [f"param{i}" for i in range(len(first) - 2)]
    for name, got, want in zip(names, first, first_ref):
        assert_close(got, want, kind=case.kind64, what=f"{case} [{backend}] d/d{name}")
    for name, got, want in zip(names, second, second_ref):
        assert_close(got, want, kind=case.kind64, what=f"{case} [{backend}] d²/d{name}")


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_composite_first_order_matches_fused(backend, case, dtype):
    """create_graph=True takes the composite backward; its first-order values are the fused
    backward's (the noise regenerated from the same stream)."""
    fused, _ = derivatives(case, dtype, create_graph=False)
    composite, _ = derivatives(case, dtype, create_graph=True)
    kind = case.kind64 if dtype == F64 else case.kind32
    for i, (got, want) in enumerate(zip(composite, fused)):
        assert_close(got, want, kind=kind, what=f"{case} [{backend}] input {i}")


# --------------------------------------------------------------------------------------------
# which backward ran (native): the fused op for first order, the composite under create_graph

class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func._schema.name)
        return func(*args, **(kwargs or {}))


@pytest.mark.skipif("native" not in BACKENDS, reason="the native extension is not built")
@pytest.mark.parametrize("case", [c for c in CASES if c.op is not None], ids=repr)
def test_native_backward_path(case):
    with gmkernels.use_backend("native"):
        for create_graph in (False, True):
            x, h, params = inputs(case, B, D, F64)
            leaves = [t.requires_grad_() for t in [x] + ([h] if h is not None else []) + params]
            outs = outputs(case, x, h, params)
            loss = sum((o * o).sum() for o in outs)
            with _Ops() as seen:
                torch.autograd.grad(loss, leaves, create_graph=create_graph)
            ran = f"gmkernels::{case.op}" in seen.names
            assert ran == (not create_graph), (
                f"{case}: create_graph={create_graph}: the fused {case.op} "
                f"{'ran' if ran else 'did not run'}; ops seen: {sorted(seen.names)}")


# --------------------------------------------------------------------------------------------
# one tensor passed as two inputs: each position gets its own partial derivative

def _twice(op, a, b):
    if op == "planar_flow":      # z (B, D) = a; u_hat = w = b (K, D): u_hat . w >= 0 > -1
        return gmkernels.planar_flow(a, b, b, torch.zeros(b.shape[0], dtype=b.dtype))
    if op == "affine_coupling":  # s = t = b
        return gmkernels.affine_coupling(a, b, b, 0, clamp=2.0)
    if op == "rbm_free_energy":  # v = W = b (square)
        return (gmkernels.rbm_free_energy(b, b, a[0], a[1]),)
    # x = grad = b, step_size = |a[0]| per sample
    return (gmkernels.langevin_step(b, b, a[0].abs(), 0.5, seed=SEED),)


@pytest.mark.parametrize("op", ["planar_flow", "affine_coupling", "rbm_free_energy",
                                "langevin_step"])
def test_an_input_passed_twice(backend, op):
    def grads():
        gen = torch.Generator().manual_seed(3)
        a = torch.randn(B, D, generator=gen, dtype=F64).requires_grad_()
        b = (0.5 * torch.randn(*((D, D) if op != "affine_coupling" else (B, D)), generator=gen,
                               dtype=F64)).requires_grad_()
        outs = _twice(op, a, b)
        loss = sum((torch.sin(o) + o * o).sum() for o in outs)
        first = torch.autograd.grad(loss, (a, b), create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in first), (a, b))
        return first + second

    got = grads()
    with gmkernels.use_backend("reference"):
        want = grads()
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, kind="chain_grad", what=f"{op} [{backend}] gradient {i}")
