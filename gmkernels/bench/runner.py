"""Runs the selected cases provider by provider and returns flat result records.

One record per (case, provider): the case's family/op/shape/dtype, the provider, its median
and IQR in ms, the thread count it ran with, and ``status`` ``"ok"`` or ``"error"`` with the
message. A provider that fails (torch.compile unavailable, an op that raises) becomes an
``"error"`` record; the run goes on.
"""

from __future__ import annotations

import datetime as _dt
import gc
import os
import platform
import sys
import time
from typing import Callable, Iterable, Sequence

import torch

from .registry import PROVIDER_RNG, PROVIDERS, Case, ProviderUnavailable, compile_settings
from .timing import measure, synchronizer

__all__ = ["run", "machine_info", "hardware_label", "process_wall_s", "load_average",
           "git_revision"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nproc() -> int:
    # The cores this process may run on (what `nproc` prints), not the host's total.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def process_wall_s() -> float | None:
    """Seconds since this process started (imports included), from /proc; None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            # field 22 (starttime, clock ticks since boot) counted after the ")" that ends
            # the command name, which may itself contain spaces
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: > nproc means other work competed for the cores."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def git_revision() -> str | None:
    """The checkout's commit (``abc1234``, ``+dirty`` with local changes) when gmkernels runs
    from a git tree, so a result can be tied to the code that produced it; else None."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: torch.device | str = "cpu") -> dict:
    """Where the numbers come from: torch and gmkernels versions, the CPU, its SIMD path as
    the gmkernels kernels chose it, the core count and the date (UTC)."""
    from .. import __version__, build_info

    info = build_info()
    dev = torch.device(device)
    m = {
        "torch": torch.__version__,
        "gmkernels": __version__,
        "git": git_revision(),
        "extension": info.get("extension"),
        "cpu": _cpu_model(),
        "cpu_isa": info.get("cpu_isa"),
        "openmp": info.get("openmp"),
        "nproc": _nproc(),
        "torch_threads_default": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(dev),
        "load_average_start": load_average(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if dev.type == "cuda":
        m["gpu"] = torch.cuda.get_device_name(dev)
    return m


def hardware_label(machine: dict, threads: int | None = None) -> str:
    """One line for plot titles and table headers, e.g.
    ``AMD EPYC, 2 cores, AVX2, torch 2.13.0+cpu, 2 threads``."""
    parts = [machine.get("gpu") or machine.get("cpu", "?"), f"{machine.get('nproc')} cores"]
    if machine.get("cpu_isa"):
        parts.append(str(machine["cpu_isa"]).upper())
    parts.append(f"torch {machine.get('torch')}")
    if threads is not None:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    return ", ".join(parts)


def _error_text(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(e, ProviderUnavailable):
        return first[:300]
    return f"{type(e).__name__}: {first}"[:300]


def _record(case: Case, provider: str, device, threads: int) -> dict:
    return {
        "family": case.family, "op": case.op, "shape": list(case.shape),
        "dtype": case.dtype_str, "provider": provider, "threads": threads,
        "device": str(device), "numel": case.numel, "rng": PROVIDER_RNG.get(provider),
        "status": "ok", "error": None, "median_ms": None, "iqr_ms": None,
        "q1_ms": None, "q3_ms": None, "min_ms": None, "samples": 0, "inner": 0,
        "setup_s": None,
    }


def run(cases: Sequence[Case], *, providers: Iterable[str] | None = None,
        device: torch.device | str = "cpu", repeat: int | None = None,
        target_s: float = 1.0, min_repeat: int = 7, max_repeat: int = 50,
        progress: bool = True, on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Times every selected provider of every case; returns the records in case order.

    Args:
        cases: from :func:`gmkernels.bench.registry.select`.
        providers: provider names to run (default: all a case defines).
        device: where the inputs live; CUDA work is synchronized around each sample.
        repeat: timed samples per provider (None: adaptive, see :func:`timing.measure`).
        target_s, min_repeat, max_repeat: the adaptive sample count's budget and bounds.
        progress: a tqdm bar on stderr.
        on_record: called with each record as it is made (e.g. to log partial results).
    """
    wanted = tuple(PROVIDERS if providers is None else providers)
    device = torch.device(device)
    sync = synchronizer(device)
    jobs = [(c, p) for c in cases for p in PROVIDERS if p in wanted and p in c.providers]

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), file=sys.stderr, unit="timing", dynamic_ncols=True,
                   leave=False)

    records: list[dict] = []
    # The bench's dynamo/Inductor settings hold for the whole run (a recompile in a timed call
    # sees the same limits as the warm-up) and are restored when it ends.
    try:
        with compile_settings():
            for case in cases:
                mine = [p for p in PROVIDERS if p in wanted and p in case.providers]
                if not mine:
                    continue
                threads = torch.get_num_threads()
                inputs, setup_error = None, None
                try:
                    inputs = case.setup(case, device)
                except Exception as e:  # e.g. out of memory for a --full size
                    setup_error = f"setup: {_error_text(e)}"
                for p in mine:
                    if bar is not None:
                        bar.set_description(f"{case.op} {case.shape_str} {case.dtype_str}: {p}")
                    rec = _record(case, p, device, threads)
                    try:
                        if setup_error is not None:
                            raise RuntimeError(setup_error)
                        t0 = time.perf_counter()
                        fn = case.providers[p](inputs)  # compiles here, outside the timing
                        sync()
                        rec["setup_s"] = round(time.perf_counter() - t0, 4)
                        t = measure(fn, repeat=repeat, target_s=target_s, min_repeat=min_repeat,
                                    max_repeat=max_repeat, sync=sync)
                        rec.update(median_ms=t.median_ms, iqr_ms=t.iqr_ms, q1_ms=t.q1_ms,
                                   q3_ms=t.q3_ms, min_ms=t.min_ms, samples=t.samples, inner=t.inner)
                    except Exception as e:  # one provider's failure must not end the run
                        rec["status"] = "error"
                        rec["error"] = setup_error or _error_text(e)
                    fn = None
                    records.append(rec)
                    if on_record is not None:
                        on_record(rec)
                    if bar is not None:
                        bar.update(1)
                # Free this case's tensors before the next one allocates (2^24 float64 inputs
                # plus eager temporaries are ~1 GB).
                inputs = None
                gc.collect()
    finally:
        if bar is not None:
            bar.close()
    return records
