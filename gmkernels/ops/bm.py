"""Fully connected Boltzmann machine with ±1 spins (SPEC §2.2): fused Gibbs sweeps and the
exact enumeration oracle.

* :func:`bm_gibbs`: ``n_sweeps`` sequential (or random-scan) Gibbs sweeps of B chains in one op
  call, the local fields kept and updated only on flips;
* :func:`bm_exact`: log Z, the probabilities of all ``2^D`` states and the moments, for
  ``D <= 20``.
"""

from __future__ import annotations

import math
import numbers

import torch

from .. import _backend
from ..random import U64, as_int64_bits, check_stream_args, resolve_seed
from ..reference import bm as _ref
from ..reference.bm import BMExact, MAX_EXACT_D

__all__ = ["bm_gibbs", "bm_exact", "BMExact", "bm_energy", "ORDERS"]

ORDERS = {"sequential": 0, "random": 1}

bm_energy = _ref.bm_energy


def _check_tensor(op: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")


def check_couplings(op: str, W: torch.Tensor, b: torch.Tensor, D: int | None = None,
                    values: bool = True) -> None:
    """W (D, D) symmetric with a zero diagonal, b (D,), same dtype and device, both finite.

    Symmetry is checked exactly (``W == W.T``): the fields are initialized from ``y W`` and
    updated with rows of W, which agree only for an exactly symmetric W; ``(A + A.T) / 2`` is
    exactly symmetric in floating point."""
    _check_tensor(op, "W", W)
    _check_tensor(op, "b", b)
    if D is None:
        D = W.shape[0] if W.dim() == 2 else -1
    if W.dim() != 2 or W.shape[0] != D or W.shape[1] != D:
        raise ValueError(f"{op}: W must have shape ({D}, {D}), got {tuple(W.shape)}")
    if b.dim() != 1 or b.shape[0] != D:
        raise ValueError(f"{op}: b must have shape ({D},), got {tuple(b.shape)}")
    if not W.dtype.is_floating_point:
        raise TypeError(f"{op}: W must be a floating-point tensor, got {W.dtype}")
    if b.dtype != W.dtype:
        raise TypeError(f"{op}: b must have the dtype of W ({W.dtype}), got {b.dtype}")
    if b.device != W.device:
        raise ValueError(f"{op}: b must be on W's device ({W.device}), got {b.device}")
    if not values or torch.compiler.is_compiling() or D == 0:
        return
    if not bool(torch.isfinite(W).all()):
        raise ValueError(f"{op}: W must be finite")
    if not torch.equal(W, W.T):
        raise ValueError(f"{op}: W must be symmetric (W == W.T exactly; symmetrize with "
                         f"(W + W.T) / 2), max |W - W.T| = {(W - W.T).abs().max().item():.3g}")
    if bool((W.diagonal() != 0).any()):
        raise ValueError(f"{op}: W must have a zero diagonal, max |diag(W)| = "
                         f"{W.diagonal().abs().max().item():.3g}")
    if not bool(torch.isfinite(b).all()):
        raise ValueError(f"{op}: b must be finite")


def _check_spins(op: str, y: torch.Tensor, values: bool) -> None:
    if y.dim() != 2:
        raise ValueError(f"{op}: y must be a (B, D) tensor of spins, got shape {tuple(y.shape)}")
    if y.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: y must be float32 or float64, got {y.dtype}")
    if values and not torch.compiler.is_compiling() and y.numel() and bool(((y != 1) & (y != -1)).any()):
        raise ValueError(f"{op}: y must hold spins in {{-1, +1}} only")


def _beta(op: str, beta, y: torch.Tensor):
    """(per-chain tensor or None, float)."""
    if isinstance(beta, torch.Tensor):
        if beta.dim() == 0:
            beta = float(beta)
        else:
            B = y.shape[0]
            if beta.dim() != 1 or beta.shape[0] != B:
                raise ValueError(f"{op}: beta must be a float or a per-chain tensor of shape "
                                 f"({B},), got shape {tuple(beta.shape)}")
            if not beta.dtype.is_floating_point:
                raise TypeError(f"{op}: beta must be a floating-point tensor, got {beta.dtype}")
            if beta.device != y.device:
                raise ValueError(f"{op}: beta must be on {y.device}, got {beta.device}")
            if not torch.compiler.is_compiling() and beta.numel():
                if bool((~torch.isfinite(beta) | (beta < 0)).any()):
                    raise ValueError(f"{op}: every beta must be finite and >= 0, got {beta.tolist()}")
            return beta.detach().to(y.dtype), 1.0
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(f"{op}: beta must be a float or a (B,) tensor, got {type(beta).__name__}")
    beta = float(beta)
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"{op}: beta must be finite and >= 0, got {beta}")
    return None, beta


def bm_gibbs(y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, n_sweeps: int, *, beta=1.0,
             order: str = "sequential", seed=None, offset: int = 0, sample_offset: int = 0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """``n_sweeps`` Gibbs sweeps of B independent chains of a fully connected ±1 Boltzmann
    machine, in one op call (SPEC §2.2):

        E(y) = -½ yᵀWy - bᵀy,   P(y) ∝ exp(-β E(y)),
        P(y_i = +1 | y_-i) = σ(2β h_i),   h = W y + b   (y_i = +1 iff u < σ(2β h_i)).

    The local fields ``h`` are computed once (one GEMM) and updated only when a spin flips,
    ``h += 2 y_i W[i, :]``, so a sweep costs O(D · flips) per chain, not O(D²).

    Random stream (SPEC §0): sweep ``s`` uses stream position ``offset + s``; chain ``b`` is
    row ``b + sample_offset``.

    * ``order="sequential"``: sites ``0 .. D-1`` in order; site ``i`` takes the uniform of
      element ``i`` of the row.
    * ``order="random"`` (random scan): a sweep is ``D`` single-site updates; update ``j``
      visits site ``((w >> 8) * D) >> 24 = floor(u' D)``, ``w`` the word of element ``D + j``,
      and decides it with the uniform of element ``j`` (the row has ``2D`` elements).

    So a sampler that calls this repeatedly advances ``offset`` by ``n_sweeps`` per call, and
    chains are reproducible one by one with ``sample_offset``.

    Args:
        y: (B, D) initial spins in {-1, +1}, float32 or float64 (the compute dtype), any strides.
        W: (D, D) couplings, exactly symmetric (``W == W.T``) with a zero diagonal; y's dtype
            and device.
        b: (D,) biases.
        n_sweeps: number of sweeps, >= 0.
        beta: inverse temperature 1/T >= 0: a float, or a per-chain (B,) tensor (tempering).
        order: ``"sequential"`` or ``"random"``.
        seed: uint64 Philox key; None draws one from ``generator`` / the default generator.
        offset: uint64 stream position of the first sweep.
        sample_offset: global index of chain 0.

    Returns:
        a new contiguous (B, D) tensor of spins. Not differentiable (a discrete sample):
        inputs that require grad are detached.

    Backends: CPU (parallel over chains, vectorized field updates), CUDA (a block per chain),
    Triton (a tile of chains per program) and the plain-PyTorch reference give the same chains
    for the same seed, bit for bit up to a ``u`` landing within rounding of ``σ(2βh)`` (the
    sigmoid's exp differs in the last ulp between libraries; see python_tests/test_bm_ops.py).

    Reference: Geman & Geman (1984); Ackley, Hinton & Sejnowski (1985), "A learning algorithm for
    Boltzmann machines".

    >>> D = 16; A = torch.randn(D, D) / D ** 0.5; W = (A + A.T) / 2; W.fill_diagonal_(0)
    >>> y0 = torch.ones(128, D)
    >>> y = gmkernels.bm_gibbs(y0, W, torch.zeros(D), 100, beta=0.5, seed=0)
    """
    op = "gmkernels.bm_gibbs"
    _check_tensor(op, "y", y)
    backend = _backend.choose("bm_gibbs", y.device)
    # The native op checks the values itself (a second pass here would double their cost).
    values = backend != "native"
    _check_spins(op, y, values)
    B, D = y.shape
    check_couplings(op, W, b, D, values)
    if W.dtype != y.dtype:
        raise TypeError(f"{op}: W must have the dtype of y ({y.dtype}), got {W.dtype}")
    if W.device != y.device:
        raise ValueError(f"{op}: W must be on y's device ({y.device}), got {W.device}")
    if isinstance(n_sweeps, bool) or not isinstance(n_sweeps, numbers.Integral) or n_sweeps < 0:
        raise ValueError(f"{op}: n_sweeps must be an int >= 0, got {n_sweeps!r}")
    n_sweeps = int(n_sweeps)
    if order not in ORDERS:
        raise ValueError(f"{op}: order must be 'sequential' or 'random', got {order!r}")
    beta_t, beta_f = _beta(op, beta, y)
    seed, offset, sample_offset = check_stream_args(op, resolve_seed(seed, generator), offset,
                                                    sample_offset, B)
    if offset + n_sweeps > U64:
        raise ValueError(f"{op}: offset + n_sweeps must be <= 2^64, got {offset} + {n_sweeps}")
    y, W, b = y.detach(), W.detach(), b.detach()
    if backend == "native":
        return _backend.call_op(torch.ops.gmkernels.bm_gibbs, (), y, W, b, n_sweeps, beta_t,
                                beta_f, ORDERS[order], as_int64_bits(seed),
                                as_int64_bits(offset), sample_offset)
    beta_arg = beta_t if beta_t is not None else beta_f
    if backend == "triton":
        from ..triton import bm as _tri
        return _tri.bm_gibbs(y, W, b, n_sweeps, beta_arg, order, seed, offset, sample_offset)
    return _ref.bm_gibbs(y, W, b, n_sweeps, beta_arg, order, seed, offset, sample_offset)


# (a stale build without the op falls back to the reference instead of failing at import)
if _backend.extension_available() and hasattr(torch.ops.gmkernels, "bm_gibbs"):
    @torch.library.register_fake("gmkernels::bm_gibbs")
    def _bm_gibbs_fake(y, W, b, n_sweeps, beta_t, beta, order, seed, offset, sample_offset):
        return torch.empty_like(y, memory_format=torch.contiguous_format)


def bm_exact(W: torch.Tensor, b: torch.Tensor, beta: float = 1.0) -> BMExact:
    """Exact enumeration of a ±1 Boltzmann machine with ``D <= 20`` spins: the test oracle.

    ``P(y) = exp(-β E(y)) / Z`` with ``E(y) = -½ yᵀWy - bᵀy`` (SPEC §2.2), summed over all
    ``2^D`` states in chunks, in float64, log Z by logsumexp.

    Args:
        W: (D, D) symmetric couplings with a zero diagonal (checked as in :func:`bm_gibbs`).
        b: (D,) biases.
        beta: inverse temperature, a finite float >= 0.

    Returns:
        :class:`BMExact` (float64): ``log_z``; ``probs`` (2^D,) with state ``k`` having
        ``y_i = +1`` iff bit ``i`` of ``k`` is set (state 0 is all -1); ``mean`` ⟨y_i⟩ (D,);
        ``second_moment`` ⟨y_i y_j⟩ (D, D); ``mean_energy`` ⟨E⟩;
        ``mean_abs_magnetization`` ⟨|Σ y_i| / D⟩.

    >>> ex = gmkernels.bm_exact(W, b, beta=0.5)
    >>> ex.probs.sum()   # 1
    """
    op = "gmkernels.bm_exact"
    check_couplings(op, W, b)
    D = W.shape[0]
    if D > MAX_EXACT_D:
        raise ValueError(f"{op}: exact enumeration needs D <= {MAX_EXACT_D} (2^D states), got D={D}")
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"{op}: beta must be a finite float >= 0, got {beta!r}")
    return _ref.bm_exact(W, b, float(beta))
