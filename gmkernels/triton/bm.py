"""Triton kernel of ``bm_gibbs`` (docs/spec.md §2.2): Gibbs sweeps of a fully connected ±1 Boltzmann
machine, the same stream and site rule as the C++/CUDA kernels (csrc/boltzmann/bm.h).

One program owns a tile of ``BLOCK_B`` chains and keeps their spins and fields as
``(BLOCK_B, BLOCK_D)`` register tiles (``BLOCK_D = next_pow2(D)``). A sweep makes the Philox words
of the tile's rows at once, then loops over the D updates: each reads the site's field and spin
by a masked row reduction, decides all chains of the tile with one vector sigmoid, and adds
``delta * W[i, :]`` to the fields with ``delta = 2 y_new`` on a flip and an exact 0 otherwise
(branch-free: the tile's chains share one load of row i of W; the values are those of the
C++ kernel's flip-only update, since adding an exact zero changes no field).

Unlike the CUDA kernel this does O(D) register work per update whether or not the spin flips;
it needs ``D <= MAX_D`` (register tile).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._philox import philox4x32_10, stream_halves, uniform_from_word, next_pow2

MAX_D = 8192


@triton.jit
def _select_word(w0, w1, w2, w3, j):
    return tl.where(j == 0, w0, tl.where(j == 1, w1, tl.where(j == 2, w2, w3)))


@triton.jit
def _row_words(m, rows_u32, k0, k1, olo, ohi):
    """The Philox word of element ``m`` (1, BD) of rows ``rows_u32`` (BB, 1)."""
    g = (m // 4).to(tl.uint32)
    c0, c1 = tl.broadcast(g, rows_u32)
    c2 = tl.zeros_like(c0) + olo
    c3 = tl.zeros_like(c0) + ohi
    w0, w1, w2, w3 = philox4x32_10(c0, c1, c2, c3, k0, k1)
    jj = tl.zeros_like(c0) + (m % 4).to(tl.uint32)
    return _select_word(w0, w1, w2, w3, jj)


@triton.jit
def _bm_gibbs_kernel(y_ptr, h_ptr, w_ptr, beta_ptr, B, D, n_sweeps,
                     seed_lo: tl.uint32, seed_hi: tl.uint32, off_lo: tl.uint32,
                     off_hi: tl.uint32, row0: tl.uint32,
                     RANDOM: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    rmask = rows < B
    cmask = cols < D
    mask = rmask[:, None] & cmask[None, :]
    ptrs = rows[:, None] * D + cols[None, :]
    y = tl.load(y_ptr + ptrs, mask=mask, other=0.0)
    h = tl.load(h_ptr + ptrs, mask=mask, other=0.0)
    beta = tl.load(beta_ptr + rows, mask=rmask, other=0.0)
    rows_u32 = (rows.to(tl.uint32) + row0)[:, None]
    k0 = seed_lo.to(tl.uint32)
    k1 = seed_hi.to(tl.uint32)
    off0 = off_lo.to(tl.uint64) | (off_hi.to(tl.uint64) << 32)
    m = cols[None, :]
    for s in range(n_sweeps):
        off = off0 + s
        olo = (off & 0xFFFFFFFF).to(tl.uint32)
        ohi = (off >> 32).to(tl.uint32)
        u = uniform_from_word(_row_words(m, rows_u32, k0, k1, olo, ohi)).to(h.dtype)
        if RANDOM:
            ws = _row_words(m + D, rows_u32, k0, k1, olo, ohi)
            sites = (((ws >> 8).to(tl.uint64) * D) >> 24).to(tl.int32)
        for j in range(D):
            at_j = m == j
            uj = tl.sum(tl.where(at_j, u, 0.0), axis=1)
            if RANDOM:
                i = tl.sum(tl.where(at_j, sites, 0), axis=1)
                sel = m == i[:, None]
                wrow = tl.load(w_ptr + i[:, None].to(tl.int64) * D + m, mask=mask, other=0.0)
            else:
                sel = at_j
                wrow = tl.load(w_ptr + j * D + m, mask=cmask[None, :], other=0.0)
            hi = tl.sum(tl.where(sel, h, 0.0), axis=1)
            yi = tl.sum(tl.where(sel, y, 0.0), axis=1)
            p = 1.0 / (1.0 + tl.exp(-(2.0 * (beta * hi))))
            yn = tl.where(uj < p, 1.0, -1.0).to(h.dtype)
            delta = tl.where(yn != yi, 2.0 * yn, 0.0).to(h.dtype)
            h = h + delta[:, None] * wrow
            y = tl.where(sel, yn[:, None], y)
    tl.store(y_ptr + ptrs, y, mask=mask)


# Chains per program. GPU: a register tile of about 2048 values per program (4 warps: 16 per
# thread for each of y, h, u) -- not tuned on hardware (no GPU here). Interpreter: each program
# is a Python loop over the D updates whose numpy ops cost about the same for 1 or 10^4 lanes,
# so one program takes as many chains as fit in 2^16 values.
GPU_TILE = 2048
INTERPRET_TILE = 1 << 16


def bm_gibbs(y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, n_sweeps: int, beta,
             order: str, seed: int, offset: int, sample_offset: int) -> torch.Tensor:
    """Arguments already checked by :func:`gmkernels.bm_gibbs`; beta a float or a (B,) tensor."""
    B, D = y.shape
    if D > MAX_D:
        raise ValueError(f"gmkernels.bm_gibbs (triton): D must be <= {MAX_D}, got {D}")
    out = y.contiguous().clone()
    if B == 0 or D == 0 or n_sweeps == 0:
        return out
    W = W.contiguous()
    h = torch.addmm(b, out, W).contiguous()  # the kernels' initial fields (same GEMM)
    if isinstance(beta, torch.Tensor):
        beta_t = beta.to(y.dtype).contiguous()
    else:
        beta_t = torch.full((B,), float(beta), dtype=y.dtype, device=y.device)
    block_d = next_pow2(D)
    tile = INTERPRET_TILE if y.device.type == "cpu" else GPU_TILE
    block_b = max(1, min(next_pow2(B), tile // block_d))
    grid = (triton.cdiv(B, block_b),)
    _bm_gibbs_kernel[grid](out, h, W, beta_t, B, D, n_sweeps,
                           *stream_halves(seed, offset, sample_offset),
                           RANDOM=(order == "random"), BLOCK_B=block_b, BLOCK_D=block_d,
                           num_warps=4)
    return out
