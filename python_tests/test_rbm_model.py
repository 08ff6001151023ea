"""gmkernels.boltzmann.RBM: training by CD / PCD on data from a known RBM, likelihoods against
enumeration, pseudo-likelihood against brute force, save / load."""

import itertools

import pytest
import torch

from gmkernels.boltzmann import RBM
from gmkernels.reference import rbm as ref


def all_states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def teacher(seed=0):
    g = torch.Generator().manual_seed(seed)
    t = RBM(6, 4, dtype=torch.float64)
    with torch.no_grad():
        t.W.copy_(torch.randn(6, 4, generator=g, dtype=torch.float64) * 1.5)
        t.b.copy_(torch.randn(6, generator=g, dtype=torch.float64) * 0.5)
        t.c.copy_(torch.randn(4, generator=g, dtype=torch.float64) * 0.5)
    return t


def test_exact_log_likelihood_normalized():
    t = teacher()
    ll = t.log_likelihood(all_states(6), method="exact")
    assert abs(torch.logsumexp(ll, 0).item()) < 1e-10


@pytest.mark.parametrize("persistent", [True, False])
def test_fit_recovers_teacher_likelihood(persistent):
    """Student trained on 4000 exact samples of a 6x4 teacher: its average exact test
    log-likelihood ends within 0.1 nats of the teacher's own (the entropy of the data; the
    sampling error of a 4000-sample average is ~0.03 nats) and far above where it started."""
    t = teacher()
    V = all_states(6)
    p = torch.exp(t.log_likelihood(V, method="exact"))
    g = torch.Generator().manual_seed(1)
    idx = torch.multinomial(p, 8000, replacement=True, generator=g)
    train, test = V[idx[:4000]], V[idx[4000:]]
    s = RBM(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ll0 = s.log_likelihood(test, method="exact").mean().item()
    s.fit(train, epochs=60, lr=0.05, k=5 if persistent else 1, persistent=persistent,
          batch_size=100, momentum=0.5, progress=False, seed=3)
    ll = s.log_likelihood(test, method="exact").mean().item()
    ll_t = t.log_likelihood(test, method="exact").mean().item()
    assert ll > ll0 + 0.5 and ll > ll_t - 0.1, (ll0, ll, ll_t)


def test_pseudo_likelihood_brute_force():
    t = teacher(3)
    v = all_states(6)[::5]
    got = t.pseudo_likelihood(v, chunk=4)
    W, b, c = t.W.detach(), t.b.detach(), t.c.detach()
    want = torch.zeros(v.shape[0], dtype=torch.float64)
    for i in range(6):
        v1, v0 = v.clone(), v.clone()
        v1[:, i], v0[:, i] = 1, 0
        f1, f0 = ref.rbm_free_energy(v1, W, b, c), ref.rbm_free_energy(v0, W, b, c)
        logp1 = -torch.logaddexp(torch.zeros_like(f1), f1 - f0)  # log σ(F0 - F1)
        logp0 = -torch.logaddexp(torch.zeros_like(f1), f0 - f1)
        want += torch.where(v[:, i] == 1, logp1, logp0)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_ais_log_partition_close_to_exact():
    t = teacher(4)
    lz_ais, se = t.log_partition("ais", n_chains=100, n_betas=2000, seed=0)
    lz, _ = t.log_partition("exact")
    assert abs(lz_ais - lz) < 3 * se + 0.02, (lz_ais, se, lz)


def test_sample_and_save_load(tmp_path):
    t = teacher(5)
    torch.manual_seed(0)
    s1 = t.sample(50, k=20)
    torch.manual_seed(0)
    s2 = t.sample(50, k=20)
    assert s1.shape == (50, 6) and torch.equal(s1, s2) and set(s1.unique().tolist()) <= {0.0, 1.0}
    path = tmp_path / "rbm.pt"
    t.save(path)
    u = RBM.load(path)
    for name, tensor in t.state_dict().items():
        assert torch.equal(tensor, u.state_dict()[name]), name
    v = all_states(6)
    assert torch.equal(t.free_energy(v), u.free_energy(v))


def test_fit_bad_input():
    s = RBM(6, 3)
    with pytest.raises(ValueError, match="data must have shape"):
        s.fit(torch.zeros(10, 5), epochs=1, progress=False)
    with pytest.raises(ValueError, match="k must be >= 1"):
        s.fit(torch.zeros(10, 6), epochs=1, k=0, progress=False)
    with pytest.raises(ValueError, match="method"):
        s.log_likelihood(torch.zeros(2, 6), method="magic")
