"""Exact pseudo-likelihood (mean over the binarised digits) of RBM.fit against scikit-learn's
BernoulliRBM at the same settings (64 hidden, PCD-1, lr 0.05, batch 20, 20 epochs), 5 seeds;
scikit-learn's weights are loaded into an RBM so both are scored by RBM.pseudo_likelihood
(benchmarks/NOTES.md, issue 10 part 2).

Usage: PYTHONPATH=$PWD python benchmarks/micro/rbm_pl_vs_sklearn.py
"""
import torch, numpy as np
from sklearn.datasets import load_digits
from sklearn.neural_network import BernoulliRBM
from gmkernels.boltzmann import RBM
torch.set_num_threads(1)
X = (load_digits().data / 16.0 > 0.5).astype("float32"); data = torch.from_numpy(X)
res = {"gmk": [], "skl": []}
for s in range(5):
    r = RBM(64, 64, generator=torch.Generator().manual_seed(s))
    r.fit(data, epochs=20, lr=0.05, k=1, persistent=True, batch_size=20, momentum=0.0, seed=s)
    res["gmk"].append(float(r.pseudo_likelihood(data).mean()))
    sk = BernoulliRBM(n_components=64, learning_rate=0.05, batch_size=20, n_iter=20, random_state=s).fit(X)
    q = RBM(64, 64)
    with torch.no_grad():
        q.W.copy_(torch.from_numpy(sk.components_.T)); q.b.copy_(torch.from_numpy(sk.intercept_visible_)); q.c.copy_(torch.from_numpy(sk.intercept_hidden_))
    res["skl"].append(float(q.pseudo_likelihood(data).mean()))
for k, v in res.items(): print(k, np.round(v, 2), "mean %.2f sd %.2f" % (np.mean(v), np.std(v, ddof=1)))
