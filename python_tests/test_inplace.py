"""The in-place ops behave as torch's own in-place ops (issue 11, items 2-3).

The in-place ops are ``gmkernels.langevin_step_`` and the fills ``gmkernels.random.uint32_``,
``uniform_``, ``normal_`` and ``rademacher_``, and under them the dispatcher ops
``torch.ops.gmkernels.langevin_step_`` and ``random_<draw>_`` (schemas ``Tensor(a!)``). On every
backend (native, triton, reference) and for direct callers of the dispatcher ops:

* the written tensor's version counter is bumped, so a backward that saved it (or saved a base
  of which it is a view, or a view of it) raises torch's "modified by an inplace operation"
  error instead of silently reading the new values;
* a written tensor whose elements share memory (expanded, ``as_strided`` with overlapping
  strides) is refused with a ``ValueError`` that names the op and the argument; strided views
  that do not overlap (``x[:, ::2]``, ``x.t()``, an ``as_strided`` layout that interleaves
  without overlap) are written through, with the reference's values, and nothing else in the
  buffer changes;
* ``langevin_step_`` reads ``grad`` and the per-sample coefficients as they were before the
  step when they share x's memory (grad is x, a shifted view of x's buffer, x.t(), a column of
  x): the result is the reference's on the values before the step;
* the dispatcher ops refuse an argument that requires grad while grad mode is on (they are not
  differentiable: otherwise the written tensor keeps its old autograd history, a silently
  wrong gradient), and pass opcheck, whose schema test checks the mutation annotations.

Expected values come from the out-of-place reference on a copy of the inputs taken before the
call (fresh random inputs, fixed seeds).
"""

from __future__ import annotations

import re

import pytest
import torch

import gmkernels
from _helpers import assert_close, assert_equal
from conftest import BACKENDS
from gmkernels.reference import random as ref_random
from gmkernels.reference import sde as ref_sde

ALL_BACKENDS = BACKENDS + ["reference"]

SEED, OFFSET, SAMPLE_OFFSET = 11, 2**33 + 5, 3
A, C = 0.1, 0.3  # langevin_step_'s step size and noise scale


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _grad_for(x):
    """A fixed gradient of x's shape (a function of the shape only)."""
    return _randn(*x.shape, seed=1 + x.numel(), dtype=x.dtype)


class Op:
    """One public in-place op: how to make a tensor it writes, call it, and what it must write
    (the reference's out-of-place values for the tensor's values before the call)."""

    def __init__(self, name, dtype, call, want, dispatcher, dispatcher_args):
        self.name, self.dtype = name, dtype
        self.call, self.want = call, want
        self.dispatcher, self.dispatcher_args = dispatcher, dispatcher_args

    def make(self, *shape, seed=0):
        if self.dtype == torch.int64:
            return torch.randint(0, 100, shape, generator=torch.Generator().manual_seed(seed))
        return _randn(*shape, seed=seed, dtype=self.dtype)

    def __repr__(self):
        return self.name


def _fill_op(draw, dtype):
    def want(before):
        if draw == "uint32":
            return ref_random.uint32(before.shape, SEED, OFFSET, SAMPLE_OFFSET)
        return getattr(ref_random, draw)(before.shape, SEED, OFFSET, SAMPLE_OFFSET, dtype=dtype)

    return Op(f"random.{draw}_", dtype,
              lambda t: getattr(gmkernels.random, draw + "_")(t, seed=SEED, offset=OFFSET,
                                                              sample_offset=SAMPLE_OFFSET), want,
              f"random_{draw}_", lambda t: (t, SEED, OFFSET, SAMPLE_OFFSET))


def _langevin_op():
    def call(x):
        return gmkernels.langevin_step_(x, _grad_for(x), A, C, seed=SEED, offset=OFFSET,
                                        sample_offset=SAMPLE_OFFSET)

    def want(before):
        return ref_sde.langevin_step(before, _grad_for(before), A, C, SEED, OFFSET, SAMPLE_OFFSET)

    return Op("langevin_step_", torch.float32, call, want, "langevin_step_",
              lambda x: (x, _grad_for(x), None, A, None, C, SEED, OFFSET, SAMPLE_OFFSET, None,
                         None))


OPS = [_langevin_op(), _fill_op("uint32", torch.int64), _fill_op("uniform", torch.float32),
       _fill_op("normal", torch.float32), _fill_op("rademacher", torch.float64)]
OP_IDS = [op.name for op in OPS]


@pytest.fixture(params=ALL_BACKENDS)
def any_backend(request):
    """Every backend that can run here, the reference included (it is a path of the in-place
    wrappers too)."""
    with gmkernels.use_backend(request.param):
        yield request.param


def _dispatch(op, t):
    return getattr(torch.ops.gmkernels, op.dispatcher)(*op.dispatcher_args(t))


def _check_written(op, t, before):
    what = f"{op.name} on shape {tuple(t.shape)} strides {t.stride()}"
    if op.dtype.is_floating_point:
        assert_close(t, op.want(before), kind="normal", what=what)
    else:
        assert_equal(t, op.want(before), what=what)


def _saved_by_backward(t):
    """A loss whose backward needs t (mul saves its other factor for the gradient of w)."""
    w = torch.ones(t.shape, dtype=torch.float64, requires_grad=True)
    return (w * t).sum()


MODIFIED = "modified by an inplace operation"

# --------------------------------------------------------------------------------------------
# version counter


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_version_counter_bumps(op, any_backend):
    t = op.make(6, 5)
    v = t._version
    assert op.call(t) is t
    assert t._version > v, f"{op.name} on {any_backend} wrote t without bumping its version ({v})"


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_dispatcher_op_bumps_the_version_counter(op):
    for t in (op.make(6, 5), op.make(6, 10)[:, ::2]):  # contiguous, and written through a copy
        v = t._version
        _dispatch(op, t)
        assert t._version > v, f"torch.ops.gmkernels.{op.dispatcher} left the version at {v}"
    with torch.no_grad():  # grad mode off: still a write autograd must see
        t = op.make(6, 5)
        v = t._version
        _dispatch(op, t)
        assert t._version > v


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_backward_that_saved_the_tensor_raises(op, any_backend):
    t = op.make(6, 5)
    loss = _saved_by_backward(t)
    op.call(t)
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_backward_that_saved_the_base_of_a_written_view_raises(op, any_backend):
    base = op.make(6, 5)
    loss = _saved_by_backward(base)
    op.call(base[1:4, ::2])
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_backward_that_saved_a_view_of_the_written_tensor_raises(op, any_backend):
    base = op.make(6, 5)
    loss = _saved_by_backward(base[:, :2])
    op.call(base)
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_dispatcher_op_write_is_seen_by_a_saved_backward(op):
    t = op.make(6, 5)
    loss = _saved_by_backward(t)
    _dispatch(op, t)
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


def test_backward_without_the_write_still_runs():
    """The control of the tests above: the same loss backpropagates when nothing writes t."""
    t = _randn(6, 5)
    w = torch.ones(6, 5, dtype=torch.float64, requires_grad=True)
    (w * t).sum().backward()
    assert torch.equal(w.grad, t.double())


# --------------------------------------------------------------------------------------------
# overlapping writes

def _expanded(op):
    return op.make(4, 1).expand(4, 3)  # stride 0 on a dim of size 3


def _rows_share(op):
    return op.make(5).as_strided((3, 3), (1, 1))  # row r is elements r..r+2: rows overlap


def _out_of_order(op):
    # strides (2, 1) on (2, 3): offsets {0, 1, 2} and {2, 3, 4} share element 2; no stride is 0
    return op.make(8).as_strided((2, 3), (2, 1))


def _interleaved_3d(op):
    # (2, 2, 2) with strides (1, 4, 1): offsets 0..1 and 4..5 twice
    return op.make(8).as_strided((2, 2, 2), (1, 4, 1))


# (test_the_layouts_of_these_tests_are_what_they_say checks that these overlap, VIEWS not)
OVERLAPPING = {"expanded": _expanded, "as_strided_rows": _rows_share,
               "as_strided_out_of_order": _out_of_order, "as_strided_3d": _interleaved_3d}


def _overlap_message(op_prefix, name):
    return re.escape(f"{op_prefix}: {name} must not have overlapping memory (an expanded tensor or "
                     "a view with overlapping strides), got shape ")


@pytest.mark.parametrize("layout", sorted(OVERLAPPING))
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_overlapping_tensor_is_refused(op, layout, any_backend):
    t = OVERLAPPING[layout](op)
    before = t._base.clone()
    name = "x" if op.name == "langevin_step_" else "out"
    with pytest.raises(ValueError, match=_overlap_message(f"gmkernels.{op.name}", name)):
        op.call(t)
    assert torch.equal(t._base, before), "a refused call wrote the buffer"


@pytest.mark.parametrize("layout", sorted(OVERLAPPING))
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_dispatcher_op_refuses_an_overlapping_tensor(op, layout):
    t = OVERLAPPING[layout](op)
    before = t._base.clone()
    # the C++ prepare names a fill op as its out-of-place twin: gmkernels.random.normal
    prefix = "gmkernels." + (op.name if op.name == "langevin_step_" else op.name[:-1])
    name = "x" if op.name == "langevin_step_" else "out"
    with pytest.raises(ValueError, match=_overlap_message(prefix, name)):
        _dispatch(op, t)
    assert torch.equal(t._base, before), "a refused call wrote the buffer"


def test_overlap_message_shows_the_layout():
    x = torch.zeros(4, 1).expand(4, 3)
    msg = ("gmkernels.langevin_step_: x must not have overlapping memory (an expanded tensor or a "
           "view with overlapping strides), got shape (4, 3) with strides (1, 0); call "
           ".contiguous() / .clone() first")
    with pytest.raises(ValueError, match=re.escape(msg)):
        gmkernels.langevin_step_(x, torch.zeros(4, 3), A, C, seed=0)


# Views that do not overlap: (buffer shape, view), each writing part of the buffer.
VIEWS = {
    "step": ((6, 10), lambda b: b[:, ::2]),
    "transpose": ((5, 7), lambda b: b.t()),
    "narrow": ((7, 9), lambda b: b[1:6, 2:7]),
    "permute_3d": ((3, 4, 5), lambda b: b.permute(2, 0, 1)),
    "column": ((6, 4), lambda b: b[:, 1]),
    # strides (3, 2) on (2, 3): offsets {0, 2, 4} and {3, 5, 7}, no overlap although the
    # sorted strides do not nest (the exact test of overlaps_itself decides it)
    "as_strided_interleaved": ((8,), lambda b: b.as_strided((2, 3), (3, 2))),
    "as_strided_offset": ((12,), lambda b: b.as_strided((2, 2), (5, 1), 3)),
}


@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_non_overlapping_views_are_written_through(op, view, any_backend):
    shape, make_view = VIEWS[view]
    buf = op.make(*shape)
    t = make_view(buf)
    assert not t.is_contiguous()
    before_buf, before = buf.clone(), t.clone()
    mask = torch.ones_like(buf, dtype=torch.bool)
    make_view(mask).fill_(False)  # the elements the view does not cover
    assert op.call(t) is t
    _check_written(op, t, before)
    assert torch.equal(buf[mask], before_buf[mask]), "elements outside the view changed"


@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_dispatcher_op_writes_non_overlapping_views(op, view):
    shape, make_view = VIEWS[view]
    buf = op.make(*shape)
    t = make_view(buf)
    before = t.clone()
    _dispatch(op, t)
    _check_written(op, t, before)


# --------------------------------------------------------------------------------------------
# langevin_step_: inputs that share x's memory

def _shared_cases():
    """name -> (x, grad, step_size, noise_scale), views into one buffer."""
    buf = _randn(65, 8, seed=4)
    sq = _randn(9, 9, seed=5)
    col = _randn(40, 6, seed=6).abs()
    vec = _randn(50, seed=7).abs()
    return {
        "grad_is_x": (buf, buf, A, C),
        "grad_is_x_strided": (buf[:, ::2], buf[:, ::2], A, C),
        # row r of x is row r + 1 of the buffer, which is row r + 1 of grad: written before read
        "grad_rows_behind": (buf[1:], buf[:-1], A, C),
        "grad_rows_ahead": (buf[:-1], buf[1:], A, C),
        "grad_is_x_t": (sq, sq.t(), A, C),
        "step_size_is_a_column": (col, _randn(40, 6, seed=8), col[:, 0], C),
        "noise_scale_is_a_column": (col, _randn(40, 6, seed=8), A, col[:, 3]),
        "coefficients_are_x": (vec, _randn(50, seed=9), vec, vec),
    }


SHARED = sorted(_shared_cases())


@pytest.mark.parametrize("case", SHARED)
def test_langevin_inputs_sharing_x_are_read_before_the_step(case, any_backend):
    x, g, a, c = _shared_cases()[case]
    clone = lambda v: v.clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
    want = ref_sde.langevin_step(x.clone(), g.clone(), clone(a), clone(c), SEED, OFFSET)
    gmkernels.langevin_step_(x, g, a, c, seed=SEED, offset=OFFSET)
    assert_close(x, want, kind="values", what=f"{case} on {any_backend}")


@pytest.mark.parametrize("case", SHARED)
def test_dispatcher_langevin_inputs_sharing_x_are_read_before_the_step(case):
    x, g, a, c = _shared_cases()[case]
    clone = lambda v: v.clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
    want = ref_sde.langevin_step(x.clone(), g.clone(), clone(a), clone(c), SEED, OFFSET)
    a_t, a_f = (a, 0.0) if isinstance(a, torch.Tensor) else (None, a)
    c_t, c_f = (c, 0.0) if isinstance(c, torch.Tensor) else (None, c)
    torch.ops.gmkernels.langevin_step_(x, g, a_t, a_f, c_t, c_f, SEED, OFFSET, 0, None, None)
    assert_close(x, want, kind="values", what=case)


# --------------------------------------------------------------------------------------------
# not differentiable: inputs that require grad are refused by the ops themselves

FLOAT_OPS = [o for o in OPS if o.dtype.is_floating_point]  # an int64 tensor cannot require grad


@pytest.mark.parametrize("op", FLOAT_OPS, ids=[o.name for o in FLOAT_OPS])
def test_dispatcher_op_refuses_a_written_tensor_that_requires_grad(op):
    # a non-leaf: autograd itself allows an in-place write on it, which would keep its history
    t = (torch.randn(6, 5, requires_grad=True) * 1.0).to(op.dtype)
    args = op.dispatcher_args(t)
    before = t.detach().clone()
    name = "x" if op.name == "langevin_step_" else "out"
    with pytest.raises(RuntimeError, match=re.escape(f"{name} must not require grad")):
        _dispatch_args(op, args)
    assert torch.equal(t.detach(), before)
    with torch.no_grad():  # grad mode off: the write is allowed, and seen by autograd
        v = t._version
        _dispatch_args(op, args)
        assert t._version > v


def _dispatch_args(op, args):
    return getattr(torch.ops.gmkernels, op.dispatcher)(*args)


def test_dispatcher_langevin_refuses_a_grad_that_requires_grad():
    x = _randn(6, 5)
    g = _randn(6, 5, seed=1).requires_grad_()
    with pytest.raises(RuntimeError, match=re.escape("gmkernels.langevin_step_: grad must not "
                                                     "require grad")):
        torch.ops.gmkernels.langevin_step_(x, g, None, A, None, C, SEED, 0, 0, None, None)


FLOAT_FILLS = [o for o in FLOAT_OPS if o.name != "langevin_step_"]


@pytest.mark.parametrize("op", FLOAT_FILLS, ids=[o.name for o in FLOAT_FILLS])
def test_fill_refuses_out_that_requires_grad(op, any_backend):
    out = torch.zeros(6, 5, dtype=op.dtype, requires_grad=True)
    msg = f"gmkernels.{op.name}: out must not require grad"
    with pytest.raises(RuntimeError, match=re.escape(msg)):
        op.call(out)
    with torch.no_grad():  # how parameters are initialised
        v = out._version
        op.call(out)
        assert out._version > v
        _check_written(op, out, out)


@pytest.mark.parametrize("which", ["step_size", "noise_scale"])
def test_langevin_refuses_coefficients_that_require_grad(which, any_backend):
    """A per-sample coefficient that requires grad would get no gradient from an in-place step
    (or, on the reference path, make x a tracked tensor): refused on every backend."""
    x = _randn(6, 5)
    coef = torch.rand(6, generator=torch.Generator().manual_seed(2)).requires_grad_()
    a, c = (coef, C) if which == "step_size" else (A, coef)
    before = x.clone()
    with pytest.raises(RuntimeError, match=re.escape("gmkernels.langevin_step_: in-place step on "
                                                     "tensors that require grad")):
        gmkernels.langevin_step_(x, _grad_for(x), a, c, seed=SEED)
    assert torch.equal(x, before)
    with torch.no_grad():
        gmkernels.langevin_step_(x, _grad_for(x), a, c, seed=SEED)
    assert_close(x, ref_sde.langevin_step(before, _grad_for(before), a.detach() if a is coef else a,
                                          c.detach() if c is coef else c, SEED),
                 kind="values")


# --------------------------------------------------------------------------------------------
# inference tensors: as torch's own in-place ops

@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_inference_tensor_is_refused_outside_inference_mode(op, any_backend):
    with torch.inference_mode():
        t = op.make(6, 5)
    before = t.clone()
    name = "x" if op.name == "langevin_step_" else "out"
    with pytest.raises(RuntimeError, match=re.escape(f"gmkernels.{op.name}: {name} must not be an "
                                                     "inference tensor outside")):
        op.call(t)
    assert torch.equal(t, before), "a refused call wrote the tensor"
    with torch.inference_mode():  # inside inference mode it is an ordinary write
        op.call(t)
    _check_written(op, t, before)


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_dispatcher_op_refuses_an_inference_tensor_outside_inference_mode(op):
    with torch.inference_mode():
        t = op.make(6, 5)
    before = t.clone()
    with pytest.raises(RuntimeError, match="must not be an inference tensor outside"):
        _dispatch(op, t)
    assert torch.equal(t, before), "a refused call wrote the tensor"


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_version_inside_inference_mode_as_torch(op, any_backend):
    """A normal tensor written inside inference mode: its version moves as it does for torch's
    own in-place op (add_) in the same situation."""
    t, u = op.make(6, 5), op.make(6, 5)
    vt, vu = t._version, u._version
    with torch.inference_mode():
        u.add_(0)
        op.call(t)
    assert (t._version > vt) == (u._version > vu), (t._version, vt, u._version, vu)


# --------------------------------------------------------------------------------------------
# opcheck (its schema test checks the mutation annotations) and torch.compile

@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_opcheck(op):
    for t in (op.make(5, 7), op.make(5, 14)[:, ::2], op.make(7, 5).t()):
        torch.library.opcheck(getattr(torch.ops.gmkernels, op.dispatcher), op.dispatcher_args(t))


def test_opcheck_langevin_with_grad_sharing_x():
    x = _randn(6, 5)
    torch.library.opcheck(torch.ops.gmkernels.langevin_step_,
                          (x, x, torch.rand(6), 0.0, None, C, SEED, 1, 0, None, None))


def test_compiled_inplace_ops_match_eager():
    def step(x, noise):
        gmkernels.random.normal_(noise, seed=SEED, offset=OFFSET)
        gmkernels.langevin_step_(x, noise, A, C, seed=SEED, offset=OFFSET + 1)
        return x

    x0 = _randn(8, 6)
    want = step(x0.clone(), torch.empty(8, 6))
    compiled = torch.compile(step, fullgraph=True)
    x, noise = x0.clone(), torch.empty(8, 6)
    out = compiled(x, noise)
    assert torch.equal(out, want) and torch.equal(x, want)
    assert torch.equal(noise, gmkernels.random.normal((8, 6), seed=SEED, offset=OFFSET))


# --------------------------------------------------------------------------------------------
# the overlap check itself, against enumeration of the element offsets

def _overlaps_by_enumeration(t):
    idx = torch.cartesian_prod(*[torch.arange(n) for n in t.shape]).reshape(-1, t.dim())
    offs = (idx * torch.tensor(t.stride())).sum(1)
    return torch.unique(offs).numel() < t.numel()


def test_overlaps_itself_matches_enumeration():
    gen = torch.Generator().manual_seed(0)
    base = torch.zeros(400)
    seen = {True: 0, False: 0}
    for _ in range(400):
        dim = int(torch.randint(2, 4, (), generator=gen))
        shape = torch.randint(1, 5, (dim,), generator=gen).tolist()
        strides = torch.randint(0, 13, (dim,), generator=gen).tolist()
        t = base.as_strided(shape, strides)
        want = _overlaps_by_enumeration(t)
        seen[want] += 1
        assert gmkernels._checks.overlaps_itself(t) == want, (shape, strides)
    assert min(seen.values()) > 50, seen  # both answers well represented


def test_the_layouts_of_these_tests_are_what_they_say():
    for name, make in OVERLAPPING.items():
        t = make(OPS[0])
        assert _overlaps_by_enumeration(t) and gmkernels._checks.overlaps_itself(t), name
    for name, (shape, make_view) in VIEWS.items():
        t = make_view(torch.zeros(shape))
        assert not t.is_contiguous(), name
        assert not _overlaps_by_enumeration(t) and not gmkernels._checks.overlaps_itself(t), name
