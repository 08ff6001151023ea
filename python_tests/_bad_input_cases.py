"""The bad-input table of every public op and model, shared by ``tools/probe_bad_input.py``
(which runs it in a child process with a timeout per case and counts the categories) and
``python_tests/test_bad_input.py`` (which asserts "good" for every case not owned by another
change).

Each entry point is described once, as a :class:`Target`: a call on a dict of arguments, a
function that makes fresh valid arguments, and what kind each argument is. :func:`cases`
derives the bad inputs from the kinds: wrong types (str, list, None), integer and bool
dtypes, meta tensors, wrong shapes, empty batches and 0-d tensors, NaN and inf in every
tensor and float argument, negative and huge counts, seeds and offsets at and past their
limits, non-contiguous and expanded inputs, and ``torch.inference_mode()``.

Each case expects one of:

* ``"error"``: a ``ValueError`` / ``TypeError`` / ``RuntimeError`` whose message starts with
  ``<op>: `` (the entry point the user called: ``gmkernels.langevin_step``,
  ``RBM.fit``, ...) and names the argument;
* ``"ok"``: a result equal to that of the same call on clean inputs (contiguous, outside
  inference mode), or, where there is no clean twin (a seed at its limit, an empty batch),
  equal to the reference backend's and finite;
* ``"either"``: one of the two (an empty batch may be refused with a clear error);
* ``"nan"``: a non-finite value in a tensor argument: a clear error naming it, or a
  non-finite result in exactly the rows it touches (NaN: in every per-row float output;
  inf: in at least one), the other rows finite.

:func:`classify` sorts a case's outcome into good / unclear (an error, but one that does not
name the entry point and the argument, or an error on a valid input) / garbage (no error
and a wrong or non-finite result, or a bad input accepted). The probe adds hang (timeout)
and crash (the process died).

Cases that another change fixes carry ``owner`` (``"A"`` double backward, ``"B"`` in-place
version counters and overlapping writes, ``"C"`` the ops' NaN/range contracts and counter
overflow): the probe reports them, marked, and the test leaves them out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
from typing import Any, Callable

import torch

import gmkernels
from gmkernels import score
from gmkernels.boltzmann import RBM, BoltzmannMachine
from gmkernels.flows import PlanarFlow, RealNVP

NAN, INF = float("nan"), float("inf")
U64, U32 = 1 << 64, 1 << 32
B = 4  # rows of every batch in the table


# --------------------------------------------------------------------------------------------
# the table's vocabulary

@dataclasses.dataclass
class Arg:
    """One argument of a target and what kind of value it takes.

    kinds: ``row`` a tensor whose dim 0 is the batch; ``shared`` a tensor parameter shared by
    the rows; ``coef`` a float or a per-row (B,) tensor; ``float``; ``count`` an int;
    ``seed``, ``offset``, ``sample_offset``; ``choice`` (``options``); ``bool``; ``fn`` a
    callback returning a tensor like its first argument; ``gen`` a torch.Generator or None;
    ``dtype``; ``shape``; ``device``; ``clamp`` None or (lo, hi)."""
    name: str
    kind: str
    optional: bool = False        # None is a valid value
    lo: float | None = 0.0        # float/coef/count: the smallest valid value (None: unbounded)
    lo_open: bool = False
    steps: int = 1                # offset: how many stream positions the call uses from it
    huge: bool = True             # count: 2^63 must be refused (False: it sizes a Python loop)
    int_ok: bool = False          # row/shared: an integer tensor is valid (a mask, a step index)
    nan: str = "check"            # row/shared: "check" (error or propagation) | "skip"
    at: int = 0                   # row/shared: the element (of the row) that NaN / inf goes to
    shows: tuple | None = None    # row/shared: the outputs a NaN must reach (None: every float output)
    nan_all: bool = False         # row: a NaN in one row must reach every row (the rows are
                                  # coupled: the corrector's one step size for the batch)
    zero_d: str = "error"         # shared: what a 0-d tensor must give ("ok": it broadcasts)
    any_shape: bool = False       # row: every shape is valid (a sampler's x0): wrong-shape is "ok"
    expanded: str = "ok"          # row: what a stride-0 (expanded) copy gives ("error": written in place)
    layouts: bool = True          # row/shared: non-contiguous / expanded copies are valid
    owner: dict = dataclasses.field(default_factory=dict)   # mutation name -> owning change


@dataclasses.dataclass
class Target:
    op: str                              # the message prefix of every error of this entry point
    call: Callable[[dict], Any]
    valid: Callable[[], dict]
    args: list
    batch: tuple = ()                    # row tensors that share the batch dim (empty, 0-d)
    empty: str = "either"                # an empty batch: "ok" | "either" | "error" | "skip"
    zero_d: str = "skip"                 # every batch tensor 0-d: "either" | "error" | "skip"
    meta: str = "either"                 # every tensor on the meta device
    inference: bool = True               # the call under torch.inference_mode() must work
    reference: bool = True               # "ok" results without a clean twin: compare with the reference backend
    extra: list = dataclasses.field(default_factory=list)   # hand-written cases: (name, arg, change, expect[, owner])
    owner: dict = dataclasses.field(default_factory=dict)   # whole-call mutation -> owning change
    rows_of_out: int | None = B          # outputs whose dim 0 has this size are per-row


@dataclasses.dataclass
class Case:
    id: str
    op: str
    arg: str | None
    names: tuple          # argument names that the error may name (the arg, or a partner)
    run: Callable[[], Any]
    expect: str
    check: Callable[[Any], str | None] | None = None
    owner: str | None = None


# --------------------------------------------------------------------------------------------
# outputs: flattening, comparing, the NaN-rows contract

def tensors_of(out) -> list:
    """Every tensor of a result, in order (tuples, lists, named tuples, modules' state dicts,
    floats as 0-d float64 tensors)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, bool) or out is None:
        return []
    if isinstance(out, (int, float)):
        return [torch.tensor(float(out), dtype=torch.float64)]
    if isinstance(out, torch.nn.Module):
        return [t for t in out.state_dict().values()]
    if isinstance(out, dict):
        return [t for v in out.values() for t in tensors_of(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in tensors_of(v)]
    if isinstance(out, score.DDPMSchedule):
        return [out.betas, out.alphas, out.alphas_cumprod, out.sigmas]
    if hasattr(out, "__dict__"):  # an SDE object: its float parameters
        return [t for v in vars(out).values() for t in tensors_of(v)]
    return []


def _dense(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu") if t.device.type != "meta" else t


def compare(got, want, rtol=1e-5, atol=1e-6) -> str | None:
    """None when got and want hold the same tensors (shapes, dtypes, devices, values within
    rtol/atol, NaN where NaN), else what differs."""
    g, w = tensors_of(got), tensors_of(want)
    if len(g) != len(w):
        return f"{len(g)} output tensors, want {len(w)}"
    for i, (a, b) in enumerate(zip(g, w)):
        if a.shape != b.shape or a.dtype != b.dtype or a.device.type != b.device.type:
            return (f"output {i}: {tuple(a.shape)} {a.dtype} on {a.device.type}, want "
                    f"{tuple(b.shape)} {b.dtype} on {b.device.type}")
        if a.device.type == "meta":
            continue
        a, b = _dense(a), _dense(b)
        if a.dtype.is_floating_point:
            if not torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True):
                d = (a.double() - b.double()).abs()
                return f"output {i}: max |diff| {float(d.nan_to_num(INF).max()):.3g}"
        elif not torch.equal(a, b):
            return f"output {i}: {int((a != b).sum())} elements differ"
    return None


def finite(out) -> str | None:
    for i, t in enumerate(tensors_of(out)):
        if t.device.type != "meta" and t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
            return f"output {i} {tuple(t.shape)} is not finite: {t.detach().flatten()[:6].tolist()}"
    return None


def nan_rows(out, row: int | None, nan: bool, rows: int | None, shows=None) -> str | None:
    """The propagation contract of a non-finite input: ``row`` the row it sits in (None: a
    shared parameter, every row). The other rows of every per-row output (dim 0 of size
    ``rows``) must stay finite. A NaN must reach the touched rows of every float output
    that depends on it (``shows``: their indices among the float outputs; None: all): a NaN is
    no information, and a finite number there would look like an answer. An inf may also
    give a finite limit (tanh(inf) = 1, a sigmoid that saturates), so it needs no more."""
    outs = [_dense(t) for t in tensors_of(out) if t.dtype.is_floating_point]
    if not outs:
        return "no float output shows the non-finite input"
    touched = set(range(rows)) if row is None and rows else ({row} if row is not None else set())
    for i, t in enumerate(outs):
        per_row = rows is not None and t.dim() >= 1 and t.shape[0] == rows
        if per_row and t.numel():
            bad = ~torch.isfinite(t.reshape(rows, -1)).all(1)
            for r in range(rows):
                if r not in touched and bad[r]:
                    return f"float output {i}: row {r} is not finite though its inputs are"
        if not nan or (shows is not None and i not in shows) or t.numel() == 0:
            continue
        if per_row:
            isnan = torch.isnan(t.reshape(rows, -1)).any(1)
            missed = [r for r in sorted(touched) if not isnan[r]]
            if missed:
                return f"float output {i}: rows {missed} hold a NaN input but no NaN"
        elif row is None or not any(rows is not None and o.dim() >= 1 and o.shape[0] == rows
                                    for o in outs):
            if not bool(torch.isnan(t).any()):
                return f"float output {i} {tuple(t.shape)} has no NaN though a NaN input reaches it"
    return None


# --------------------------------------------------------------------------------------------
# classification

GOOD, UNCLEAR, GARBAGE, HANG, CRASH = "good", "unclear", "garbage", "hang", "crash"
CATEGORIES = (GOOD, UNCLEAR, GARBAGE, HANG, CRASH)


def _names(msg: str, names) -> bool:
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", msg) for n in names)


def classify(case: Case) -> tuple[str, str]:
    """(category, what happened) of one case, run in this process."""
    try:
        out = case.run()
    except (ValueError, TypeError, RuntimeError) as e:
        msg = f"{type(e).__name__}: {e}".split("\n")[0][:300]
        clear = str(e).startswith(f"{case.op}: ") and (case.arg is None or _names(str(e), case.names))
        if case.expect == "ok":
            return UNCLEAR, f"refused a valid input: {msg}"
        return (GOOD, msg) if clear else (UNCLEAR, msg)
    except Exception as e:  # noqa: BLE001  (any other exception type is unclear by definition)
        return UNCLEAR, f"{type(e).__name__}: {e}".split("\n")[0][:300]
    if case.expect == "error":
        return GARBAGE, f"accepted: {_summary(out)}"
    problem = case.check(out) if case.check is not None else None
    if problem is not None:
        return GARBAGE, problem
    return GOOD, "a correct result"


def _summary(out) -> str:
    ts = tensors_of(out)
    if not ts:
        return type(out).__name__
    t = ts[0]
    vals = t.detach().flatten()[:4].tolist() if t.device.type != "meta" else "meta"
    return f"{type(out).__name__}, first tensor {tuple(t.shape)} {t.dtype}: {vals}"


# --------------------------------------------------------------------------------------------
# deriving the cases of a target

def _strided(t: torch.Tensor) -> torch.Tensor:
    """t's values in a non-contiguous layout (every other element of a wider buffer)."""
    if t.dim() == 0:
        return t
    out = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)[..., ::2]
    out.copy_(t)
    return out


def _expanded(t: torch.Tensor) -> torch.Tensor:
    """Row 0 (or element 0 of a 1-D tensor) broadcast over dim 0 with stride 0."""
    if t.dim() == 0 or t.shape[0] == 0:
        return t
    return t[:1].expand(t.shape)


def _poke(t: torch.Tensor, value: float, row: int | None, at: int = 0) -> torch.Tensor:
    t = t.detach().clone()
    if row is None or t.dim() == 0:
        t.view(-1)[at] = value
    else:
        t[row].view(-1)[at] = value
    return t


def _to_meta(v):
    return v.to("meta") if isinstance(v, torch.Tensor) else v


def _wrong_shape(t: torch.Tensor) -> torch.Tensor:
    if t.dim() == 0:
        return t.reshape(1, 1).expand(2, 2).clone()
    return torch.cat([t, t.narrow(-1, 0, 1)], -1)  # one more element in the last dim


def _with(target: Target, change: Callable[[dict], dict] | dict):
    def build():
        a = target.valid()
        a.update(change(a) if callable(change) else change)
        return a
    return build


def _runner(target: Target, build, mode=None, backend=None):
    def run():
        a = build()
        with contextlib.ExitStack() as stack:
            if mode == "inference":
                stack.enter_context(torch.inference_mode())
            if backend is not None:
                stack.enter_context(gmkernels.use_backend(backend))
            return target.call(a)
    return run


def _clean(v):
    """A tensor's values as a fresh contiguous tensor outside inference mode (no aliasing, no
    stride-0 rows); anything else as it is."""
    if isinstance(v, torch.Tensor):
        with torch.inference_mode(False):
            return v.detach().clone(memory_format=torch.contiguous_format)
    return v


def _same_as(target: Target, build, rtol=1e-5, atol=1e-6):
    """The result must be that of the same call on clean copies of the same arguments."""
    def check(out):
        want = _runner(target, lambda: {k: _clean(v) for k, v in build().items()})()
        return compare(out, want, rtol, atol) or finite(out)
    return check


def _like_reference(target: Target, build):
    def check(out):
        problem = finite(out)
        if problem is not None or not target.reference:
            return problem
        want = _runner(target, build, backend="reference")()
        return compare(out, want, rtol=1e-5, atol=1e-5)
    return check


def _meta_check(target: Target):
    def check(out):
        want = _runner(target, target.valid)()
        g, w = tensors_of(out), tensors_of(want)
        if len(g) != len(w) or any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(g, w)):
            return "meta result: shapes/dtypes differ from the CPU result"
        if not all(t.device.type == "meta" for t in g if t.dim() > 0):
            return "meta inputs gave a result on another device"
        return None
    return check


def cases_of(target: Target) -> list:
    out: list = []
    tensor_names = tuple(a.name for a in target.args if a.kind in ("row", "shared"))

    def add(name, arg, change, expect, *, check=None, mode=None, owner=None, partners=True):
        build = _with(target, change)
        names = (arg,) + (tensor_names if partners and arg in tensor_names else ()) if arg else ()
        c = Case(f"{target.op}/{name}", target.op, arg, names, _runner(target, build, mode),
                 expect, None, owner)
        if check == "same":
            c.check = _same_as(target, build)
        elif check == "ref":
            c.check = _like_reference(target, build)
        elif callable(check):
            c.check = check(build)
        out.append(c)

    for a in target.args:
        n, k = a.name, a.kind
        own = a.owner.get
        if k in ("row", "shared"):
            add(f"{n}=str", n, {n: "x"}, "error", partners=False, owner=own("str"))
            add(f"{n}=list", n, lambda d, n=n: {n: d[n].tolist()}, "error", partners=False)
            if not a.optional:
                add(f"{n}=None", n, {n: None}, "error", partners=False)
            if not a.int_ok:
                add(f"{n}=int64", n, lambda d, n=n: {n: d[n].long()}, "error")
                add(f"{n}=bool", n, lambda d, n=n: {n: d[n] != 0}, "error")
            add(f"{n}=meta", n, lambda d, n=n: {n: d[n].to("meta")}, "error")
            add(f"{n}=wrong-shape", n, lambda d, n=n: {n: _wrong_shape(d[n])},
                "ok" if a.any_shape else "error", check="ref" if a.any_shape else None)
            if not (k == "row" and n in target.batch):
                add(f"{n}=0-d", n, lambda d, n=n: {n: d[n].flatten()[0].clone()}, a.zero_d,
                    check="same" if a.zero_d == "ok" else None)
            if a.nan == "check" and not a.int_ok:
                row = 1 if k == "row" else None
                for label, v, is_nan in (("nan", NAN, True), ("inf", INF, False)):
                    reach = None if a.nan_all and is_nan else row  # None: every row
                    add(f"{n}={label}", n,
                        lambda d, n=n, v=v, row=row, at=a.at: {n: _poke(d[n], v, row, at)}, "nan",
                        check=lambda build, reach=reach, is_nan=is_nan, shows=a.shows: (
                            lambda o: nan_rows(o, reach, is_nan, target.rows_of_out, shows)),
                        owner=own(label))
            if a.layouts:
                add(f"{n}=non-contiguous", n, lambda d, n=n: {n: _strided(d[n])}, "ok",
                    check="same", owner=own("non-contiguous"))
                if k == "row" or n in target.batch:
                    add(f"{n}=expanded", n, lambda d, n=n: {n: _expanded(d[n])}, a.expanded,
                        check="same" if a.expanded == "ok" else None, owner=own("expanded"))
        elif k in ("float", "coef"):
            add(f"{n}=str", n, {n: "0.1"}, "error", owner=own("str"))
            if not a.optional:
                add(f"{n}=None", n, {n: None}, "error")
            add(f"{n}=nan", n, {n: NAN}, "error", owner=own("nan"))
            add(f"{n}=inf", n, {n: INF}, "error", owner=own("inf"))
            if a.lo is not None:
                bad = a.lo if a.lo_open else a.lo - 1.0
                add(f"{n}={bad:g}", n, {n: bad}, "error", owner=own("low"))
            if k == "coef":
                add(f"{n}=tensor-wrong-shape", n, {n: torch.full((B + 1,), 0.5)}, "error")
                add(f"{n}=tensor-int", n, {n: torch.ones(B, dtype=torch.int64)}, "error")
                add(f"{n}=tensor-nan", n, {n: torch.tensor([0.5, NAN] + [0.5] * (B - 2))}, "error")
                add(f"{n}=tensor-meta", n, {n: torch.full((B,), 0.5, device="meta")}, "error")
        elif k == "count":
            add(f"{n}=str", n, {n: "2"}, "error")
            add(f"{n}=float", n, {n: 2.5}, "error")
            add(f"{n}=bool", n, {n: True}, "error")
            if not a.optional:
                add(f"{n}=None", n, {n: None}, "error")
            lo = int(a.lo if a.lo is not None else 0)
            add(f"{n}={lo - 1}", n, {n: lo - 1}, "error")
            if a.huge:
                add(f"{n}=2^63", n, {n: 1 << 63}, "error", owner=own("huge"))
        elif k in ("seed", "offset", "sample_offset"):
            hi = U32 if k == "sample_offset" else U64
            add(f"{n}=-1", n, {n: -1}, "error")
            add(f"{n}=limit", n, {n: hi}, "error")
            add(f"{n}=float", n, {n: 1.5}, "error")
            add(f"{n}=str", n, {n: "0"}, "error")
            if k == "seed":
                add(f"{n}=2^64-1", n, {n: U64 - 1}, "ok", check="ref")
            elif k == "offset":
                if a.steps == 1:
                    add(f"{n}=2^64-1", n, {n: U64 - 1}, "ok", check="ref", owner=own("top"))
                else:
                    add(f"{n}=2^64-1", n, {n: U64 - 1}, "error", owner=own("top"))
            else:
                # docs/spec.md §0: rows + sample_offset < 2^32
                add(f"{n}=2^32-B", n, {n: U32 - B}, "error")
                add(f"{n}=2^32-B-1", n, {n: U32 - B - 1}, "ok", check="ref")
        elif k == "choice":
            add(f"{n}=bogus", n, {n: "bogus"}, "error")
            add(f"{n}=int", n, {n: 1}, "error")
            if not a.optional:
                add(f"{n}=None", n, {n: None}, "error")
        elif k == "bool":
            add(f"{n}=str", n, {n: "yes"}, "error")
            add(f"{n}=None", n, {n: None}, "error")
        elif k == "fn":
            add(f"{n}=str", n, {n: "f"}, "error")
            add(f"{n}=None", n, {n: None}, "error")
        elif k == "gen":
            add(f"{n}=str", n, {n: "gen"}, "error")
        elif k == "dtype":
            add(f"{n}=int32", n, {n: torch.int32}, "error")
            add(f"{n}=str", n, {n: "float32"}, "error")
        elif k == "shape":
            add(f"{n}=str", n, {n: "4x3"}, "error")
            add(f"{n}=negative", n, {n: (B, -3)}, "error")
            add(f"{n}=float-size", n, {n: (B, 2.5)}, "error", owner=own("float-size"))
            add(f"{n}=huge", n, {n: (1 << 62, 1 << 62)}, "error", owner=own("huge"))
        elif k == "device":
            add(f"{n}=bogus", n, {n: "nowhere"}, "error")
            add(f"{n}=meta", n, {n: "meta"}, "either",
                check=lambda build: (lambda o: None if all(t.device.type == "meta" for t in tensors_of(o))
                                     else "device='meta' gave a tensor on another device"))
        elif k == "clamp":
            add(f"{n}=str", n, {n: "x"}, "error")
            add(f"{n}=reversed", n, {n: (1.0, -1.0)}, "error")
            add(f"{n}=nan", n, {n: (NAN, 1.0)}, "error")
            add(f"{n}=infinite", n, {n: (-INF, INF)}, "ok", check="same")
        else:
            raise ValueError(f"unknown kind {k!r} of {target.op} {n}")

    own = target.owner.get
    if target.batch and target.empty != "skip":
        def empty(d):
            return {n: d[n][:0] for n in target.batch}
        add("empty-batch", None, empty, target.empty, check="ref", owner=own("empty"))
    if target.batch and target.zero_d != "skip":
        def zero_d(d):
            return {n: d[n].flatten()[0].clone() for n in target.batch}
        add("0-d", None, zero_d, target.zero_d, check="ref", owner=own("0-d"))
    if tensor_names and target.meta != "skip":
        def meta(d):
            return {n: _to_meta(d[n]) for n in tensor_names}
        add("all-meta", tensor_names[0], meta, target.meta, check=lambda build: _meta_check(target),
            owner=own("meta"))
        out[-1].names = tensor_names
    if target.inference:
        add("inference_mode", None, {}, "ok", check="same", mode="inference", owner=own("inference"))
    for extra in target.extra:
        name, arg, change, expect = extra[:4]
        owner = extra[4] if len(extra) > 4 else None
        check = "same" if expect == "ok" and name.startswith("same:") else (
            "ref" if expect in ("ok", "either") else None)
        if expect in ("nan", "nan-all"):  # a NaN in row 1: in row 1 / in every row
            reach = 1 if expect == "nan" else None
            check = lambda build, reach=reach: (  # noqa: E731
                lambda o: nan_rows(o, reach, True, target.rows_of_out))
            expect = "nan"
        add(name.removeprefix("same:"), arg, change, expect, check=check, owner=owner)
    return out


# --------------------------------------------------------------------------------------------
# inputs

def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _x(rows=B, d=3, dtype=torch.float32, seed=1):
    return torch.randn(rows, d, generator=_g(seed), dtype=dtype)


def _bits(rows=B, d=5, dtype=torch.float64, seed=2):
    return (torch.rand(rows, d, generator=_g(seed)) < 0.5).to(dtype)


def _spins(rows=B, d=5, dtype=torch.float32, seed=3):
    return _bits(rows, d, dtype, seed) * 2 - 1


def _sym(D, dtype=torch.float32):
    A = torch.randn(D, D, generator=_g(4), dtype=dtype) * 0.3
    return ((A + A.T) / 2).fill_diagonal_(0)


def _seeded(make):
    """A model made under a fixed global seed (its init draws from torch's generator), without
    touching the caller's generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return make()


def _rbm():
    return RBM(5, 3, init_std=0.3, dtype=torch.float64, generator=_g(5))


def _bm():
    m = BoltzmannMachine(5)
    with torch.no_grad():
        m.W.copy_(_sym(5))
    return m


def _planar(**kw):
    return _seeded(lambda: PlanarFlow(3, 4, init_scale=0.5, **kw))


def _nvp():
    def make():
        f = RealNVP(3, 2, 8)
        for p in f.parameters():
            torch.nn.init.normal_(p, std=0.3)
        return f
    return _seeded(make)


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _load_buf(cls, sd):
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return cls.load(buf)


def _load_sd(model, sd):
    model.load_state_dict(sd)
    return model


def _nan_in(sd, key):
    sd = dict(sd)
    sd[key] = _poke(sd[key], NAN, None)
    return sd


# a shared non-finite input in the callbacks of the samplers: row 1 of the score is NaN
def _nan_row(f):
    def g(x, *rest):
        y = f(x, *rest).clone()
        y[1] = NAN
        return y
    return g


# --------------------------------------------------------------------------------------------
# the targets: every public op of gmkernels and gmkernels.random, every model method

def _ops() -> list:
    sde = score.VPSDE()
    sched = score.DDPMSchedule.linear(10)
    row = lambda n, **kw: Arg(n, "row", **kw)  # noqa: E731
    shared = lambda n, **kw: Arg(n, "shared", **kw)  # noqa: E731
    stream = [Arg("seed", "seed"), Arg("offset", "offset"), Arg("sample_offset", "sample_offset")]
    kw_stream = lambda a: dict(seed=a["seed"], offset=a["offset"], sample_offset=a["sample_offset"])  # noqa: E731
    s0 = dict(seed=0, offset=0, sample_offset=0)
    T = Target
    return [
        T("gmkernels.langevin_step",
          lambda a: gmkernels.langevin_step(a["x"], a["grad"], a["step_size"], a["noise_scale"],
                                            clamp=a["clamp"], **kw_stream(a)),
          lambda: dict(x=_x(), grad=_x(seed=2), step_size=0.1, noise_scale=0.2, clamp=None, **s0),
          [row("x"), row("grad"), Arg("step_size", "coef"), Arg("noise_scale", "coef"),
           Arg("clamp", "clamp", optional=True), *stream],
          batch=("x", "grad"), empty="ok", zero_d="either"),
        T("gmkernels.langevin_step_",
          lambda a: gmkernels.langevin_step_(a["x"], a["grad"], a["step_size"], a["noise_scale"],
                                             clamp=a["clamp"], **kw_stream(a)),
          lambda: dict(x=_x(), grad=_x(seed=2), step_size=0.1, noise_scale=0.2, clamp=None, **s0),
          [row("x", expanded="error"), row("grad"), Arg("step_size", "coef"),
           Arg("noise_scale", "coef"), Arg("clamp", "clamp", optional=True), *stream],
          batch=("x", "grad"), empty="ok", zero_d="either",
          extra=[("same:grad-aliases-x", "grad", lambda a: dict(grad=a["x"]), "ok")]),
        T("gmkernels.euler_maruyama_step",
          lambda a: gmkernels.euler_maruyama_step(a["x"], a["drift"], a["diffusion"], a["dt"],
                                                  **kw_stream(a)),
          lambda: dict(x=_x(), drift=_x(seed=2), diffusion=0.5, dt=0.01, **s0),
          [row("x"), row("drift"), Arg("diffusion", "coef", lo=None), Arg("dt", "float", lo=None),
           *stream],
          batch=("x", "drift"), empty="ok", zero_d="either",
          extra=[("dt=0", "dt", dict(dt=0.0), "error"),
                 ("diffusion=full-tensor", "diffusion", lambda a: dict(diffusion=_x(seed=3)), "ok"),
                 ("diffusion=full-tensor-nan", "diffusion",
                  lambda a: dict(diffusion=_poke(_x(seed=3), NAN, 1)), "error")]),
        T("gmkernels.reverse_sde_step",
          lambda a: gmkernels.reverse_sde_step(a["x"], a["score"], a["t"], a["dt"], a["sde"],
                                               predictor=a["predictor"],
                                               probability_flow=a["probability_flow"],
                                               **kw_stream(a)),
          lambda: dict(x=_x(), score=_x(seed=2), t=0.5, dt=0.01, sde=sde,
                       predictor="euler_maruyama", probability_flow=False, **s0),
          [row("x"), row("score"), Arg("t", "coef"), Arg("dt", "float", lo_open=True),
           Arg("predictor", "choice"), Arg("probability_flow", "bool"), *stream],
          batch=("x", "score"), empty="ok", zero_d="either",
          extra=[("t=1.5", "t", dict(t=1.5), "error"),
                 ("sde=str", "sde", dict(sde="vp"), "error"),
                 ("sde=nan-beta", "sde", lambda a: dict(sde=_nan_sde()), "error")]),
        T("gmkernels.langevin_corrector_step",
          lambda a: gmkernels.langevin_corrector_step(a["x"], a["score"], a["snr"],
                                                      alpha=a["alpha"], **kw_stream(a)),
          lambda: dict(x=_x(), score=_x(seed=2), snr=0.16, alpha=1.0, **s0),
          # the batch step size: a NaN score row makes every row NaN; an inf one makes the
          # step 0 (x back, its own row NaN from 0 * inf); tiny scores give x back
          [row("x"), row("score", nan_all=True),
           Arg("snr", "float", lo_open=True), Arg("alpha", "coef"), *stream],
          batch=("x", "score"), empty="ok", zero_d="either",
          extra=[("score-row-tiny", "score",
                  lambda a: dict(score=_scaled_row(a["score"], 1, 1e-20)), "either"),
                 ("score-all-tiny", "score", lambda a: dict(score=a["score"] * 1e-20), "either"),
                 ("score-zero", "score", lambda a: dict(score=a["score"] * 0), "either")]),
        T("gmkernels.affine_noise_step",
          lambda a: gmkernels.affine_noise_step(a["x"], a["e"], a["cx"], a["ce"], a["cn"],
                                                **kw_stream(a)),
          lambda: dict(x=_x(), e=_x(seed=2), cx=1.01, ce=0.02, cn=0.1, **s0),
          [row("x"), row("e"), Arg("cx", "coef", lo=None), Arg("ce", "coef", lo=None),
           Arg("cn", "coef", lo=None), *stream],
          batch=("x", "e"), empty="ok", zero_d="either"),
        T("gmkernels.ddpm_step",
          lambda a: gmkernels.ddpm_step(a["x_t"], a["eps_pred"], a["t"], a["schedule"],
                                        **kw_stream(a)),
          lambda: dict(x_t=_x(), eps_pred=_x(seed=2), t=5, schedule=sched, **s0),
          [row("x_t"), row("eps_pred"), Arg("t", "count", huge=True), *stream],
          batch=("x_t", "eps_pred"), empty="ok", zero_d="either",
          extra=[("t=T", "t", dict(t=10), "error"),
                 ("t=tensor", "t", dict(t=torch.tensor([0, 3, 5, 9])), "ok"),
                 ("t=tensor-out-of-range", "t", dict(t=torch.tensor([0, 3, 5, 10])), "error"),
                 ("t=float-tensor", "t", dict(t=torch.full((B,), 2.0)), "error"),
                 ("schedule=str", "schedule", dict(schedule="linear"), "error")]),
        T("gmkernels.planar_flow",
          lambda a: gmkernels.planar_flow(a["z"], a["u_hat"], a["w"], a["b"]),
          lambda: dict(z=_x(), u_hat=gmkernels.planar_u_hat(_x(2, seed=5), _x(2, seed=6)),
                       w=_x(2, seed=6), b=torch.zeros(2)),
          [row("z"), shared("u_hat"), shared("w"), shared("b")],
          batch=("z",), empty="ok", rows_of_out=B,
          extra=[("u_hat-per-sample", "u_hat", lambda a: dict(
                     u_hat=a["u_hat"].expand(B, 2, 3).contiguous(),
                     w=a["w"].expand(B, 2, 3).contiguous(), b=a["b"].expand(B, 2).contiguous()),
                  "ok")]),
        T("gmkernels.planar_u_hat",
          lambda a: gmkernels.planar_u_hat(a["u"], a["w"], margin=a["margin"]),
          lambda: dict(u=_x(), w=_x(seed=2), margin=None),
          [row("u"), row("w"), Arg("margin", "float", optional=True, lo_open=True)],
          batch=("u", "w"), empty="ok",
          extra=[("u=float16", "u", lambda a: dict(u=a["u"].half(), w=a["w"].half()), "either"),
                 ("u=huge", "u", lambda a: dict(u=a["u"] * 1e30), "either")]),
        T("gmkernels.affine_coupling",
          lambda a: gmkernels.affine_coupling(a["x"], a["s"], a["t"], a["mask"],
                                              inverse=a["inverse"], scale=a["scale"],
                                              clamp=a["clamp"]),
          lambda: dict(x=_x(), s=_x(seed=2), t=_x(seed=3), mask=torch.tensor([1, 0, 1]),
                       inverse=False, scale="exp", clamp=None),
          [row("x", shows=(0,)), row("s", at=1), row("t", at=1, shows=(0,)),
           Arg("mask", "shared", int_ok=True, nan="skip", zero_d="ok"),
           Arg("inverse", "bool"), Arg("scale", "choice"),
           Arg("clamp", "float", optional=True, lo=0.0, lo_open=True)],
          batch=("x", "s", "t"), empty="ok", zero_d="error",
          extra=[("mask=2", "mask", dict(mask=torch.tensor([1, 2, 0])), "error"),
                 ("mask=float-nan", "mask", dict(mask=torch.tensor([1.0, NAN, 0.0])), "error")]),
        T("gmkernels.rbm_gibbs",
          lambda a: gmkernels.rbm_gibbs(a["v0"], a["W"], a["b"], a["c"], a["k"], beta=a["beta"],
                                        **kw_stream(a)),
          lambda: dict(v0=_bits(), W=_x(5, 3, torch.float64), b=torch.zeros(5, dtype=torch.float64),
                       c=torch.zeros(3, dtype=torch.float64), k=2, beta=1.0, **s0),
          [row("v0"), shared("W"), shared("b"), shared("c"),
           Arg("k", "count"), Arg("beta", "coef", lo=None),
           Arg("seed", "seed"), Arg("offset", "offset", steps=4),
           Arg("sample_offset", "sample_offset")],
          batch=("v0",), empty="ok",
          extra=[("k=2^62", "k", dict(k=1 << 62), "error")]),
        T("gmkernels.rbm_free_energy",
          lambda a: gmkernels.rbm_free_energy(a["v"], a["W"], a["b"], a["c"]),
          lambda: dict(v=_bits(), W=_x(5, 3, torch.float64), b=torch.zeros(5, dtype=torch.float64),
                       c=torch.zeros(3, dtype=torch.float64)),
          [row("v"), shared("W"), shared("b"), shared("c")], batch=("v",), empty="ok"),
        T("gmkernels.rbm_log_z_exact",
          lambda a: gmkernels.rbm_log_z_exact(a["W"], a["b"], a["c"]),
          lambda: dict(W=_x(5, 3, torch.float64), b=torch.zeros(5, dtype=torch.float64),
                       c=torch.zeros(3, dtype=torch.float64)),
          [shared("W"), shared("b"), shared("c")], rows_of_out=None),
        T("gmkernels.rbm_ais",
          lambda a: gmkernels.rbm_ais(a["W"], a["b"], a["c"], n_chains=a["n_chains"],
                                      betas=a.get("betas"), n_betas=a["n_betas"], seed=a["seed"],
                                      offset=a["offset"]),
          lambda: dict(W=_x(5, 3, torch.float64), b=torch.zeros(5, dtype=torch.float64),
                       c=torch.zeros(3, dtype=torch.float64), n_chains=4, n_betas=20, seed=0,
                       offset=0),
          [shared("W"), shared("b"), shared("c"), Arg("n_chains", "count", lo=2),
           Arg("n_betas", "count", lo=3), Arg("seed", "seed"),
           Arg("offset", "offset", steps=40)],
          rows_of_out=None,
          extra=[("betas=not-increasing", "betas", dict(betas=torch.tensor([0.0, 0.7, 0.5, 1.0])),
                  "error")]),
        T("gmkernels.bm_gibbs",
          lambda a: gmkernels.bm_gibbs(a["y"], a["W"], a["b"], a["n_sweeps"], beta=a["beta"],
                                       order=a["order"], **kw_stream(a)),
          lambda: dict(y=_spins(), W=_sym(5), b=torch.zeros(5), n_sweeps=2, beta=1.0,
                       order="sequential", **s0),
          [row("y"), Arg("W", "shared", layouts=False), shared("b"),
           Arg("n_sweeps", "count"), Arg("beta", "coef"),
           Arg("order", "choice"), Arg("seed", "seed"),
           Arg("offset", "offset", steps=2), Arg("sample_offset", "sample_offset")],
          batch=("y",), empty="ok",
          extra=[("same:W=non-contiguous-symmetric", "W",
                  lambda a: dict(W=_strided(a["W"])), "ok")]),
        T("gmkernels.bm_exact",
          lambda a: gmkernels.bm_exact(a["W"], a["b"], beta=a["beta"]),
          lambda: dict(W=_sym(4), b=torch.zeros(4), beta=1.0),
          [Arg("W", "shared", layouts=False), shared("b"), Arg("beta", "float")],
          rows_of_out=None),
        *[T(f"gmkernels.random.{name}",
            lambda a, name=name: getattr(gmkernels.random, name)(
                a["shape"], **kw_stream(a), **({} if name == "uint32" else {"dtype": a["dtype"]}),
                device=a["device"]),
            lambda name=name: dict(shape=(B, 3), device=None, **s0,
                                   **({} if name == "uint32" else {"dtype": torch.float32})),
            [Arg("shape", "shape"), Arg("device", "device"),
             *([] if name == "uint32" else [Arg("dtype", "dtype")]), *stream], meta="skip",
            extra=[("dtype=float16", "dtype", dict(dtype=torch.float16), "ok")]
            if name != "uint32" else [])
          for name in ("uint32", "uniform", "normal", "rademacher")],
        T("gmkernels.random.bernoulli",
          lambda a: gmkernels.random.bernoulli(a["p"], **kw_stream(a)),
          lambda: dict(p=torch.full((B, 3), 0.3), **s0),
          [row("p", any_shape=True), *stream], batch=("p",),
          empty="ok",
          zero_d="either",
          extra=[("p=1.5", "p", dict(p=torch.full((B, 3), 1.5)), "error"),
                 ("p=-0.5", "p", dict(p=torch.full((B, 3), -0.5)), "error")]),
    ]


class _NanSDE:
    kind, beta_min, beta_max = "vp", NAN, 20.0


def _nan_sde():
    return _NanSDE()


def _scaled_row(t, row, scale):
    t = t.clone()
    t[row] *= scale
    return t


def _models() -> list:
    T = Target
    f64 = torch.float64
    data = lambda: _bits(16, 5, f64, seed=7)  # noqa: E731
    return [
        # ---------------------------------------------------------------- RBM
        T("RBM", lambda a: RBM(a["n_visible"], a["n_hidden"], init_std=a["init_std"],
                               dtype=a["dtype"], generator=a["generator"]),
          lambda: dict(n_visible=5, n_hidden=3, init_std=0.1, dtype=f64, generator=_g(0)),
          [Arg("n_visible", "count", lo=1, huge=False), Arg("n_hidden", "count", lo=1, huge=False),
           Arg("init_std", "float"), Arg("dtype", "dtype"), Arg("generator", "gen")],
          reference=False, inference=False),
        T("RBM.free_energy", lambda a: _rbm().free_energy(a["v"]), lambda: dict(v=_bits()),
          [Arg("v", "row")], batch=("v",), empty="ok"),
        T("RBM.hidden_probs", lambda a: _rbm().hidden_probs(a["v"]), lambda: dict(v=_bits()),
          [Arg("v", "row")], batch=("v",), empty="ok"),
        T("RBM.sample",
          lambda a: _rbm().sample(a["n"], k=a["k"], init=a["init"], beta=a["beta"], seed=a["seed"],
                                  return_probs=a["return_probs"]),
          lambda: dict(n=B, k=3, init=_bits(), beta=1.0, seed=0, return_probs=False),
          [Arg("n", "count", huge=True), Arg("k", "count"),
           Arg("init", "row", optional=True), Arg("beta", "coef", lo=None), Arg("seed", "seed"),
           Arg("return_probs", "bool")],
          extra=[("init-rows-differ-from-n", "init", lambda a: dict(n=B + 2), "error"),
                 ("init=None", "init", dict(init=None), "ok")]),
        T("RBM.fit",
          lambda a: _rbm().fit(a["data"], epochs=a["epochs"], lr=a["lr"], k=a["k"],
                               persistent=a["persistent"], batch_size=a["batch_size"],
                               weight_decay=a["weight_decay"], momentum=a["momentum"],
                               n_chains=a["n_chains"], seed=a["seed"]),
          lambda: dict(data=data(), epochs=2, lr=0.05, k=1, persistent=True, batch_size=8,
                       weight_decay=0.0, momentum=0.5, n_chains=None, seed=0),
          [Arg("data", "row"), Arg("epochs", "count", huge=False), Arg("lr", "float", lo_open=True),
           Arg("k", "count", lo=1), Arg("persistent", "bool"),
           Arg("batch_size", "count", lo=1, huge=False), Arg("weight_decay", "float"),
           Arg("momentum", "float"), Arg("n_chains", "count", lo=1, optional=True),
           Arg("seed", "seed")],
          batch=("data",), empty="error", rows_of_out=None,
          extra=[("data=0.5", "data", lambda a: dict(data=a["data"] * 0.5), "ok"),
                 ("data=2", "data", lambda a: dict(data=a["data"] * 2), "error"),
                 ("momentum=1", "momentum", dict(momentum=1.0), "error")]),
        T("RBM.log_partition",
          lambda a: _rbm().log_partition(a["method"], n_chains=a["n_chains"], n_betas=a["n_betas"],
                                         seed=a["seed"]),
          lambda: dict(method="ais", n_chains=4, n_betas=20, seed=0),
          [Arg("method", "choice"), Arg("n_chains", "count", lo=2),
           Arg("n_betas", "count", lo=3), Arg("seed", "seed")],
          rows_of_out=None),
        T("RBM.log_likelihood",
          lambda a: _rbm().log_likelihood(a["v"], method=a["method"]),
          lambda: dict(v=_bits(), method="exact"),
          [Arg("v", "row"), Arg("method", "choice")], batch=("v",), empty="ok"),
        T("RBM.pseudo_likelihood",
          lambda a: _rbm().pseudo_likelihood(a["v"], chunk=a["chunk"]),
          lambda: dict(v=_bits(), chunk=2),
          [Arg("v", "row", nan="skip"), Arg("chunk", "count", lo=1, huge=False)], batch=("v",),
          empty="ok",
          extra=[("v=nan", "v", lambda a: dict(v=_poke(a["v"], NAN, 1)), "error"),
                 ("chunk=huge", "chunk", dict(chunk=1 << 63), "ok")]),
        T("RBM.load",
          lambda a: _load_buf(RBM, a["state"]),
          lambda: dict(state=_state(_rbm())), [], inference=False, reference=False,
          extra=[("state=nan-W", "W", lambda a: dict(state=_nan_in(a["state"], "W")), "error"),
                 ("state=inf-b", "b", lambda a: dict(state=_nan_in(a["state"], "b") | {
                     "b": a["state"]["b"].clone().fill_(INF)}), "error"),
                 ("state=W-wrong-shape", "W",
                  lambda a: dict(state=a["state"] | {"W": torch.zeros(5, dtype=f64)}), "error"),
                 ("state=chains-not-binary", "chains", lambda a: dict(
                     state=a["state"] | {"chains": torch.full((2, 5), 3.0, dtype=f64)}), "error")]),
        T("RBM.load_state_dict",
          lambda a: _load_sd(_rbm(), a["state"]),
          lambda: dict(state=_state(_rbm())), [], inference=False, reference=False,
          extra=[("state=nan-W", "W", lambda a: dict(state=_nan_in(a["state"], "W")), "error"),
                 ("state=nan-c", "c", lambda a: dict(state=_nan_in(a["state"], "c")), "error")]),
        # ---------------------------------------------------------------- BoltzmannMachine
        T("BoltzmannMachine", lambda a: BoltzmannMachine(a["d"], dtype=a["dtype"]),
          lambda: dict(d=5, dtype=torch.float32),
          [Arg("d", "count", lo=1, huge=False), Arg("dtype", "dtype")], reference=False,
          inference=False),
        T("BoltzmannMachine.energy", lambda a: _bm().energy(a["y"]), lambda: dict(y=_spins()),
          [Arg("y", "row")], batch=("y",), empty="ok"),
        T("BoltzmannMachine.log_prob", lambda a: _bm().log_prob(a["y"]), lambda: dict(y=_spins()),
          [Arg("y", "row")], batch=("y",), empty="ok"),
        T("BoltzmannMachine.exact", lambda a: _bm().exact(a["beta"]), lambda: dict(beta=1.0),
          [Arg("beta", "float")], rows_of_out=None),
        T("BoltzmannMachine.sample",
          lambda a: _bm().sample(a["n"], a["n_sweeps"], init=a["init"], beta=a["beta"],
                                 order=a["order"], seed=a["seed"], offset=a["offset"]),
          lambda: dict(n=B, n_sweeps=2, init=_spins(), beta=1.0, order="sequential", seed=0,
                       offset=0),
          [Arg("n", "count"), Arg("n_sweeps", "count"),
           Arg("init", "row", optional=True), Arg("beta", "coef"), Arg("order", "choice"),
           Arg("seed", "seed"), Arg("offset", "offset", steps=2)],
          extra=[("init-rows-differ-from-n", "init", lambda a: dict(n=B + 2), "error")]),
        T("BoltzmannMachine.fit",
          lambda a: _bm().fit(a["data"], epochs=a["epochs"], lr=a["lr"], n_chains=a["n_chains"],
                              n_sweeps=a["n_sweeps"], batch_size=a["batch_size"],
                              weight_decay=a["weight_decay"], momentum=a["momentum"],
                              seed=a["seed"]),
          lambda: dict(data=_spins(16), epochs=2, lr=0.05, n_chains=8, n_sweeps=1, batch_size=None,
                       weight_decay=0.0, momentum=0.0, seed=0),
          [Arg("data", "row"), Arg("epochs", "count", lo=1, huge=False),
           Arg("lr", "float", lo_open=True), Arg("n_chains", "count", lo=1),
           Arg("n_sweeps", "count", lo=1),
           Arg("batch_size", "count", lo=1, optional=True, huge=False),
           Arg("weight_decay", "float"), Arg("momentum", "float"), Arg("seed", "seed")],
          batch=("data",), empty="error", rows_of_out=None,
          extra=[("momentum=1", "momentum", dict(momentum=1.0), "error")]),
        T("BoltzmannMachine.load_state_dict",
          lambda a: _load_sd(_bm(), a["state"]),
          lambda: dict(state=_state(_bm())), [], inference=False, reference=False,
          extra=[("state=nan-W", "W", lambda a: dict(state=_nan_in(a["state"], "W")), "error"),
                 ("state=asymmetric-W", "W", lambda a: dict(
                     state=a["state"] | {"W": a["state"]["W"] + torch.triu(torch.ones(5, 5), 1)}),
                  "error"),
                 ("state=chains-not-spins", "chains", lambda a: dict(
                     state=a["state"] | {"chains": torch.zeros(2, 5)}), "error")]),
        # ---------------------------------------------------------------- PlanarFlow
        T("PlanarFlow", lambda a: PlanarFlow(a["dim"], a["n_layers"], amortized=a["amortized"],
                                             init_scale=a["init_scale"]),
          lambda: dict(dim=3, n_layers=4, amortized=False, init_scale=0.1),
          [Arg("dim", "count", lo=1, huge=False), Arg("n_layers", "count", huge=False),
           Arg("amortized", "bool"), Arg("init_scale", "float")], reference=False,
          inference=False),
        T("PlanarFlow.forward", lambda a: _planar()(a["z"]), lambda: dict(z=_x()),
          [Arg("z", "row")], batch=("z",), empty="ok"),
        T("PlanarFlow.forward", lambda a: _planar(amortized=True)(a["z"], a["params"]),
          lambda: dict(z=_x(), params=_x(B, PlanarFlow.num_params(3, 4), seed=8) * 0.5),
          [Arg("z", "row"), Arg("params", "row")],
          batch=("z", "params"), empty="ok"),
        T("PlanarFlow.inverse", lambda a: _planar().inverse(a["x"], iters=a["iters"]),
          lambda: dict(x=_x(), iters=60),
          [Arg("x", "row"), Arg("iters", "count", lo=1, huge=False)], batch=("x",), empty="ok"),
        T("PlanarFlow.log_prob", lambda a: _planar().log_prob(a["x"], iters=a["iters"]),
          lambda: dict(x=_x(), iters=60),
          [Arg("x", "row"), Arg("iters", "count", lo=1, huge=False)],
          batch=("x",), empty="ok"),
        T("PlanarFlow.base_log_prob", lambda a: _planar().base_log_prob(a["z"]), lambda: dict(z=_x()),
          [Arg("z", "row")], batch=("z",), empty="ok"),
        T("PlanarFlow.sample_with_log_prob",
          lambda a: _planar().sample_with_log_prob(a["n"], generator=a["generator"]),
          lambda: dict(n=B, generator=_g(9)),
          [Arg("n", "count"), Arg("generator", "gen")]),
        T("PlanarFlow.sample", lambda a: _planar().sample(a["n"], generator=a["generator"]),
          lambda: dict(n=B, generator=_g(9)), [Arg("n", "count"), Arg("generator", "gen")]),
        T("PlanarFlow.load_state_dict", lambda a: _load_sd(_planar(), a["state"]),
          lambda: dict(state=_state(_planar())), [], inference=False, reference=False,
          extra=[("state=nan-u", "u", lambda a: dict(state=_nan_in(a["state"], "u")), "error")]),
        # ---------------------------------------------------------------- RealNVP
        T("RealNVP", lambda a: _seeded(lambda: RealNVP(a["dim"], a["n_layers"], a["hidden"],
                                                       clamp=a["clamp"], scale=a["scale"])),
          lambda: dict(dim=3, n_layers=2, hidden=8, clamp=5.0, scale="exp"),
          [Arg("dim", "count", lo=2, huge=False), Arg("n_layers", "count", lo=1, huge=False),
           Arg("hidden", "count", lo=1, huge=False),
           Arg("clamp", "float", optional=True, lo_open=True), Arg("scale", "choice")],
          reference=False, inference=False),
        T("RealNVP.forward", lambda a: _nvp()(a["x"]), lambda: dict(x=_x()),
          [Arg("x", "row")], batch=("x",), empty="ok"),
        T("RealNVP.inverse", lambda a: _nvp().inverse(a["z"]), lambda: dict(z=_x()),
          [Arg("z", "row")], batch=("z",), empty="ok"),
        T("RealNVP.log_prob", lambda a: _nvp().log_prob(a["x"]), lambda: dict(x=_x()),
          [Arg("x", "row")], batch=("x",), empty="ok"),
        T("RealNVP.sample", lambda a: _nvp().sample(a["n"], generator=a["generator"]),
          lambda: dict(n=B, generator=_g(9)), [Arg("n", "count"), Arg("generator", "gen")]),
        T("RealNVP.load_state_dict", lambda a: _load_sd(_nvp(), a["state"]),
          lambda: dict(state=_state(_nvp())), [], inference=False, reference=False,
          extra=[("state=nan-weight", "nets.0.head.weight", lambda a: dict(
              state=_nan_in(a["state"], "nets.0.head.weight")), "error")]),
    ]


def _score() -> list:
    T = Target
    sde = score.VPSDE()
    sched = score.DDPMSchedule.linear(8)
    kw_stream = lambda a: dict(seed=a["seed"], offset=a["offset"], sample_offset=a["sample_offset"])  # noqa: E731
    s0 = dict(seed=0, offset=0, sample_offset=0)
    minus = lambda x: -x  # noqa: E731
    return [
        T("gmkernels.score.langevin_sample",
          lambda a: score.langevin_sample(a["score_fn"], a["x0"], a["n_steps"], a["step_size"],
                                          clamp=a["clamp"], **kw_stream(a)),
          lambda: dict(score_fn=minus, x0=_x(), n_steps=3, step_size=0.05, clamp=None, **s0),
          [Arg("score_fn", "fn"), Arg("x0", "row", any_shape=True),
           Arg("n_steps", "count", huge=False),
           Arg("step_size", "coef", lo_open=True), Arg("clamp", "clamp", optional=True),
           Arg("seed", "seed"), Arg("offset", "offset", steps=3), Arg("sample_offset", "sample_offset")],
          batch=("x0",), empty="ok", zero_d="error",
          extra=[("score_fn-nan-row", "score_fn", dict(score_fn=_nan_row(minus)), "nan"),
                 ("score_fn-wrong-shape", "score_fn", dict(score_fn=lambda x: x[:, :1]), "error")]),
        T("gmkernels.score.annealed_langevin_sample",
          lambda a: score.annealed_langevin_sample(a["score_fn"], a["x0"], a["sigmas"],
                                                   n_steps_each=a["n_steps_each"], eps=a["eps"],
                                                   denoise=a["denoise"], **kw_stream(a)),
          lambda: dict(score_fn=lambda x, s: -x, x0=_x(), sigmas=[1.0, 0.5], n_steps_each=2,
                       eps=0.01, denoise=True, **s0),
          [Arg("score_fn", "fn"), Arg("x0", "row", any_shape=True),
           Arg("n_steps_each", "count", huge=False),
           Arg("eps", "coef", lo_open=True), Arg("denoise", "bool"), Arg("seed", "seed"),
           Arg("offset", "offset", steps=4), Arg("sample_offset", "sample_offset")],
          batch=("x0",), empty="ok", zero_d="error",
          extra=[("sigmas=increasing", "sigmas", dict(sigmas=[0.5, 1.0]), "error"),
                 ("sigmas=nan", "sigmas", dict(sigmas=[1.0, NAN]), "error"),
                 ("sigmas=empty", "sigmas", dict(sigmas=[]), "error"),
                 ("sigmas=str", "sigmas", dict(sigmas="1.0"), "error"),
                 ("score_fn-nan-row", "score_fn", dict(score_fn=_nan_row(lambda x, s: -x)), "nan")]),
        T("gmkernels.score.sgld_sample",
          lambda a: score.sgld_sample(a["energy_fn"], a["x0"], a["n_steps"], a["step_size"],
                                      noise_scale=a["noise_scale"], **kw_stream(a)),
          lambda: dict(energy_fn=lambda x: 0.5 * (x * x).sum(1), x0=_x(), n_steps=3, step_size=0.1,
                       noise_scale=None, **s0),
          [Arg("energy_fn", "fn"), Arg("x0", "row", any_shape=True),
           Arg("n_steps", "count", huge=False),
           Arg("step_size", "coef", lo_open=True), Arg("noise_scale", "coef", optional=True),
           Arg("seed", "seed"), Arg("offset", "offset", steps=3), Arg("sample_offset", "sample_offset")],
          batch=("x0",), empty="ok", zero_d="error"),
        T("gmkernels.score.sample",
          lambda a: score.sample(a["score_fn"], a["sde"], a["shape"], n_steps=a["n_steps"],
                                 predictor=a["predictor"], corrector=a["corrector"], snr=a["snr"],
                                 n_corrector_steps=a["n_corrector_steps"], eps=a["eps"],
                                 seed=a["seed"], dtype=a["dtype"], device=a["device"]),
          lambda: dict(score_fn=lambda x, t: -x, sde=sde, shape=(B, 2), n_steps=3,
                       predictor="euler_maruyama", corrector=None, snr=0.16,
                       n_corrector_steps=1, eps=1e-3, seed=0, dtype=torch.float32, device=None),
          [Arg("score_fn", "fn"), Arg("shape", "shape"),
           Arg("n_steps", "count", lo=1, huge=False),
           Arg("predictor", "choice", optional=True), Arg("corrector", "choice", optional=True),
           Arg("snr", "float", lo_open=True), Arg("n_corrector_steps", "count", huge=False),
           Arg("eps", "float", lo_open=True), Arg("seed", "seed"), Arg("dtype", "dtype"),
           Arg("device", "device")],
          extra=[("sde=str", "sde", dict(sde="vp"), "error"),
                 ("eps=1", "eps", dict(eps=1.0), "error"),
                 ("score_fn-nan-row", "score_fn", dict(score_fn=_nan_row(lambda x, t: -x)), "nan"),
                 ("corrector=langevin", "corrector", dict(corrector="langevin"), "ok"),
                 ("corrector=langevin_batch", "corrector", dict(corrector="langevin_batch"),
                  "error"),
                 ("corrector=langevin-nan-row", "score_fn",
                  dict(corrector="langevin", score_fn=_nan_row(lambda x, t: -x)), "nan-all")]),
        T("gmkernels.score.ddpm_sample",
          lambda a: score.ddpm_sample(a["eps_fn"], a["schedule"], a["shape"], seed=a["seed"],
                                      dtype=a["dtype"], device=a["device"]),
          lambda: dict(eps_fn=lambda x, t: torch.zeros_like(x), schedule=sched, shape=(B, 2),
                       seed=0, dtype=torch.float32, device=None),
          [Arg("eps_fn", "fn"), Arg("shape", "shape"),
           Arg("seed", "seed"), Arg("dtype", "dtype"),
           Arg("device", "device")],
          extra=[("schedule=str", "schedule", dict(schedule="linear"), "error"),
                 ("eps_fn-nan-row", "eps_fn",
                  dict(eps_fn=_nan_row(lambda x, t: torch.zeros_like(x))), "nan")]),
        T("gmkernels.score.denoising_score_matching_loss",
          lambda a: score.denoising_score_matching_loss(a["score_fn"], a["x"], a["sde_or_sigmas"],
                                                        weighting=a["weighting"], eps=a["eps"],
                                                        seed=a["seed"], offset=a["offset"]),
          lambda: dict(score_fn=lambda x, t: -x, x=_x(), sde_or_sigmas=sde, weighting="sigma2",
                       eps=1e-5, seed=0, offset=0),
          [Arg("score_fn", "fn"), Arg("x", "row", nan="skip", any_shape=True),
           Arg("weighting", "choice"),
           Arg("eps", "float", lo_open=True), Arg("seed", "seed"),
           Arg("offset", "offset", steps=2)],
          batch=("x",), empty="either", zero_d="error", rows_of_out=None,
          extra=[("sde_or_sigmas=str", "sde", dict(sde_or_sigmas="vp"), "error"),
                 ("sigmas=negative", "sigmas", dict(sde_or_sigmas=torch.tensor([1.0, -0.5])), "error"),
                 ("sigmas=ok", "sigmas", dict(sde_or_sigmas=torch.tensor([1.0, 0.5])), "ok")]),
        T("gmkernels.score.sliced_score_matching_loss",
          lambda a: score.sliced_score_matching_loss(
              a["score_fn"], a["x"], a["n_projections"], variance_reduction=a["variance_reduction"],
              probe=a["probe"], mode=a["mode"], seed=a["seed"], offset=a["offset"],
              generator=a["generator"]),
          lambda: dict(score_fn=lambda x: -x * x, x=_x(), n_projections=2, variance_reduction=True,
                       probe="rademacher", mode="vjp", seed=0, offset=0, generator=None),
          [Arg("score_fn", "fn"), Arg("x", "row", nan="skip", any_shape=True),
           Arg("n_projections", "count", lo=1), Arg("variance_reduction", "bool"),
           Arg("probe", "choice"), Arg("mode", "choice"), Arg("seed", "seed"),
           Arg("offset", "offset"), Arg("generator", "gen")],
          batch=("x",), empty="either", zero_d="error", rows_of_out=None,
          extra=[("score_fn=wrong-shape", "score_fn",
                  dict(score_fn=lambda x: x[:, :1]), "error")]),
        T("gmkernels.score.score_matching_loss",
          lambda a: score.score_matching_loss(a["score_fn"], a["x"], mode=a["mode"]),
          lambda: dict(score_fn=lambda x: -x * x, x=_x(), mode="jvp"),
          [Arg("score_fn", "fn"), Arg("x", "row", nan="skip", any_shape=True),
           Arg("mode", "choice")],
          batch=("x",), empty="either", zero_d="error", rows_of_out=None),
        T("VPSDE", lambda a: score.VPSDE(a["beta_min"], a["beta_max"]),
          lambda: dict(beta_min=0.1, beta_max=20.0),
          [Arg("beta_min", "float"), Arg("beta_max", "float", lo_open=True)], inference=False,
          reference=False),
        T("VESDE", lambda a: score.VESDE(a["sigma_min"], a["sigma_max"]),
          lambda: dict(sigma_min=0.01, sigma_max=50.0),
          [Arg("sigma_min", "float", lo_open=True), Arg("sigma_max", "float", lo_open=True)],
          inference=False, reference=False,
          extra=[("sigma_min>sigma_max", "sigma_min", dict(sigma_min=60.0), "error")]),
        T("DDPMSchedule", lambda a: score.DDPMSchedule(a["betas"], sigma=a["sigma"]),
          lambda: dict(betas=torch.linspace(1e-4, 0.02, 8, dtype=torch.float64), sigma="beta"),
          [Arg("sigma", "choice")], inference=False, reference=False,
          extra=[("betas=1", "beta", lambda a: dict(betas=torch.full((4,), 1.0)), "error"),
                 ("betas=nan", "beta", lambda a: dict(betas=torch.tensor([0.1, NAN])), "error"),
                 ("betas=str", "betas", dict(betas="linear"), "error"),
                 ("betas=empty", "betas", dict(betas=[]), "error")]),
        *[T(f"DDPMSchedule.{name}", lambda a, name=name: getattr(score.DDPMSchedule, name)(a["T"]),
            lambda: dict(T=8), [Arg("T", "count", lo=1, huge=False)], inference=False,
            reference=False) for name in ("linear", "cosine")],
        *[T(f"{cls.__name__}.prior_sampling",
            lambda a, cls=cls: cls().prior_sampling(a["shape"], seed=a["seed"], offset=a["offset"],
                                                    generator=a["generator"], device=a["device"],
                                                    dtype=a["dtype"]),
            lambda: dict(shape=(B, 2), seed=0, offset=0, generator=None, device=None,
                         dtype=torch.float32),
            [Arg("shape", "shape"), Arg("seed", "seed"),
             Arg("offset", "offset"), Arg("generator", "gen"), Arg("device", "device"),
             Arg("dtype", "dtype")])
          for cls in (score.VPSDE, score.VESDE)],
        *[T(f"{cls.__name__}.perturb",
            lambda a, cls=cls: cls().perturb(a["x0"], a["t"], **kw_stream(a)),
            lambda: dict(x0=_x(), t=0.3, **s0),
            [Arg("x0", "row", any_shape=True, shows=(0,)), Arg("t", "coef"), *[
                Arg(n, n) for n in ("seed", "offset", "sample_offset")]],
            batch=("x0",), empty="ok", zero_d="either",
            extra=[("t=1.5", "t", dict(t=1.5), "error")])
          for cls in (score.VPSDE, score.VESDE)],
    ]


def _trace() -> list:
    """gmkernels.trace (docs/spec.md §4): fn = x² elementwise, so the Jacobian diag(2x) carries
    a NaN of a row into that row's trace only."""
    T = Target
    square = lambda x: x * x  # noqa: E731
    out = []
    for name, f in (("trace", gmkernels.trace.trace), ("divergence", gmkernels.trace.divergence)):
        std = {"return_std": False} if name == "trace" else {}
        out.append(T(
            f"gmkernels.trace.{name}",
            lambda a, f=f, std=std: f(a["fn"], a["x"], n_probes=a["n_probes"], method=a["method"],
                                      probe=a["probe"], mode=a["mode"], seed=a["seed"],
                                      offset=a["offset"], sample_offset=a["sample_offset"],
                                      create_graph=a["create_graph"], generator=a["generator"],
                                      **{k: a[k] for k in std}),
            lambda std=std: dict(fn=square, x=_x(), n_probes=4, method="xtrace", probe="gaussian",
                                 mode="vjp", seed=0, offset=0, sample_offset=0,
                                 create_graph=False, generator=None, **std),
            [Arg("fn", "fn"), Arg("x", "row", any_shape=True), Arg("n_probes", "count", lo=1),
             Arg("method", "choice"), Arg("probe", "choice"), Arg("mode", "choice"),
             Arg("seed", "seed"), Arg("offset", "offset"), Arg("sample_offset", "sample_offset"),
             Arg("create_graph", "bool"), Arg("generator", "gen")]
            + ([Arg("return_std", "bool")] if std else []),
            batch=("x",), empty="either", zero_d="error",
            extra=[("fn=wrong-shape", "fn", dict(fn=lambda x: x[:, :1]), "error"),
                   ("n_probes=1-xtrace", "n_probes", dict(n_probes=1), "error"),
                   ("hutchpp", "method", dict(method="hutchpp", n_probes=6), "ok"),
                   ("jvp", "mode", dict(mode="jvp"), "ok")]))
    out.append(T(
        "gmkernels.trace.probes",
        lambda a: gmkernels.trace.probes(a["x"], a["n_probes"], probe=a["probe"], seed=a["seed"],
                                         offset=a["offset"], sample_offset=a["sample_offset"],
                                         generator=a["generator"]),
        lambda: dict(x=_x(), n_probes=2, probe="sphere", seed=0, offset=0, sample_offset=0,
                     generator=None),
        [Arg("x", "row", any_shape=True, nan="skip"), Arg("n_probes", "count", lo=1),
         Arg("probe", "choice"), Arg("seed", "seed"), Arg("offset", "offset"),
         Arg("sample_offset", "sample_offset"), Arg("generator", "gen")],
        batch=("x",), empty="either", zero_d="error", rows_of_out=None))
    return out


def targets() -> list:
    return _ops() + _models() + _score() + _trace()


def cases() -> list:
    out = [c for t in targets() for c in cases_of(t)]
    seen: dict = {}
    for c in out:  # the same entry point may be described twice (PlanarFlow shared / amortized)
        n = seen.get(c.id, 0)
        seen[c.id] = n + 1
        if n:
            c.id = f"{c.id}#{n + 1}"
    return out


OWNERS = {"A": "double backward", "B": "in-place version counters and overlapping writes",
          "C": "the ops' NaN/range contracts and counter overflow"}
