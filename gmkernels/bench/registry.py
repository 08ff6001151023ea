"""The registry of benchmark cases: one place where every op family adds what it measures.

A :class:`Case` is one (family, op, shape, dtype) point. It knows how to allocate its inputs
(``setup``) and, for each *provider* (a way to compute the same thing: plain PyTorch,
``torch.compile``, the gmkernels op, a memory-bound floor), how to build a zero-argument
callable over those inputs. The runner (:mod:`gmkernels.bench.runner`) and the pytest-benchmark
modules in ``benchmarks/`` both read this registry, so a case added here shows up in both.

Adding a family: write ``gmkernels/bench/cases_<family>.py`` that calls :func:`register` at
import time, and add the family's name to :data:`FAMILIES` (the op group's name, as in
``csrc/`` and ``gmkernels/ops/``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
from typing import Any, Callable, Iterable, Mapping

import torch

__all__ = [
    "PROVIDERS",
    "PROVIDER_NOTES",
    "PROVIDER_RNG",
    "CASE_MODULES",
    "SUITES",
    "Case",
    "ProviderUnavailable",
    "register",
    "all_cases",
    "select",
    "FAMILIES",
    "compiled",
    "compile_settings",
    "warm_compile",
    "warm_up",
    "require_fused",
    "use_inductor_cache",
]

# Column order of every table and plot. A case defines the subset that makes sense for it.
PROVIDERS = ("eager", "compile", "gmkernels", "gmkernels_inplace", "peer", "floor")

# One line per provider for the printed header and results.md.
PROVIDER_NOTES = {
    "eager": "what a user writes by hand in plain PyTorch (noise from torch's own RNG)",
    "compile": "that same function under torch.compile (Inductor; torch's RNG; compiled "
               "before timing)",
    "gmkernels": "the fused gmkernels op, out of place (Philox noise, docs/spec.md §0)",
    "gmkernels_inplace": "the in-place gmkernels op (e.g. langevin_step_)",
    "peer": "another library's own implementation of the same job, through its public API (the "
            "case's note names it, e.g. scikit-learn's BernoulliRBM)",
    "floor": "memory-traffic floor: torch.add(a, b, out=c) for a step (reads 2, writes 1), "
             "out.fill_() for a fill (writes 1), same number of elements",
}

# Which random stream each provider's noise comes from (recorded per row; None: no noise).
PROVIDER_RNG = {"eager": "torch", "compile": "torch", "gmkernels": "philox",
                "gmkernels_inplace": "philox", "peer": "peer", "floor": None}

# The op groups, named as in csrc/, gmkernels/ops/ and python_tests/: a case's family, and
# its module gmkernels/bench/cases_<family>.py (one file per family).
FAMILIES = ("sde", "random", "planar", "coupling", "rbm", "bm", "trace")

# Modules that register cases; imported lazily by all_cases() so `--help` stays fast.
CASE_MODULES = tuple(f"gmkernels.bench.cases_{f}" for f in FAMILIES)

SUITES = ("quick", "full")

Inputs = dict
Builder = Callable[[Inputs], Callable[[], Any]]


class ProviderUnavailable(RuntimeError):
    """Raised by a builder when its provider cannot run here (e.g. no compiler for
    torch.compile, no CUDA kernel). The runner reports it in the table; pytest skips."""


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark point.

    Attributes:
        family: op family, one of :data:`FAMILIES` (``"sde"``, ``"random"``, ``"planar"``,
            ``"coupling"``, ``"rbm"``, ``"bm"``, ``"trace"``).
        op: the op measured (``"langevin_step"``, ``"normal"``, ...).
        shape: shape of the main tensor.
        dtype: its dtype.
        setup: ``setup(case, device) -> dict`` allocates the inputs, once per case; every
            provider's builder receives the same dict (a builder that mutates an input must
            clone it first).
        providers: provider name -> builder; ``builder(inputs)`` returns the zero-argument
            callable that is timed. Anything slow and one-off (compilation) happens in the
            builder or in the untimed warm-up calls, never in the timed region.
        suites: the suites (``"quick"``, ``"full"``) that include this case.
        note: a short remark shown under the op's table (e.g. why the shape is there).
    """

    family: str
    op: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    setup: Callable[["Case", torch.device], Inputs]
    providers: Mapping[str, Builder]
    suites: frozenset[str] = frozenset({"full"})
    note: str = ""

    @property
    def shape_str(self) -> str:
        return "x".join(str(s) for s in self.shape) if self.shape else "scalar"

    @property
    def dtype_str(self) -> str:
        return str(self.dtype).replace("torch.", "")

    @property
    def id(self) -> str:
        """``family/op/shape/dtype``: what ``--filter`` matches against."""
        return f"{self.family}/{self.op}/{self.shape_str}/{self.dtype_str}"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def build(self, provider: str, device: torch.device | str = "cpu") -> Callable[[], Any]:
        """Inputs plus one provider's callable, for a caller that times one provider alone
        (the pytest-benchmark modules)."""
        inputs = self.setup(self, torch.device(device))
        return self.providers[provider](inputs)


_REGISTRY: dict[str, Case] = {}


def register(case: Case) -> Case:
    """Adds ``case`` to the registry (ids must be unique: a duplicate is a bug in a cases
    module, so it raises rather than silently replacing)."""
    if case.family not in FAMILIES:
        raise ValueError(f"case {case.id}: unknown family {case.family!r}; known: {FAMILIES}")
    unknown = set(case.providers) - set(PROVIDERS)
    if unknown:
        raise ValueError(f"case {case.id}: unknown providers {sorted(unknown)}; known: {PROVIDERS}")
    bad = set(case.suites) - set(SUITES)
    if bad:
        raise ValueError(f"case {case.id}: unknown suites {sorted(bad)}; known: {SUITES}")
    if case.id in _REGISTRY:
        raise ValueError(f"case {case.id} registered twice")
    _REGISTRY[case.id] = case
    return case


def all_cases() -> list[Case]:
    """Every registered case, in registration order (imports the case modules first)."""
    for name in CASE_MODULES:
        importlib.import_module(name)
    return list(_REGISTRY.values())


def select(suite: str = "quick", filters: Iterable[str] = (), families: Iterable[str] = ()) -> list[Case]:
    """The cases of ``suite`` whose id contains any of ``filters`` (all when empty) and whose
    family is in ``families`` (all when empty)."""
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {suite!r}")
    filters = [f for f in filters if f]
    families = set(families)
    unknown = families - set(FAMILIES)
    if unknown:
        raise ValueError(f"families must be among {FAMILIES}, got {sorted(unknown)}")
    return [c for c in all_cases()
            if suite in c.suites
            and (not families or c.family in families)
            and (not filters or any(f in c.id for f in filters))]


_COMPILED: dict[Callable, Callable] = {}


@contextlib.contextmanager
def compile_settings():
    """The dynamo and Inductor settings of the bench's compiles, for the length of a ``with``
    block only: the previous values come back at its end, so importing or running the bench
    changes nothing for other ``torch.compile`` users in the process.

    * Dynamo counts recompiles per code object, so the --full sweep (22 shapes of one
      function) would pass the default limit of 8 and silently run eager from then on: the
      limit is raised, and hitting it is made an error (reported in the table) rather than
      timing eager as "compile".
    * Inductor compiles in this process (``compile_threads = 1``): by default it starts a pool
      of worker processes (each imports torch, ~10 s of CPU on a loaded 2-core machine) that
      would still be warming up in the background while the next providers are timed.
    """
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    dyn = {}
    # the name changed across torch versions (cache_size_limit is now an alias)
    limit = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    if hasattr(dynamo_config, limit):
        dyn[limit] = max(getattr(dynamo_config, limit), 256)
    if hasattr(dynamo_config, "accumulated_recompile_limit"):
        dyn["accumulated_recompile_limit"] = max(dynamo_config.accumulated_recompile_limit, 1024)
    if hasattr(dynamo_config, "fail_on_recompile_limit_hit"):
        dyn["fail_on_recompile_limit_hit"] = True
    with dynamo_config.patch(dyn), inductor_config.patch(compile_threads=1):
        yield


def compiled(fn: Callable) -> Callable:
    """``torch.compile(fn, dynamic=False)``, created once per function and shared by every case.

    Static shapes, one specialization per case: what a sampler loop with a fixed batch gets
    from ``torch.compile(fn)``, and the fairest version for the baseline. A dynamic-shape graph
    would save the ~3 s of each further compile, but Inductor then emits an OpenMP-parallel loop
    for every size; on a loaded 2-core machine a (1024, 2) step measured 20-30 ms that way
    (a descheduled thread stalls the barrier) against ~0.5 ms static. The on-disk Inductor cache
    (TORCHINDUCTOR_CACHE_DIR) makes a repeated run's compiles cheap.

    Compiling happens at the first call: make it through :func:`warm_compile` or
    :func:`warm_up`, which apply :func:`compile_settings`.
    """
    c = _COMPILED.get(fn)
    if c is None:
        c = _COMPILED[fn] = torch.compile(fn, dynamic=False)
    return c


def use_inductor_cache(path: str) -> str:
    """Points Inductor's on-disk cache at ``path`` unless the user chose one with
    ``TORCHINDUCTOR_CACHE_DIR``; returns the directory in use.

    Why not ``os.environ.setdefault``: importing gmkernels imports torch, and torch writes its
    default (/tmp/torchinductor_<user>) into the variable the first time it asks for the cache
    dir; a value equal to that default is therefore treated as unset. Inductor reads the
    variable at each use, so setting it after the import but before the first compile works.
    """
    path = os.path.abspath(path)
    cur = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
        default = os.path.abspath(default_cache_dir())
    except Exception:  # private module: if it moves, only an unset variable is replaced
        default = None
    if cur is None or os.path.abspath(cur) == default:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def warm_up(run: Callable[[], Any]) -> Callable[[], Any]:
    """Calls ``run`` once under :func:`compile_settings`, so that whatever it compiles (or
    recompiles for a new rank/dtype) is compiled here, outside the timed region; returns
    ``run``. A failure raises :class:`ProviderUnavailable` (the run reports it; pytest skips)
    instead of taking the whole run down."""
    try:
        with compile_settings():
            run()
    except Exception as e:  # Inductor raises many types: missing compiler, codegen bugs, ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ProviderUnavailable(f"torch.compile failed: {type(e).__name__}: {msg}"[:300]) from e
    return run


def warm_compile(fn: Callable, *args, **kwargs) -> Callable[[], Any]:
    """The shared compiled version of ``fn``, warmed up on ``args`` (:func:`warm_up`); returns
    the zero-argument callable to time."""
    f = compiled(fn)
    return warm_up(lambda: f(*args, **kwargs))


def require_fused(op: str, device: torch.device | str, what: str | None = None) -> None:
    """Raises :class:`ProviderUnavailable` unless the dispatcher op ``gmkernels::op`` has a
    native or Triton kernel for ``device`` here. Without one the gmkernels function falls back
    to the reference, and timing that would report the reference's speed under the gmkernels
    name. ``what`` names the function in the message (default ``gmkernels.<op>``)."""
    from .. import _backend

    what = what or f"gmkernels.{op}"
    dev = torch.device(device)
    try:
        backend = _backend.choose_backend(op, dev)
    except RuntimeError as e:  # an override (use_backend) that cannot run here
        raise ProviderUnavailable(f"{what}: {e}"[:300]) from e
    if backend == "reference" or not hasattr(torch.ops.gmkernels, op):
        raise ProviderUnavailable(f"{what} has no native/triton kernel for {dev.type} here "
                                  "(extension not loaded or too old); it would run the slow "
                                  "reference")
