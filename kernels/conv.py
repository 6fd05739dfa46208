"""Forward 1x1 / 3x3 (stride 1, pad 1) convolution over NHWC rows with fused BN prologue and epilogues.

``y[m, co] = epilogue(sum_{tap, ci} prologue(x)[m + tap, ci] * w[co, ci, tap])`` as an implicit GEMM: the 1x1 conv
is a plain GEMM ``[M, Cin] @ [Cin, Cout]``; the 3x3 conv loops over its 9 taps, each a shifted, zero-padded view.

Epilogue, in this order (each optional): ``+ bias``; ``relu(v * es + et)`` (folded BN + ReLU); ``+ residual``;
``+ low[n, h // 2, w // 2]`` (nearest-2x upsample add); store in the I/O dtype; per-channel partial BN statistics
``(count, mean, M2)`` of the stored values, one row per row tile (see ``bn_stats``).
"""
import torch
import triton
import triton.language as tl

from .common import (SUPPORTED_DTYPES, block_m, cdiv, check_nhwc, check_numel, check_vector, dot_dtype,
                     dot_precision, gemm_configs, launch_tuned, load_tile, mma, on_tensor_device, or_dummy,
                     prune_tiles, relu, row_coords, shared_memory, tile_ids, tl_dtype, tune_key)
from .bn_stats import write_partial_stats


@triton.jit
def conv_mainloop(x_ptr, x2_ptr, s_ptr, t_ptr, r_ptr, w_ptr, W_OFF, SW_TAP, SW_K, SW_N,
                  rows, row_ok, h, w, H, W, CA, cols, CB,
                  KS: tl.constexpr, PRO: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                  IO_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, DOT_PREC: tl.constexpr):
    """fp32 ``[BM, BN]`` tile of ``conv(prologue(x))``; the weight operand ``b[tap, k, n]`` is at
    ``w_ptr + W_OFF + tap * SW_TAP + k * SW_K + n * SW_N`` (see ``weight_operand``), in any float dtype.

    One loop over (tap, K block) rather than a loop per tap: with 128 input channels a tap has only two K blocks,
    too few for the software pipeliner, which then drains its loads and MMAs nine times per tile."""
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    col_ok = cols < CB
    k_blocks = tl.cdiv(CA, BK)
    for i in range(0, KS * KS * k_blocks):
        tap = i // k_blocks
        ks = (i - tap * k_blocks) * BK + tl.arange(0, BK)
        a = load_tile(x_ptr, x2_ptr, s_ptr, t_ptr, r_ptr, rows, row_ok, h, w,
                      tap // KS - KS // 2, tap % KS - KS // 2, H, W, ks, CA, PRO)
        b_mask = (ks < CA)[:, None] & col_ok[None, :]
        b = tl.load(w_ptr + W_OFF + tap * SW_TAP + ks[:, None] * SW_K + cols[None, :] * SW_N, mask=b_mask,
                    other=0.0)
        acc = mma(acc, a, b, IO_DTYPE, DOT_DTYPE, DOT_PREC)
    return acc


@triton.autotune(configs=gemm_configs(), key=["CIN", "COUT", "KS", "M_KEY", "SMEM", "PRO", "HAS_LOW", "DOT_PREC"],
                 prune_configs_by={"early_config_prune": prune_tiles("COUT", "CIN", lambda a, bn, bk: (
                     a["BM"] * bk * a["x_ptr"].element_size() + bk * bn * a["w_ptr"].element_size()))})
@triton.jit(do_not_specialize=["M", "H", "W", "T", "M_KEY", "SMEM"])
def conv_fwd_kernel(x_ptr, w_ptr, y_ptr, ps_ptr, pt_ptr, bias_ptr, es_ptr, et_ptr, res_ptr, low_ptr, stats_ptr,
                    W_OFF, SW_TAP, SW_K, SW_N, M, H, W, CIN, COUT, T, M_KEY, SMEM,
                    KS: tl.constexpr, PRO: tl.constexpr, HAS_BIAS: tl.constexpr, EPI_AFFINE: tl.constexpr,
                    HAS_RES: tl.constexpr, HAS_LOW: tl.constexpr, STATS: tl.constexpr,
                    IO_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, DOT_PREC: tl.constexpr,
                    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid_m, pid_n = tile_ids(COUT, BN)
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    row_ok = rows < M
    col_ok = cols < COUT
    h, w = row_coords(rows, H, W)
    v = conv_mainloop(x_ptr, x_ptr, ps_ptr, pt_ptr, pt_ptr, w_ptr, W_OFF, SW_TAP, SW_K, SW_N,
                      rows, row_ok, h, w, H, W, CIN, cols, COUT, KS, PRO, BM, BN, BK, IO_DTYPE, DOT_DTYPE, DOT_PREC)
    mask = row_ok[:, None] & col_ok[None, :]
    if HAS_BIAS:
        v += tl.load(bias_ptr + cols, mask=col_ok, other=0.0)[None, :]
    if EPI_AFFINE:
        es = tl.load(es_ptr + cols, mask=col_ok, other=0.0)
        et = tl.load(et_ptr + cols, mask=col_ok, other=0.0)
        v = relu(v * es[None, :] + et[None, :])
    offs = rows[:, None] * COUT + cols[None, :]
    if HAS_RES:
        v += tl.load(res_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_LOW:
        low_rows = (rows // (H * W)) * ((H // 2) * (W // 2)) + (h // 2) * (W // 2) + w // 2
        v += tl.load(low_ptr + low_rows[:, None] * COUT + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    out = v.to(IO_DTYPE)
    tl.store(y_ptr + offs, out, mask=mask)
    if STATS:
        write_partial_stats(stats_ptr, out.to(tl.float32), row_ok, cols, col_ok, pid_m, T, COUT)


def pack_weight(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The GEMM operand of a 3x3 conv: ``(Cout, Cin, k, k)`` -> ``(k, k, Cin, Cout)`` contiguous in ``dtype`` (the
    activations' dtype), one casting copy. Forward and data gradient both read it (``weight_operand``)."""
    cout, cin, k, _ = weight.shape
    packed = torch.empty((k, k, cin, cout), device=weight.device, dtype=dtype)
    return packed.copy_(weight.detach().permute(2, 3, 1, 0))


def weight_operand(weight: torch.Tensor, packed: torch.Tensor | None, transpose: bool, dtype: torch.dtype):
    """``(tensor, offset, tap stride, k stride, n stride)`` addressing the B operand ``b[tap, k, n]`` of the conv
    GEMM: ``w[co=n, ci=k, tap]`` (forward) or, ``transpose``, ``w[co=k, ci=n, 8 - tap]`` (data gradient: flipped,
    channels swapped). 1x1 weights are read where they are, in their own dtype and strides (rounded to the
    activations' dtype in the kernel); 3x3 weights from ``packed`` (``pack_weight``; packed here when None)."""
    cout, cin, k, _ = weight.shape
    if k == 1:
        so, si = weight.stride(0), weight.stride(1)
        return (weight, 0, 0, so, si) if transpose else (weight, 0, 0, si, so)
    if packed is None:
        packed = pack_weight(weight, dtype)
    elif packed.shape != (k, k, cin, cout) or packed.dtype != dtype or packed.device != weight.device \
            or not packed.is_contiguous():
        raise ValueError(f"packed must be pack_weight(weight, {dtype}): a contiguous {(k, k, cin, cout)} tensor on "
                         f"{weight.device}, got {tuple(packed.shape)} {packed.dtype} on {packed.device}")
    if transpose:
        return packed, (k * k - 1) * cin * cout, -cin * cout, 1, cout
    return packed, 0, cin * cout, cout, 1


def check_weight(name: str, weight: torch.Tensor, x: torch.Tensor, cin: int) -> int:
    """Validate a conv weight ``[Cout, cin, k, k]`` (k in 1, 3; fp32/fp16/bf16 on x's device); return k."""
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4 or weight.shape[1] != cin \
            or weight.shape[2] != weight.shape[3] or weight.shape[2] not in (1, 3):
        raise ValueError(f"{name} must be (Cout, {cin}, k, k) with k in (1, 3), got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")
    if weight.dtype not in SUPPORTED_DTYPES or weight.device != x.device:
        raise TypeError(f"{name} must be float32, float16 or bfloat16 on {x.device}, got {weight.dtype} on "
                        f"{weight.device}")
    return weight.shape[2]


@on_tensor_device
def conv2d_fwd(x, weight, bias=None, pro_scale=None, pro_shift=None, epi_scale=None, epi_shift=None,
               residual=None, low=None, stats=False, packed=None):
    """Fused ``[BN-ReLU] -> conv (1x1 or 3x3, pad 1) -> [+bias] [BN-ReLU] [+residual] [+up2x(low)]``.

    x: NHWC ``(N, H, W, Cin)``; weight ``(Cout, Cin, k, k)``, fp32/fp16/bf16 (rounded to x's dtype), with
    ``packed = pack_weight(weight, x.dtype)`` optional for 3x3 (reuse it across calls); bias, pro_*, epi_*: fp32 vectors
    (``pro_scale``/``pro_shift`` of length Cin, the others Cout); residual ``(N, H, W, Cout)``; low
    ``(N, H/2, W/2, Cout)``. Returns ``(y (N, H, W, Cout), partial)`` where ``partial`` is the fp32
    ``(3, ceil(M / BM), Cout)`` statistics buffer when ``stats`` else None.
    """
    check_nhwc("x", x)
    n, hh, ww, cin = x.shape
    ks = check_weight("weight", weight, x, cin)
    cout = weight.shape[0]
    check_numel("output y", (n, hh, ww, cout))
    for name, vec, length in (("bias", bias, cout), ("pro_scale", pro_scale, cin), ("pro_shift", pro_shift, cin),
                              ("epi_scale", epi_scale, cout), ("epi_shift", epi_shift, cout)):
        if vec is not None:
            check_vector(name, vec, length, x.device)
    if (pro_scale is None) != (pro_shift is None) or (epi_scale is None) != (epi_shift is None):
        raise ValueError("pro_scale/pro_shift and epi_scale/epi_shift must be given in pairs")
    if residual is not None:
        check_nhwc("residual", residual, x.dtype, x.device)
        if residual.shape != (n, hh, ww, cout):
            raise ValueError(f"residual must be {(n, hh, ww, cout)}, got {tuple(residual.shape)}")
    if low is not None:
        check_nhwc("low", low, x.dtype, x.device)
        if hh % 2 or ww % 2 or low.shape != (n, hh // 2, ww // 2, cout):
            raise ValueError(f"low must be (N, H/2, W/2, Cout) = {(n, hh // 2, ww // 2, cout)} with even H, W; "
                             f"got {tuple(low.shape)} for H, W = {hh}, {ww}")
    m = n * hh * ww
    bm = block_m(m)
    t = cdiv(m, bm)
    y = torch.empty((n, hh, ww, cout), device=x.device, dtype=x.dtype)
    partial = torch.empty((3, t, cout), device=x.device, dtype=torch.float32) if stats else None
    dummy = y
    grid = lambda meta: (t * cdiv(cout, meta["BN"]),)  # noqa: E731
    w_t, *w_addr = weight_operand(weight, packed, False, x.dtype)
    flags = tuple(v is None for v in (pro_scale, bias, epi_scale, residual, low))
    m_key, smem, prec = tune_key(m, bm), shared_memory(x.device), dot_precision(x.dtype)
    launch_tuned(
        conv_fwd_kernel, grid, (m_key, smem, cin, cout, ks, x.dtype, w_t.dtype, stats, flags, prec),
        x, w_t, y, *(or_dummy(v, dummy) for v in (pro_scale, pro_shift, bias, epi_scale, epi_shift, residual, low,
                                                  partial)),
        *w_addr, m, hh, ww, cin, cout, t, m_key, smem,
        KS=ks, PRO=0 if pro_scale is None else 1, HAS_BIAS=bias is not None, EPI_AFFINE=epi_scale is not None,
        HAS_RES=residual is not None, HAS_LOW=low is not None, STATS=stats,
        IO_DTYPE=tl_dtype(x.dtype), DOT_DTYPE=dot_dtype(x.dtype), DOT_PREC=prec, BM=bm)
    return y, partial
