"""Triton kernel of the RBM fused pass (docs/spec.md §2.1), and the Gibbs / AIS loops around it.

Mirror of ``csrc/boltzmann/rbm.h``: over the GEMM output ``pre`` (rows = chains), one pass
computes ``z = beta_r (pre + bias) [+ (1 - beta_r) base]``, ``p = 1 / (1 + exp(-z))`` and the
sample ``u < p`` with ``u`` the element's Philox uniform (docs/spec.md §0). The GEMMs are ``torch.mm``
(cuBLAS on a GPU), the fused pass is the kernel below; the k-step loop is Python here (one
GEMM and one kernel launch per half-step, the same sequence the C++ loop runs).

Compute dtype: the input dtype (float32 or float64).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference import rbm as _ref
from ..reference.random import row_view
from ._philox import interleave4, stream_halves, stream_words, tile_config, tile_index, uniform_from_word

__all__ = ["rbm_pass", "rbm_gibbs_fwd", "rbm_ais_fwd"]

_STREAM = ["seed_lo", "seed_hi", "off_lo", "off_hi", "row0"]


@triton.jit(do_not_specialize=_STREAM)
def _rbm_pass_kernel(pre_ptr, bias_ptr, base_ptr, beta_ptr, beta: tl.float64, sample_ptr,
                     prob_ptr, rows, M, n_gblocks,
                     seed_lo: tl.uint32, seed_hi: tl.uint32, off_lo: tl.uint32,
                     off_hi: tl.uint32, row0: tl.uint32,
                     HAS_BETA_T: tl.constexpr, HAS_BASE: tl.constexpr, WRITE_PROB: tl.constexpr,
                     FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    """sample = (u < p), prob = p (when WRITE_PROB) on one tile of the contiguous (rows, M) pre.

    bias_ptr, base_ptr: (M,) in the compute dtype (base used when HAS_BASE); beta_ptr: (rows,)
    per-chain betas when HAS_BETA_T, else the scalar beta.
    """
    CD: tl.constexpr = tl.float64 if FP64 else tl.float32
    r, g, m, _ = tile_index(tl.program_id(0), n_gblocks, BLOCK_R, BLOCK_G)
    rmask = r < rows
    cmask = m < M
    mask = rmask & cmask
    offs = r * M + m
    pre = tl.load(pre_ptr + offs, mask=mask, other=0.0).to(CD)
    bias = tl.load(bias_ptr + m, mask=cmask, other=0.0).to(CD)
    if HAS_BETA_T:
        br = tl.load(beta_ptr + r, mask=rmask, other=0.0).to(CD)
    else:
        br = tl.full([], beta, CD)
    z = br * (pre + bias)
    if HAS_BASE:
        base = tl.load(base_ptr + m, mask=cmask, other=0.0).to(CD)
        z = z + (1.0 - br) * base
    if not FP64:
        z = tl.minimum(tl.maximum(z, -87.0), 87.0)  # the clamp of gmk::exp_fast_clamped (gmk/mathfn.h)
    p = 1.0 / (1.0 + tl.exp(-z))
    w0, w1, w2, w3 = stream_words(g, r, seed_lo, seed_hi, off_lo, off_hi, row0)
    u = interleave4(uniform_from_word(w0), uniform_from_word(w1), uniform_from_word(w2),
                    uniform_from_word(w3)).to(CD)
    s = tl.where(u < p, 1.0, 0.0).to(CD)
    tl.store(sample_ptr + offs, s, mask=mask)
    if WRITE_PROB:
        tl.store(prob_ptr + offs, p, mask=mask)


def rbm_pass(pre: torch.Tensor, bias: torch.Tensor, beta, seed: int, offset: int,
             sample_offset: int = 0, base: torch.Tensor | None = None, write_prob: bool = True):
    """The fused pass on a contiguous (rows, M) ``pre``: returns (sample, prob or None).
    beta: a float or a (rows,) tensor."""
    rows, M = row_view(pre.shape)
    sample = torch.empty_like(pre)
    prob = torch.empty_like(pre) if write_prob else None
    if rows == 0 or M == 0:
        return sample, prob
    has_bt = isinstance(beta, torch.Tensor)
    bt = beta.to(pre.dtype).contiguous() if has_bt else pre
    block_r, block_g, n_gblocks, n_programs, num_warps = tile_config(rows, M, pre.device)
    _rbm_pass_kernel[(n_programs,)](
        pre, bias.contiguous(), base.contiguous() if base is not None else pre, bt,
        0.0 if has_bt else float(beta), sample, prob if write_prob else sample, rows, M,
        n_gblocks, *stream_halves(seed, offset, sample_offset),
        HAS_BETA_T=has_bt, HAS_BASE=base is not None, WRITE_PROB=write_prob,
        FP64=pre.dtype == torch.float64, BLOCK_R=block_r, BLOCK_G=block_g, num_warps=num_warps)
    return sample, prob


def _sample_layer(pre, bias, beta, seed, offset, sample_offset=0, base=None):
    """The reference's sample_layer signature, on the Triton kernel."""
    return rbm_pass(pre.contiguous(), bias, beta, seed, offset, sample_offset, base)


def rbm_gibbs_fwd(v0, W, b, c, k, beta, seed, offset, sample_offset):
    """k block-Gibbs steps (see gmkernels.rbm_gibbs): GEMMs by torch.mm, the pass in Triton."""
    mask = (1 << 64) - 1
    v = v0.contiguous().clone()
    if k == 0:
        h, ph = rbm_pass(torch.mm(v, W), c, beta, seed, offset, sample_offset)
        return v, h, v.clone(), ph
    Wt = W.t()
    for s in range(k):
        last = s == k - 1
        h, ph = rbm_pass(torch.mm(v, W), c, beta, seed, (offset + 2 * s) & mask, sample_offset,
                         write_prob=last)
        v, pv = rbm_pass(torch.mm(h, Wt), b, beta, seed, (offset + 2 * s + 1) & mask,
                         sample_offset, write_prob=last)
    return v, h, pv, ph


def rbm_ais_fwd(W, b, c, betas, n_chains, base_visible_bias, seed, offset):
    """AIS (see gmkernels.rbm_ais) with the Triton pass; the weight bookkeeping is torch ops."""
    return _ref.rbm_ais(W, b, c, betas, n_chains, base_visible_bias, seed, offset,
                        _sample_layer=_sample_layer)
