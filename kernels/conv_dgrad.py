"""Data gradient of the fused BN-ReLU-conv, with the ReLU mask and BN-backward reductions in the epilogue.

For ``y = conv(relu(x * s + t))`` (stride 1, 1x1 or 3x3 pad 1) and upstream ``g = prologue(dy)``:
``du = conv_transpose(g, w)`` - itself a stride-1 convolution with the flipped, channel-swapped weight - then
``dv = (du [+ add]) * (x * s + t > 0)`` is stored (``add``: the gradient reaching the BN-ReLU output from another
consumer), and per row tile the partial sums ``sum(dv)`` and ``sum(dv * (x - mean))`` per input channel are written
to an fp32 ``(2, T, Cin)`` buffer. With ``x_hat = (x - mean) * invstd`` these give BN's ``dbeta = sum(dv)``,
``dgamma = invstd * sum(dv * (x - mean))`` and the input gradient (``bn_backward_coeffs``).
The prologue of ``dy`` may itself be a pending BN-backward apply (``PRO == 2``) of the next layer.
"""
import torch
import triton
import triton.language as tl

from .common import (block_m, cdiv, check_nhwc, check_numel, check_vector, dot_dtype, dot_precision, gemm_configs,
                     launch_tuned, on_tensor_device, prune_tiles, row_coords, shared_memory, tile_ids, tl_dtype,
                     tune_key)
from .conv import check_weight, conv_mainloop, weight_operand


@triton.autotune(configs=gemm_configs(),
                 key=["CIN", "COUT", "KS", "M_KEY", "SMEM", "PRO", "MASK", "HAS_ADD", "DOT_PREC"],
                 prune_configs_by={"early_config_prune": prune_tiles("CIN", "COUT", lambda a, bn, bk: (
                     a["BM"] * bk * a["dy_ptr"].element_size() * (2 if a["PRO"] == 2 else 1)
                     + bk * bn * a["w_ptr"].element_size()))})
@triton.jit(do_not_specialize=["M", "H", "W", "T", "M_KEY", "SMEM"])
def conv_dgrad_kernel(dy_ptr, dy2_ptr, gs_ptr, gt_ptr, gr_ptr, w_ptr, x_ptr, s_ptr, t_ptr, mean_ptr, add_ptr,
                      dv_ptr, sums_ptr, W_OFF, SW_TAP, SW_K, SW_N, M, H, W, CIN, COUT, T, M_KEY, SMEM,
                      KS: tl.constexpr, PRO: tl.constexpr, MASK: tl.constexpr, HAS_ADD: tl.constexpr,
                      IO_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, DOT_PREC: tl.constexpr,
                      BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid_m, pid_n = tile_ids(CIN, BN)
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    row_ok = rows < M
    col_ok = cols < CIN
    h, w = row_coords(rows, H, W)
    dv = conv_mainloop(dy_ptr, dy2_ptr, gs_ptr, gt_ptr, gr_ptr, w_ptr, W_OFF, SW_TAP, SW_K, SW_N,
                       rows, row_ok, h, w, H, W, COUT, cols, CIN, KS, PRO, BM, BN, BK, IO_DTYPE, DOT_DTYPE, DOT_PREC)
    mask = row_ok[:, None] & col_ok[None, :]
    offs = rows[:, None] * CIN + cols[None, :]
    if HAS_ADD:
        dv += tl.load(add_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if MASK:
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        s = tl.load(s_ptr + cols, mask=col_ok, other=0.0)
        t = tl.load(t_ptr + cols, mask=col_ok, other=0.0)
        dv = tl.where(mask & (x * s[None, :] + t[None, :] > 0), dv, 0.0)
    out = dv.to(IO_DTYPE)
    tl.store(dv_ptr + offs, out, mask=mask)
    if MASK:
        mean = tl.load(mean_ptr + cols, mask=col_ok, other=0.0)
        d = out.to(tl.float32)
        base = sums_ptr + pid_m * CIN + cols
        tl.store(base, tl.sum(d, 0), mask=col_ok)
        tl.store(base + T * CIN, tl.sum(d * tl.where(mask, x - mean[None, :], 0.0), 0), mask=col_ok)


@on_tensor_device
def conv2d_dgrad(dy, weight, x=None, scale=None, shift=None, mean=None, dy_pending=None, add=None, packed=None):
    """Input gradient of ``conv(relu(x * scale + shift))``, masked by the ReLU, with BN-backward partial sums.

    dy: NHWC ``(N, H, W, Cout)``; weight ``(Cout, Cin, k, k)`` and ``packed`` as in ``conv2d_fwd``.
    ``dy_pending = (x2, a, b, c)`` makes the upstream gradient ``dy * a + x2 * b + c`` (per Cout channel, fp32
    vectors; a BN-backward apply not yet materialised).
    With ``x`` (NHWC ``(N, H, W, Cin)``), ``scale``, ``shift`` and ``mean`` (fp32, length Cin) returns
    ``(dv, sums)`` with ``dv = du * (x * scale + shift > 0)`` and ``sums`` the fp32 ``(2, T, Cin)`` partials of
    ``sum(dv)`` and ``sum(dv * (x - mean))``; without them returns ``(du, None)``. ``add`` (NHWC
    ``(N, H, W, Cin)``) is added to ``du`` before the mask.
    """
    check_nhwc("dy", dy)
    n, hh, ww, cout = dy.shape
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4 or weight.shape[0] != cout:
        raise ValueError(f"weight must be ({cout}, Cin, k, k) to match dy, got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")
    cin = weight.shape[1]
    ks = check_weight("weight", weight, dy, cin)
    check_numel("output dv", (n, hh, ww, cin))
    masked = x is not None
    if masked:
        check_nhwc("x", x, dy.dtype, dy.device)
        if x.shape != (n, hh, ww, cin):
            raise ValueError(f"x must be {(n, hh, ww, cin)}, got {tuple(x.shape)}")
        for name, vec in (("scale", scale), ("shift", shift), ("mean", mean)):
            check_vector(name, vec, cin, dy.device)
    if add is not None:
        check_nhwc("add", add, dy.dtype, dy.device)
        if add.shape != (n, hh, ww, cin):
            raise ValueError(f"add must be {(n, hh, ww, cin)}, got {tuple(add.shape)}")
    pending = _check_pending(dy_pending, dy)
    m = n * hh * ww
    bm = block_m(m)
    t = cdiv(m, bm)
    dv = torch.empty((n, hh, ww, cin), device=dy.device, dtype=dy.dtype)
    sums = torch.empty((2, t, cin), device=dy.device, dtype=torch.float32) if masked else None
    grid = lambda meta: (t * cdiv(cin, meta["BN"]),)  # noqa: E731
    w_t, *w_addr = weight_operand(weight, packed, True, dy.dtype)
    m_key, smem, prec = tune_key(m, bm), shared_memory(dy.device), dot_precision(dy.dtype)
    launch_tuned(
        conv_dgrad_kernel, grid, (m_key, smem, cin, cout, ks, dy.dtype, w_t.dtype, masked, dy_pending is None,
                                  add is None, prec),
        dy, *pending, w_t,
        x if masked else dv, scale if masked else dv, shift if masked else dv, mean if masked else dv,
        dv if add is None else add, dv, sums if masked else dv, *w_addr, m, hh, ww, cin, cout, t, m_key, smem,
        KS=ks, PRO=0 if dy_pending is None else 2, MASK=masked, HAS_ADD=add is not None,
        IO_DTYPE=tl_dtype(dy.dtype), DOT_DTYPE=dot_dtype(dy.dtype), DOT_PREC=prec, BM=bm)
    return dv, sums


def _check_pending(pending, dy):
    """Validate ``(x2, a, b, c)`` of a pending BN-backward apply on ``dy``; return the 4 kernel arguments."""
    if pending is None:
        return dy, dy, dy, dy
    if not isinstance(pending, (tuple, list)) or len(pending) != 4:
        raise ValueError("dy_pending must be a tuple (x2, a, b, c)")
    x2, a, b, c = pending
    check_nhwc("dy_pending x2", x2, dy.dtype, dy.device)
    if x2.shape != dy.shape:
        raise ValueError(f"dy_pending x2 must have dy's shape {tuple(dy.shape)}, got {tuple(x2.shape)}")
    for name, vec in (("a", a), ("b", b), ("c", c)):
        check_vector(f"dy_pending {name}", vec, dy.shape[3], dy.device)
    return x2, a, b, c
