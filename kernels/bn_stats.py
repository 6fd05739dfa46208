"""Per-channel batch statistics as deterministic partials ``(count, mean, M2)`` and their finalisation.

Producers write one partial per row tile into an fp32 buffer ``(3, T, C)`` (planes: count, mean, M2). The finaliser
merges the T partials in tile order with Chan's parallel formula - no atomics, bit-reproducible.
"""
import torch
import triton
import triton.language as tl

from .common import check_nhwc, elementwise_block, load_tile, on_tensor_device


@triton.jit
def write_partial_stats(stats_ptr, v, row_ok, cols, col_ok, tile, T, C):
    """Store ``(count, mean, M2)`` over the valid rows of the fp32 tile ``v [rows, cols]`` as partial ``tile``."""
    mask = row_ok[:, None] & col_ok[None, :]
    count = tl.sum(row_ok.to(tl.float32), 0)
    mean = tl.sum(tl.where(mask, v, 0.0), 0) / count
    d = tl.where(mask, v - mean[None, :], 0.0)
    m2 = tl.sum(d * d, 0)
    base = stats_ptr + tile * C + cols
    tl.store(base, tl.zeros_like(mean) + count, mask=col_ok)
    tl.store(base + T * C, mean, mask=col_ok)
    tl.store(base + 2 * T * C, m2, mask=col_ok)


@triton.jit
def channel_stats_kernel(x_ptr, stats_ptr, M, C, T, BM: tl.constexpr, BC: tl.constexpr):
    pid_m = tl.program_id(0)
    rows = pid_m * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    row_ok = rows < M
    v = load_tile(x_ptr, x_ptr, x_ptr, x_ptr, x_ptr, rows, row_ok, rows * 0, rows * 0, 0, 0, 1, 1, cols, C, 0)
    write_partial_stats(stats_ptr, v, row_ok, cols, cols < C, pid_m, T, C)


@triton.jit
def finalize_kernel(stats_ptr, mean_ptr, var_ptr, T, C, BC: tl.constexpr):
    cols = tl.program_id(0) * BC + tl.arange(0, BC)
    ok = cols < C
    n = tl.zeros((BC,), dtype=tl.float32)
    mean = tl.zeros((BC,), dtype=tl.float32)
    m2 = tl.zeros((BC,), dtype=tl.float32)
    for t in range(T):
        nb = tl.load(stats_ptr + t * C + cols, mask=ok, other=0.0)
        mb = tl.load(stats_ptr + (T + t) * C + cols, mask=ok, other=0.0)
        m2b = tl.load(stats_ptr + (2 * T + t) * C + cols, mask=ok, other=0.0)
        nab = n + nb
        delta = mb - mean
        frac = tl.where(nab > 0, nb / tl.maximum(nab, 1.0), 0.0)
        mean = mean + delta * frac
        m2 = m2 + m2b + delta * delta * n * frac
        n = nab
    tl.store(mean_ptr + cols, mean, mask=ok)
    tl.store(var_ptr + cols, m2 / tl.maximum(n, 1.0), mask=ok)


def check_partial(partial: torch.Tensor) -> None:
    if not isinstance(partial, torch.Tensor) or partial.dim() != 3 or partial.shape[0] != 3 \
            or partial.dtype != torch.float32 or not partial.is_contiguous():
        raise ValueError("partial must be a contiguous float32 (3, T, C) statistics buffer, got "
                         f"{tuple(partial.shape) if isinstance(partial, torch.Tensor) else type(partial).__name__}")


@on_tensor_device
def channel_stats(x: torch.Tensor) -> torch.Tensor:
    """Partial statistics ``(3, T, C)`` of an NHWC tensor ``x`` (for tensors no fused kernel produced)."""
    check_nhwc("x", x)
    c = x.shape[3]
    m = x.numel() // c
    bm = bc = elementwise_block()
    t = triton.cdiv(m, bm)
    partial = torch.empty((3, t, c), device=x.device, dtype=torch.float32)
    channel_stats_kernel[(t, triton.cdiv(c, bc))](x, partial, m, c, t, BM=bm, BC=bc)
    return partial


@on_tensor_device
def finalize_stats(partial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge partials ``(3, T, C)`` -> ``(mean (C,), biased variance (C,))``, fp32, in a fixed order."""
    check_partial(partial)
    _, t, c = partial.shape
    mean = torch.empty(c, device=partial.device, dtype=torch.float32)
    var = torch.empty_like(mean)
    bc = elementwise_block()
    finalize_kernel[(triton.cdiv(c, bc),)](partial, mean, var, t, c, BC=bc)
    return mean, var
