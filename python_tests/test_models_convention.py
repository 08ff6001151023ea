"""One convention on every model: input checks in the ``Model.method: argument must be ...``
format, samplers under inference_mode, one progress-bar default, reprs with the
hyper-parameters, short result summaries, persistent state in state_dict, and a checked
docstring example on every public model class and method."""

import doctest
import inspect
import io

import pytest
import torch

import gmkernels
from gmkernels import score
from gmkernels.boltzmann import RBM, BoltzmannMachine
from gmkernels.flows import PlanarFlow, RealNVP
from gmkernels.score import annealed_langevin_sample, langevin_sample, sgld_sample


def _bits(n, d, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g) < 0.5).to(dtype)


def _spins(n, d, dtype=torch.float32, seed=0):
    return _bits(n, d, dtype, seed) * 2 - 1


# --------------------------------------------------------------------------------------------
# input checks: one row per public method that takes data. (call(model, x), model, a good x)

def _calls():
    pf, nvp, rbm, bm = PlanarFlow(2, 8), RealNVP(2, 4, 16), RBM(6, 4), BoltzmannMachine(5)
    return [
        ("PlanarFlow.forward", "z", lambda x: pf(x), torch.randn(4, 2)),
        ("PlanarFlow.log_prob", "x", lambda x: pf.log_prob(x), torch.randn(4, 2)),
        ("PlanarFlow.inverse", "x", lambda x: pf.inverse(x), torch.randn(4, 2)),
        ("RealNVP.forward", "x", lambda x: nvp(x), torch.randn(4, 2)),
        ("RealNVP.inverse", "z", lambda x: nvp.inverse(x), torch.randn(4, 2)),
        ("RealNVP.log_prob", "x", lambda x: nvp.log_prob(x), torch.randn(4, 2)),
        ("RBM.fit", "data", lambda x: rbm.fit(x, epochs=1, seed=0), _bits(8, 6)),
        ("RBM.free_energy", "v", lambda x: rbm.free_energy(x), _bits(4, 6)),
        ("RBM.hidden_probs", "v", lambda x: rbm.hidden_probs(x), _bits(4, 6)),
        ("RBM.log_likelihood", "v", lambda x: rbm.log_likelihood(x, method="exact"), _bits(4, 6)),
        ("RBM.pseudo_likelihood", "v", lambda x: rbm.pseudo_likelihood(x), _bits(4, 6)),
        ("RBM.sample", "init", lambda x: rbm.sample(x.shape[0] if hasattr(x, "shape") else 4, k=2,
                                                    init=x, seed=0), _bits(4, 6)),
        ("BoltzmannMachine.fit", "data", lambda x: bm.fit(x, epochs=1, n_chains=4, seed=0),
         _spins(8, 5)),
        ("BoltzmannMachine.energy", "y", lambda x: bm.energy(x), _spins(4, 5)),
        ("BoltzmannMachine.log_prob", "y", lambda x: bm.log_prob(x), _spins(4, 5)),
        ("BoltzmannMachine.sample", "init", lambda x: bm.sample(
            x.shape[0] if hasattr(x, "shape") else 4, 2, init=x, seed=0), _spins(4, 5)),
    ]


CALLS = _calls()
IDS = [c[0] for c in CALLS]


@pytest.mark.parametrize("op, name, call, good", CALLS, ids=IDS)
def test_good_input_runs(op, name, call, good):
    out = call(good)
    assert out is not None


@pytest.mark.parametrize("op, name, call, good", CALLS, ids=IDS)
def test_numpy_input_is_a_type_error(op, name, call, good):
    with pytest.raises(TypeError, match=rf"^{op}: {name} must be a tensor, got ndarray$"):
        call(good.numpy())


@pytest.mark.parametrize("op, name, call, good", CALLS, ids=IDS)
def test_wrong_feature_dim_names_the_model_dim(op, name, call, good):
    d = good.shape[1]
    bad = torch.cat([good, good[:, :1]], 1)
    with pytest.raises(ValueError, match=rf"^{op}: {name} must have shape \(B, {d}\), got "
                                         rf"\({good.shape[0]}, {d + 1}\)$"):
        call(bad)
    with pytest.raises(ValueError, match=rf"^{op}: {name} must have shape \(B, {d}\)"):
        call(good[0])                                   # a single row without the batch dim


@pytest.mark.parametrize("op, name, call, good", CALLS, ids=IDS)
def test_dtype_must_be_the_parameters(op, name, call, good):
    with pytest.raises(TypeError, match=rf"^{op}: {name} must have the dtype of .*\(torch.float32\), "
                                        r"got torch.float64$"):
        call(good.double())


@pytest.mark.parametrize("op, name, call, good", [c for c in CALLS if c[0].startswith(("RBM", "Boltz"))],
                         ids=[i for i in IDS if i.startswith(("RBM", "Boltz"))])
def test_data_domain(op, name, call, good):
    bad = good.clone()
    bad[0, 0] = 2.0 if op.startswith("RBM") else 0.0
    what = "0 or 1" if op == "RBM.pseudo_likelihood" else (
        "in \\[0, 1\\]" if op.startswith("RBM") else "-1 or \\+1")
    with pytest.raises(ValueError, match=rf"^{op}: every {name} must be {what}"):
        call(bad)


def test_rbm_probabilities_are_data_but_not_for_the_pseudo_likelihood():
    rbm = RBM(6, 4)
    p = torch.full((3, 6), 0.5)
    assert rbm.free_energy(p).shape == (3,)
    with pytest.raises(ValueError, match="RBM.pseudo_likelihood: every v must be 0 or 1"):
        rbm.pseudo_likelihood(p)


def test_planar_flow_messages_name_the_callers_arguments():
    flow = PlanarFlow(2, 8)
    x3 = torch.randn(5, 3)
    for call, op, name in ((lambda: flow(x3), "forward", "z"),
                           (lambda: flow.log_prob(x3), "log_prob", "x")):
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert msg == f"PlanarFlow.{op}: {name} must have shape (B, 2), got (5, 3)", msg
        assert "u_hat" not in msg
    amort = PlanarFlow(2, 3, amortized=True)
    params = torch.randn(5, PlanarFlow.num_params(2, 3))
    with pytest.raises(ValueError, match=r"PlanarFlow.forward: params must have shape .* = \(4, 15\)"):
        amort(torch.randn(4, 2), params)
    with pytest.raises(TypeError, match="PlanarFlow.forward: z must have the dtype of params"):
        amort(torch.randn(5, 2, dtype=torch.float64), params)
    with pytest.raises(ValueError, match="PlanarFlow.log_prob: params must be None"):
        flow.log_prob(torch.randn(4, 2), params)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: PlanarFlow(0, 2), ValueError, "PlanarFlow: dim must be >= 1, got 0"),
    (lambda: PlanarFlow(2.5, 2), TypeError, "PlanarFlow: dim must be an int, got float"),
    (lambda: RealNVP(2, 0, 8), ValueError, "RealNVP: n_layers must be >= 1, got 0"),
    (lambda: RealNVP(2, 2, 8, scale="tanh"), ValueError, "RealNVP: scale must be one of"),
    (lambda: RBM(0, 2), ValueError, "RBM: n_visible must be >= 1, got 0"),
    (lambda: RBM(3, 2, dtype=torch.float16), TypeError, "RBM: dtype must be float32 or float64"),
    (lambda: RBM(3, 2).fit(_bits(4, 3), lr=-1.0), ValueError, "RBM.fit: lr must be > 0"),
    (lambda: RBM(3, 2).fit(_bits(0, 3)), ValueError, "RBM.fit: data must have at least one row"),
    (lambda: RBM(3, 2).log_likelihood(_bits(2, 3), method="magic"), ValueError,
     "RBM.log_likelihood: method must be one of"),
    (lambda: RealNVP(2, 2, 8).sample(-1), ValueError, "RealNVP.sample: n must be >= 0"),
    (lambda: RBM(3, 2).sample(4, k=-1), ValueError, "RBM.sample: k must be >= 0, got -1"),
    (lambda: BoltzmannMachine(3).sample(4, 1.5), TypeError,
     "BoltzmannMachine.sample: n_sweeps must be an int, got float"),
    (lambda: BoltzmannMachine(3).fit(_spins(4, 3), epochs=0), ValueError,
     "BoltzmannMachine.fit: epochs must be >= 1, got 0"),
])
def test_constructor_and_argument_checks(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_score_matching_loss_type_errors():
    loss = score.denoising_score_matching_loss
    with pytest.raises(TypeError, match="denoising_score_matching_loss: score_fn must return a "
                                        "tensor, got float"):
        loss(lambda x, t: 1.0, torch.zeros(4, 2), score.VPSDE(), seed=0)
    with pytest.raises(TypeError, match="denoising_score_matching_loss: sigmas must be a "
                                        "floating-point tensor, got torch.int64"):
        loss(lambda x, s: x, torch.zeros(4, 2), torch.tensor([1, 2]), seed=0)


# --------------------------------------------------------------------------------------------
# samplers that need autograd

def _energy(x):
    return 0.5 * (x ** 2).sum(dim=1)


def test_sgld_under_inference_mode_matches_no_grad():
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = sgld_sample(_energy, x0, 5, 0.1, seed=1)
    with torch.inference_mode():
        got = sgld_sample(_energy, x0, 5, 0.1, seed=1)
        x0_inf = x0.clone()                                   # an inference tensor as x0
        got_inf, traj = sgld_sample(_energy, x0_inf, 5, 0.1, seed=1, return_trajectory=True)
    assert torch.equal(got, want) and torch.equal(got_inf, want) and torch.equal(traj[-1], want)
    assert not torch.equal(want, x0)


def test_sgld_names_inference_mode_when_the_energy_cannot_run_there():
    with torch.inference_mode():
        scale = torch.full((3,), 2.0)                         # an inference tensor in energy_fn
        with pytest.raises(RuntimeError, match=r"sgld_sample: energy_fn failed under "
                                               r"torch.inference_mode\(\)"):
            sgld_sample(lambda x: (scale * x * x).sum(1), torch.randn(4, 3), 2, 0.1, seed=0)


def test_sgld_energy_not_depending_on_x_is_a_value_error():
    with pytest.raises(ValueError, match="energy_fn must return a tensor computed from x"):
        sgld_sample(lambda x: _energy(x).detach(), torch.randn(4, 3), 2, 0.1, seed=0)


def test_score_samplers_run_under_inference_mode():
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    want = langevin_sample(lambda x: -x, x0, 4, 0.05, seed=0)
    with torch.inference_mode():
        got = langevin_sample(lambda x: -x, x0, 4, 0.05, seed=0)
        a = annealed_langevin_sample(lambda x, s: -x, x0, [1.0, 0.5], n_steps_each=2, seed=0)
    assert torch.equal(got, want) and a.shape == x0.shape


# --------------------------------------------------------------------------------------------
# one progress-bar default, documented

LOOPS = [RBM.fit, BoltzmannMachine.fit, score.langevin_sample, score.annealed_langevin_sample,
         score.sgld_sample, score.sample, score.ddpm_sample]


@pytest.mark.parametrize("fn", LOOPS, ids=lambda f: f.__qualname__)
def test_every_long_loop_is_quiet_by_default_and_says_so(fn):
    param = inspect.signature(fn).parameters["progress"]
    assert param.default is False, f"{fn.__qualname__}: progress defaults to {param.default!r}"
    doc = inspect.getdoc(fn)
    assert "progress" in doc and "default False" in doc.split("progress", 1)[1], doc


def test_rbm_fit_prints_nothing_by_default(capfd):
    RBM(6, 4).fit(_bits(32, 6), epochs=3, seed=0)
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)


# --------------------------------------------------------------------------------------------
# reprs and result summaries

@pytest.mark.parametrize("model, want", [
    (BoltzmannMachine(7), "d=7"),
    (BoltzmannMachine(7, dtype=torch.float64), "dtype=torch.float64"),
    (RBM(6, 4), "n_visible=6, n_hidden=4"),
    (PlanarFlow(2, 8), "dim=2, n_layers=8, amortized=False"),
    (RealNVP(3, 4, 16, clamp=None, scale="sigmoid"),
     "dim=3, n_layers=4, hidden=16, clamp=None, scale='sigmoid'"),
    (score.VPSDE(0.1, 20.0), "beta_min=0.1, beta_max=20.0"),
    (score.DDPMSchedule.linear(10), "T=10"),
])
def test_repr_shows_the_hyper_parameters(model, want):
    assert want in repr(model), repr(model)


def test_bm_exact_repr_is_a_short_summary():
    D = 12
    W = torch.randn(D, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.1
    W = (W + W.T) / 2
    W.fill_diagonal_(0)
    ex = gmkernels.bm_exact(W, torch.zeros(D, dtype=torch.float64))
    r = repr(ex)
    assert len(r) < 250, (len(r), r)
    assert r.startswith(f"BMExact(D={D}, log_z={float(ex.log_z):.6g}, ") and "(4096,)" in r, r
    assert ex.probs.shape == (4096,) and ex._fields[0] == "log_z"     # still the named tuple


# --------------------------------------------------------------------------------------------
# persistent state in state_dict

def test_rbm_chains_and_stream_live_in_the_state_dict():
    rbm = RBM(6, 4)
    rbm.fit(_bits(64, 6), epochs=2, batch_size=16, n_chains=10, seed=0)
    sd = rbm.state_dict()
    assert sd["chains"].shape == (10, 6) and torch.equal(sd["chains"], rbm.chains)
    assert int(sd["stream"][1]) == 2 * 4 * 2          # 2 epochs x 4 batches x 2k offsets
    fresh = RBM(6, 4)                                 # its chains buffer is (0, 6)
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.chains, rbm.chains) and torch.equal(fresh.stream, rbm.stream)


def test_reloaded_rbm_resumes_its_chains(tmp_path):
    """fit, save, load, fit again == fit, fit again: the reloaded model continues the same
    chains on the same stream, so both paths end bit for bit equal."""
    data = _bits(64, 6, seed=3)
    a = RBM(6, 4, generator=torch.Generator().manual_seed(1))
    a.fit(data, epochs=2, batch_size=16, seed=5)
    path = tmp_path / "rbm.pt"
    a.save(path)
    b = RBM.load(path)
    ha = a.fit(data, epochs=2, batch_size=16)
    hb = b.fit(data, epochs=2, batch_size=16)
    assert ha == hb
    for name, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[name]), name
    c = RBM.load(path)
    c.fit(data, epochs=2, batch_size=16, seed=5)      # a seed restarts the stream
    assert not torch.equal(c.chains, a.chains)


def test_rbm_second_fit_continues_the_stream():
    data = _bits(64, 6, seed=3)
    rbm = RBM(6, 4)
    rbm.fit(data, epochs=1, batch_size=16, seed=5)
    first = rbm.stream.clone()
    rbm.fit(data, epochs=1, batch_size=16)
    assert int(rbm.stream[0]) == int(first[0]) and int(rbm.stream[1]) == 2 * int(first[1])


def test_rbm_load_accepts_a_file_without_chains():
    rbm = RBM(4, 3)
    sd = {k: v for k, v in rbm.state_dict().items() if k not in ("chains", "stream")}
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    again = RBM.load(buf)
    assert again.chains.shape == (0, 4) and torch.equal(again.W, rbm.W)


# --------------------------------------------------------------------------------------------
# docstring examples (test_doctests.py runs them; this checks that they exist and check output)

def _public_api():
    objs = []
    classes = [PlanarFlow, RealNVP, RBM, BoltzmannMachine, score.VESDE, score.VPSDE,
               score.subVPSDE, score.DDPMSchedule]
    for cls in classes:
        objs.append((cls.__qualname__, cls))
        for klass in cls.__mro__:
            if not klass.__module__.startswith("gmkernels"):
                continue
            for name, v in vars(klass).items():
                if name.startswith("_") or name == "extra_repr" or isinstance(v, property):
                    continue
                if callable(v) or isinstance(v, (staticmethod, classmethod)):
                    objs.append((f"{cls.__qualname__}.{name}", getattr(cls, name)))
    for name in score.__all__:
        v = getattr(score, name)
        if inspect.isfunction(v):
            objs.append((f"gmkernels.score.{name}", v))
    return sorted(set(objs), key=lambda o: o[0])


@pytest.mark.parametrize("name, obj", _public_api(), ids=lambda o: o if isinstance(o, str) else "")
def test_every_public_model_name_has_a_checked_example(name, obj):
    doc = inspect.getdoc(obj) or ""
    examples = doctest.DocTestParser().get_examples(doc)
    assert examples, f"{name} has no docstring example"
    assert any(e.want.strip() for e in examples), f"{name}'s example checks no output"

