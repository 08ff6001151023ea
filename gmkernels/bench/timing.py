"""Wall-clock timing of a zero-argument callable: warm-up, then repeated samples; median and
interquartile range.

Why the median and IQR: these machines are shared and noisy (±30% between runs, single
outliers of several times the typical call when another process wakes up); the median ignores
the outliers and the IQR says how wide the typical spread was.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from typing import Any, Callable

import torch

__all__ = ["Timing", "measure", "synchronizer"]


@dataclasses.dataclass
class Timing:
    """The result of :func:`measure`; times in milliseconds per call."""

    median_ms: float
    iqr_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    samples: int     # timed samples
    inner: int       # calls per sample (> 1 for calls too short to time one by one)
    warmup: int      # untimed calls before the samples


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    """What to call before reading the clock: device work is asynchronous on CUDA, so the
    clock would otherwise measure only the launch. A no-op on CPU."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def measure(fn: Callable[[], Any], *, repeat: int | None = None, warmup: int = 2,
            target_s: float = 1.0, min_repeat: int = 5, max_repeat: int = 50,
            min_sample_s: float = 2e-3, sync: Callable[[], None] = lambda: None) -> Timing:
    """Times ``fn()``.

    Args:
        fn: the zero-argument callable (its result is dropped at once, like a user's
            temporary would be).
        repeat: timed samples; None picks one from ``target_s`` (clamped to
            [min_repeat, max_repeat]) so a slow provider does not stretch the run.
        warmup: untimed calls first (caches, allocator, lazy initialization, any leftover
            compilation); the last one also sizes ``inner`` and the default ``repeat``.
        target_s: the time the samples should take in all, when ``repeat`` is None.
        min_sample_s: one sample lasts at least this long: calls of a few microseconds are
            batched ``inner`` at a time, since one perf_counter read costs ~0.1 µs and the
            Python loop around it more.
        sync: called before each clock read (see :func:`synchronizer`).
    """
    t_call = 0.0
    for _ in range(max(1, warmup)):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        t_call = time.perf_counter() - t0
    t_call = max(t_call, 1e-7)
    inner = max(1, math.ceil(min_sample_s / t_call))
    if repeat is None:
        repeat = int(min(max_repeat, max(min_repeat, target_s / (t_call * inner))))
    repeat = max(1, int(repeat))

    samples = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / inner * 1e3)

    median = statistics.median(samples)
    if len(samples) >= 2:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    else:
        q1 = q3 = median
    return Timing(median_ms=median, iqr_ms=q3 - q1, q1_ms=q1, q3_ms=q3, min_ms=min(samples),
                  samples=len(samples), inner=inner, warmup=max(1, warmup))
