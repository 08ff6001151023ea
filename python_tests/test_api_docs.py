"""The public API's contract with a new user: every public name has an example, and every op
raises one exception type per kind of mistake.

* Every function and class named in the ``__all__`` lists of :mod:`gmkernels`,
  :mod:`gmkernels.random`, :mod:`gmkernels.ops` and :mod:`gmkernels.reference` has a docstring
  with a ``>>>`` example (test_doctests.py runs them), so a new public name without one fails.
* A table of mistakes, one or more per public op: a bad value raises ``ValueError`` and a bad
  type ``TypeError``, on every backend, with the message ``op: argument must ..., got ...``
  from the Python layer.
"""

from __future__ import annotations

import importlib
import inspect
import re

import numpy as np
import pytest
import torch

import gmkernels
from conftest import BACKENDS

# --------------------------------------------------------------------------------------------
# docstring examples

GROUPS = ("bm", "coupling", "planar", "rbm", "sde")
MODULES = (["gmkernels", "gmkernels.random", "gmkernels.trace"] + [f"gmkernels.ops.{g}" for g in GROUPS]
           + [f"gmkernels.reference.{g}" for g in GROUPS + ("random",)])


def _public_names():
    out = []
    for mod_name in MODULES:
        mod = importlib.import_module(mod_name)
        assert hasattr(mod, "__all__"), f"{mod_name} has no __all__: its public names are unknown"
        for name in mod.__all__:
            obj = getattr(mod, name)
            # constants (ORDERS, MAX_EXACT_D) carry no docstring of their own; the model packages
            # (flows, boltzmann, score) are checked by their own __all__ in their tests
            if inspect.isfunction(obj) or inspect.isclass(obj) or obj is gmkernels.random:
                out.append((f"{mod_name}.{name}", obj))
    return out


PUBLIC = _public_names()


def test_the_public_names_are_found():
    names = {n for n, _ in PUBLIC}
    for want in ("gmkernels.langevin_step", "gmkernels.bm_exact", "gmkernels.random.normal",
                 "gmkernels.random.philox4x32_10", "gmkernels.ops.bm.BMExact",
                 "gmkernels.reference.sde.langevin_step", "gmkernels.use_backend"):
        assert want in names, f"{want} not collected"


@pytest.mark.parametrize("name,obj", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_every_public_name_has_an_example(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert ">>>" in doc, f"{name} has no docstring example (a `>>>` line): {doc[:200]!r}"


# --------------------------------------------------------------------------------------------
# one exception type per kind of mistake

def _sym(D, dtype=torch.float32):
    A = torch.randn(D, D, generator=torch.Generator().manual_seed(0), dtype=dtype)
    return ((A + A.T) / 2).fill_diagonal_(0)


def _x():
    return torch.randn(6, 3, generator=torch.Generator().manual_seed(1))


# op name -> (call, the valid arguments as a dict). Each call takes those arguments by name.
OPS = {
    "langevin_step": (lambda a: gmkernels.langevin_step(a["x"], a["grad"], a["step"], a["noise"],
                                                        seed=a["seed"]),
                      lambda: dict(x=_x(), grad=_x(), step=0.1, noise=0.2, seed=0)),
    "langevin_step_": (lambda a: gmkernels.langevin_step_(a["x"], a["grad"], a["step"],
                                                          a["noise"], seed=a["seed"]),
                       lambda: dict(x=_x(), grad=_x(), step=0.1, noise=0.2, seed=0)),
    "euler_maruyama_step": (lambda a: gmkernels.euler_maruyama_step(a["x"], a["drift"], a["g"],
                                                                    a["dt"], seed=0),
                            lambda: dict(x=_x(), drift=_x(), g=1.0, dt=0.01)),
    "reverse_sde_step": (lambda a: gmkernels.reverse_sde_step(a["x"], a["score"], a["t"], a["dt"],
                                                              gmkernels.score.VPSDE(),
                                                              predictor=a["predictor"], seed=0),
                         lambda: dict(x=_x(), score=_x(), t=0.5, dt=0.01,
                                      predictor="euler_maruyama")),
    "langevin_corrector_step": (lambda a: gmkernels.langevin_corrector_step(
                                    a["x"], a["score"], a["snr"], alpha=a["alpha"], seed=0),
                                lambda: dict(x=_x(), score=_x(), snr=0.16, alpha=1.0)),
    "affine_noise_step": (lambda a: gmkernels.affine_noise_step(a["x"], a["e"], a["cx"], 0.1,
                                                                0.2, seed=0),
                          lambda: dict(x=_x(), e=_x(), cx=1.0)),
    "ddpm_step": (lambda a: gmkernels.ddpm_step(a["x_t"], a["eps_pred"], a["t"],
                                                gmkernels.score.DDPMSchedule.linear(10), seed=0),
                  lambda: dict(x_t=_x(), eps_pred=_x(), t=5)),
    "planar_flow": (lambda a: gmkernels.planar_flow(a["z"], a["u_hat"], a["w"], a["b"]),
                    lambda: dict(z=_x(), u_hat=torch.zeros(2, 3), w=torch.ones(2, 3),
                                 b=torch.zeros(2))),
    "planar_u_hat": (lambda a: gmkernels.planar_u_hat(a["u"], a["w"]),
                     lambda: dict(u=torch.ones(2, 3), w=torch.ones(2, 3))),
    "affine_coupling": (lambda a: gmkernels.affine_coupling(a["x"], a["s"], a["t"], a["mask"],
                                                            scale=a["scale"]),
                        lambda: dict(x=_x(), s=_x(), t=_x(), mask=torch.tensor([1, 0, 1]),
                                     scale="exp")),
    "rbm_gibbs": (lambda a: gmkernels.rbm_gibbs(a["v0"], a["W"], a["b"], a["c"], a["k"], seed=0),
                  lambda: dict(v0=torch.zeros(4, 5), W=torch.zeros(5, 3), b=torch.zeros(5),
                               c=torch.zeros(3), k=1)),
    "rbm_free_energy": (lambda a: gmkernels.rbm_free_energy(a["v"], a["W"], a["b"], a["c"]),
                        lambda: dict(v=torch.zeros(4, 5), W=torch.zeros(5, 3), b=torch.zeros(5),
                                     c=torch.zeros(3))),
    "rbm_log_z_exact": (lambda a: gmkernels.rbm_log_z_exact(a["W"], a["b"], a["c"]),
                        lambda: dict(W=torch.zeros(5, 3), b=torch.zeros(5), c=torch.zeros(3))),
    "rbm_ais": (lambda a: gmkernels.rbm_ais(a["W"], a["b"], a["c"], n_chains=a["n_chains"],
                                            betas=a["betas"], seed=0),
                lambda: dict(W=torch.zeros(5, 3), b=torch.zeros(5), c=torch.zeros(3), n_chains=4,
                             betas=torch.linspace(0, 1, 4, dtype=torch.float64))),
    "bm_gibbs": (lambda a: gmkernels.bm_gibbs(a["y"], a["W"], a["b"], a["n_sweeps"],
                                              beta=a["beta"], order=a["order"], seed=a["seed"]),
                 lambda: dict(y=torch.ones(4, 5), W=_sym(5), b=torch.zeros(5), n_sweeps=2,
                              beta=1.0, order="sequential", seed=0)),
    "bm_exact": (lambda a: gmkernels.bm_exact(a["W"], a["b"], beta=a["beta"]),
                 lambda: dict(W=_sym(4), b=torch.zeros(4), beta=1.0)),
    "random.normal": (lambda a: gmkernels.random.normal(a["shape"], seed=a["seed"],
                                                        sample_offset=a["sample_offset"],
                                                        dtype=a["dtype"]),
                      lambda: dict(shape=(4, 3), seed=0, sample_offset=0, dtype=torch.float32)),
    "random.uniform": (lambda a: gmkernels.random.uniform(a["shape"], seed=a["seed"]),
                       lambda: dict(shape=(4, 3), seed=0)),
    "random.uint32": (lambda a: gmkernels.random.uint32(a["shape"], seed=0, offset=a["offset"]),
                      lambda: dict(shape=(4, 3), offset=0)),
    "random.rademacher": (lambda a: gmkernels.random.rademacher(a["shape"], seed=0,
                                                                dtype=a["dtype"]),
                          lambda: dict(shape=(4, 3), dtype=torch.float32)),
    "random.bernoulli": (lambda a: gmkernels.random.bernoulli(a["p"], seed=a["seed"]),
                         lambda: dict(p=torch.full((4, 3), 0.5), seed=0)),
}

NAN = float("nan")

# (op, the argument that is wrong, its wrong value (a function of the valid arguments), the
# exception). Bad values: out of range, wrong shape, not finite, the data domain; bad types: a
# numpy array, a string, an integer dtype, a float where an int belongs.
MISTAKES = [
    ("langevin_step", "step_size", lambda a: dict(step=-0.1), ValueError),
    ("langevin_step", "noise_scale", lambda a: dict(noise=torch.tensor([0.1, -1, 0, 0, 0, 0.])), ValueError),
    ("langevin_step", "grad", lambda a: dict(grad=a["grad"][:, :2]), ValueError),
    ("langevin_step", "seed", lambda a: dict(seed=-1), ValueError),
    ("langevin_step", "x", lambda a: dict(x=a["x"].numpy()), TypeError),
    ("langevin_step", "step_size", lambda a: dict(step="0.1"), TypeError),
    ("langevin_step", "seed", lambda a: dict(seed=1.5), TypeError),
    ("langevin_step", "x", lambda a: dict(x=a["x"].long(), grad=a["grad"].long()), TypeError),
    ("langevin_step_", "step_size", lambda a: dict(step=NAN), ValueError),
    ("langevin_step_", "grad", lambda a: dict(grad=a["grad"].double()), TypeError),
    ("euler_maruyama_step", "dt", lambda a: dict(dt=0.0), ValueError),
    ("euler_maruyama_step", "diffusion", lambda a: dict(g=torch.full((6,), NAN)), ValueError),
    ("euler_maruyama_step", "drift", lambda a: dict(drift=a["drift"].tolist()), TypeError),
    ("euler_maruyama_step", "dt", lambda a: dict(dt="0.01"), TypeError),
    ("reverse_sde_step", "t", lambda a: dict(t=1.5), ValueError),
    ("reverse_sde_step", "predictor", lambda a: dict(predictor="heun"), ValueError),
    ("reverse_sde_step", "score", lambda a: dict(score=a["score"].numpy()), TypeError),
    ("langevin_corrector_step", "snr", lambda a: dict(snr=0.0), ValueError),
    ("langevin_corrector_step", "alpha", lambda a: dict(alpha=torch.full((6,), -1.0)), ValueError),
    ("langevin_corrector_step", "snr", lambda a: dict(snr=None), TypeError),
    ("affine_noise_step", "cx", lambda a: dict(cx=float("inf")), ValueError),
    ("affine_noise_step", "e", lambda a: dict(e=a["e"].numpy()), TypeError),
    ("ddpm_step", "t", lambda a: dict(t=10), ValueError),
    ("ddpm_step", "t", lambda a: dict(t=2.5), TypeError),
    ("ddpm_step", "eps_pred", lambda a: dict(eps_pred=a["eps_pred"][:3]), ValueError),
    ("planar_flow", "b", lambda a: dict(b=torch.zeros(3)), ValueError),
    ("planar_flow", "z", lambda a: dict(z=a["z"].numpy()), TypeError),
    ("planar_flow", "w", lambda a: dict(w=a["w"].double()), TypeError),
    ("planar_u_hat", "w", lambda a: dict(w=torch.ones(2, 4)), ValueError),
    ("planar_u_hat", "u", lambda a: dict(u=a["u"].numpy()), TypeError),
    ("affine_coupling", "mask", lambda a: dict(mask=torch.tensor([1, 2, 0])), ValueError),
    ("affine_coupling", "scale", lambda a: dict(scale="tanh"), ValueError),
    ("affine_coupling", "s", lambda a: dict(s=a["s"].numpy()), TypeError),
    ("affine_coupling", "mask", lambda a: dict(mask="0101"), TypeError),
    ("rbm_gibbs", "k", lambda a: dict(k=-1), ValueError),
    ("rbm_gibbs", "v0", lambda a: dict(v0=torch.zeros(4, 6)), ValueError),
    ("rbm_gibbs", "k", lambda a: dict(k=1.0), TypeError),
    ("rbm_gibbs", "W", lambda a: dict(W=a["W"].long()), TypeError),
    ("rbm_free_energy", "c", lambda a: dict(c=torch.zeros(4)), ValueError),
    ("rbm_free_energy", "v", lambda a: dict(v=a["v"].numpy()), TypeError),
    ("rbm_log_z_exact", "b", lambda a: dict(b=a["b"].double()), TypeError),
    ("rbm_log_z_exact", "W", lambda a: dict(W=torch.zeros(5)), ValueError),
    ("rbm_ais", "betas", lambda a: dict(betas=torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)), ValueError),
    ("rbm_ais", "n_chains", lambda a: dict(n_chains=1), ValueError),
    ("rbm_ais", "n_chains", lambda a: dict(n_chains="4"), TypeError),
    # the findings: bm_gibbs raised RuntimeError for these three where every other op raised
    # ValueError for a bad value
    ("bm_gibbs", "W", lambda a: dict(W=a["W"] + torch.triu(torch.ones(5, 5), 1)), ValueError),
    ("bm_gibbs", "W", lambda a: dict(W=a["W"] + torch.eye(5)), ValueError),
    ("bm_gibbs", "y", lambda a: dict(y=a["y"] * 0.5), ValueError),
    ("bm_gibbs", "y", lambda a: dict(y=torch.zeros(4, 5)), ValueError),
    ("bm_gibbs", "W", lambda a: dict(W=a["W"].where(a["W"] == 0, NAN)), ValueError),
    ("bm_gibbs", "b", lambda a: dict(b=torch.full((5,), NAN)), ValueError),
    ("bm_gibbs", "beta", lambda a: dict(beta=-1.0), ValueError),
    ("bm_gibbs", "order", lambda a: dict(order="diagonal"), ValueError),
    ("bm_gibbs", "W", lambda a: dict(W=torch.zeros(4, 4)), ValueError),
    ("bm_gibbs", "y", lambda a: dict(y=a["y"].long()), TypeError),
    ("bm_gibbs", "y", lambda a: dict(y=a["y"].numpy()), TypeError),
    ("bm_gibbs", "b", lambda a: dict(b=a["b"].double()), TypeError),
    ("bm_gibbs", "n_sweeps", lambda a: dict(n_sweeps=2.0), TypeError),
    ("bm_exact", "W", lambda a: dict(W=a["W"] + torch.eye(4)), ValueError),
    ("bm_exact", "W", lambda a: dict(W=a["W"] + torch.triu(torch.ones(4, 4), 1)), ValueError),
    ("bm_exact", "beta", lambda a: dict(beta=-1.0), ValueError),
    ("bm_exact", "W", lambda a: dict(W=a["W"].numpy()), TypeError),
    ("bm_exact", "beta", lambda a: dict(beta="hot"), TypeError),
    ("random.normal", "shape", lambda a: dict(shape=(4, -3)), ValueError),
    ("random.normal", "sample_offset", lambda a: dict(sample_offset=2 ** 32), ValueError),
    ("random.normal", "dtype", lambda a: dict(dtype=torch.int32), TypeError),
    ("random.normal", "shape", lambda a: dict(shape="4x3"), TypeError),
    ("random.uniform", "seed", lambda a: dict(seed=2 ** 64), ValueError),
    ("random.uniform", "seed", lambda a: dict(seed="0"), TypeError),
    ("random.uint32", "offset", lambda a: dict(offset=-1), ValueError),
    ("random.uint32", "offset", lambda a: dict(offset=0.5), TypeError),
    ("random.rademacher", "shape", lambda a: dict(shape=(-1,)), ValueError),
    ("random.rademacher", "dtype", lambda a: dict(dtype="float32"), TypeError),
    ("random.bernoulli", "p", lambda a: dict(p=a["p"].numpy()), TypeError),
    ("random.bernoulli", "seed", lambda a: dict(seed=-5), ValueError),
]

RUN_ON = sorted(set(BACKENDS) | {"reference"})


def test_every_public_op_has_a_value_and_a_type_mistake():
    """The table covers every op of the public API with at least one ValueError and one
    TypeError case: a new op without its row fails here."""
    public_ops = {n for n in gmkernels.__all__ if inspect.isfunction(getattr(gmkernels, n))}
    public_ops -= {"build_info", "extension_available", "use_backend"}
    public_ops |= {f"random.{n}" for n in ("normal", "uniform", "uint32", "rademacher", "bernoulli")}
    assert public_ops == set(OPS), (sorted(public_ops - set(OPS)), sorted(set(OPS) - public_ops))
    for op in OPS:
        kinds = {exc for o, _, _, exc in MISTAKES if o == op}
        assert kinds == {ValueError, TypeError}, f"{op}: the table has {kinds}"


@pytest.mark.parametrize("backend_name", RUN_ON)
@pytest.mark.parametrize("op,arg,change,exc", MISTAKES,
                         ids=[f"{o}-{a}-{e.__name__}-{i}" for i, (o, a, _, e) in enumerate(MISTAKES)])
def test_one_exception_type_per_kind_of_mistake(op, arg, change, exc, backend_name):
    call, valid = OPS[op]
    args = valid()
    call(args)  # the valid call runs (so the mistake below is what raises)
    args = valid()
    args.update(change(args))
    prefix = re.escape(f"gmkernels.{op}: ")
    with gmkernels.use_backend(backend_name), pytest.raises(Exception) as info:
        call(args)
    err = info.value
    assert type(err) is exc, f"{op} with a bad {arg} raised {type(err).__name__}, not {exc.__name__}: {err}"
    msg = str(err)
    assert re.match(prefix, msg), f"{op}: the message does not start with the op's name: {msg}"
    assert re.search(rf"\b{re.escape(arg)}\b.* must ", msg) and "got" in msg, (
        f"{op}: the message does not say what {arg} must be and what it got: {msg}")
