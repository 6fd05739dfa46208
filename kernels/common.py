"""Shared pieces of the hgfast Triton kernels: tile loaders with the BN prologues, dot helpers, configs.

Conventions used by every kernel in this package:

- Activations are NHWC, contiguous, addressed as a ``[M = N*H*W, C]`` matrix; row ``m`` is pixel
  ``(n, h, w) = (m // (H*W), (m // W) % H, m % W)``.
- Prologues (``PRO``), applied per input channel ``c`` to the loaded value ``v`` in fp32:
  ``0``: ``v``; ``1``: ``relu(v * s[c] + t[c])`` (BN-ReLU); ``2``: ``v * s[c] + x2 * t[c] + r[c]`` where ``x2`` is a
  second tensor of the same shape (BN-backward apply). Positions outside the image (3x3 taps) or the tensor are
  exactly 0 *after* the prologue (zero padding of the activation, not of the raw input).
- Integer arguments that only bound masks and index math (rows ``M``, ``H``, ``W``, tile counts) are marked
  ``do_not_specialize``, so each resolution does not compile its own binary; channel counts stay specialised
  (their divisibility sets the alignment of vector loads).
- Matrix products accumulate in fp32; operands are rounded to the I/O dtype first. The interpreter's ``tl.dot``
  cannot multiply bf16, so there the (bf16-rounded) operands are multiplied in fp32 - the same products.
"""
import contextlib
import functools
import math
import os
import threading

import torch
import triton
import triton.language as tl

_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}
SUPPORTED_DTYPES = tuple(_TL_DTYPES)


@functools.lru_cache(maxsize=None)
def interpreting() -> bool:
    """True when Triton runs kernels on the CPU interpreter (``TRITON_INTERPRET=1``, read once: Triton reads it when
    the kernels are decorated, at import)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for host-side ints (``triton.cdiv`` is a constexpr function: ~4 µs a call from Python)."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of 2 >= ``n`` (>= 1), for host-side ints."""
    return 1 << max(n - 1, 0).bit_length()


def tl_dtype(dtype: torch.dtype):
    return _TL_DTYPES[dtype]


def dot_dtype(dtype: torch.dtype):
    """The dtype ``tl.dot`` multiplies in for I/O dtype ``dtype`` (bf16 -> fp32 under the interpreter)."""
    if dtype == torch.bfloat16 and interpreting():
        return tl.float32
    return _TL_DTYPES[dtype]


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 GEMMs follow cuDNN convolutions: TF32 where they use it (PyTorch's default), else IEEE."""
    if dtype == torch.float32 and not interpreting() and cudnn_conv_tf32():
        return "tf32"
    return "ieee"


def cudnn_conv_tf32() -> bool:
    """Whether cuDNN convolutions take fp32 as TF32: the first of ``torch.backends.cudnn.conv``'s, ``cudnn``'s and
    the global ``fp32_precision`` that is not "none" (torch >= 2.9, where reading the legacy ``allow_tf32`` raises
    once the new flags of conv and RNN differ), else ``torch.backends.cudnn.allow_tf32``."""
    backends = torch.backends
    precision = getattr(getattr(backends.cudnn, "conv", None), "fp32_precision", None)
    if precision is None:
        return bool(backends.cudnn.allow_tf32)
    if precision == "none":  # read lazily: each getter costs ~1 µs, and this runs at every fp32 launch
        precision = backends.cudnn.fp32_precision
    if precision == "none":
        precision = backends.fp32_precision
    return precision == "tf32"


def on_tensor_device(launcher):
    """Decorator for every launcher: run it with the CUDA device of its first tensor argument current.

    Triton launches on the current CUDA device; without this, tensors on ``cuda:1`` while ``cuda:0`` is current
    would be addressed on the wrong device. No-op for CPU tensors (the interpreter)."""

    @functools.wraps(launcher)
    def wrapper(*args, **kwargs):
        t = args[0] if args and isinstance(args[0], torch.Tensor) else \
            next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        if t is None or not t.is_cuda:
            return launcher(*args, **kwargs)
        with torch.cuda.device(t.device):
            return launcher(*args, **kwargs)

    wrapper.on_tensor_device = True
    return wrapper


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (cached)."""
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def shared_memory(device: torch.device) -> int:
    """Bytes of shared memory one block may opt in to on ``device`` (cached per GPU: 227 KB on sm_90, 163 KB on
    sm_80, 99 KB on sm_86/89); for CPU tensors (the interpreter, ``.ci/triton_sm90_check``) an sm_90 block's."""
    if device.type != "cuda":
        return SM90_SHARED_MEMORY
    return _shared_memory(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _shared_memory(index: int) -> int:
    # Triton's own query (torch's device properties have the opt-in maximum only from 2.6): the limit its
    # launcher checks a compiled kernel against
    return int(triton.runtime.driver.active.utils.get_device_properties(index)["max_shared_mem"])


def or_dummy(t: torch.Tensor | None, dummy: torch.Tensor) -> torch.Tensor:
    """``t``, or for an absent optional argument a ``dummy`` tensor to pass as its (unread) pointer."""
    return dummy if t is None else t


def block_m(m: int) -> int:
    """Rows per tile. Fixed per launch (not autotuned) because the partial-statistics buffers depend on it."""
    if interpreting():
        return 16
    return 128 if m >= 128 * 132 else 64


def tune_key(m: int, bm: int) -> int:
    """The GEMM autotuners' row key (kernel argument ``M_KEY``): ``M`` rounded up to a power of two, with ``BM``
    (which the pruning depends on), so a new batch size (the last partial batch of an evaluation, a video's
    changing number of people) tunes again only when it crosses a power of two: each new key times up to five
    configs of every GEMM of the model."""
    return 2 * next_pow2(m) + (bm == 128)


# The interpreter's one GEMM config (one: the autotuner would time several); ``interpreter_tiles`` widens it.
_INTERPRETER_CONFIG = triton.Config({"BN": 16, "BK": 16}, num_warps=4, num_stages=1)


def gemm_configs():
    """Autotune candidates for the N/K tiles: one small config under the interpreter, a short list on GPU."""
    if interpreting():
        return [_INTERPRETER_CONFIG]
    return [triton.Config({"BN": bn, "BK": bk}, num_warps=w, num_stages=s)
            for bn, bk, w, s in ((64, 32, 4, 3), (128, 32, 4, 3), (128, 64, 8, 3), (64, 64, 4, 4), (32, 32, 4, 2))]


SM90_SHARED_MEMORY = 227 * 1024  # bytes a block may opt in to on sm_90 (H100, H200)
_only_config: int | None = None
_chosen: dict = {}  # (autotuned kernel, launch key) -> the keyword arguments of the config the autotuner chose
_choosing = threading.Lock()


def launch_tuned(kernel, grid, key: tuple, *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)`` for a ``triton.autotune``d kernel. ``key`` must determine the autotuner's
    own key (its key arguments and the dtypes of the tensor arguments): once the autotuner has chosen a config for
    a ``key`` (or pruning left one config, launched without the autotuner's benchmark), later launches with it
    call the kernel with that config directly. The autotuner's per-call work
    (dicts of all arguments, a dtype string per tensor) costs ~13 µs of host time per launch (measured on CPU with
    launches stubbed: 15 ms of an 8-stack training step's ~1100 GEMM launches)."""
    chosen = _chosen.get((kernel, key))
    if chosen is not None:
        kernel.fn[grid](*args, **kwargs, **chosen)
        return
    with _choosing:  # best_config is per kernel, not per call (nn.DataParallel launches from several threads)
        kernel.nargs = dict(zip(kernel.arg_names, args))
        try:
            pruned = kernel.prune_configs(kwargs)
        finally:
            kernel.nargs = None
        if len(pruned) == 1:  # nothing to choose: no benchmark (Triton's autotuner times even a single config)
            chosen = pruned[0].all_kwargs()
            kernel.fn[grid](*args, **kwargs, **chosen)
            _chosen[(kernel, key)] = chosen
            return
        kernel.best_config = None
        kernel[grid](*args, **kwargs)
        if kernel.best_config is not None:  # None where Autotuner.run is replaced (.ci/triton_sm90_check)
            _chosen[(kernel, key)] = kernel.best_config.all_kwargs()


def autotuning() -> bool:
    """``HGFAST_AUTOTUNE=0`` skips autotuning: each GEMM launch takes the first config that fits (a faster first
    step - one compile per kernel variant instead of up to five - at some cost in kernel time). Read where a
    launch key is new: a shape launched before keeps its config when the variable changes."""
    return os.environ.get("HGFAST_AUTOTUNE", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def interpreter_tiles(size: int):
    """Tests only, under the interpreter: the GEMM kernels take ``size`` x ``size`` N/K tiles inside (instead of
    16 x 16, which the kernel tests' shapes span several of). The interpreter's time is per program: wide tiles
    make the model tests' 64- and 128-channel convs 4-16 times cheaper."""
    previous = dict(_INTERPRETER_CONFIG.kwargs)
    _forget_choices()
    _INTERPRETER_CONFIG.kwargs.update(BN=size, BK=size)
    try:
        yield
    finally:
        _INTERPRETER_CONFIG.kwargs.update(previous)
        _forget_choices()


def _forget_choices() -> None:
    """Drop the configs the GEMM kernels' autotuners and ``launch_tuned`` hold (chosen per key, before pruning)."""
    from . import conv, conv_dgrad, conv_wgrad

    for k in (conv.conv_fwd_kernel, conv_dgrad.conv_dgrad_kernel, conv_wgrad.conv_wgrad_kernel):
        k.cache.clear()
    _chosen.clear()


@contextlib.contextmanager
def only_config(index: int):
    """Tests only: every GEMM launch inside takes the ``index``-th config that fits (the last if fewer fit)."""
    global _only_config
    _forget_choices()
    _only_config = index
    try:
        yield
    finally:
        _only_config = None
        _forget_choices()


def prune_tiles(n_arg: str, k_arg: str, stage_bytes):
    """``early_config_prune`` for ``gemm_configs()``: drop tiles wider than the problem along N (the kernel argument
    ``n_arg``) or K (``k_arg``), down to 32 - the 16-channel heatmap convs then compile one config, launched
    without timing, not 5 - and configs whose pipelined operand buffers, ``num_stages * stage_bytes(args, BN, BK)``,
    exceed the shared memory of a block of the launch's GPU (kernel argument ``SMEM``, from ``shared_memory``; it
    is part of the autotune keys, so each GPU model tunes its own). fp32 with 128-row tiles and two-tensor
    prologues would need up to 426 KB, found by ``.ci/triton_sm90_check``. ``args`` holds the launch's named
    arguments and constexprs. The estimate counts each loaded operand tile once per stage; the check measured
    Triton's real use at 79-92 % of it, hence the 0.92 factor (a config that still does not fit is skipped by the
    autotuner on the GPU, at the cost of a compile)."""

    def prune(configs, named_args, **kwargs):
        args = {**named_args, **kwargs}
        n, k = (max(32, next_pow2(args[a])) for a in (n_arg, k_arg))
        kept = [c for c in configs if c.kwargs["BN"] <= n and c.kwargs["BK"] <= k
                and 0.92 * c.num_stages * stage_bytes(args, c.kwargs["BN"], c.kwargs["BK"]) <= args["SMEM"]] \
            or configs[-1:]
        if _only_config is not None:
            return [kept[min(_only_config, len(kept) - 1)]]
        return kept if autotuning() else kept[:1]

    return prune


def elementwise_block() -> int:
    return 16 if interpreting() else 64


MAX_NUMEL = 2 ** 31 - 1


def check_nhwc(name: str, t: torch.Tensor, dtype: torch.dtype | None = None, device=None, channels=None) -> None:
    """Raise naming ``name`` unless ``t`` is a contiguous 4-D NHWC floating tensor of the expected kind.

    The kernels address elements with int32 offsets (``row * C + col``), so tensors of ``2**31`` or more elements
    are rejected (``check_numel``; launchers also check their outputs with it)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4:
        raise ValueError(f"{name} must be 4-D NHWC (N, H, W, C), got shape {tuple(t.shape)}")
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16, got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} must be on {device}, got {t.device}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be a contiguous NHWC tensor (x.permute(0, 2, 3, 1) of a channels_last tensor)")
    if channels is not None and t.shape[3] != channels:
        raise ValueError(f"{name} must have {channels} channels (last dim), got shape {tuple(t.shape)}")
    check_numel(name, t.shape)


def check_numel(name: str, shape) -> None:
    """Raise naming ``name`` if a tensor of ``shape`` (an input, or an output before it is allocated) has more
    elements than the kernels' int32 offsets address."""
    numel = math.prod(shape)
    if numel > MAX_NUMEL:
        raise ValueError(f"{name} has {numel} elements, shape {tuple(shape)}: the Triton kernels use int32 "
                         f"offsets and take at most 2**31 - 1 elements per tensor (split the batch)")


def check_vector(name: str, t: torch.Tensor, length: int, device) -> None:
    """Raise naming ``name`` unless ``t`` is a contiguous fp32 vector of ``length`` on ``device``."""
    if type(t) is torch.Tensor and t.shape == (length,) and t.dtype is torch.float32 and t.is_contiguous() \
            and t.device == device:  # the common case first, in few steps (host time: a few per launch)
        return
    if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != length:
        raise ValueError(f"{name} must be a 1-D tensor of length {length}, got "
                         f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    if t.dtype != torch.float32 or t.device != device or not t.is_contiguous():
        raise TypeError(f"{name} must be a contiguous float32 tensor on {device}, got {t.dtype} on {t.device}")


@triton.jit
def tile_ids(N_COLS, BN: tl.constexpr):
    """``(row tile, column tile)`` of this program in a 1-D grid of ``row tiles x cdiv(N_COLS, BN)`` ordered column
    tile fastest: the column tiles of one row tile run side by side, so its input rows come from HBM once and from
    L2 after (with the row tile fastest they would be read again a whole pass later, long evicted)."""
    pid = tl.program_id(0)
    n_tiles = tl.cdiv(N_COLS, BN)
    return pid // n_tiles, pid % n_tiles


@triton.jit
def row_coords(rows, H, W):
    """``(h, w)`` of flattened NHWC rows."""
    return (rows // W) % H, rows % W


@triton.jit
def relu(v):
    """``max(v, 0)`` with NaN passed through, as ``F.relu`` (``tl.maximum``'s default, ``max.f32`` on the GPU, returns
    the other operand for NaN; the interpreter's numpy maximum propagates it, so only a GPU would differ)."""
    return tl.maximum(v, 0.0, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def load_tile(x_ptr, x2_ptr, s_ptr, t_ptr, r_ptr, rows, row_ok, h, w, DH, DW, H, W, cols, C,
              PRO: tl.constexpr):
    """fp32 tile ``[len(rows), len(cols)]`` of ``prologue(x)[n, h + DH, w + DW, cols]``; 0 outside image/tensor."""
    hh = h + DH
    ww = w + DW
    col_ok = cols < C
    inside = row_ok & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
    mask = inside[:, None] & col_ok[None, :]
    offs = (rows + DH * W + DW)[:, None] * C + cols[None, :]
    v = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if PRO == 1:
        s = tl.load(s_ptr + cols, mask=col_ok, other=0.0)
        t = tl.load(t_ptr + cols, mask=col_ok, other=0.0)
        v = tl.where(mask, relu(v * s[None, :] + t[None, :]), 0.0)
    elif PRO == 2:
        x2 = tl.load(x2_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        s = tl.load(s_ptr + cols, mask=col_ok, other=0.0)
        t = tl.load(t_ptr + cols, mask=col_ok, other=0.0)
        r = tl.load(r_ptr + cols, mask=col_ok, other=0.0)
        v = tl.where(mask, v * s[None, :] + x2 * t[None, :] + r[None, :], 0.0)
    return v


@triton.jit
def mma(acc, a, b, IO_DTYPE: tl.constexpr, DOT_DTYPE: tl.constexpr, DOT_PREC: tl.constexpr):
    """``acc + a @ b`` with both operands rounded to the I/O dtype and an fp32 accumulator."""
    a = a.to(IO_DTYPE).to(DOT_DTYPE)
    b = b.to(IO_DTYPE).to(DOT_DTYPE)
    return tl.dot(a, b, acc, input_precision=DOT_PREC, out_dtype=tl.float32)
