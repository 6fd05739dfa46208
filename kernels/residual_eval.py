"""A whole inference-mode residual in one kernel (identity skip, ``Cin == Cout = C``, bottleneck ``CM``):

``y = x + conv1x1_3(relu(bn3(conv3x3(relu(bn2(conv1x1_1(relu(bn1(x))))))))) [+ low[n, h // 2, w // 2]]``

with every BN from running statistics, given as fp32 per-channel ``scale``/``shift`` (``x * s + t``); conv biases
are added before the BN that follows them, as in ``conv2d_fwd``. Each program owns a tile of output pixels, ``IB``
images x ``TH`` rows x ``TW`` columns (``BM = IB * TH * TW`` GEMM rows), and for it:

1. computes conv1 (BN1-ReLU as it loads ``x``, BN2-ReLU after) over the tile's halo, ``(TH + 2) x (TW + 2)`` pixels
   per image, in chunks of ``HC`` rows, into its own scratch rows: rounded to the I/O dtype, exactly as the
   three-kernel path stores that activation, and 0 outside the image (the 3x3's zero padding comes after BN2-ReLU);
2. the 3x3 conv reading each tap as a shifted view of the scratch, BN3-ReLU after, kept in registers;
3. conv3 in blocks of ``BN3`` output channels, + bias + ``x`` [+ ``low`` upsampled], stored.

Against three kernels (``conv2d_fwd`` x 3): one launch instead of three and no intermediate activation in HBM
(``x`` read about once, ``y`` written once), for a halo recompute of conv1: ``(TH+2)(TW+2) / (TH TW)`` times its
FLOPs, 1.5x at 8 x 16 with 64-row chunks (+8 % of the residual's). Programs are persistent (two per SM planned, each
looping over tiles), so the scratch is a few MB that stays in L2. Only one is resident per SM where a block takes
more than half an SM's 228 KB of shared memory (bf16 CMP 128, 3 stages: 160 KB, compiled for sm_90), and the
second half of the programs then starts as the first finishes (the same work in all, not measured on a GPU).
"""
import torch
import triton
import triton.language as tl

from .common import (cdiv, check_nhwc, check_vector, dot_dtype, dot_precision, interpreting, load_tile, mma,
                     next_pow2, on_tensor_device, or_dummy, relu, sm_count, tl_dtype)


@triton.jit(do_not_specialize=["N", "H", "W", "TILES_H", "TILES_W", "TILES"])
def residual_eval_kernel(x_ptr, s1_ptr, t1_ptr, w1_ptr, b1_ptr, s2_ptr, t2_ptr, w2_ptr, b2_ptr, s3_ptr, t3_ptr,
                         w3_ptr, b3_ptr, low_ptr, y_ptr, scratch_ptr, SW1_K, SW1_N, SW3_K, SW3_N,
                         N, H, W, TILES_H, TILES_W, TILES, C, CM,
                         CMP: tl.constexpr, IB: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
                         HC: tl.constexpr, NCHUNK: tl.constexpr, BK1: tl.constexpr, BK2: tl.constexpr,
                         BN3: tl.constexpr, HAS_B1: tl.constexpr, HAS_B2: tl.constexpr, HAS_B3: tl.constexpr,
                         HAS_LOW: tl.constexpr, IO_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr,
                         DOT_PREC: tl.constexpr):
    BM: tl.constexpr = IB * TH * TW
    HALO_W: tl.constexpr = TW + 2
    HALO: tl.constexpr = (TH + 2) * HALO_W
    pid = tl.program_id(0)
    scratch = scratch_ptr + pid * (NCHUNK * HC * CMP)
    cm = tl.arange(0, CMP)
    cm_ok = cm < CM
    s2 = tl.load(s2_ptr + cm, mask=cm_ok, other=0.0)
    t2 = tl.load(t2_ptr + cm, mask=cm_ok, other=0.0)
    s3 = tl.load(s3_ptr + cm, mask=cm_ok, other=0.0)
    t3 = tl.load(t3_ptr + cm, mask=cm_ok, other=0.0)
    r = tl.arange(0, BM)
    r_img = r // (TH * TW)
    r_h = (r // TW) % TH
    r_w = r % TW
    r_halo = r_img * HALO + r_h * HALO_W + r_w  # the halo row of each output pixel's top-left tap
    for tile in range(pid, TILES, tl.num_programs(0)):
        tl.debug_barrier()  # the previous tile's reads of the scratch are done before it is overwritten
        n0 = (tile // (TILES_H * TILES_W)) * IB
        h0 = ((tile // TILES_W) % TILES_H) * TH
        w0 = (tile % TILES_W) * TW
        # 1. conv1 over the halo -> scratch
        for chunk in range(NCHUNK):
            q = chunk * HC + tl.arange(0, HC)
            img = q // HALO
            hh = h0 - 1 + (q % HALO) // HALO_W
            ww = w0 - 1 + q % HALO_W
            n = n0 + img
            inside = (img < IB) & (n < N) & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
            rows = (n * H + hh) * W + ww
            acc = tl.zeros((HC, CMP), dtype=tl.float32)
            for k0 in range(0, C, BK1):
                ks = k0 + tl.arange(0, BK1)
                a = load_tile(x_ptr, x_ptr, s1_ptr, t1_ptr, t1_ptr, rows, inside, hh, ww, 0, 0, H, W, ks, C, 1)
                b = tl.load(w1_ptr + ks[:, None] * SW1_K + cm[None, :] * SW1_N,
                            mask=(ks < C)[:, None] & cm_ok[None, :], other=0.0)
                acc = mma(acc, a, b, IO_DTYPE, DOT_DTYPE, DOT_PREC)
            if HAS_B1:
                acc += tl.load(b1_ptr + cm, mask=cm_ok, other=0.0)[None, :]
            v = tl.where(inside[:, None], relu(acc * s2[None, :] + t2[None, :]), 0.0)
            tl.store(scratch + q[:, None] * CMP + cm[None, :], v.to(IO_DTYPE))
        tl.debug_barrier()  # the whole halo is in the scratch before any tap reads it
        # 2. conv2 (3x3) from the scratch, BN3-ReLU; columns >= CM stay 0 (s3 = t3 = 0 there)
        acc = tl.zeros((BM, CMP), dtype=tl.float32)
        k_blocks = tl.cdiv(CM, BK2)
        for i in range(0, 9 * k_blocks):
            tap = i // k_blocks
            ks = (i - tap * k_blocks) * BK2 + tl.arange(0, BK2)
            q = r_halo + (tap // 3) * HALO_W + tap % 3
            a = tl.load(scratch + q[:, None] * CMP + ks[None, :], mask=(ks < CM)[None, :], other=0.0)
            b = tl.load(w2_ptr + tap * CM * CM + ks[:, None] * CM + cm[None, :],
                        mask=(ks < CM)[:, None] & cm_ok[None, :], other=0.0)
            acc = mma(acc, a, b, IO_DTYPE, DOT_DTYPE, DOT_PREC)
        if HAS_B2:
            acc += tl.load(b2_ptr + cm, mask=cm_ok, other=0.0)[None, :]
        mid = relu(acc * s3[None, :] + t3[None, :]).to(IO_DTYPE)
        # 3. conv3 + bias + skip [+ low], in blocks of output channels
        n = n0 + r_img
        h = h0 + r_h
        w = w0 + r_w
        row_ok = (n < N) & (h < H) & (w < W)
        rows = (n * H + h) * W + w
        low_rows = (n * (H // 2) + h // 2) * (W // 2) + w // 2
        for c0 in range(0, C, BN3):
            co = c0 + tl.arange(0, BN3)
            co_ok = co < C
            b = tl.load(w3_ptr + cm[:, None] * SW3_K + co[None, :] * SW3_N, mask=cm_ok[:, None] & co_ok[None, :],
                        other=0.0)
            v = mma(tl.zeros((BM, BN3), dtype=tl.float32), mid, b, IO_DTYPE, DOT_DTYPE, DOT_PREC)
            if HAS_B3:
                v += tl.load(b3_ptr + co, mask=co_ok, other=0.0)[None, :]
            mask = row_ok[:, None] & co_ok[None, :]
            offs = rows[:, None] * C + co[None, :]
            v += tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            if HAS_LOW:
                v += tl.load(low_ptr + low_rows[:, None] * C + co[None, :], mask=mask, other=0.0).to(tl.float32)
            tl.store(y_ptr + offs, v.to(IO_DTYPE), mask=mask)


def eval_tile(n: int, h: int, w: int, rows: int | None = None) -> tuple[int, int, int]:
    """``(IB, TH, TW)``: images, rows and columns of a program's output tile, ``TW`` at most 16. ``rows``
    (``IB * TH * TW``) defaults to 128 (64 when the map holds fewer than ~132 such tiles; 16 under the
    interpreter)."""
    if rows is None:
        rows = 16 if interpreting() else (128 if n * h * w >= 128 * 132 else 64)
    tw = min(next_pow2(w), 4 if interpreting() else 16, rows)
    th = min(next_pow2(h), rows // tw)
    return rows // (th * tw), th, tw


# The widest padded bottleneck (CMP) whose kernel fits an sm_90 block's 227 KB of shared memory, in one stage;
# wider models run the three-kernel form (``fits``). fp32 GEMMs in IEEE precision (TF32 off) stage conv3's
# (BM, CMP) fp32 operand through shared memory on its own: compiled for sm_90 with 128-row tiles, CMP 512 then
# needs 384 KB (256 KB with 64-row tiles), CMP 256 208 KB, so their limit is half.
MAX_CMP = 512


def _padded(cm: int) -> int:
    """CMP: the bottleneck width ``cm`` padded to a power of two, at least 16 (the kernel's tile width)."""
    return max(16, next_pow2(cm))


def max_cmp(dtype: torch.dtype) -> int:
    """``MAX_CMP`` for activations of ``dtype`` (half of it for fp32 without TF32, see above)."""
    return MAX_CMP // 2 if dtype == torch.float32 and dot_precision(dtype) == "ieee" and not interpreting() \
        else MAX_CMP


def fits(cm: int, dtype: torch.dtype) -> bool:
    """Whether the one-kernel residual fits a GPU block for a bottleneck of ``cm`` channels (``max_cmp``)."""
    return _padded(cm) <= max_cmp(dtype)


def _stages(dtype: torch.dtype, cmp: int) -> int:
    """Pipeline depth: 3 (16-bit) or 2 (fp32) where it fits, fewer for wide bottlenecks. Compiled for sm_90
    (``.ci/triton_sm90_check``, 128-row tiles), shared memory per block: 16-bit CMP 128 x 3 stages 160 KB,
    256 x 3 320 KB (over), 256 x 2 192 KB, 512 x 1 128 KB; fp32 256 x 2 160 KB, 512 x 2 288 KB (over), 512 x 1
    128 KB."""
    if dtype == torch.float32:
        return 2 if cmp <= 256 else 1
    return 3 if cmp <= 128 else (2 if cmp <= 256 else 1)


def _blocks(dtype: torch.dtype, bm: int, c: int, cmp: int) -> dict:
    """Constexpr block sizes and the launch config: K blocks of 64 (32 in fp32: twice the bytes per element), conv3
    in blocks of 128 output channels (64 in fp32), 8 warps for 128-row tiles, ``_stages``."""
    if interpreting():
        return dict(HC=16, BK1=16, BK2=16, BN3=16, num_warps=4, num_stages=1)
    wide = dtype != torch.float32
    return dict(HC=64, BK1=64 if wide else 32, BK2=64 if wide else 32,
                BN3=min(128 if wide else 64, max(16, next_pow2(c))),
                num_warps=8 if bm == 128 else 4, num_stages=_stages(dtype, cmp))


@on_tensor_device
def residual_eval(x, s1, t1, w1, b1, s2, t2, w2_packed, b2, s3, t3, w3, b3, low=None, tile_rows=None):
    """One-kernel inference residual (see the module docstring).

    x: NHWC ``(N, H, W, C)``; w1 ``(CM, C, 1, 1)`` and w3 ``(C, CM, 1, 1)`` in any float dtype (rounded to x's);
    ``w2_packed = pack_weight(conv2.weight, x.dtype)``, ``(3, 3, CM, CM)``; ``s1, t1`` (C), ``s2, t2, b1, s3, t3,
    b2`` (CM), ``b3`` (C): fp32 vectors, biases optional; low ``(N, H/2, W/2, C)``; ``tile_rows`` (16, 64 or 128)
    overrides ``eval_tile``'s choice. Returns ``y`` like ``x``.
    """
    check_nhwc("x", x)
    n, hh, ww, c = x.shape
    for name, wt in (("w1", w1), ("w3", w3)):
        if not isinstance(wt, torch.Tensor) or wt.dim() != 4 or wt.shape[2:] != (1, 1) or wt.device != x.device \
                or wt.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"{name} must be a (Cout, Cin, 1, 1) float32/float16/bfloat16 tensor on {x.device}")
    cm = w1.shape[0]
    if w1.shape[1] != c or w3.shape != (c, cm, 1, 1):
        raise ValueError(f"w1 must be (CM, C, 1, 1) and w3 (C, CM, 1, 1) with C = {c}; got {tuple(w1.shape)} and "
                         f"{tuple(w3.shape)}")
    if not isinstance(w2_packed, torch.Tensor) or w2_packed.shape != (3, 3, cm, cm) \
            or w2_packed.dtype != x.dtype or w2_packed.device != x.device or not w2_packed.is_contiguous():
        raise ValueError(f"w2_packed must be pack_weight(conv2.weight, {x.dtype}): a contiguous (3, 3, {cm}, {cm}) "
                         f"tensor on {x.device}")
    for name, vec, length in (("s1", s1, c), ("t1", t1, c), ("s2", s2, cm), ("t2", t2, cm), ("s3", s3, cm),
                              ("t3", t3, cm)):
        check_vector(name, vec, length, x.device)
    for name, vec, length in (("b1", b1, cm), ("b2", b2, cm), ("b3", b3, c)):
        if vec is not None:
            check_vector(name, vec, length, x.device)
    if low is not None:
        check_nhwc("low", low, x.dtype, x.device)
        if hh % 2 or ww % 2 or low.shape != (n, hh // 2, ww // 2, c):
            raise ValueError(f"low must be (N, H/2, W/2, C) = {(n, hh // 2, ww // 2, c)} with even H, W; got "
                             f"{tuple(low.shape)} for H, W = {hh}, {ww}")
    if tile_rows not in (None, 16, 64, 128):
        raise ValueError(f"tile_rows must be None, 16, 64 or 128, got {tile_rows!r}")
    if not fits(cm, x.dtype):
        raise ValueError(f"residual_eval: a bottleneck of {cm} channels is wider than the one-kernel residual's "
                         f"{max_cmp(x.dtype)} for {x.dtype} (it would not fit a GPU block's shared memory); use the "
                         f"three-kernel form")
    y = torch.empty_like(x)
    if x.numel() == 0:
        return y
    ib, th, tw = eval_tile(n, hh, ww, tile_rows)
    tiles_h, tiles_w = cdiv(hh, th), cdiv(ww, tw)
    tiles = cdiv(n, ib) * tiles_h * tiles_w
    cmp = _padded(cm)
    blocks = _blocks(x.dtype, ib * th * tw, c, cmp)
    nchunk = cdiv(ib * (th + 2) * (tw + 2), blocks["HC"])
    programs = min(tiles, 3 if x.device.type != "cuda" else 2 * sm_count(x.device))
    scratch = torch.empty((programs, nchunk * blocks["HC"], cmp), device=x.device, dtype=x.dtype)
    residual_eval_kernel[(programs,)](
        x, s1, t1, w1, or_dummy(b1, s1), s2, t2, w2_packed, or_dummy(b2, s2), s3, t3, w3, or_dummy(b3, s1),
        or_dummy(low, x), y,
        scratch, w1.stride(1), w1.stride(0), w3.stride(1), w3.stride(0), n, hh, ww, tiles_h, tiles_w, tiles, c, cm,
        CMP=cmp, IB=ib, TH=th, TW=tw, NCHUNK=nchunk, HAS_B1=b1 is not None, HAS_B2=b2 is not None,
        HAS_B3=b3 is not None, HAS_LOW=low is not None, IO_DTYPE=tl_dtype(x.dtype), DOT_DTYPE=dot_dtype(x.dtype),
        DOT_PREC=dot_precision(x.dtype), **blocks)
    return y
