"""Determinism and thread safety: the same seed gives bit-identical results

* across repeated runs,
* across intra-op thread counts (``torch.set_num_threads(1)`` against 2),
* between a sequential run and 4 Python threads running the same calls at once,

for one op of each group (random, sde, planar, coupling, rbm, bm) and for the models'
samplers; and ``use_backend`` is thread-local (it does not leak into another thread).

Every comparison is ``torch.equal`` through ``assert_equal``, which prints the first mismatch;
``test_the_comparisons_can_fail`` shows that another seed does give another result, so an
equality here is not vacuous. Inputs are large enough that the CPU kernels split their rows
over more than one thread (at::parallel_for's grain is in the thousands of elements).
"""

from __future__ import annotations

import threading

import pytest
import torch

import gmkernels
from gmkernels import _backend, score
from gmkernels.boltzmann import RBM, BoltzmannMachine
from gmkernels.flows import PlanarFlow, RealNVP

from _helpers import assert_equal


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _sym(D, seed=0):
    A = torch.randn(D, D, generator=_g(seed)) / D ** 0.5
    return ((A + A.T) / 2).fill_diagonal_(0)


# inputs built once (the calls below only read them)
X = torch.randn(2048, 64, generator=_g(1))
G = torch.randn(2048, 64, generator=_g(2))
Z = torch.randn(4096, 16, generator=_g(3))
U_HAT = gmkernels.planar_u_hat(torch.randn(8, 16, generator=_g(4)), torch.randn(8, 16, generator=_g(5)))
W_PL = torch.randn(8, 16, generator=_g(5))
B_PL = torch.randn(8, generator=_g(6))
S, T = torch.randn(2048, 64, generator=_g(7)), torch.randn(2048, 64, generator=_g(8))
MASK = torch.arange(64) % 2 == 0
V0 = (torch.rand(1024, 64, generator=_g(9)) < 0.5).double()
W_RBM = torch.randn(64, 32, generator=_g(10), dtype=torch.float64) * 0.1
B_RBM, C_RBM = torch.zeros(64, dtype=torch.float64), torch.zeros(32, dtype=torch.float64)
Y0 = torch.where(torch.rand(512, 32, generator=_g(11)) < 0.5, 1.0, -1.0)
W_BM = _sym(32, 12)


def _rbm():
    return RBM(16, 8, init_std=0.5, generator=_g(13))


def _bm():
    m = BoltzmannMachine(12)
    with torch.no_grad():
        m.W.copy_(_sym(12, 14))
    return m


def _planar():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(15)
        return PlanarFlow(16, 8, init_scale=0.5)


def _nvp():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(16)
        f = RealNVP(16, 4, 32)
        for p in f.parameters():
            torch.nn.init.normal_(p, std=0.2)
        return f


# The flows initialize from torch's global generator, which threads share: build them once
# (sampling only reads them). RBM and BoltzmannMachine are built per call from their own seeds.
PLANAR, NVP = _planar(), _nvp()

# name -> f(seed) -> a tensor or a tuple of tensors
CALLS = {
    "random.normal": lambda s: gmkernels.random.normal((4096, 64), seed=s, offset=3),
    "langevin_step": lambda s: gmkernels.langevin_step(X, G, 0.01, 0.1, seed=s, offset=1),
    "planar_flow": lambda s: gmkernels.planar_flow(Z + s, U_HAT, W_PL, B_PL),
    "affine_coupling": lambda s: gmkernels.affine_coupling(X, S * (1 + s % 7) / 8, T, MASK),
    "rbm_gibbs": lambda s: gmkernels.rbm_gibbs(V0, W_RBM, B_RBM, C_RBM, 5, seed=s),
    "bm_gibbs": lambda s: gmkernels.bm_gibbs(Y0, W_BM, torch.zeros(32), 5, seed=s),
    "RBM.sample": lambda s: _rbm().sample(512, k=20, seed=s),
    "BoltzmannMachine.sample": lambda s: _bm().sample(512, n_sweeps=10, seed=s),
    "PlanarFlow.sample": lambda s: PLANAR.sample_with_log_prob(1024, generator=_g(s)),
    "RealNVP.sample": lambda s: NVP.sample(1024, generator=_g(s)),
    "score.langevin_sample": lambda s: score.langevin_sample(lambda x: -x, X, 10, 0.01, seed=s),
    "score.sample": lambda s: score.sample(lambda x, t: -x, score.VPSDE(), (1024, 8), n_steps=10,
                                           corrector="langevin", seed=s),
    "score.ddpm_sample": lambda s: score.ddpm_sample(lambda x, t: -0.1 * x,
                                                     score.DDPMSchedule.linear(20), (1024, 8),
                                                     seed=s),
}
NAMES = sorted(CALLS)


def _tensors(out):
    return [out] if isinstance(out, torch.Tensor) else [t for t in out]


def _assert_same(got, want, what):
    g, w = _tensors(got), _tensors(want)
    assert len(g) == len(w), f"{what}: {len(g)} outputs, want {len(w)}"
    for i, (a, b) in enumerate(zip(g, w)):
        assert_equal(a, b, what=f"{what}, output {i}")


@pytest.fixture
def threads():
    """Restores the intra-op thread count after the test."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", NAMES)
def test_repeated_runs_are_identical(name):
    f = CALLS[name]
    _assert_same(f(7), f(7), f"{name}: a second run with seed 7")


@pytest.mark.parametrize("name", NAMES)
def test_thread_count_does_not_change_the_result(name, threads):
    f = CALLS[name]
    torch.set_num_threads(1)
    one = f(3)
    torch.set_num_threads(2)
    two = f(3)
    _assert_same(two, one, f"{name}: 2 intra-op threads against 1")


@pytest.mark.parametrize("name", NAMES)
def test_four_python_threads_match_the_sequential_run(name):
    """Four threads call the entry point at once (a barrier releases them together), each on
    its own seeds; every result equals the sequential run of the same seed."""
    f = CALLS[name]
    seeds = [[10 * t + i for i in range(2)] for t in range(4)]
    want = {s: f(s) for row in seeds for s in row}
    got, errors = {}, []
    barrier = threading.Barrier(4)

    def work(my_seeds):
        try:
            barrier.wait(timeout=60)
            for s in my_seeds:
                got[s] = f(s)
        except Exception as e:  # noqa: BLE001  (reported below, with the thread's seeds)
            errors.append((my_seeds, repr(e)))

    pool = [threading.Thread(target=work, args=(row,)) for row in seeds]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=300)
    assert not errors, errors
    assert sorted(got) == sorted(want), (sorted(got), sorted(want))
    for s in want:
        _assert_same(got[s], want[s], f"{name}: seed {s} in a thread against sequentially")


def test_the_comparisons_can_fail():
    """Another seed gives another result for every stochastic entry point (and other inputs
    for the deterministic flows), so the equalities above are not vacuous."""
    for name in NAMES:
        a, b = _tensors(CALLS[name](1)), _tensors(CALLS[name](2))
        assert any(not torch.equal(x, y) for x, y in zip(a, b)), f"{name}: seeds 1 and 2 agree"
        with pytest.raises(AssertionError, match="elements differ"):
            _assert_same(b, a, name)


# --------------------------------------------------------------------------------------------
# use_backend is thread-local

def test_use_backend_does_not_leak_between_threads():
    """Thread A holds use_backend("reference") while thread B runs: B sees the default choice
    (and gets the native result, bit for bit that of the main thread), A the reference; a
    thread started inside the main thread's block does not inherit it either."""
    cpu = torch.device("cpu")
    default = _backend.choose_backend("langevin_step", cpu)
    want = CALLS["langevin_step"](5)
    inside, seen = threading.Event(), {}
    done = threading.Event()

    def a():
        with gmkernels.use_backend("reference"):
            seen["a"] = _backend.choose_backend("langevin_step", cpu)
            inside.set()
            done.wait(timeout=60)
            seen["a_after"] = _backend.choose_backend("langevin_step", cpu)

    def b():
        inside.wait(timeout=60)
        seen["b"] = _backend.choose_backend("langevin_step", cpu)
        seen["b_out"] = CALLS["langevin_step"](5)
        done.set()

    ta, tb = threading.Thread(target=a), threading.Thread(target=b)
    ta.start(), tb.start()
    ta.join(timeout=120), tb.join(timeout=120)
    assert seen["a"] == seen["a_after"] == "reference", seen
    assert seen["b"] == default, (seen["b"], default)
    assert_equal(seen["b_out"], want, what="langevin_step in thread B while A used the reference")

    with gmkernels.use_backend("reference"):
        assert _backend.choose_backend("langevin_step", cpu) == "reference"
        child = {}
        t = threading.Thread(target=lambda: child.update(b=_backend.choose_backend("langevin_step", cpu)))
        t.start()
        t.join(timeout=60)
    assert child["b"] == default, child
    assert _backend.choose_backend("langevin_step", cpu) == default


# --------------------------------------------------------------------------------------------
# the models' seeds: fits are reproducible, whatever torch's global generator holds

def _bits(n, d, seed):
    return (torch.rand(n, d, generator=_g(seed)) < 0.5).float()


@pytest.mark.parametrize("model", ["RBM", "BoltzmannMachine"])
def test_fit_with_a_seed_ignores_the_global_generator(model):
    """fit(seed=s) twice, with torch's global generator in different states in between: the
    same parameters and chains (before, BoltzmannMachine.fit drew its chains' starts and its
    batches from the global generator)."""
    def fit(global_seed):
        torch.manual_seed(global_seed)
        if model == "RBM":
            m = _rbm()
            m.fit(_bits(64, 16, 0), epochs=2, batch_size=16, seed=3)
        else:
            m = _bm()
            m.fit(_bits(64, 12, 0) * 2 - 1, epochs=3, n_chains=32, batch_size=16, seed=3)
        return m.state_dict()

    a, b = fit(0), fit(1)
    for k in a:
        assert_equal(b[k], a[k], what=f"{model}.fit(seed=3) state {k!r} after another global seed")


@pytest.mark.parametrize("seed", [5, (1 << 63) + 5])
def test_second_rbm_fit_continues_the_stream_for_every_seed(seed):
    """A second fit(seed=None) continues the first fit's stream, also for a seed >= 2^63 (kept
    as a negative int64 in the buffer; before, its sign read as "not started" and the second
    fit drew a new seed and restarted at offset 0)."""
    data = _bits(64, 16, 1)
    m = _rbm()
    m.fit(data, epochs=1, batch_size=16, seed=seed)
    first = m.stream.clone()
    m.fit(data, epochs=1, batch_size=16)
    assert int(m.stream[0]) == int(first[0]), (m.stream, first)
    assert int(m.stream[1]) == 2 * int(first[1]), (m.stream, first)


def test_second_bm_fit_continues_the_stream_for_a_high_seed():
    data = _bits(64, 12, 2) * 2 - 1
    m = _bm()
    m.fit(data, epochs=1, n_chains=16, seed=(1 << 63) + 1)
    first = m.stream.clone()
    m.fit(data, epochs=1, n_chains=16)
    assert int(m.stream[0]) == int(first[0]) and int(m.stream[1]) == 2 * int(first[1]), (
        m.stream, first)


def test_bm_sample_with_a_seed_ignores_the_global_generator():
    torch.manual_seed(0)
    a = _bm().sample(256, n_sweeps=3, seed=4)
    torch.manual_seed(1)
    b = _bm().sample(256, n_sweeps=3, seed=4)
    assert_equal(b, a, what="BoltzmannMachine.sample(seed=4) after another global seed")
