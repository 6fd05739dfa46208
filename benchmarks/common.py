"""Shared benchmark helpers: environment facts, GPU timing, and the ``extra_info`` every case records.

Every case stores in ``benchmark.extra_info``: ``median_ms`` (CUDA-event median on GPU, pytest-benchmark's median
on CPU), ``gb_per_s`` (bytes each input read once and each output written once, over the median time),
``tflop_per_s`` where FLOPs are meaningful, ``images_per_s`` for training throughput, ``peak_mem_mb`` on GPU,
``rel_error`` against the reference, the implementation name, and for hgfast cases the implementations
``hgfast.fused.fastest`` chose so far (``fused_choices``). Device and versions go into the JSON's ``machine_info``
(see conftest.py).
"""
from __future__ import annotations

import datetime
import platform
from typing import Callable

import torch

from hgfast.fused.fastest import choices, cuda_median_ms

ON_GPU = torch.cuda.is_available()
GPU_ONLY = "needs a CUDA GPU (this case measures a GPU implementation)"


def environment() -> dict:
    """Device name and the versions that matter, for the results file."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": torch.cuda.get_device_name() if ON_GPU else f"CPU: {platform.processor() or platform.machine()}",
        "cpu_threads": torch.get_num_threads(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def sync() -> None:
    if ON_GPU:
        torch.cuda.synchronize()


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``||out - ref|| / ||ref||`` in float64 (0 when both are zero)."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    denom = ref.norm().item()
    return (out - ref).norm().item() / denom if denom else float((out - ref).norm().item())


def run_case(benchmark, fn: Callable[[], object], *, impl: str, bytes_moved: float | None = None,
             flops: float | None = None, error: float | None = None, rounds: int | None = None,
             images: int | None = None) -> None:
    """Time ``fn`` and record extra_info. GPU: the median of 50 CUDA-event timings (``cuda_median_ms``: reps queued
    back to back, L2 flushed before each), and pytest-benchmark times one call only (its numbers are not the
    result there). CPU: pytest-benchmark's median; ``rounds`` fixes its number of timed calls (for slow cases),
    by default it calibrates. ``images`` (processed per call) adds ``images_per_s``.
    """
    def timed():
        result = fn()
        sync()
        return result

    if ON_GPU:
        timed()
        torch.cuda.reset_peak_memory_stats()  # of one call, before the timing's L2-flush buffer exists
        timed()
        benchmark.extra_info["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        median_ms = cuda_median_ms(fn, warmup=10, reps=50, flush_l2=True)
        benchmark.extra_info["timing"] = "CUDA events, median of 50 back-to-back reps, L2 flushed before each"
    if ON_GPU or rounds:
        benchmark.pedantic(timed, rounds=1 if ON_GPU else rounds, iterations=1)
    else:
        benchmark(timed)
    if not ON_GPU:
        median_ms = benchmark.stats.stats.median * 1e3 if benchmark.stats else None
    info = benchmark.extra_info
    info["impl"] = impl
    info["median_ms"] = median_ms
    if median_ms:
        if bytes_moved is not None:
            info["gb_per_s"] = bytes_moved / (median_ms * 1e-3) / 1e9
        if flops is not None:
            info["tflop_per_s"] = flops / (median_ms * 1e-3) / 1e12
        if images is not None:
            info["images_per_s"] = images / (median_ms * 1e-3)
    if error is not None:
        info["rel_error"] = error
    if impl.startswith("fused") and choices():  # which implementation hgfast timed faster, per op and shape
        info["fused_choices"] = {f"{op} {key}": name for (op, key), name in choices().items()}


def nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
