"""Restricted Boltzmann machine ops (docs/spec.md §2.1): fused k-step block Gibbs, free energy, exact
and AIS partition functions.

Binary units in {0, 1}, ``E(v, h) = -bᵀv - cᵀh - vᵀWh`` with ``W`` of shape
``(n_visible, n_hidden)``. Each op is a ``torch.ops.gmkernels.*`` dispatcher op (C++ CPU
kernel, CUDA kernel) with argument checks, seed handling and backend choice in front of it, a
fake kernel for ``torch.compile``, and autograd where the op is differentiable
(:func:`rbm_free_energy`). The Triton backend runs the fused sampling pass in Triton with the
GEMMs in ``torch.mm``; the reference backend is :mod:`gmkernels.reference.rbm`.

Supported dtypes: float32 and float64 (the GEMMs run in the input dtype).
"""

from __future__ import annotations

import torch

from .. import _autograd, _backend, _checks
from .._checks import as_int64_bits
from ..reference import rbm as _ref

__all__ = ["rbm_gibbs", "rbm_free_energy", "rbm_log_z_exact", "rbm_ais", "default_betas",
           "base_rate_visible_bias"]

default_betas = _ref.default_betas

_DTYPES = (torch.float32, torch.float64)


# --------------------------------------------------------------------------------------------
# argument checks

def _check_params(op: str, W, b, c) -> None:
    _checks.tensor(op, "W", W)
    if W.dim() != 2:
        raise ValueError(f"{op}: W must be 2-D (n_visible, n_hidden), got shape {tuple(W.shape)}")
    _checks.floating(op, "W", W, _DTYPES)
    nv, nh = W.shape
    for name, t, n, what in (("b", b, nv, "n_visible"), ("c", c, nh, "n_hidden")):
        _checks.tensor(op, name, t)
        if t.dim() != 1 or t.shape[0] != n:
            raise ValueError(f"{op}: {name} must have shape ({what},) = ({n},), got {tuple(t.shape)}")
        _checks.like(op, "W", W, name, t, shape=False)


def _check_v(op: str, v, W, name: str = "v") -> None:
    _checks.tensor(op, name, v)
    if v.dim() != 2 or v.shape[1] != W.shape[0]:
        raise ValueError(f"{op}: {name} must have shape (B, n_visible) = (B, {W.shape[0]}), got "
                         f"{tuple(v.shape)}")
    _checks.like(op, "W", W, name, v, shape=False)


_choose = _backend.choose_backend


# --------------------------------------------------------------------------------------------
# rbm_gibbs

def rbm_gibbs(v0: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, k: int, *,
              beta=1.0, seed=None, offset: int = 0, sample_offset: int = 0, generator=None):
    """k block-Gibbs steps of an RBM in one op call (docs/spec.md §2.1):

        h ~ Bern(σ(β (v W + c))),   v ~ Bern(σ(β (h Wᵀ + b)))      (repeated k times)

    Each half-step is one GEMM (BLAS / cuBLAS) and one fused pass over its output (bias add,
    β, sigmoid and the Bernoulli draw ``u < p``); the loop over steps runs in C++.

    Random stream (docs/spec.md §0; rows are chains): step ``s`` draws the hidden units at stream
    position ``offset + 2s`` and the visible units at ``offset + 2s + 1``; unit ``m`` of chain
    ``r`` uses word ``m % 4`` of counter ``(m // 4, r + sample_offset, offset + ...)``. So the
    same seed gives the same chains on every backend (bit for bit in float64; see the tests),
    and a run of k steps equals k runs of 1 step at offsets ``offset, offset + 2, ...``.

    Args:
        v0: (B, n_visible) initial visible states (any finite values; {0, 1} in practice).
        W: (n_visible, n_hidden); b: (n_visible,); c: (n_hidden,). float32 or float64, one dtype;
            finite (a NaN is refused on the CPU: it cannot show in a {0, 1} sample).
        k: number of steps, in [0, 2^32). The call uses the stream positions ``offset ..
            offset + 2k - 1``, which must end at or below 2^64: a count or an offset past that
            is refused (``ValueError``), never wrapped (a wrapped Philox counter repeats the
            stream).
        beta: inverse temperature, a float or per-chain (B,) tensor (tempering, AIS).
        seed: uint64 Philox key; None draws one from ``generator`` / the default generator.
        offset: uint64 stream position; a sampler calling this repeatedly advances it by 2k.
        sample_offset: global index of chain 0 (a shard reproduces its chains of a full batch).

    Returns:
        ``(v_k, h_k, pv_k, ph_k)``: the visible sample of the last step and its probabilities
        ``σ(β(h_k Wᵀ + b))``, and the hidden sample ``h_k`` it was drawn from with its
        probabilities ``ph_k = σ(β(v_{k-1} W + c))`` (so ``h_k`` is computed from ``v_{k-1}``,
        as CD statistics want). ``k = 0`` runs only the hidden half of step 0: ``v_k = pv_k =
        v0`` and ``h_k, ph_k`` are drawn from ``v0`` at ``offset`` (the same ``h`` that step 0 of
        any k >= 1 draws). Not differentiable (the outputs carry no gradient).

    Reference: Hinton (2002), "Training products of experts by minimizing contrastive
    divergence".

    >>> W, b, c = torch.linspace(-0.3, 0.3, 24).reshape(6, 4), torch.zeros(6), torch.zeros(4)
    >>> v0 = torch.zeros(32, 6)
    >>> v, h, pv, ph = gmkernels.rbm_gibbs(v0, W, b, c, 10, seed=0)
    >>> v.shape, h.shape
    (torch.Size([32, 6]), torch.Size([32, 4]))
    """
    op = "gmkernels.rbm_gibbs"
    _check_params(op, W, b, c)
    _check_v(op, v0, W, "v0")
    # a NaN cannot show in a {0, 1} sample (u < NaN is false): refuse it here, where the read
    # is O(B n_visible + n_visible n_hidden) against the k GEMMs of the op
    for name, t in (("v0", v0), ("W", W), ("b", b), ("c", c)):
        _checks.values(op, name, t, "finite", torch.isfinite)
    k = _checks.integer(op, "k", k, 0)
    rows = v0.shape[0]
    beta_t, beta_f = _checks.per_sample(op, "beta", beta, v0, None, unit="per-chain")
    if beta_t is not None:
        beta_t, beta_f = beta_t.detach(), 1.0
    seed, offset, sample_offset = _checks.stream(op, rows, seed, offset, sample_offset, generator)
    # positions offset .. offset + 2k - 1 (k = 0: offset, the hidden half-step)
    _checks.stream_span(op, "k", k, offset, max(2 * k, 1), what="2k")
    v0, W, b, c = v0.detach(), W.detach(), b.detach(), c.detach()
    backend = _choose("rbm_gibbs", W.device)
    beta_arg = beta_f if beta_t is None else beta_t
    if backend == "native":
        return tuple(torch.ops.gmkernels.rbm_gibbs(v0, W, b, c, k, beta_t, beta_f,
                                                   as_int64_bits(seed), as_int64_bits(offset),
                                                   sample_offset))
    if backend == "triton":
        from ..triton import rbm as _tri
        return _tri.rbm_gibbs_fwd(v0, W, b, c, k, beta_arg, seed, offset, sample_offset)
    return _ref.rbm_gibbs(v0, W, b, c, k, beta_arg, seed, offset, sample_offset)


if _backend.op_exists("rbm_gibbs"):

    @torch.library.register_fake("gmkernels::rbm_gibbs")
    def _rbm_gibbs_fake(v0, W, b, c, k, beta_t, beta, seed, offset, sample_offset):
        B, nh = v0.shape[0], W.shape[1]
        return (torch.empty_like(v0, memory_format=torch.contiguous_format),
                v0.new_empty((B, nh)),
                torch.empty_like(v0, memory_format=torch.contiguous_format),
                v0.new_empty((B, nh)))


# --------------------------------------------------------------------------------------------
# rbm_fit_epoch_ (RBM.fit's update loop; not a public function: RBM.fit checks its arguments)

def _fit_epoch(W, b, c, vel, chains, data, perm, batch_size: int, k: int, persistent: bool,
               lr: float, momentum: float, weight_decay: float, seed: int, offset: int):
    """One epoch of CD-k / PCD-k updates of W, b, c (and the momenta ``vel`` = (vel_W, vel_b,
    vel_c)) in place, in one op call (``torch.ops.gmkernels.rbm_fit_epoch_``: the loop over the
    batches and the GEMMs run in C++, with no host synchronization). Batch i is
    ``data[perm[i bs:(i+1) bs]]``; its Gibbs steps run at stream position ``offset + 2 k i``.
    ``chains`` (n_chains, n_visible) is updated in place when ``persistent``. Returns the sum
    over the batches of the mean squared reconstruction error (float64, 0-d, on W's device).
    The Triton and reference backends run the same loop in Python over their Gibbs sampler
    (:func:`gmkernels.reference.rbm.rbm_fit_epoch_`)."""
    backend = _choose("rbm_fit_epoch_", W.device)
    if backend == "native":
        return torch.ops.gmkernels.rbm_fit_epoch_(
            W, b, c, *vel, chains, data, perm, batch_size, k, persistent, lr, momentum,
            weight_decay, as_int64_bits(seed), as_int64_bits(offset))
    gibbs = _ref.rbm_gibbs
    if backend == "triton":
        from ..triton import rbm as _tri
        gibbs = _tri.rbm_gibbs_fwd
    return _ref.rbm_fit_epoch_(W, b, c, *vel, chains, data, perm, batch_size, k, persistent, lr,
                               momentum, weight_decay, seed, offset, gibbs=gibbs)


if _backend.op_exists("rbm_fit_epoch_"):

    @torch.library.register_fake("gmkernels::rbm_fit_epoch_")
    def _rbm_fit_epoch_fake(W, b, c, vel_W, vel_b, vel_c, chains, data, perm, batch_size, k,
                            persistent, lr, momentum, weight_decay, seed, offset):
        return W.new_empty((), dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# rbm_free_energy

def rbm_free_energy(v: torch.Tensor, W: torch.Tensor, b: torch.Tensor,
                    c: torch.Tensor) -> torch.Tensor:
    """Free energy of visible vectors (docs/spec.md §2.1), differentiable in all arguments:

        F(v) = -bᵀv - Σ_j softplus(c_j + (v W)_j),      p(v) = exp(-F(v)) / Z

    with a stable softplus (``max(x, 0) + log1p(exp(-|x|))``): finite for any finite input.
    Gradients: the backward is one op: ``dF/dv = -b - σ(vW + c) Wᵀ``, ``dF/dW = -vᵀ σ(vW + c)``,
    ``dF/db = -v``, ``dF/dc = -σ(vW + c)`` (weighted by the incoming gradient, summed over B).
    Double backward (``create_graph=True``) is supported by a composite backward: that
    backward re-runs the reference free energy under autograd and differentiates it with
    ``create_graph=True``, instead of the fused op.

    Args:
        v: (B, n_visible); W: (n_visible, n_hidden); b: (n_visible,); c: (n_hidden,);
            float32 or float64, one dtype and device.

    Returns:
        (B,) free energies in v's dtype.

    >>> W = torch.linspace(-0.3, 0.3, 24).reshape(6, 4).requires_grad_()
    >>> b, c = torch.zeros(6), torch.zeros(4)
    >>> v_data = torch.eye(6)[:4]
    >>> v_model = gmkernels.rbm_gibbs(v_data, W, b, c, 1, seed=0)[0]
    >>> loss = gmkernels.rbm_free_energy(v_data, W, b, c).mean() - \\
    ...        gmkernels.rbm_free_energy(v_model, W, b, c).mean()   # CD surrogate loss
    >>> loss.backward(); W.grad.shape
    torch.Size([6, 4])
    """
    op = "gmkernels.rbm_free_energy"
    _check_params(op, W, b, c)
    _check_v(op, v, W)
    backend = _choose("rbm_free_energy", W.device)
    if backend == "native":
        return _backend.call_op(torch.ops.gmkernels.rbm_free_energy, (v, W, b, c), v, W, b, c)
    return _ref.rbm_free_energy(v, W, b, c)


if _backend.op_exists("rbm_free_energy") and _backend.op_exists("rbm_free_energy_backward"):

    @torch.library.register_fake("gmkernels::rbm_free_energy")
    def _rbm_free_energy_fake(v, W, b, c):
        return v.new_empty((v.shape[0],))

    @torch.library.register_fake("gmkernels::rbm_free_energy_backward")
    def _rbm_free_energy_bwd_fake(grad, v, W, b, c):
        return (torch.empty_like(v, memory_format=torch.contiguous_format),
                torch.empty_like(W, memory_format=torch.contiguous_format),
                torch.empty_like(b), torch.empty_like(c))

    def _fe_setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _fe_backward(ctx, grad):
        v, W, b, c = ctx.saved_tensors
        if _autograd.wants_graph(grad, v, W, b, c):  # create_graph: the composite backward
            return _autograd.rbm_free_energy_grads(v, W, b, c, ctx.needs_input_grad, grad)
        return torch.ops.gmkernels.rbm_free_energy_backward(grad, v, W, b, c)

    torch.library.register_autograd("gmkernels::rbm_free_energy", _fe_backward,
                                    setup_context=_fe_setup_context)


# --------------------------------------------------------------------------------------------
# partition functions

def rbm_log_z_exact(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """log Z of an RBM by enumerating its smaller layer (the test oracle of :func:`rbm_ais`):

        log Z = logsumexp_h [cᵀh + Σ_i softplus(b_i + (W h)_i)]     (hidden layer smaller)

    or the same over v with ``bᵀv + Σ_j softplus(c_j + (vW)_j)``. The 2^n states go through in
    chunks of about 2^22 values (one GEMM each), combined by logsumexp, in float64 whatever
    the input dtype. n = min(n_visible, n_hidden) <= 32; 24 units take seconds on a CPU.

    Returns:
        a 0-d float64 tensor. Not differentiable (the outputs carry no gradient).

    >>> W, b, c = torch.zeros(6, 4), torch.zeros(6), torch.zeros(4)
    >>> float(gmkernels.rbm_log_z_exact(W, b, c))     # 2^4 hidden states; W = 0: 10 log 2
    6.931471805599...
    """
    op = "gmkernels.rbm_log_z_exact"
    _check_params(op, W, b, c)
    n = min(W.shape)
    if n > 32:
        raise ValueError(f"{op}: enumerating the smaller layer needs min(n_visible, n_hidden) <= 32 "
                         f"(2^n states), got {n}")
    W, b, c = W.detach(), b.detach(), c.detach()
    if _choose("rbm_log_z_exact", W.device) == "native":
        return torch.ops.gmkernels.rbm_log_z_exact(W, b, c)
    return _ref.rbm_log_z_exact(W, b, c)


if _backend.op_exists("rbm_log_z_exact"):

    @torch.library.register_fake("gmkernels::rbm_log_z_exact")
    def _rbm_log_z_exact_fake(W, b, c):
        return W.new_empty((), dtype=torch.float64)


def base_rate_visible_bias(data: torch.Tensor, smoothing: float = 0.05) -> torch.Tensor:
    """Visible biases of the base-rate model of AIS (Salakhutdinov & Murray 2008): the logits
    of the data marginals, ``log(p / (1 - p))`` with ``p = (mean(data) + smoothing) /
    (1 + 2 smoothing)`` kept away from 0 and 1. data: (N, n_visible) in {0, 1}.

    >>> data = torch.tensor([[1., 0.], [1., 0.], [1., 1.], [0., 0.]])     # marginals 0.75, 0.25
    >>> torch.sigmoid(gmkernels.ops.rbm.base_rate_visible_bias(data, smoothing=0.0))
    tensor([0.7500, 0.2500], dtype=torch.float64)
    """
    op = "gmkernels.ops.rbm.base_rate_visible_bias"
    _checks.tensor(op, "data", data)
    if data.dim() != 2:
        raise ValueError(f"{op}: data must be a (N, n_visible) tensor, got shape {tuple(data.shape)}")
    p = (data.double().mean(0) + smoothing) / (1 + 2 * smoothing)
    return torch.log(p) - torch.log1p(-p)


def _check_betas(op: str, betas, device) -> torch.Tensor:
    if not isinstance(betas, torch.Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.dim() != 1 or betas.shape[0] < 2 or not betas.dtype.is_floating_point:
        raise ValueError(f"{op}: betas must be a 1-D float tensor of at least 2 inverse "
                         f"temperatures, got shape {tuple(betas.shape)} ({betas.dtype})")
    bt = betas.detach().to("cpu", torch.float64)  # the schedule is read on the host anyway
    _checks.values(op, "betas", bt, "finite, nondecreasing, start at 0 and end at 1",
                   lambda v: torch.isfinite(v).all() & (v[0] == 0) & (v[-1] == 1)
                   & (v[1:] >= v[:-1]).all())
    return bt.to(device)


def rbm_ais(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, *, n_chains: int = 100,
            betas=None, n_betas: int = 10000, base_visible_bias: torch.Tensor | None = None,
            seed=None, offset: int = 0, generator=None):
    """Annealed importance sampling estimate of log Z (Salakhutdinov & Murray 2008, "On the
    quantitative analysis of deep belief networks", ICML).

    Anneals from the base-rate model A (W = 0, visible biases ``base_visible_bias``, e.g.
    :func:`base_rate_visible_bias` of the training data; default zeros, the uniform
    distribution) to the RBM with inverse temperatures ``0 = β_0 <= ... <= β_K = 1``::

        log p*_k(v) = (1 - β_k) b_Aᵀv + β_k bᵀv + Σ_j softplus(β_k (c_j + (vW)_j))
        log w      = Σ_k [log p*_k(v_k) - log p*_{k-1}(v_k)],   v_1 ~ p_A,
        v_{k+1}    = one Gibbs step leaving p_k invariant (the fused pass, with the base bias),
        log Z      = log Z_A + log mean(w),   log Z_A = Σ_i softplus(b_A,i) + n_hidden log 2

    The loop over β runs in C++ (one pair of GEMMs and fused passes per β). log w accumulates
    in float64. Random stream: the base sample at ``offset``, level k's transition at
    ``offset + 2k - 1`` (hidden) and ``offset + 2k`` (visible), rows = chains.

    Args:
        W, b, c: the RBM (float32 or float64).
        n_chains: independent AIS runs (>= 2, < 2^32: the rows of the stream).
        betas: the schedule, a 1-D tensor from 0 to 1; None: :func:`default_betas(n_betas)`
            (S&M's schedule shape: 500 : 4000 : 10000 points on [0, .5], [.5, .9], [.9, 1]).
            The K levels (``n_betas`` or ``len(betas)``, < 2^32) use the stream positions
            ``offset .. offset + 2K - 2``, which must end below 2^64: a count or an offset past
            that is refused (``ValueError``), never wrapped.
        base_visible_bias: (n_visible,) visible biases of the base model, or None.

    Returns:
        ``(log_z, std_err)``, 0-d float64 tensors; ``std_err`` is the delta-method standard
        error of log Z, ``std(w) / (mean(w) sqrt(n_chains))``. (AIS tends to underestimate log Z
        when the chains are too few or the schedule too short; the standard error does not
        show that bias.)

    >>> W, b, c = torch.linspace(-0.3, 0.3, 24).reshape(6, 4), torch.zeros(6), torch.zeros(4)
    >>> log_z, se = gmkernels.rbm_ais(W, b, c, n_chains=100, n_betas=300, seed=0)
    >>> bool(abs(log_z - gmkernels.rbm_log_z_exact(W, b, c)) < 4 * se + 1e-3)
    True
    """
    op = "gmkernels.rbm_ais"
    _check_params(op, W, b, c)
    n_chains = _checks.integer(op, "n_chains", n_chains, 2, _checks.U32)  # rows of the stream
    n_betas_given = betas is None
    if betas is None:
        n_betas = _checks.integer(op, "n_betas", n_betas, 3)
        if n_betas >= _checks.U32:  # before default_betas allocates them
            raise ValueError(f"{op}: n_betas must be < 2^32, got {n_betas}")
        betas = default_betas(n_betas, device=W.device)
    else:
        betas = _check_betas(op, betas, W.device)
    if base_visible_bias is not None:
        _checks.tensor(op, "base_visible_bias", base_visible_bias)
        if base_visible_bias.dim() != 1 or base_visible_bias.shape[0] != W.shape[0]:
            raise ValueError(f"{op}: base_visible_bias must have shape (n_visible,) = "
                             f"({W.shape[0]},), got {tuple(base_visible_bias.shape)}")
        base_visible_bias = base_visible_bias.detach().to(device=W.device, dtype=W.dtype)
    seed, offset, _ = _checks.stream(op, n_chains, seed, offset, 0, generator)
    # positions offset .. offset + 2(K - 1), K = len(betas)
    K = int(betas.shape[0])
    _checks.stream_span(op, "n_betas" if n_betas_given else "len(betas)", K, offset, 2 * K - 1,
                        what="2 n_betas - 1" if n_betas_given else "2 len(betas) - 1")
    W, b, c = W.detach(), b.detach(), c.detach()
    backend = _choose("rbm_ais", W.device)
    if backend == "native":
        return tuple(torch.ops.gmkernels.rbm_ais(W, b, c, betas, n_chains, base_visible_bias,
                                                 as_int64_bits(seed), as_int64_bits(offset)))
    if backend == "triton":
        from ..triton import rbm as _tri
        return _tri.rbm_ais_fwd(W, b, c, betas, n_chains, base_visible_bias, seed, offset)
    return _ref.rbm_ais(W, b, c, betas, n_chains, base_visible_bias, seed, offset)


if _backend.op_exists("rbm_ais"):

    @torch.library.register_fake("gmkernels::rbm_ais")
    def _rbm_ais_fake(W, b, c, betas, n_chains, base, seed, offset):
        return W.new_empty((), dtype=torch.float64), W.new_empty((), dtype=torch.float64)
