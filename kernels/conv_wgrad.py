"""Weight (and bias) gradient of the fused BN-ReLU-conv, recomputing ``relu(x * s + t)`` instead of saving it.

``dw[co, ci, tap] = sum_m prologue(dy)[m, co] * relu(x * s + t)[m + tap, ci]`` (zero padding after the
prologue); ``dbias[co] = sum_m prologue(dy)[m, co]``. Each program owns one ``(tap, Cin block) x Cout block`` tile
and one contiguous range of rows (split-K over the rows: the output has few tiles - a 1x1 256->128 conv has 8 of
64x64 - so without it most of the GPU would idle); the per-split fp32 partials (``dw`` and ``dbias`` side by side,
one row per split) are summed in split order by one more launch: deterministic, no atomics. ``dw`` is written in
the weight's own ``(Cout, Cin, k, k)`` layout.
"""

import torch
import triton
import triton.language as tl

from .common import (block_m, cdiv, check_nhwc, check_vector, dot_dtype, dot_precision, elementwise_block,
                     gemm_configs, interpreting, launch_tuned, load_tile, mma, on_tensor_device, or_dummy, prune_tiles,
                     row_coords, shared_memory, sm_count, tl_dtype, tune_key)
from .conv_dgrad import _check_pending


@triton.autotune(configs=gemm_configs(), key=["CIN", "COUT", "KS", "M_KEY", "SMEM", "PRO_X", "PRO_DY", "DOT_PREC"],
                 prune_configs_by={"early_config_prune": prune_tiles("COUT", "CIN", lambda a, bn, bk: (
                     a["BM"] * bk * a["x_ptr"].element_size()
                     + a["BM"] * bn * a["dy_ptr"].element_size() * (2 if a["PRO_DY"] == 2 else 1)))})
@triton.jit(do_not_specialize=["M", "H", "W", "ROWS", "M_KEY", "SMEM"])
def conv_wgrad_kernel(x_ptr, s_ptr, t_ptr, dy_ptr, dy2_ptr, gs_ptr, gt_ptr, gr_ptr, dw_ptr, db_ptr,
                      M, H, W, CIN, COUT, ROWS, SPLIT_STRIDE, M_KEY, SMEM,
                      KS: tl.constexpr, PRO_X: tl.constexpr, PRO_DY: tl.constexpr, HAS_BIAS: tl.constexpr,
                      IO_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, DOT_PREC: tl.constexpr,
                      BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    nkb = tl.cdiv(CIN, BK)
    pid_k = tl.program_id(0)
    tap = pid_k // nkb
    ks = (pid_k % nkb) * BK + tl.arange(0, BK)
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    dh = tap // KS - KS // 2
    dw = tap % KS - KS // 2
    split = tl.program_id(2)
    m_end = tl.minimum(M, (split + 1) * ROWS)
    acc = tl.zeros((BK, BN), dtype=tl.float32)
    dbias = tl.zeros((BN,), dtype=tl.float32)
    for m0 in range(split * ROWS, m_end, BM):
        rows = m0 + tl.arange(0, BM)
        row_ok = rows < m_end
        h, w = row_coords(rows, H, W)
        u = load_tile(x_ptr, x_ptr, s_ptr, t_ptr, t_ptr, rows, row_ok, h, w, dh, dw, H, W, ks, CIN, PRO_X)
        g = load_tile(dy_ptr, dy2_ptr, gs_ptr, gt_ptr, gr_ptr, rows, row_ok, h, w, 0, 0, H, W, cols, COUT, PRO_DY)
        acc = mma(acc, tl.trans(u), g, IO_DTYPE, DOT_DTYPE, DOT_PREC)
        if HAS_BIAS:
            if pid_k == 0:  # only the first (tap, Cin block) program stores dbias
                dbias += tl.sum(g.to(IO_DTYPE).to(tl.float32), 0)
    col_ok = cols < COUT
    mask = (ks < CIN)[:, None] & col_ok[None, :]
    dw_offs = cols[None, :] * (CIN * KS * KS) + ks[:, None] * (KS * KS) + tap  # (Cout, Cin, k, k)
    tl.store(dw_ptr + split * SPLIT_STRIDE + dw_offs, acc, mask=mask)
    if HAS_BIAS:
        tl.store(db_ptr + split * SPLIT_STRIDE + cols, dbias, mask=col_ok & (pid_k == 0))


@triton.jit(do_not_specialize=["SPLITS", "P", "WIDTH"])
def sum_splits_kernel(src_ptr, dw_ptr, db_ptr, SPLITS, P, WIDTH, BLOCK: tl.constexpr):
    """``src`` is ``(SPLITS, WIDTH)`` fp32, each row ``dw`` (``P`` values) then ``dbias``: sum the rows in order
    into ``dw`` and ``db``."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < WIDTH
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for split in range(SPLITS):
        acc += tl.load(src_ptr + split * WIDTH + offs, mask=ok, other=0.0)
    tl.store(dw_ptr + offs, acc, mask=offs < P)
    tl.store(db_ptr + (offs - P), acc, mask=ok & (offs >= P))


def row_split(m: int, bm: int, out_tiles: int, device: torch.device) -> tuple[int, int]:
    """``(splits, rows per split)`` of the wgrad's M reduction: about two programs per SM in all, each split at
    least four row tiles long and a multiple of ``bm`` rows. On the interpreter: four splits per output tile of
    at least one row tile, so the CPU tests cover the split path."""
    if interpreting() or device.type != "cuda":
        programs, min_tiles = 4 * out_tiles, 1
    else:
        programs, min_tiles = 2 * sm_count(device), 4
    split = max(1, min(cdiv(programs, out_tiles), m // (min_tiles * bm)))
    rows = cdiv(cdiv(m, split), bm) * bm
    return cdiv(m, rows), rows


@on_tensor_device
def conv2d_wgrad(x, dy, kernel_size, scale=None, shift=None, dy_pending=None, bias=True):
    """``(dweight (Cout, Cin, k, k), dbias (Cout,) or None)`` in fp32 for ``y = conv(relu(x * scale + shift))``.

    x: NHWC ``(N, H, W, Cin)`` (the raw, pre-BN input; without scale/shift the conv input itself); dy: NHWC
    ``(N, H, W, Cout)``; ``dy_pending = (x2, a, b, c)`` as in ``conv2d_dgrad``; kernel_size 1 or 3 (pad 1).
    """
    check_nhwc("x", x)
    check_nhwc("dy", dy, x.dtype, x.device)
    n, hh, ww, cin = x.shape
    cout = dy.shape[3]
    if dy.shape[:3] != x.shape[:3]:
        raise ValueError(f"dy must be (N, H, W, Cout) with x's N, H, W {tuple(x.shape[:3])}, got {tuple(dy.shape)}")
    if kernel_size not in (1, 3):
        raise ValueError(f"kernel_size must be 1 or 3, got {kernel_size!r}")
    if (scale is None) != (shift is None):
        raise ValueError("scale and shift must be given together")
    if scale is not None:
        check_vector("scale", scale, cin, x.device)
        check_vector("shift", shift, cin, x.device)
    pending = _check_pending(dy_pending, dy)
    m = n * hh * ww
    if m == 0:  # an empty batch: nothing to reduce
        return (torch.zeros((cout, cin, kernel_size, kernel_size), device=x.device, dtype=torch.float32),
                torch.zeros((cout,), device=x.device, dtype=torch.float32) if bias else None)
    bm = block_m(m)
    # Split count from the largest autotune tile (64 x 128): never fewer programs than planned.
    splits, rows = row_split(m, bm, kernel_size ** 2 * cdiv(cin, 64) * cdiv(cout, 128), x.device)
    p = cout * cin * kernel_size ** 2
    dw = torch.empty((cout, cin, kernel_size, kernel_size), device=x.device, dtype=torch.float32)
    db = torch.empty((cout,), device=x.device, dtype=torch.float32) if bias else None
    if splits == 1:  # straight into the outputs
        out_dw, out_db, stride = dw, or_dummy(db, dw), 0
    else:  # partials side by side, one row per split, then summed into dw and db (one launch for both)
        width = p + (cout if bias else 0)
        partials = torch.empty((splits, width), device=x.device, dtype=torch.float32)
        out_dw, out_db, stride = partials, partials[:, p:] if bias else partials, width
    grid = lambda meta: (kernel_size * kernel_size * cdiv(cin, meta["BK"]),  # noqa: E731
                         cdiv(cout, meta["BN"]), splits)
    m_key, smem, prec = tune_key(m, bm), shared_memory(x.device), dot_precision(x.dtype)
    launch_tuned(
        conv_wgrad_kernel, grid, (m_key, smem, cin, cout, kernel_size, x.dtype, scale is None, dy_pending is None, bias,
                                  splits, prec),
        x, x if scale is None else scale, x if shift is None else shift, dy, *pending, out_dw, out_db,
        m, hh, ww, cin, cout, rows, stride, m_key, smem,
        KS=kernel_size, PRO_X=0 if scale is None else 1, PRO_DY=0 if dy_pending is None else 2, HAS_BIAS=bias,
        IO_DTYPE=tl_dtype(x.dtype), DOT_DTYPE=dot_dtype(x.dtype), DOT_PREC=prec, BM=bm)
    if splits > 1:
        block = elementwise_block() * 16
        sum_splits_kernel[(cdiv(width, block),)](partials, dw, or_dummy(db, dw), splits, p, width, BLOCK=block)
    return dw, db
