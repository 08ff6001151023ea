"""CPU time per site update of gmkernels.bm_gibbs at 1 thread (robust to a loaded machine):
the marginal cost of n extra sweeps (kernel only: (t(1 + n) - t(1)) / (B D n)) and the cost of a
whole call of one sweep at B = 1024 (value checks, the field GEMM and the sweep).
    PYTHONPATH=$PWD python benchmarks/micro/bm_cpu_time.py"""
import time

import torch

import gmkernels

torch.set_num_threads(1)


def setup(B, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, D, generator=g) / D ** 0.5
    W = (W + W.T) / 2
    W.fill_diagonal_(0)
    b = torch.zeros(D)
    y = torch.where(torch.rand(B, D, generator=g) < 0.5, 1.0, -1.0)
    return gmkernels.bm_gibbs(y, W, b, 3, seed=1), W, b  # a few sweeps into equilibrium


def cpu(f):
    t0 = time.process_time()
    f()
    return time.process_time() - t0


for D, n in ((256, 40), (1024, 8)):
    y, W, b = setup(64, D)
    best = min(cpu(lambda: gmkernels.bm_gibbs(y, W, b, 1 + n, seed=3))
               - cpu(lambda: gmkernels.bm_gibbs(y, W, b, 1, seed=3)) for _ in range(3))
    print(f"D={D} B=64 beta=1: kernel {best / (64 * D * n) * 1e9:.1f} ns CPU per site update")
y, W, b = setup(1024, 256)
t = min(cpu(lambda: gmkernels.bm_gibbs(y, W, b, 1, seed=3)) for _ in range(3))
t0 = min(cpu(lambda: gmkernels.bm_gibbs(y, W, b, 0, seed=3)) for _ in range(3))
print(f"D=256 B=1024, one call of 1 sweep: {t * 1e3:.2f} ms CPU ({t0 * 1e3:.2f} ms of it without "
      f"the sweep), {t / (1024 * 256) * 1e9:.1f} ns per site update")
