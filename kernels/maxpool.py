"""The hourglass's 2x2 max-pool (stride 2) over NHWC with the partial BN statistics of its output, and its backward.

``y[n, i, j, c] = max(x[n, 2i + a, 2j + b, c])`` over ``a, b`` in {0, 1} (floor: an odd last row or column is not
pooled), with ``F.max_pool2d``'s choice of the maximum: the window's elements in row-major order, a later one
taking over where it is larger or NaN (so NaN propagates). The statistics ``(3, T, C)`` (``bn_stats``) are those of
the stored ``y``, for the training BN that reads it next: no pass of their own, and no indices are stored - the
backward finds each window's maximum again in ``x`` and writes ``dy`` there, 0 elsewhere. A window of all -inf sends
its gradient to its first element, as ATen's CPU kernels do (its CUDA channels-last kernel may not).
"""
import torch
import triton
import triton.language as tl

from .bn_stats import write_partial_stats
from .common import cdiv, check_nhwc, elementwise_block, on_tensor_device


@triton.jit
def window_max(x_ptr, rows, row_ok, cols, col_ok, H, W, HO, WO, C):
    """The maxima ``[rows, cols]`` (fp32) of output pixels ``rows`` (n, i, j row-major) and which element of each
    window holds it (0..3, row-major), plus the flat offset of the window's top-left element."""
    mask = row_ok[:, None] & col_ok[None, :]
    n = rows // (HO * WO)
    i = (rows // WO) % HO
    j = rows % WO
    top = ((n * H + 2 * i) * W + 2 * j) * C
    offs = top[:, None] + cols[None, :]
    # compared in fp32 (exact; Triton 3.6's interpreter compares bf16 as if unsigned 16-bit integers)
    best = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    which = tl.zeros(best.shape, dtype=tl.int32)
    for k in tl.static_range(1, 4):
        v = tl.load(x_ptr + offs + ((k // 2) * W + k % 2) * C, mask=mask, other=0.0).to(tl.float32)
        take = (v > best) | (v != v)
        best = tl.where(take, v, best)
        which = tl.where(take, k, which)
    return best, which, offs


@triton.jit(do_not_specialize=["M", "H", "W", "HO", "WO", "T"])
def maxpool2x2_kernel(x_ptr, y_ptr, stats_ptr, M, H, W, HO, WO, C, T, STATS: tl.constexpr,
                      BM: tl.constexpr, BC: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    row_ok, col_ok = rows < M, cols < C
    best, _, _ = window_max(x_ptr, rows, row_ok, cols, col_ok, H, W, HO, WO, C)
    tl.store(y_ptr + rows[:, None] * C + cols[None, :], best.to(y_ptr.dtype.element_ty),
             mask=row_ok[:, None] & col_ok[None, :])
    if STATS:
        write_partial_stats(stats_ptr, best, row_ok, cols, col_ok, tl.program_id(0), T, C)


@triton.jit(do_not_specialize=["M", "H", "W", "HO", "WO"])
def maxpool2x2_bwd_kernel(x_ptr, dy_ptr, dx_ptr, M, H, W, HO, WO, C, BM: tl.constexpr, BC: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    row_ok, col_ok = rows < M, cols < C
    mask = row_ok[:, None] & col_ok[None, :]
    _, which, offs = window_max(x_ptr, rows, row_ok, cols, col_ok, H, W, HO, WO, C)
    g = tl.load(dy_ptr + rows[:, None] * C + cols[None, :], mask=mask, other=0.0)
    for k in tl.static_range(4):
        tl.store(dx_ptr + offs + ((k // 2) * W + k % 2) * C, tl.where(which == k, g, 0.0).to(g.dtype), mask=mask)


@on_tensor_device
def maxpool2x2(x: torch.Tensor, stats: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(y (N, H // 2, W // 2, C), partial (3, T, C) or None)``: the 2x2 max-pool of NHWC ``x`` (H, W >= 2) and,
    with ``stats``, the partial statistics of ``y``."""
    check_nhwc("x", x)
    n, h, w, c = x.shape
    if h < 2 or w < 2:
        raise ValueError(f"x must be at least 2x2 to pool, got shape {tuple(x.shape)}")
    ho, wo = h // 2, w // 2
    y = torch.empty((n, ho, wo, c), device=x.device, dtype=x.dtype)
    m = n * ho * wo
    b = elementwise_block()
    t = cdiv(m, b)
    partial = torch.empty((3, t, c), device=x.device, dtype=torch.float32) if stats else None
    if m == 0 or c == 0:
        return y, partial
    maxpool2x2_kernel[(t, cdiv(c, b))](x, y, y if partial is None else partial, m, h, w, ho, wo, c, t,
                                       STATS=stats, BM=b, BC=b)
    return y, partial


@on_tensor_device
def maxpool2x2_backward(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """``grad_x`` (N, H, W, C) of ``maxpool2x2(x)`` from ``grad_out`` (N, H // 2, W // 2, C), NHWC, one dtype."""
    check_nhwc("x", x)
    n, h, w, c = x.shape
    check_nhwc("grad_out", grad_out, x.dtype, x.device, c)
    if grad_out.shape != (n, h // 2, w // 2, c):
        raise ValueError(f"grad_out must be (N, H // 2, W // 2, C) = {(n, h // 2, w // 2, c)}, got "
                         f"{tuple(grad_out.shape)}")
    # every element of an even-sided x is written; an odd last row or column is in no window
    dx = torch.empty_like(x) if h % 2 == 0 and w % 2 == 0 else torch.zeros_like(x)
    m = grad_out.numel() // max(c, 1)
    if m == 0 or c == 0:
        return dx.zero_()
    b = elementwise_block()
    maxpool2x2_bwd_kernel[(cdiv(m, b), cdiv(c, b))](x, grad_out, dx, m, h, w, h // 2, w // 2, c, BM=b, BC=b,
                                                    num_warps=8)  # sm_90: 80 registers a thread (149 with 4 warps)
    return dx
