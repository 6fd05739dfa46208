"""Per-channel batch statistics (deterministic partials) and the BatchNorm coefficients computed from them.

Producers write one partial per row tile into an fp32 buffer ``(3, T, C)`` (planes: count, mean, M2). The
finalisers read the T partials in chunks of ``BT`` tiles: within a chunk a fixed-order tree reduction, chunks merged
in tile order with Chan's formula - no atomics, bit-reproducible, and ``T / BT`` dependent steps instead of ``T``.
They also turn the statistics into the BN forward coefficients (``bn_train_coeffs``) and the dgrad partial sums
into the BN backward coefficients (``bn_backward_coeffs``), so a BatchNorm costs one small launch each way.
"""
import torch
import triton
import triton.language as tl

from .common import cdiv, check_nhwc, check_vector, elementwise_block, interpreting, load_tile, on_tensor_device


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


@triton.jit(do_not_specialize=["M", "T"])
def channel_stats_kernel(x_ptr, stats_ptr, M, C, T, BM: tl.constexpr, BC: tl.constexpr):
    pid_m = tl.program_id(0)
    rows = pid_m * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    row_ok = rows < M
    v = load_tile(x_ptr, x_ptr, x_ptr, x_ptr, x_ptr, rows, row_ok, rows * 0, rows * 0, 0, 0, 1, 1, cols, C, 0)
    write_partial_stats(stats_ptr, v, row_ok, cols, cols < C, pid_m, T, C)


@triton.jit
def merge_partials(stats_ptr, T, C, cols, col_ok, BT: tl.constexpr):
    """``(count, mean, M2)`` per channel of ``cols`` over all T partials of ``stats (3, T, C)``."""
    n = tl.zeros(cols.shape, dtype=tl.float32)
    mean = tl.zeros(cols.shape, dtype=tl.float32)
    m2 = tl.zeros(cols.shape, dtype=tl.float32)
    for t0 in range(0, T, BT):
        ts = t0 + tl.arange(0, BT)
        mask = (ts < T)[:, None] & col_ok[None, :]
        offs = ts[:, None] * C + cols[None, :]
        nb = tl.load(stats_ptr + offs, mask=mask, other=0.0)
        mb = tl.load(stats_ptr + T * C + offs, mask=mask, other=0.0)
        m2b = tl.load(stats_ptr + 2 * T * C + offs, mask=mask, other=0.0)
        cn = tl.sum(nb, 0)
        cmean = tl.sum(nb * mb, 0) / tl.maximum(cn, 1.0)
        d = tl.where(mask, mb - cmean[None, :], 0.0)
        cm2 = tl.sum(m2b, 0) + tl.sum(nb * d * d, 0)
        total = n + cn
        delta = cmean - mean
        frac = tl.where(total > 0, cn / tl.maximum(total, 1.0), 0.0)
        mean = mean + delta * frac
        m2 = m2 + cm2 + delta * delta * n * frac
        n = total
    return n, mean, m2


@triton.jit(do_not_specialize=["T"])
def bn_train_coeffs_kernel(stats_ptr, gamma_ptr, beta_ptr, out_ptr, T, C, eps,
                           AFFINE: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    cols = tl.program_id(0) * BC + tl.arange(0, BC)
    ok = cols < C
    n, mean, m2 = merge_partials(stats_ptr, T, C, cols, ok, BT)
    var = m2 / tl.maximum(n, 1.0)
    tl.store(out_ptr + cols, mean, mask=ok)
    tl.store(out_ptr + C + cols, var, mask=ok)
    if AFFINE:
        s = tl.load(gamma_ptr + cols, mask=ok, other=0.0) / tl.sqrt_rn(var + eps)
        tl.store(out_ptr + 2 * C + cols, s, mask=ok)
        tl.store(out_ptr + 3 * C + cols, tl.load(beta_ptr + cols, mask=ok, other=0.0) - mean * s, mask=ok)


@triton.jit(do_not_specialize=["T", "count"])
def bn_backward_coeffs_kernel(sums_ptr, mean_ptr, var_ptr, gamma_ptr, out_ptr, T, C, eps, count,
                              BT: tl.constexpr, BC: tl.constexpr):
    cols = tl.program_id(0) * BC + tl.arange(0, BC)
    ok = cols < C
    sum_dv = tl.zeros((BC,), dtype=tl.float32)
    sum_dvxc = tl.zeros((BC,), dtype=tl.float32)
    for t0 in range(0, T, BT):
        ts = t0 + tl.arange(0, BT)
        mask = (ts < T)[:, None] & ok[None, :]
        offs = ts[:, None] * C + cols[None, :]
        sum_dv += tl.sum(tl.load(sums_ptr + offs, mask=mask, other=0.0), 0)
        sum_dvxc += tl.sum(tl.load(sums_ptr + T * C + offs, mask=mask, other=0.0), 0)
    invstd = 1.0 / tl.sqrt_rn(tl.load(var_ptr + cols, mask=ok, other=1.0) + eps)
    a = tl.load(gamma_ptr + cols, mask=ok, other=0.0) * invstd
    b = -a * invstd * invstd * sum_dvxc / count
    c = -a * sum_dv / count - tl.load(mean_ptr + cols, mask=ok, other=0.0) * b
    tl.store(out_ptr + cols, a, mask=ok)
    tl.store(out_ptr + C + cols, b, mask=ok)
    tl.store(out_ptr + 2 * C + cols, c, mask=ok)
    tl.store(out_ptr + 3 * C + cols, sum_dvxc * invstd, mask=ok)
    tl.store(out_ptr + 4 * C + cols, sum_dv, mask=ok)


def _finalize_blocks() -> tuple[int, int]:
    """``(BT, BC)``: partial tiles per chunk and channels per program of the finalisers."""
    return (16, 16) if interpreting() else (128, 16)


def check_partial(name: str, partial: torch.Tensor, planes: int) -> None:
    if not isinstance(partial, torch.Tensor) or partial.dim() != 3 or partial.shape[0] != planes \
            or partial.dtype != torch.float32 or not partial.is_contiguous():
        raise ValueError(f"{name} must be a contiguous float32 ({planes}, T, C) buffer, got "
                         f"{tuple(partial.shape) if isinstance(partial, torch.Tensor) else type(partial).__name__}")


@on_tensor_device
def channel_stats(x: torch.Tensor) -> torch.Tensor:
    """Partial statistics ``(3, T, C)`` of an NHWC tensor ``x`` (for tensors no fused kernel produced)."""
    check_nhwc("x", x)
    c = x.shape[3]
    m = x.numel() // c
    bm = bc = elementwise_block()
    t = cdiv(m, bm)
    partial = torch.empty((3, t, c), device=x.device, dtype=torch.float32)
    channel_stats_kernel[(t, cdiv(c, bc))](x, partial, m, c, t, BM=bm, BC=bc)
    return partial


@on_tensor_device
def bn_train_coeffs(partial: torch.Tensor, gamma: torch.Tensor | None = None, beta: torch.Tensor | None = None,
                    eps: float = 1e-5) -> torch.Tensor:
    """Training BN from partial statistics ``(3, T, C)``: fp32 ``(4, C)`` rows ``mean``, biased ``var``,
    ``scale = gamma / sqrt(var + eps)``, ``shift = beta - mean * scale`` (``bn(x) = x * scale + shift``).
    Without ``gamma``/``beta`` (fp32 ``(C,)``) only the first two rows are written (the rest is undefined)."""
    check_partial("partial", partial, 3)
    _, t, c = partial.shape
    if (gamma is None) != (beta is None):
        raise ValueError("gamma and beta must be given together")
    if gamma is not None:
        check_vector("gamma", gamma, c, partial.device)
        check_vector("beta", beta, c, partial.device)
    out = torch.empty((4, c), device=partial.device, dtype=torch.float32)
    bt, bc = _finalize_blocks()
    bn_train_coeffs_kernel[(cdiv(c, bc),)](
        partial, out if gamma is None else gamma, out if beta is None else beta, out, t, c, float(eps),
        AFFINE=gamma is not None, BT=bt, BC=bc)
    return out


@on_tensor_device
def finalize_stats(partial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge partials ``(3, T, C)`` -> ``(mean (C,), biased variance (C,))``, fp32, in a fixed order."""
    mean, var = bn_train_coeffs(partial)[:2]
    return mean, var


@on_tensor_device
def bn_backward_coeffs(sums: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, gamma: torch.Tensor,
                       eps: float, count: int) -> torch.Tensor:
    """BN backward from the dgrad partial sums ``(2, T, C)`` of ``dv`` and ``dv * (x - mean)``: fp32 ``(5, C)``
    rows ``a, b, c`` with ``dx = dv * a + x * b + c``, then ``dgamma``, ``dbeta``. ``count`` rows per channel."""
    check_partial("sums", sums, 2)
    _, t, c = sums.shape
    for name, vec in (("mean", mean), ("var", var), ("gamma", gamma)):
        check_vector(name, vec, c, sums.device)
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    out = torch.empty((5, c), device=sums.device, dtype=torch.float32)
    bt, bc = _finalize_blocks()
    bn_backward_coeffs_kernel[(cdiv(c, bc),)](sums, mean, var, gamma, out, t, c, float(eps), float(count),
                                              BT=bt, BC=bc)
    return out
