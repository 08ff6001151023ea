"""The trace bench case (gmkernels/bench/cases_trace.py) timed interleaved: each round calls
every variant once, so a load spike on a shared machine hits all of them alike; prints the
minimum and the median per variant and the loop / batched ratio of the minima.

    PYTHONPATH=. python benchmarks/micro/trace_interleaved.py [threads] [B] [rounds]

Variants: ``loop`` (FFJORD's Python loop over the K probes, the case's eager provider),
``vjp`` (gmkernels.trace.divergence, the case's gmkernels provider), ``jvp`` (the same with
mode="jvp"), each with create_graph False and True.
"""

import dataclasses
import sys
import time

import torch

import gmkernels
from gmkernels.bench import cases_trace as ct
from gmkernels.bench import registry


def main(threads=1, B=1024, rounds=20):
    torch.set_num_threads(threads)
    base = next(c for c in registry.all_cases() if c.family == "trace")
    case = dataclasses.replace(base, shape=(B,) + base.shape[1:])
    inp = ct._setup(case, torch.device("cpu"))
    net, x, K = inp["net"], inp["x"], inp["K"]
    for cg in (False, True):
        fs = {"loop": ct._loop(cg)(inp), "vjp": ct._batched(cg)(inp),
              "jvp": lambda cg=cg: gmkernels.trace.divergence(net, x, n_probes=K, seed=0,
                                                              create_graph=cg, mode="jvp")}
        for f in fs.values():
            f()
        ts = {k: [] for k in fs}
        for _ in range(rounds):
            for k, f in fs.items():
                t = time.perf_counter()
                f()
                ts[k].append(time.perf_counter() - t)
        mins = {k: min(v) * 1e3 for k, v in ts.items()}
        meds = {k: sorted(v)[len(v) // 2] * 1e3 for k, v in ts.items()}
        print(f"shape {case.shape} threads={threads} create_graph={cg}: "
              + ", ".join(f"{k} min {mins[k]:.1f} / median {meds[k]:.1f} ms" for k in fs)
              + f"; loop/vjp (min) {mins['loop'] / mins['vjp']:.2f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
