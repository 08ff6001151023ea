"""Stochastic and exact traces of Jacobians, batched over probes (docs/spec.md §4).

:func:`trace` gives the per-sample trace of ``∂fn/∂x`` at ``x`` for ``x`` of shape (B, ...) and
a function ``fn`` that acts row by row (row b of ``fn(x)`` depends on row b of ``x`` only), as
a score model or the velocity field of a continuous normalizing flow does. :func:`divergence`
returns ``(fn(x), Tr ∂fn/∂x)`` from the same pass, the shape a CNF's dynamics need.

Estimators (D = the number of features of a row, K = ``n_probes``, the matrix-vector budget
per sample; "matvec" is one Jacobian-vector product J v (``mode="jvp"``) or one
vector-Jacobian product vᵀJ (``mode="vjp"``), and the budget is spent in one or two passes
each batched over its probes, never a Python loop over them):

* ``"hutchinson"`` (Hutchinson 1989): ``(1/K) Σ_k v_kᵀ J v_k``, K matvecs, K >= 1.
* ``"hutchpp"`` (Meyer, Musco, Musco & Woodruff 2021, "Hutch++"): ``s = K // 3`` probes S
  sketch the range of J, ``Q = orth(J S)`` (k = min(s, D) columns), ``Tr(Qᵀ J Q)`` exactly from
  k matvecs, plus Hutchinson on ``(I - QQᵀ) J (I - QQᵀ)`` with the remaining ``K - s - k``
  probes. K >= 3.
* ``"xtrace"`` (Epperly, Tropp & Webber 2024, "XTrace"): ``s = min(K // 2, D)`` probes Ω,
  ``Y = J Ω``, ``Z = J Q`` with ``Q = orth(Y)``: 2s <= K matvecs (an odd K leaves one
  unused). The estimate averages the s exchangeable estimates
  ``Tr(J P_i) + ω_iᵀ (I - P_i) J (I - P_i) ω_i``, ``P_i`` the projector on the span of the
  sketch without column i, all from Y and Z (no more matvecs). K >= 2.
* ``"exact"``: the D basis vectors in one batched pass (D matvecs): the oracle for small D.

Both Hutch++ and XTrace are unbiased for any Jacobian and any probe kind. Because
``Tr(J) = Tr(Jᵀ)``, they run on J in ``"jvp"`` mode and on Jᵀ in ``"vjp"`` mode.

Probes (docs/spec.md §0, §4): probe k of sample r is row r of a (B, K, D) tensor drawn from
the Philox stream at ``(seed, offset, sample_offset)``, element ``k·D + d`` of the row, so an
estimate does not depend on the batch size and a fixed ``offset`` reuses the same probes (as
FFJORD does for a whole ODE solve). ``"rademacher"``: ±1; ``"gaussian"``: standard normals;
``"sphere"``: the Gaussian probe scaled to norm √D. Each has ``E[v vᵀ] = I``.

*Not built yet (issue 13, later parts):* the fused ``probe_dot`` kernel, the Runge-Kutta
kernels, ``gmkernels.ode.odeint``, the CNF layer and ``score.log_likelihood``. This module is
plain PyTorch (``torch.func.vjp`` / ``torch.func.jvp`` under ``torch.func.vmap``).

>>> import torch, gmkernels
>>> A = torch.randn(5, 5)
>>> x = torch.randn(3, 5)
>>> fn = lambda x: x @ A.T                       # row by row: ∂fn/∂x_b = A
>>> est = gmkernels.trace.trace(fn, x, n_probes=4, method="exact")
>>> torch.allclose(est, torch.trace(A).expand(3))
True
"""

from __future__ import annotations

import contextlib
import math

import torch

from . import _checks
from . import random as _random

__all__ = ["trace", "divergence", "probes", "METHODS", "PROBES", "MODES"]

METHODS = ("hutchinson", "hutchpp", "xtrace", "exact")
PROBES = ("rademacher", "gaussian", "sphere")
MODES = ("vjp", "jvp")

# the fewest probes (matvecs) each method needs
_MIN_PROBES = {"hutchinson": 1, "hutchpp": 3, "xtrace": 2, "exact": 1}


def _check_x(op: str, x) -> int:
    _checks.floating(op, "x", x)
    if x.dim() < 2:
        raise ValueError(f"{op}: x must have shape (B, ...) with at least one feature dimension "
                         f"(fn acts row by row), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{op}: x must have at least one row and one feature, got shape "
                         f"{tuple(x.shape)}")
    return x[0].numel()


def _probe_words(shape, kind: str, seed, offset: int, sample_offset: int, dtype, device):
    """The (B, K, D) probe tensor of docs/spec.md §4 (rows are samples)."""
    if kind == "rademacher":
        return _random.rademacher(shape, seed, offset, sample_offset, dtype=dtype, device=device)
    v = _random.normal(shape, seed, offset, sample_offset, dtype=dtype, device=device)
    if kind == "sphere":
        # scaled to norm √D; a zero normal vector (probability 0) stays zero, not NaN
        n = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        v = v * torch.where(n > 0, math.sqrt(shape[-1]) / n.clamp_min(torch.finfo(v.dtype).tiny),
                            torch.zeros_like(n))
    return v


def probes(x: torch.Tensor, n_probes: int = 1, *, probe: str = "rademacher", seed=None,
           offset: int = 0, sample_offset: int = 0, generator=None) -> torch.Tensor:
    """The probes :func:`trace` uses for ``x``: a (K, B, ...) tensor, ``[k, b]`` shaped like a
    row of x, in x's dtype and on its device. Probe k of sample b is elements
    ``k·D .. k·D + D - 1`` of row ``b + sample_offset`` of the Philox stream at
    ``(seed, offset)`` (docs/spec.md §0, §4); ``seed=None`` draws one from ``generator``.

    >>> x = torch.zeros(4, 3)
    >>> v = gmkernels.trace.probes(x, 2, seed=1)
    >>> v.shape, torch.equal(v[:, 2:], gmkernels.trace.probes(x[:2], 2, seed=1, sample_offset=2))
    (torch.Size([2, 4, 3]), True)
    """
    op = "gmkernels.trace.probes"
    D = _check_x(op, x)
    K = _checks.integer(op, "n_probes", n_probes, 1, _checks.U32)
    _checks.choice(op, "probe", probe, PROBES)
    _checks.generator(op, "generator", generator)
    seed, offset, sample_offset = _checks.stream(op, x.shape[0], seed, offset, sample_offset,
                                                 generator)
    B = x.shape[0]
    v = _probe_words((B, K, D), probe, seed, offset, sample_offset, x.dtype, x.device)
    return v.transpose(0, 1).reshape((K,) + tuple(x.shape))


def _outside_inference(x):
    """Under ``torch.inference_mode()`` autograd records nothing: the matvecs then run with it
    off (``with torch.inference_mode(False)``) on a normal copy of x."""
    if not torch.is_inference_mode_enabled():
        return contextlib.nullcontext(), x
    with torch.inference_mode(False):
        x = x.clone()
    return torch.inference_mode(False), x


class _Operator:
    """Batched matvecs with the per-sample Jacobian of fn at x (J in jvp mode, Jᵀ in vjp
    mode): ``apply(V)`` maps (n, B, D) to (n, B, D), one batched pass, no loop over n.

    vjp: ``torch.func.vjp`` once (fn's forward), then its pullback under ``torch.func.vmap``.
    (``torch.autograd.grad(..., is_grads_batched=True)`` would do the same, but its vmap runs
    some backward ops, ``tanh_backward`` among them, one probe at a time and stacks the results;
    torch.func batches them.) jvp: ``torch.func.jvp`` under ``torch.func.vmap``, fn's forward
    once per pass. torch.func composes with autograd, so the products are differentiable in x
    and in fn's parameters (kept with ``create_graph``)."""

    def __init__(self, op, fn, x, mode, create_graph, fn_name="fn"):
        self.op, self.fn, self.mode, self.create_graph = op, fn, mode, create_graph
        self.fn_name = fn_name
        self.shape = tuple(x.shape)
        self.y = None
        # forward mode writes the tangent next to x: an expanded x is copied
        self.x = x.contiguous() if mode == "jvp" and _checks.overlaps_itself(x) else x
        if mode == "vjp":
            with torch.enable_grad():
                y, self._pullback = torch.func.vjp(self._checked, self.x)
            self.y = y

    def _checked(self, x):
        y = self.fn(x)
        _checks.fn_output(self.op, self.fn_name, y, x)
        return y

    def apply(self, V):
        n = V.shape[0]
        V = V.reshape((n,) + self.shape)
        if self.mode == "vjp":
            with torch.enable_grad():
                (out,) = torch.func.vmap(self._pullback)(V)
        else:
            x = self.x

            def one(v):
                return torch.func.jvp(self._checked, (x,), (v,))

            y, out = torch.func.vmap(one, out_dims=(None, 0))(V)
            if self.y is None:
                self.y = y
        return out.reshape(n, self.shape[0], -1)


def _hutchinson(A, V):
    prods = (V * A.apply(V)).sum(-1)           # (K, B): v_kᵀ J v_k
    return prods.mean(0), prods


def _exact(A, B, D, dtype, device):
    E = torch.eye(D, dtype=dtype, device=device).unsqueeze(1).expand(D, B, D)
    AE = A.apply(E)                            # (D, B, D): row d is J e_d (or Jᵀ e_d)
    return torch.diagonal(AE, dim1=0, dim2=2).sum(-1)


def _hutchpp(A, V):
    K = V.shape[0]
    s = K // 3
    S = V[:s]                                  # (s, B, D) sketch probes
    Y = A.apply(S).permute(1, 2, 0)            # (B, D, s)
    Q = torch.linalg.qr(Y.to(_work_dtype(Y)), mode="reduced").Q.to(Y.dtype)   # (B, D, k)
    k = Q.shape[-1]
    G = V[s + k:]                              # the last K - s - k probes
    Gp = G - torch.einsum("bdk,jbk->jbd", Q, torch.einsum("bek,jbe->jbk", Q, G))  # (I - QQᵀ) g
    AQG = A.apply(torch.cat([Q.permute(2, 0, 1), Gp], 0))
    AQ, AG = AQG[:k], AQG[k:]
    low = torch.einsum("kbd,bdk->b", AQ, Q)    # Tr(Qᵀ J Q)
    prods = (Gp * AG).sum(-1)                  # (g, B)
    return low + prods.mean(0), prods


def _work_dtype(t):
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _xtrace(A, V, D):
    K = V.shape[0]
    s = min(K // 2, D)
    Om = V[:s]                                 # (s, B, D)
    Y = A.apply(Om).permute(1, 2, 0)           # (B, D, s): J Ω
    W_ = _work_dtype(Y)
    Y, Omb = Y.to(W_), Om.permute(1, 2, 0).to(W_)
    # A tiny shift Y + δΩ = (J + δI)Ω keeps R invertible when J is rank deficient (J = 0
    # included); P_i stays a projector built from the other columns' sketch. δ is sqrt(eps)
    # of the sketch's scale, so for a full-rank J the change is far below the estimator's error.
    scale = torch.linalg.vector_norm(Y, dim=(1, 2)) / torch.linalg.vector_norm(Omb, dim=(1, 2)).clamp_min(
        torch.finfo(W_).tiny)
    delta = math.sqrt(torch.finfo(W_).eps) * torch.where(scale > 0, scale, torch.ones_like(scale))
    Q, R = torch.linalg.qr(Y + delta[:, None, None] * Omb, mode="reduced")     # (B, D, s), (B, s, s)
    Z = A.apply(Q.permute(2, 0, 1).to(V.dtype)).permute(1, 2, 0).to(W_)       # (B, D, s): J Q
    H = Q.mT @ Z                               # Qᵀ J Q
    Wm = Q.mT @ Omb                            # Qᵀ Ω
    eye = torch.eye(s, dtype=W_, device=Y.device).expand_as(R)
    Sm = torch.linalg.solve_triangular(R.mT, eye, upper=False)               # R^-T
    Sm = Sm / torch.linalg.vector_norm(Sm, dim=1, keepdim=True)
    # q_i = Q S_i spans the part of range(Q) orthogonal to the other columns of the sketch
    c = (Sm * Wm).sum(1)                       # (B, s): S_iᵀ w_i
    trH = torch.diagonal(H, dim1=1, dim2=2).sum(-1)
    first = trH[:, None] - (Sm * (H @ Sm)).sum(1)        # Tr(J P_i)
    r = Omb - Q @ Wm + (Q @ Sm) * c[:, None, :]         # (I - P_i) ω_i
    Ar = Y - Z @ Wm + (Z @ Sm) * c[:, None, :]          # J (I - P_i) ω_i
    ests = (first + (r * Ar).sum(1)).to(V.dtype)         # (B, s)
    return ests.mean(-1), ests.T


def _estimate(op, fn, x, n_probes, method, probe, mode, seed, offset, sample_offset,
              return_std, create_graph, generator):
    _checks.function(op, "fn", fn)
    D = _check_x(op, x)
    _checks.choice(op, "method", method, METHODS)
    _checks.choice(op, "probe", probe, PROBES)
    _checks.choice(op, "mode", mode, MODES)
    K = _checks.integer(op, "n_probes", n_probes, 1, _checks.U32)
    if K < _MIN_PROBES[method]:
        raise ValueError(f"{op}: n_probes must be >= {_MIN_PROBES[method]} for "
                         f"method={method!r} (its matvec budget), got {K}")
    _checks.boolean(op, "return_std", return_std)
    _checks.boolean(op, "create_graph", create_graph)
    if return_std and method == "hutchinson" and K < 2:
        raise ValueError(f"{op}: n_probes must be >= 2 for return_std=True (the standard error "
                         f"is estimated from the probes), got {K}")
    if return_std and method == "hutchpp" and K - K // 3 - min(K // 3, D) < 2:
        raise ValueError(f"{op}: n_probes must leave >= 2 Hutchinson probes to Hutch++ for "
                         f"return_std=True (K - 2*(K // 3) >= 2 when K // 3 <= D), got {K}")
    if return_std and method == "xtrace" and min(K // 2, D) < 2:
        raise ValueError(f"{op}: n_probes must be >= 4 (and D >= 2) for method='xtrace' with "
                         f"return_std=True (the standard error needs two exchangeable "
                         f"estimates), got n_probes={K}, D={D}")
    _checks.generator(op, "generator", generator)
    B = x.shape[0]
    if method != "exact":
        seed, offset, sample_offset = _checks.stream(op, B, seed, offset, sample_offset, generator)
    else:   # no randomness: the stream arguments are only checked
        seed, offset, sample_offset = _checks.check_stream_args(
            op, 0 if seed is None else seed, offset, sample_offset, B)
    ctx, x = _outside_inference(x)
    with ctx:
        return _run(op, fn, x, K, D, B, method, probe, mode, seed, offset, sample_offset,
                    return_std, create_graph)


def _run(op, fn, x, K, D, B, method, probe, mode, seed, offset, sample_offset, return_std,
         create_graph):
    A = _Operator(op, fn, x, mode, create_graph)
    if method == "exact":
        est = _exact(A, B, D, x.dtype, x.device)
        se = torch.zeros_like(est)
    else:
        V = _probe_words((B, K, D), probe, seed, offset, sample_offset, x.dtype,
                         x.device).transpose(0, 1)                       # (K, B, D)
        # est (B,) and the parts whose spread gives the standard error, (n, B)
        if method == "hutchinson":
            est, parts = _hutchinson(A, V)
        elif method == "hutchpp":
            est, parts = _hutchpp(A, V)
        else:
            est, parts = _xtrace(A, V, D)
        se = parts.std(dim=0) / math.sqrt(parts.shape[0]) if return_std else None
    if not create_graph:
        est = est.detach()
        se = se.detach() if se is not None else None
    return A, est, se


def trace(fn, x: torch.Tensor, *, n_probes: int = 1, method: str = "hutchinson",
          probe: str = "rademacher", mode: str = "vjp", seed=None, offset: int = 0,
          sample_offset: int = 0, return_std: bool = False, create_graph: bool = False,
          generator=None):
    """The per-sample trace ``Tr(∂fn/∂x)`` at x, estimated from ``n_probes`` matvecs per sample.

    Args:
        fn: a callable ``fn(x) -> tensor`` like x that acts row by row (row b of the output
            depends on row b of x only): a score model, a CNF's velocity at a fixed time.
        x: (B, ...) floating point, B >= 1 rows of D = ``x[0].numel()`` >= 1 features.
        n_probes: K, the matvec budget per sample (see the module docstring for how each
            method spends it; ``"exact"`` always uses D).
        method: ``"hutchinson"`` (K >= 1), ``"hutchpp"`` (K >= 3), ``"xtrace"`` (K >= 2) or
            ``"exact"``.
        probe: ``"rademacher"``, ``"gaussian"`` or ``"sphere"`` (norm √D).
        mode: ``"vjp"`` (reverse mode: ``torch.func.vjp``, its pullback under
            ``torch.func.vmap``) or ``"jvp"`` (forward mode, ``torch.func.jvp`` under
            ``torch.func.vmap``). fn must be a function torch.func can transform.
        seed, offset, sample_offset, generator: the Philox stream of the probes
            (docs/spec.md §0); ``seed=None`` draws one from ``generator`` (torch's default
            generator: ``torch.manual_seed`` makes a run reproducible). A fixed ``offset``
            reuses the same probes.
        return_std: also return the standard error estimated from the probes: Hutchinson, the
            std of the K products / √K (K >= 2); Hutch++, that of its Hutchinson part given the
            sketch; XTrace, the std of its s exchangeable estimates / √s (the paper's error
            estimate, s >= 2); exact, zeros.
        create_graph: keep the graph so that the estimate is differentiable (in x and in fn's
            parameters), e.g. to train through it; otherwise it is detached.

    Returns:
        (B,) tensor of x's dtype, or ``(estimate, standard_error)`` with ``return_std``.

    >>> W = torch.randn(4, 4)
    >>> fn = lambda x: torch.tanh(x @ W.T)
    >>> x = torch.randn(8, 4)
    >>> est, se = gmkernels.trace.trace(fn, x, n_probes=16, seed=0, return_std=True)
    >>> est.shape, se.shape
    (torch.Size([8]), torch.Size([8]))
    >>> exact = gmkernels.trace.trace(fn, x, method="exact")
    >>> bool((exact - torch.func.vmap(lambda r: torch.trace(torch.func.jacrev(fn)(r)))(x)).abs().max() < 1e-5)
    True
    """
    _, est, se = _estimate("gmkernels.trace.trace", fn, x, n_probes, method, probe, mode, seed,
                           offset, sample_offset, return_std, create_graph, generator)
    return (est, se) if return_std else est


def divergence(fn, x: torch.Tensor, *, n_probes: int = 1, method: str = "hutchinson",
               probe: str = "rademacher", mode: str = "vjp", seed=None, offset: int = 0,
               sample_offset: int = 0, create_graph: bool = False, generator=None):
    """``(fn(x), Tr ∂fn/∂x)`` from one batched pass: what the dynamics of a continuous
    normalizing flow return (Chen et al. 2018; FFJORD, Grathwohl et al. 2019,
    ``d log p / dt = -Tr ∂f/∂x``). The arguments are those of :func:`trace`; ``fn(x)`` is
    computed once and keeps its graph (differentiable as fn is), the divergence is detached
    unless ``create_graph``.

    Returns:
        ``(y, div)``: y like x, div of shape (B,).

    >>> fn = lambda x: -x                      # divergence -D everywhere
    >>> y, div = gmkernels.trace.divergence(fn, torch.randn(5, 3), seed=0, offset=7)
    >>> div.tolist()
    [-3.0, -3.0, -3.0, -3.0, -3.0]
    """
    A, est, _ = _estimate("gmkernels.trace.divergence", fn, x, n_probes, method, probe, mode,
                          seed, offset, sample_offset, False, create_graph, generator)
    return A.y, est
