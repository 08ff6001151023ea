"""The argument checks of every gmkernels op and model, written once.

Every check raises one exception type for one kind of mistake, with one message format,
``op: argument must be ..., got ...``:

* ``TypeError``: a wrong Python type or tensor dtype;
* ``ValueError``: a wrong shape, value, range or device.

Which layer checks what:

* the Python wrappers (:mod:`gmkernels.ops`) and the models (flows, boltzmann, score) own
  every user-facing check, with these functions, before a backend is chosen, so the native,
  Triton and reference backends see the same validated arguments;
* the C++ ``*_prepare`` functions keep the checks that guard memory (shapes, dtypes, devices,
  index limits) for callers of ``torch.ops.gmkernels.*`` who bypass the wrappers;
* the Triton launchers (:mod:`gmkernels.triton`) check nothing: they are called only by the
  wrappers, with arguments these functions have checked.

Tensor values (finite, >= 0, in a range) are read in one place, :func:`values`, which
skips the read under ``torch.compile`` tracing (a data-dependent branch it cannot trace) and
for tensors that are not on the CPU (a read there is a device-to-host copy and a sync that
would stall a sampler loop; the kernels propagate a NaN instead of failing).

>>> import torch
>>> from gmkernels import _checks
>>> _checks.per_sample("op", "step_size", 0.1, torch.zeros(3, 2))
(None, 0.1)
>>> _checks.per_sample("op", "step_size", -1.0, torch.zeros(3, 2))
Traceback (most recent call last):
    ...
ValueError: op: step_size must be finite and >= 0, got -1.0
"""

from __future__ import annotations

import math
import numbers

import torch

U64 = 1 << 64
U32 = 1 << 32

__all__ = ["tensor", "floating", "like", "same_dtype", "same_device", "values", "real",
           "integer", "boolean", "choice", "per_sample", "clamp_pair", "shape", "fn_output", "features",
           "function", "generator", "device", "finite_state", "rows_limit", "resolve_seed",
           "check_stream_args", "stream", "stream_span", "as_int64_bits", "rows_of", "overlaps_itself", "writable"]


def _tname(v) -> str:
    return type(v).__name__


def rows_of(x: torch.Tensor) -> int:
    """The number of rows (samples) of x: its first dim, 1 for a 0-d tensor."""
    return x.shape[0] if x.dim() else 1


# --------------------------------------------------------------------------------------------
# tensors

def tensor(op: str, name: str, v) -> None:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a tensor, got {_tname(v)}")


def _not_meta(op: str, name: str, v: torch.Tensor) -> None:
    # A meta tensor has a shape and no values: every op reads values (or draws noise for
    # them), so it is refused here rather than failing inside a backend. (torch.compile's
    # fake tensors are not meta tensors: they report the device they stand for.)
    if v.is_meta:
        raise ValueError(f"{op}: {name} must be on a CPU or CUDA device (a tensor with values), "
                         "got a meta tensor")


def floating(op: str, name: str, v, dtypes=None) -> None:
    """v is a tensor of a floating dtype (one of ``dtypes`` when given), not on the meta device."""
    tensor(op, name, v)
    _not_meta(op, name, v)
    if dtypes is not None:
        if v.dtype not in dtypes:
            want = " or ".join(str(d).replace("torch.", "") for d in dtypes)
            raise TypeError(f"{op}: {name} must be {want}, got {v.dtype}")
    elif not v.dtype.is_floating_point:
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {v.dtype}")


def same_dtype(op: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: {name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}")


def same_device(op: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        raise ValueError(f"{op}: {name} must be on {ref_name}'s device ({ref.device}), got {t.device}")


def like(op: str, ref_name: str, ref: torch.Tensor, name: str, t, *, shape=True) -> None:
    """t is a tensor with ref's shape (when ``shape``), dtype and device."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a tensor, got {_tname(t)}")
    if shape and t.shape != ref.shape:
        raise ValueError(f"{op}: {name} must have the shape of {ref_name} {tuple(ref.shape)}, "
                         f"got {tuple(t.shape)}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: {name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}")
    if t.device != ref.device:
        raise ValueError(f"{op}: {name} must be on {ref_name}'s device ({ref.device}), got {t.device}")


def features(op: str, name: str, x, dim: int, ref_name: str, ref: torch.Tensor) -> None:
    """x is a model's batch of rows: a (B, dim) tensor with the dtype and device of ``ref``
    (the model's parameter called ``ref_name``)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a tensor, got {_tname(x)}")
    _not_meta(op, name, x)
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"{op}: {name} must have shape (B, {dim}), got {tuple(x.shape)}")
    same_dtype(op, name, x, ref_name, ref)
    same_device(op, name, x, ref_name, ref)


def values(op: str, name: str, t: torch.Tensor, expected: str, good, got=None) -> None:
    """The one place that reads tensor values: raises ``ValueError`` unless ``good(t)`` (a bool
    tensor, of t's shape or 0-d) holds everywhere. Skipped under torch.compile tracing and for
    tensors that are not on the CPU (see the module docstring). The message shows the first
    bad values (for an element-wise ``good``), or ``got(t)`` when given.

    >>> gmkernels._checks.values("op", "p", torch.tensor([0.5, 2.0]), "in [0, 1]",
    ...                          lambda v: (v >= 0) & (v <= 1))
    Traceback (most recent call last):
        ...
    ValueError: op: every p must be in [0, 1], got [2.0] among its values
    """
    if t.device.type != "cpu" or torch.compiler.is_compiling() or t.numel() == 0:
        return
    ok = good(t)
    if bool(ok.all()):
        return
    if got is not None:
        raise ValueError(f"{op}: {name} must be {expected}, got {got(t)}")
    if ok.shape == t.shape:
        raise ValueError(f"{op}: every {name} must be {expected}, got {t[~ok][:8].tolist()} "
                         "among its values")
    flat = t.detach().flatten()
    head = f"{flat[:8].tolist()}"[:-1] + (", ...]" if flat.numel() > 8 else "]")
    raise ValueError(f"{op}: {name} must be {expected}, got {head}")


def overlaps_itself(t: torch.Tensor) -> bool:
    """Whether two elements of ``t`` share memory: an expanded tensor (a stride 0 on a dim of
    size > 1) or a view with overlapping strides (``as_strided``). Reads only the sizes and
    strides, never the data, so it costs no device sync.

    Every view that slicing (steps included), narrowing, transposing, permuting or reshaping
    makes of a dense tensor passes the first test: its strides, sorted, each exceed the span of
    the smaller dims. Only other ``as_strided`` layouts fall through to the exact test, which
    lists the storage offset of every element.

    >>> x = torch.zeros(4, 6)
    >>> [gmkernels._checks.overlaps_itself(v) for v in (x, x[:, ::2], x.t(), x[:, :1].expand(4, 3))]
    [False, False, False, True]
    >>> gmkernels._checks.overlaps_itself(x.as_strided((3, 3), (1, 1)))   # rows share elements
    True
    """
    if t.is_contiguous() or t.numel() <= 1:
        return False
    dims = sorted((st, n) for n, st in zip(t.shape, t.stride()) if n > 1)
    if dims[0][0] == 0:
        return True
    span = 0
    for st, n in dims:
        if st <= span:
            break
        span += st * (n - 1)
    else:
        return False
    offsets = torch.zeros((), dtype=torch.int64)
    for d, (n, st) in enumerate(zip(t.shape, t.stride())):
        view = [1] * t.dim()
        view[d] = n
        offsets = offsets + (torch.arange(int(n), dtype=torch.int64) * int(st)).view(view)
    return torch.unique(offsets).numel() < t.numel()


def writable(op: str, name: str, t: torch.Tensor) -> None:
    """The tensor an in-place op writes must not overlap itself (:func:`overlaps_itself`): two
    elements that share memory would each be written, and which write wins depends on the
    backend and the thread count. Raises ``ValueError``, as torch's own in-place ops refuse
    such tensors. An inference tensor (made under ``torch.inference_mode()``) can be written
    only inside inference mode, as torch says for its own in-place ops (``RuntimeError``)."""
    if (not torch.compiler.is_compiling() and t.is_inference()
            and not torch.is_inference_mode_enabled()):
        raise RuntimeError(f"{op}: {name} must not be an inference tensor outside "
                           "torch.inference_mode() (it has no version counter for autograd), got "
                           "one; write a .clone() of it, or call inside torch.inference_mode()")
    if overlaps_itself(t):
        raise ValueError(
            f"{op}: {name} must not have overlapping memory (an expanded tensor or a view with "
            f"overlapping strides), got shape {tuple(t.shape)} with strides {tuple(t.stride())}; "
            "call .contiguous() / .clone() first")


# --------------------------------------------------------------------------------------------
# Python scalars

def _bounds(lo, hi, lo_open, hi_open) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    return f"{'<' if hi_open else '<='} {hi:g}"


def _outside(v, lo, hi, lo_open, hi_open) -> bool:
    return ((lo is not None and (v <= lo if lo_open else v < lo))
            or (hi is not None and (v >= hi if hi_open else v > hi)))


def real(op: str, name: str, v, lo=None, hi=None, *, lo_open=False, hi_open=False,
         nonzero=False) -> float:
    """A finite float (a 0-d tensor is read as one), optionally within bounds and nonzero."""
    if type(v) is not float:
        if isinstance(v, torch.Tensor) and v.dim() == 0:
            v = float(v)
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{op}: {name} must be a float, got {_tname(v)}")
        v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{op}: {name} must be finite, got {v}")
    if (lo is not None or hi is not None) and _outside(v, lo, hi, lo_open, hi_open):
        raise ValueError(f"{op}: {name} must be {_bounds(lo, hi, lo_open, hi_open)}, got {v}")
    if nonzero and v == 0:
        raise ValueError(f"{op}: {name} must be nonzero, got {v}")
    return v


def _pow2(v: int) -> str:
    return f"2^{v.bit_length() - 1}" if v > 1024 and v & (v - 1) == 0 else str(v)


def integer(op: str, name: str, v, lo=None, hi=None) -> int:
    """An int (not a bool), >= lo and < hi when given (``hi`` exclusive: a count of rows
    below 2^32, of steps below 2^63)."""
    if type(v) is not int:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{op}: {name} must be an int, got {_tname(v)}")
        v = int(v)
    if lo is not None and v < lo:
        raise ValueError(f"{op}: {name} must be >= {lo}, got {v}")
    if hi is not None and v >= hi:
        raise ValueError(f"{op}: {name} must be < {_pow2(hi)}, got {v}")
    return v


def boolean(op: str, name: str, v) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"{op}: {name} must be a bool, got {_tname(v)}")
    return v


def function(op: str, name: str, fn) -> None:
    """fn is callable (a score, an energy, a noise predictor)."""
    if not callable(fn):
        raise TypeError(f"{op}: {name} must be a callable, got {_tname(fn)}")


def generator(op: str, name: str, g) -> None:
    """g is None or a torch.Generator."""
    if g is not None and not isinstance(g, torch.Generator):
        raise TypeError(f"{op}: {name} must be a torch.Generator or None, got {_tname(g)}")


def device(op: str, name: str, v) -> torch.device:
    """None (the CPU) or a device (a torch.device, a string like "cuda:0", an index) that
    holds values: the meta device is refused."""
    if v is None:
        return torch.device("cpu")
    if isinstance(v, bool) or not isinstance(v, (torch.device, str, int)):
        raise TypeError(f"{op}: {name} must be a torch.device, a device string or None, got "
                        f"{_tname(v)}")
    try:
        d = torch.device(v)
    except (RuntimeError, ValueError):
        raise ValueError(f"{op}: {name} must name a device (e.g. 'cpu', 'cuda:0'), got {v!r}") from None
    if d.type == "meta":
        raise ValueError(f"{op}: {name} must be a device with values (e.g. 'cpu', 'cuda'), got 'meta'")
    return d


def finite_state(op: str, state: dict, prefix: str, names) -> None:
    """The floating tensors ``prefix + name`` of a state dict that are present are finite (a
    checkpoint of a diverged run is refused where it loads, not found later as NaN samples)."""
    for n in names:
        t = state.get(prefix + n)
        if isinstance(t, torch.Tensor) and t.dtype.is_floating_point:
            # read on the host whatever the device: a load is rare, a sampler step is not
            values(op, n, t.detach().cpu(), "finite", torch.isfinite,
                   got=lambda v: f"{v[~torch.isfinite(v)][:8].tolist()} among its values")


def choice(op: str, name: str, v, options) -> None:
    """v is one of ``options`` (names; a dict's keys)."""
    if v not in options:
        raise ValueError(f"{op}: {name} must be one of {tuple(options)}, got {v!r}")


def per_sample(op: str, name: str, v, x: torch.Tensor, lo=0.0, hi=None, *, lo_open=False,
               finite=True, unit="per-sample"):
    """A step parameter: a float, or a (B,) floating tensor on x's device, B = x's rows; a 0-d
    tensor is read as a float. Floats and tensor values must be finite and within [lo, hi]
    (``lo=None`` and ``finite=False`` drop those conditions; tensor values are read by
    :func:`values`). Returns ``(tensor or None, float)``, the float 0.0 for a tensor."""
    if type(v) is float and (v == v if not finite else math.isfinite(v)) and (
            lo is None or v > lo or (v == lo and not lo_open)) and (hi is None or v <= hi):
        return None, v  # the common case, without the ABC isinstance checks below
    if isinstance(v, torch.Tensor):
        if v.dim() == 0:
            v = float(v)
        else:
            rows = rows_of(x)
            if v.dim() != 1 or v.shape[0] != rows:
                raise ValueError(f"{op}: {name} must be a float or a {unit} tensor of shape "
                                 f"({rows},), got shape {tuple(v.shape)}")
            if not v.dtype.is_floating_point:
                raise TypeError(f"{op}: {name} must be a floating-point tensor, got {v.dtype}")
            if v.device != x.device:
                raise ValueError(f"{op}: {name} must be on {x.device}, got {v.device}")
            if finite or lo is not None or hi is not None:
                values(op, name, v, _expected(lo, hi, lo_open, finite),
                       lambda t: _good(t, lo, hi, lo_open, finite))
            return v, 0.0
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{op}: {name} must be a float or a (B,) tensor, got {_tname(v)}")
    v = float(v)
    if (finite and not math.isfinite(v)) or (lo is not None or hi is not None) and (
            math.isnan(v) or _outside(v, lo, hi, lo_open, False)):
        raise ValueError(f"{op}: {name} must be {_expected(lo, hi, lo_open, finite)}, got {v}")
    return None, v


def _expected(lo, hi, lo_open, finite) -> str:
    if lo is None and hi is None:
        return "finite"
    rng = _bounds(lo, hi, lo_open, False)
    return f"finite and {rng}" if finite and hi is None else rng


def _good(t, lo, hi, lo_open, finite):
    ok = torch.isfinite(t) if finite else ~torch.isnan(t)
    if lo is not None:
        ok &= (t > lo) if lo_open else (t >= lo)
    if hi is not None:
        ok &= t <= hi
    return ok


def clamp_pair(op: str, clamp):
    """None, or a pair (lo, hi) of floats with lo <= hi; returns (lo, hi) or (None, None)."""
    if clamp is None:
        return None, None
    try:
        lo, hi = (float(c) for c in clamp)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: clamp must be None or a pair (lo, hi) of floats, got {clamp!r}") from None
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ValueError(f"{op}: clamp must be (lo, hi) with lo <= hi, got ({lo}, {hi})")
    return lo, hi


def _is_size(s) -> bool:
    """An int (numpy's too) or a 0-d integer tensor; not a bool, not a float."""
    if isinstance(s, torch.Tensor):
        return s.dim() == 0 and not s.dtype.is_floating_point and s.dtype != torch.bool
    return isinstance(s, numbers.Integral) and not isinstance(s, bool)


def shape(op: str, v, *, batch: bool = False) -> tuple[int, ...]:
    """A shape: an int or a sequence of ints >= 0 (with ``batch``, at least one dim). A float
    size (2.5, and 2.0 too) or a bool is refused, never truncated (``int(2.5)`` would be 2);
    a ``torch.Size``, numpy or 0-d integer tensor sizes are ints.

    >>> gmkernels._checks.shape("op", (4, 2.5))
    Traceback (most recent call last):
        ...
    TypeError: op: shape must be a sequence of ints, got (4, 2.5) (size 2.5 is a float)
    """
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        v = (int(v),)
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        raise TypeError(f"{op}: shape must be a sequence of ints, got {v!r}")
    sizes = tuple(v)
    for s in sizes:
        if not _is_size(s):
            kind = "a bool" if isinstance(s, bool) else (
                "a float" if isinstance(s, numbers.Real) else f"a {_tname(s)}")
            raise TypeError(f"{op}: shape must be a sequence of ints, got {v!r} (size {s!r} is "
                            f"{kind})")
    v = tuple(int(s) for s in sizes)
    if batch and len(v) < 1:
        raise ValueError(f"{op}: shape must be (B, ...) with sizes >= 0, got {v}")
    if any(s < 0 for s in v):
        raise ValueError(f"{op}: shape must have sizes >= 0, got {v}")
    return v


def stream_span(op: str, name: str, n: int, offset: int, positions: int, *, hi: int = U32,
                what: str = "") -> int:
    """A step count ``n`` (already an int) of an op whose call uses the ``positions`` stream
    positions ``offset .. offset + positions - 1`` (docs/spec.md §0): ``n`` must be below
    ``hi`` (2^32: a larger count would run for hours, and ``k = 2^62`` would hang), and the
    range must end at or below 2^64: an offset range that passes 2^64 would wrap the Philox
    counter and repeat the stream, so it is refused, never wrapped.

    >>> gmkernels._checks.stream_span("op", "k", 3, 2 ** 64 - 4, 6, what="2k")
    Traceback (most recent call last):
        ...
    ValueError: op: offset + 2k must be <= 2^64 (the stream positions of the call), got offset=18446744073709551612, k=3
    """
    if n >= hi:
        raise ValueError(f"{op}: {name} must be < {_pow2(hi)}, got {n}")
    if offset + positions > U64:
        raise ValueError(f"{op}: offset + {what or name} must be <= 2^64 (the stream positions of "
                         f"the call), got offset={offset}, {name}={n}")
    return n


def rows_limit(op: str, name: str, shape) -> None:
    """A shape whose rows (dim 0) fit the stream: fewer than 2^32 (docs/spec.md §0)."""
    if shape and shape[0] >= U32:
        raise ValueError(f"{op}: {name} must have fewer than 2^32 rows (dim 0, the rows of the "
                         f"stream, docs/spec.md §0), got {tuple(shape)}")


def fn_output(op: str, fn_name: str, y, x: torch.Tensor) -> None:
    """What a user callback (a score, an energy gradient) returned must be like x."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{op}: {fn_name} must return a tensor, got {_tname(y)}")
    if y.shape != x.shape or y.dtype != x.dtype or y.device != x.device:
        raise ValueError(f"{op}: {fn_name} must return a tensor of x's shape, dtype and device "
                         f"({tuple(x.shape)}, {x.dtype}, {x.device}), got "
                         f"({tuple(y.shape)}, {y.dtype}, {y.device})")


# --------------------------------------------------------------------------------------------
# the random stream (docs/spec.md §0)

def resolve_seed(seed=None, generator: torch.Generator | None = None) -> int:
    """The uint64 seed of an op call: ``seed`` itself, or, when it is None, one drawn from
    ``generator`` (or torch's default CPU generator), which advances that generator.

    Drawing reads a tensor on the host (``.item()``), which ``torch.compile`` cannot trace:
    under tracing ``seed=None`` raises, and a compiled step takes its seed as an argument.

    >>> gen = torch.Generator().manual_seed(0)
    >>> gmkernels._checks.resolve_seed(None, gen) == gmkernels._checks.resolve_seed(
    ...     None, torch.Generator().manual_seed(0))
    True
    """
    if seed is not None:
        return seed
    if torch.compiler.is_compiling():
        raise RuntimeError("gmkernels: seed=None draws a seed on the host (.item()), which "
                           "torch.compile cannot trace; pass seed=<int> to the compiled function")
    device = generator.device if generator is not None else "cpu"
    v = torch.randint(-(1 << 63), (1 << 63) - 1, (1,), dtype=torch.int64, generator=generator,
                      device=device)
    return int(v.item()) % U64


def _stream_int(name: str, value, hi: int, op: str) -> int:
    if type(value) is int and 0 <= value < hi:  # the common case, without the ABC checks
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {_tname(value)}")
    value = int(value)
    if not 0 <= value < hi:
        bound = "2^64" if hi == U64 else "2^32"
        raise ValueError(f"{op}: {name} must be in [0, {bound}), got {value}")
    return value


def check_stream_args(op: str, seed, offset, sample_offset, rows: int | None = None):
    """Validates (seed, offset, sample_offset) against docs/spec.md §0 and returns them as ints.

    >>> gmkernels.random.check_stream_args("my_sampler", 3, 2 ** 40, 0)
    (3, 1099511627776, 0)
    >>> gmkernels.random.check_stream_args("my_sampler", -1, 0, 0)
    Traceback (most recent call last):
        ...
    ValueError: my_sampler: seed must be in [0, 2^64), got -1
    """
    seed = _stream_int("seed", seed, U64, op)
    offset = _stream_int("offset", offset, U64, op)
    sample_offset = _stream_int("sample_offset", sample_offset, U32, op)
    if rows is not None and rows + sample_offset >= U32:
        raise ValueError(f"{op}: rows + sample_offset must be < 2^32 (docs/spec.md §0), got rows={rows}, "
                         f"sample_offset={sample_offset}")
    return seed, offset, sample_offset


def stream(op: str, rows: int, seed, offset, sample_offset, generator):
    """(seed, offset, sample_offset) of a call on ``rows`` rows, the seed resolved."""
    return check_stream_args(op, resolve_seed(seed, generator), offset, sample_offset, rows)


def as_int64_bits(v: int) -> int:
    """A uint64 as the int64 with the same bits (the dispatcher's `int` is int64)."""
    return v - U64 if v >= (1 << 63) else v
