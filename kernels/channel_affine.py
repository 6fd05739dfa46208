"""Per-channel affine maps of NHWC tensors, for the BN passes no GEMM can absorb.

``bn_relu(x, s, t) = relu(x * s + t)`` (post-activation layers) and
``bn_backward_apply(g, x, a, b, c, add) = g * a + x * b + c [+ add]`` (the BN input gradient, plus an optional
gradient from a parallel branch). Both use the GEMM kernels' prologues, so the math lives in one place.
"""
import torch
import triton
import triton.language as tl

from .common import cdiv, check_nhwc, check_vector, elementwise_block, load_tile, on_tensor_device


@triton.jit(do_not_specialize=["M"])
def channel_affine_kernel(x_ptr, x2_ptr, s_ptr, t_ptr, r_ptr, add_ptr, out_ptr, M, C,
                          PRO: tl.constexpr, HAS_ADD: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    row_ok = rows < M
    zero = rows * 0
    v = load_tile(x_ptr, x2_ptr, s_ptr, t_ptr, r_ptr, rows, row_ok, zero, zero, 0, 0, 1, 1, cols, C, PRO)
    mask = row_ok[:, None] & (cols < C)[None, :]
    offs = rows[:, None] * C + cols[None, :]
    if HAS_ADD:
        v += tl.load(add_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, v.to(out_ptr.dtype.element_ty), mask=mask)


def _launch(x, x2, s, t, r, add, pro):
    c = x.shape[3]
    m = x.numel() // max(c, 1)
    out = torch.empty_like(x)
    b = elementwise_block()
    channel_affine_kernel[(cdiv(m, b), cdiv(c, b))](
        x, x2, s, t, r, x if add is None else add, out, m, c, PRO=pro, HAS_ADD=add is not None, BM=b, BC=b)
    return out


@on_tensor_device
def bn_relu(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``relu(x * scale + shift)`` per channel; x NHWC, scale/shift fp32 ``(C,)``."""
    check_nhwc("x", x)
    check_vector("scale", scale, x.shape[3], x.device)
    check_vector("shift", shift, x.shape[3], x.device)
    return _launch(x, x, scale, shift, shift, None, 1)


@on_tensor_device
def bn_backward_apply(g, x, a, b, c, add=None):
    """``g * a + x * b + c (+ add)`` per channel; g, x, add NHWC of one shape and dtype, a/b/c fp32 ``(C,)``."""
    check_nhwc("g", g)
    check_nhwc("x", x, g.dtype, g.device)
    if x.shape != g.shape:
        raise ValueError(f"x must have g's shape {tuple(g.shape)}, got {tuple(x.shape)}")
    if add is not None:
        check_nhwc("add", add, g.dtype, g.device)
        if add.shape != g.shape:
            raise ValueError(f"add must have g's shape {tuple(g.shape)}, got {tuple(add.shape)}")
    for name, vec in (("a", a), ("b", b), ("c", c)):
        check_vector(name, vec, g.shape[3], g.device)
    return _launch(g, x, a, b, c, add, 2)
