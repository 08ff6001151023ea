"""Fused planar-flow stack (docs/spec.md §1.1; Rezende & Mohamed 2015, "Variational Inference with
Normalizing Flows", ICML) and the stable û parameterization.

* ``planar_flow(z, u_hat, w, b) -> (z_K, logdet)``: K planar layers in one kernel, shared or
  per-sample (amortized) parameters, with a fused backward op (``planar_flow_backward``);
* ``planar_u_hat(u, w)``: ``û = u + (m(w·u) - w·u) w / ||w||²`` with ``m(x) = -1 + softplus(x)``,
  guarded so that ``û·w > -1`` for every input (a composite of torch ops: differentiable,
  traceable, runs on any device).
"""

from __future__ import annotations

import torch

from .. import _autograd, _backend, _checks
from ..reference import planar as _ref

__all__ = ["planar_flow", "planar_u_hat"]

def _check(op: str, z, u_hat, w, b) -> None:
    _checks.floating(op, "z", z, (torch.float32, torch.float64))
    if z.dim() != 2:
        raise ValueError(f"{op}: z must be a (B, D) tensor, got shape {tuple(z.shape)}")
    for name, t in (("u_hat", u_hat), ("w", w), ("b", b)):
        _checks.tensor(op, name, t)
    B, D = z.shape
    if u_hat.dim() == 2:
        K = u_hat.shape[0]
        if u_hat.shape[1] != D:
            raise ValueError(f"{op}: u_hat must be (K, {D}) (shared) or (B, K, D) (per sample), "
                             f"got shape {tuple(u_hat.shape)}")
        b_shape = (K,)
    elif u_hat.dim() == 3:
        K = u_hat.shape[1]
        if u_hat.shape[0] != B or u_hat.shape[2] != D:
            raise ValueError(f"{op}: per-sample u_hat must be (B, K, D) = ({B}, K, {D}), got "
                             f"shape {tuple(u_hat.shape)}")
        b_shape = (B, K)
    else:
        raise ValueError(f"{op}: u_hat must be (K, D) (shared) or (B, K, D) (per sample), got "
                         f"shape {tuple(u_hat.shape)}")
    if w.shape != u_hat.shape:
        raise ValueError(f"{op}: w must have u_hat's shape {tuple(u_hat.shape)}, got {tuple(w.shape)}")
    if tuple(b.shape) != b_shape:
        raise ValueError(f"{op}: b must have shape {b_shape}, got {tuple(b.shape)}")
    for name, t in (("u_hat", u_hat), ("w", w), ("b", b)):
        _checks.like(op, "z", z, name, t, shape=False)


def planar_flow(z: torch.Tensor, u_hat: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
    """K planar layers (docs/spec.md §1.1) in one fused kernel, with their log-determinant:

        a_k = w_k·z + b_k,   z <- z + û_k tanh(a_k),
        logdet = sum_k log|1 + (1 - tanh²(a_k)) û_k·w_k|

    Args:
        z: (B, D) float32 or float64, any strides.
        u_hat: (K, D) shared, or (B, K, D) per sample (amortized: e.g. emitted by a VAE
            encoder). Must satisfy ``û_k·w_k > -1`` (invertibility); build it with
            :func:`planar_u_hat`. The op does not check it.
        w: same shape as u_hat.
        b: (K,) shared, or (B, K) per sample.
        Every tensor has z's dtype and device.

    Returns:
        ``(z_K, logdet)``: (B, D) and (B,), contiguous, z's dtype.

    NaN: a NaN in row r of z gives NaN in every element of ``z_K[r]`` and in ``logdet[r]``,
    the other rows unchanged, on every backend (the kernels propagate a NaN pre-activation
    through tanh, the update and the log-det). A NaN in a shared parameter (u_hat, w or b) is
    NaN in every row; in a per-sample one, in its row. No error: the op reads no values, so
    it costs no device sync. (An inf may give a finite limit, tanh(±inf) = ±1.)

    Gradients: flow to every input; the backward is one fused op too
    (``torch.ops.gmkernels.planar_flow_backward``), which recomputes the forward per row
    instead of storing the K intermediate z's (memory O(B·D), not O(B·K·D)); shared-parameter
    gradients are summed over B. Double backward (``create_graph=True``) is supported by a
    composite backward: that backward re-runs the reference forward (the loop over the K
    layers) under autograd and differentiates it with ``create_graph=True``, instead of the
    fused op (memory O(B·K·D) for that backward).

    >>> u, w, b = torch.randn(32, 2), torch.randn(32, 2), torch.randn(32)
    >>> x, logdet = gmkernels.planar_flow(torch.randn(1024, 2), gmkernels.planar_u_hat(u, w), w, b)
    >>> x.shape, logdet.shape
    (torch.Size([1024, 2]), torch.Size([1024]))

    The log-det is the log |det| of the Jacobian of z -> z_K (here of one point, in float64):

    >>> u, w = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    >>> b, z = torch.randn(4, dtype=torch.float64), torch.randn(1, 2, dtype=torch.float64)
    >>> u_hat = gmkernels.planar_u_hat(u, w)
    >>> flow = lambda v: gmkernels.planar_flow(v[None], u_hat, w, b)[0][0]
    >>> sign, logabsdet = torch.linalg.slogdet(torch.autograd.functional.jacobian(flow, z[0]))
    >>> float(sign), bool(torch.isclose(logabsdet, gmkernels.planar_flow(z, u_hat, w, b)[1][0]))
    (1.0, True)
    """
    op = "gmkernels.planar_flow"
    _check(op, z, u_hat, w, b)
    backend = _backend.choose_backend("planar_flow", z.device)
    if backend == "native":
        return _backend.call_op(torch.ops.gmkernels.planar_flow, (z, u_hat, w, b), z, u_hat, w, b)
    if backend == "triton":
        from ..triton import planar as _tri
        return _tri.PlanarFlow.apply(z, u_hat, w, b)
    return _ref.planar_flow(z, u_hat, w, b)


if _backend.op_exists("planar_flow") and _backend.op_exists("planar_flow_backward"):

    @torch.library.register_fake("gmkernels::planar_flow")
    def _planar_fake(z, u_hat, w, b):
        return (torch.empty_like(z, memory_format=torch.contiguous_format),
                z.new_empty((z.shape[0],)))

    @torch.library.register_fake("gmkernels::planar_flow_backward")
    def _planar_bwd_fake(gy, gl, z, u_hat, w, b):
        return (torch.empty_like(z, memory_format=torch.contiguous_format),
                torch.empty_like(u_hat, memory_format=torch.contiguous_format),
                torch.empty_like(w, memory_format=torch.contiguous_format),
                torch.empty_like(b, memory_format=torch.contiguous_format))

    def _setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _backward(ctx, gy, gl):
        z, u_hat, w, b = ctx.saved_tensors
        if _autograd.wants_graph(gy, gl, z, u_hat, w, b):  # create_graph: the composite backward
            return _autograd.planar_flow_grads(z, u_hat, w, b, ctx.needs_input_grad, (gy, gl))
        return tuple(torch.ops.gmkernels.planar_flow_backward(gy, gl, z, u_hat, w, b))

    torch.library.register_autograd("gmkernels::planar_flow", _backward,
                                    setup_context=_setup_context)


def planar_u_hat(u: torch.Tensor, w: torch.Tensor, *, eps: float | None = None,
                 margin: float | None = None) -> torch.Tensor:
    """The invertibility-enforcing reparameterization of Rezende & Mohamed (2015, App. A.1):

        û = u + (m(w·u) - w·u) w / ||w||²,   m(x) = max(-1 + softplus(x), -1 + margin)

    over the last dimension, so that ``û·w = m(w·u) > -1`` and the planar layer is invertible.

    Stability (each point checked in python_tests/test_planar_ops.py):
      * ``softplus`` (torch's, linear past 20), never ``log(1 + exp(x))``, which overflows;
      * ``||w||²`` in the denominator (not ``||w||``, a bug of several public versions);
      * w ≈ 0: ||w||² is computed as scale² ||w/scale||² (scale = max|w_d|), so it never
        underflows. Where ``||w|| < eps`` and ``w·u > -1/2`` the correction fades out
        (``||w||²`` replaced by ``eps²``: ``û -> u`` and ``û·w -> 0`` as ``w -> 0``) instead of
        growing like 1/||w|| (and its gradient like 1/||w||²) to overflow; ``w = 0`` gives
        ``û = u``. Default ``eps = finfo.eps²`` (1.4e-14 float32, 4.9e-32 float64), so the
        gradient stays below ~1/eps² (5e27 in float32). Where ``w·u <= -1/2`` the formula stays
        exact; with |u| ~ 1/|w| astronomically large there (say u = 1e20, w = 1e-20) û is
        finite but its true gradient exceeds the float range;
      * ``margin`` keeps ``m`` away from -1 where ``softplus`` underflows relative to 1
        (``-1 + softplus(x)`` rounds to exactly -1 below x ≈ -17 in float32), and leaves room for
        the rounding of the dot product ``û·w`` that the kernel computes. Default 1e-3 for
        float32 (and lower precision), 1e-8 for float64; it binds only where
        ``softplus(w·u) < margin`` (``w·u < -6.9`` in float32), where m's slope is below margin.

    Rounding: ``û·w > -1`` holds for the values returned in u's dtype, not only for the
    exact û. float16 / bfloat16 are computed in float32 and rounded once; where the stored
    dot (computed in float64) is at or below ``-1 + margin / 2`` (rounding moves it by up to
    ``ulp · Σ|û_d w_d|``: past the margin in half types, and by ~1e23 for |u| ~ 1e30 in
    float32), û is nudged along w (:func:`_nudge`, a constant for autograd).

    Args:
        u, w: (..., D) tensors of one dtype and device (e.g. (K, D) shared parameters or
            (B, K, D) per-sample ones); float16, bfloat16, float32 or float64.
        eps: None or a finite float > 0 (the fade-out radius of ``||w||``).
        margin: None or a finite float > 0; a negative, zero, NaN or infinite margin (which
            would allow ``û·w <= -1``) raises ``ValueError``, a non-number ``TypeError``.

    Returns:
        û, the shape and dtype of ``u``.

    Gradients: a composite of torch ops, so autograd differentiates it to any order (double
    backward included). For a subnormal w (the fade-out branch) the gradients are finite:
    the branch is chosen from the values alone and the branch not taken gets safe inputs.

    >>> u, w = torch.randn(8, 2), torch.randn(8, 2)
    >>> u_hat = gmkernels.planar_u_hat(u, w)   # then gmkernels.planar_flow(z, u_hat, w, b)
    >>> bool(((u_hat * w).sum(-1) > -1).all())
    True
    """
    op = "gmkernels.planar_u_hat"
    _checks.floating(op, "u", u)
    _checks.tensor(op, "w", w)
    if u.shape != w.shape:
        raise ValueError(f"{op}: u and w must have one shape, got {tuple(u.shape)} and {tuple(w.shape)}")
    _checks.like(op, "u", u, "w", w)
    dtype = u.dtype
    # float16 / bfloat16 are computed in float32 and rounded once at the end (then nudged)
    cd = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    fi = torch.finfo(cd)
    eps = fi.eps ** 2 if eps is None else _checks.real(op, "eps", eps, 0.0, lo_open=True)
    if margin is None:
        margin = 1e-8 if dtype == torch.float64 else 1e-3
    else:
        margin = _checks.real(op, "margin", margin, 0.0, lo_open=True)
    uc, wc = u.to(cd), w.to(cd)
    # w = scale * ws with scale = max|w_d|, so ||ws||² is in [1, D]: ||w||² itself underflows
    # for |w| < 1e-19 in float32 while the exact û is still finite there. Which branch a row
    # takes is read from the values alone (no graph), so that the branch not taken can get safe
    # inputs: no 1/scale of a subnormal w in any backward (inf * 0 = NaN gradients).
    with torch.no_grad():
        scale0 = wc.abs().amax(-1, keepdim=True)
        ws0 = wc / torch.where(scale0 > 0, scale0, torch.ones_like(scale0))
        n2s0 = (ws0 * ws0).sum(-1, keepdim=True)
        wu0 = (ws0 * uc).sum(-1, keepdim=True) * scale0
        # Exact where ||w|| >= eps, and where w·u <= -1/2 (no overflow there: |w·u| >= 1/2
        # bounds 1/scale by 2 sqrt(D) |u|). Elsewhere fade out: ||w||² -> eps², so
        # û·w = w·u + (m - w·u) r with r = ||w||²/eps² in [0, 1) lies between w·u and m, both
        # > -1, and û -> u as w -> 0.
        exact = (scale0 * n2s0.sqrt() >= eps) | (wu0 <= -0.5)
        use_scale = exact & (scale0 > 0)
    scale = wc.abs().amax(-1, keepdim=True)
    safe_scale = torch.where(use_scale, scale, torch.ones_like(scale))
    ws = wc / safe_scale
    n2s = (ws * ws).sum(-1, keepdim=True)
    wu = torch.where(exact, (ws * uc).sum(-1, keepdim=True) * safe_scale,
                     (wc * uc).sum(-1, keepdim=True))
    m = torch.clamp_min(torch.nn.functional.softplus(wu) - 1, -1 + margin)
    corr_exact = (m - wu) * ws / (safe_scale * n2s.clamp_min(1))
    corr_fade = (m - wu) * torch.where(exact, torch.zeros_like(wc), wc) / (eps * eps)
    out = (uc + torch.where(exact, corr_exact, corr_fade)).to(dtype)
    return out + _nudge(out, wc, m.detach(), margin, exact)


def _nudge(r: torch.Tensor, w: torch.Tensor, m: torch.Tensor, margin: float,
           exact: torch.Tensor) -> torch.Tensor:
    """A constant (no gradient) correction of the rounded û ``r`` so that ``r·w > -1`` holds
    for the values stored in r's dtype, not only for the exact û, and also for the dot as a
    kernel computes it (float32 for every dtype but float64, summed in any order).

    Rounding each element moves û·w by up to ``E = ulp · Σ|û_d w_d|``, which passes -1 in
    float16 / bfloat16 and for huge |u| (|u| ~ 1e30: E ~ 1e23 in float32); a kernel's sum of
    the D products errs by up to ``G = D · eps_kernel · Σ|û_d w_d|``. Where the stored dot (in
    float64, nearly exact) is at or below ``-1 + margin / 2 + G``, û moves along w by
    ``(m - dot + 2E + 2G) / ||w||²`` (the deficit plus twice the rounding of the move itself
    and of a kernel's sum), 3 times (a row already good gets a step of 0: no data-dependent
    branch, so it traces and never syncs). For ordinary float32 / float64 inputs G and E are
    ~1e-7 |û||w| and the correction is 0: the results are unchanged."""
    with torch.no_grad():
        w64 = w.to(torch.float64)
        n2 = (w64 * w64).sum(-1, keepdim=True)
        unit = torch.finfo(r.dtype).eps
        kernel_eps = torch.finfo(torch.float64 if r.dtype == torch.float64 else torch.float32).eps
        D = r.shape[-1]
        fixed = r
        for _ in range(3):
            f64 = fixed.to(torch.float64)
            dot = (f64 * w64).sum(-1, keepdim=True)
            size = (f64 * w64).abs().sum(-1, keepdim=True)
            slack = 2 * unit * size + 2 * D * kernel_eps * size
            bad = (dot - slack / 2 <= -1 + margin / 2) & exact & (n2 > 0)  # no .any(): no sync
            step = torch.where(bad, (m.to(torch.float64) - dot + slack) / torch.where(
                bad, n2, torch.ones_like(n2)), torch.zeros_like(dot))
            fixed = (f64 + step * w64).to(r.dtype)
        return fixed - r
