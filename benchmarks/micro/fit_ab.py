"""RBM.fit and BoltzmannMachine.fit (one fused op call per epoch) against the loops they
replaced (the unfused loops of python_tests/test_{rbm,bm}_fit_epoch.py, which call rbm_gibbs /
bm_gibbs and ~20 ATen ops from Python per batch) and scikit-learn's BernoulliRBM, alternating,
median of 7 (benchmarks/NOTES.md, issue 10 part 2).

Usage: PYTHONPATH=$PWD python benchmarks/micro/fit_ab.py
"""
import os, sys, time, statistics, torch
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python_tests"))
from test_rbm_fit_epoch import _fit_unfused
from test_bm_fit_epoch import _fit_unfused as _bm_unfused
from sklearn.datasets import load_digits
from sklearn.neural_network import BernoulliRBM
from gmkernels.boltzmann import RBM, BoltzmannMachine
torch.set_num_threads(1)
X = (load_digits().data / 16.0 > 0.5).astype("float32"); data = torch.from_numpy(X)
kw = dict(epochs=20, lr=0.05, k=1, persistent=True, batch_size=20, weight_decay=0.0, momentum=0.0)
def new(): RBM(64, 64, generator=torch.Generator().manual_seed(0)).fit(data, seed=1, **kw)
def old(): _fit_unfused(RBM(64, 64, generator=torch.Generator().manual_seed(0)), data, seed=1, **kw)
def skl(): BernoulliRBM(n_components=64, learning_rate=0.05, batch_size=20, n_iter=20, random_state=0).fit(X)
spins = data * 2 - 1
bkw = dict(epochs=5, lr=0.05, n_chains=100, n_sweeps=1, batch_size=100, weight_decay=0.0, momentum=0.5)
def bnew(): BoltzmannMachine(64).fit(spins, seed=1, **bkw)
def bold(): _bm_unfused(BoltzmannMachine(64), spins, seed=1, **bkw)
fs = dict(rbm_fused=new, rbm_unfused=old, sklearn=skl, bm_fused=bnew, bm_unfused=bold)
ts = {k: [] for k in fs}
for f in fs.values(): f()
for _ in range(7):
    for k, f in fs.items():
        t = time.perf_counter(); f(); ts[k].append(time.perf_counter() - t)
med = {k: statistics.median(v) * 1e3 for k, v in ts.items()}
for k, v in med.items(): print(f"{k:12s} {v:8.1f} ms")
print(f"RBM: unfused/fused {med['rbm_unfused']/med['rbm_fused']:.2f}x, sklearn/fused {med['sklearn']/med['rbm_fused']:.2f}x, sklearn/unfused {med['sklearn']/med['rbm_unfused']:.2f}x")
print(f"BM: unfused/fused {med['bm_unfused']/med['bm_fused']:.2f}x")
