"""Hourglass merge ``out = skip + nearest_upsample_2x(low)`` over NHWC, and its backward.

``out[n, h, w, c] = skip[n, h, w, c] + low[n, h // 2, w // 2, c]``; the gradient of ``low`` is the 2x2 sum-pool of
``grad_out`` (the gradient of ``skip`` is ``grad_out`` itself). H and W must be even.
"""
import torch
import triton
import triton.language as tl

from .common import cdiv, check_nhwc, elementwise_block, on_tensor_device


@triton.jit(do_not_specialize=["M", "H", "W"])
def upsample_add_kernel(skip_ptr, low_ptr, out_ptr, M, H, W, C, BM: tl.constexpr, BC: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    mask = (rows < M)[:, None] & (cols < C)[None, :]
    h = (rows // W) % H
    w = rows % W
    low_rows = (rows // (H * W)) * ((H // 2) * (W // 2)) + (h // 2) * (W // 2) + w // 2
    offs = rows[:, None] * C + cols[None, :]
    v = tl.load(skip_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    v += tl.load(low_ptr + low_rows[:, None] * C + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, v.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["ML", "H", "W"])
def upsample_add_bwd_kernel(g_ptr, glow_ptr, ML, H, W, C, BM: tl.constexpr, BC: tl.constexpr):
    low_rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    mask = (low_rows < ML)[:, None] & (cols < C)[None, :]
    hl = H // 2
    wl = W // 2
    n = low_rows // (hl * wl)
    top = (n * H + 2 * ((low_rows // wl) % hl)) * W + 2 * (low_rows % wl)
    acc = tl.zeros((BM, BC), dtype=tl.float32)
    for r in tl.static_range(4):
        src = top + (r // 2) * W + r % 2
        acc += tl.load(g_ptr + src[:, None] * C + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    tl.store(glow_ptr + low_rows[:, None] * C + cols[None, :], acc.to(glow_ptr.dtype.element_ty), mask=mask)


@on_tensor_device
def upsample_add(skip: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """``skip (N, H, W, C) + nearest_2x(low (N, H/2, W/2, C))``, NHWC, same dtype and device."""
    check_nhwc("skip", skip)
    check_nhwc("low", low, skip.dtype, skip.device)
    n, h, w, c = skip.shape
    if h % 2 or w % 2 or low.shape != (n, h // 2, w // 2, c):
        raise ValueError(f"low must be (N, H/2, W/2, C) = {(n, h // 2, w // 2, c)} with even H, W; "
                         f"got {tuple(low.shape)} for skip {tuple(skip.shape)}")
    out = torch.empty_like(skip)
    m = n * h * w
    b = elementwise_block()
    upsample_add_kernel[(cdiv(m, b), cdiv(c, b))](skip, low, out, m, h, w, c, BM=b, BC=b)
    return out


@on_tensor_device
def upsample_add_backward(grad_out: torch.Tensor) -> torch.Tensor:
    """``grad_low (N, H/2, W/2, C)``: 2x2 sum-pool of ``grad_out (N, H, W, C)`` (NHWC, even H and W)."""
    check_nhwc("grad_out", grad_out)
    n, h, w, c = grad_out.shape
    if h % 2 or w % 2:
        raise ValueError(f"grad_out must have even H and W, got {tuple(grad_out.shape)}")
    grad_low = torch.empty((n, h // 2, w // 2, c), device=grad_out.device, dtype=grad_out.dtype)
    ml = grad_low.numel() // max(c, 1)
    b = elementwise_block()
    upsample_add_bwd_kernel[(cdiv(ml, b), cdiv(c, b))](grad_out, grad_low, ml, h, w, c, BM=b, BC=b)
    return grad_low
