"""Min-of-N timing of gmkernels.planar_flow (CPU, forward + logdet) vs the eager reference.

Usage: PYTHONPATH=$PWD python benchmarks/micro/planar_cpu_time.py [--threads 1] [--runs 7]
Shared parameters, (B, K, D) = (65536, 32, 16) float32 by default; prints the min wall time
and the process CPU time of the min run for each provider, and the ratio.
"""
import argparse
import time

import torch

import gmkernels
from gmkernels.reference.planar import planar_flow as ref_planar_flow


def timeit(fn, runs):
    best = (float("inf"), 0.0)
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        t1, c1 = time.perf_counter(), time.process_time()
        best = min(best, (t1 - t0, c1 - c0))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--B", type=int, default=65536)
    ap.add_argument("--K", type=int, default=32)
    ap.add_argument("--D", type=int, default=16)
    ap.add_argument("--bwd", action="store_true", help="also time forward+backward")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    B, K, D = args.B, args.K, args.D
    z = torch.randn(B, D, generator=g)
    u = torch.randn(K, D, generator=g) * 0.5
    w = torch.randn(K, D, generator=g) * 0.5
    b = torch.randn(K, generator=g) * 0.5
    u_hat = gmkernels.planar_u_hat(u, w)
    gm = lambda: gmkernels.planar_flow(z, u_hat, w, b)
    ref = lambda: ref_planar_flow(z, u_hat, w, b)
    gm(); ref()
    tg, cg = timeit(gm, args.runs)
    te, ce = timeit(ref, args.runs)
    print(f"fwd ({B},{K},{D}) f32 threads={args.threads}: gmk {tg*1e3:.2f} ms (cpu {cg*1e3:.1f}) "
          f"eager {te*1e3:.2f} ms (cpu {ce*1e3:.1f})  eager/gmk {te/tg:.2f}x")
    if args.bwd:
        ps = [t.clone().requires_grad_() for t in (z, u_hat, w, b)]

        def fb(f):
            x, ld = f(*ps)
            (x.sum() + ld.sum()).backward()

        gmb = lambda: fb(gmkernels.planar_flow)
        refb = lambda: fb(ref_planar_flow)
        gmb(); refb()
        tg, _ = timeit(gmb, args.runs)
        te, _ = timeit(refb, max(3, args.runs // 2))
        print(f"fwd+bwd: gmk {tg*1e3:.2f} ms eager {te*1e3:.2f} ms  eager/gmk {te/tg:.2f}x")


if __name__ == "__main__":
    main()
