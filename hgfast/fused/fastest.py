"""Choosing between equivalent implementations of a fused op by timing them, once per shape, on the GPU.

Triton's autotuner picks a kernel's tile config; this picks between whole implementations (one kernel or three,
say) in the same way. ``fastest(op, key, candidates, device)`` returns the candidate to run: on a CUDA device the
first time a ``key`` is seen it runs every candidate (two warm-up calls, then the median of ten CUDA-event
timings) and keeps the fastest for the process. ``HGFAST_<OP>=<name>`` pins a candidate (``auto``: time them).
Without a CUDA device (the CPU interpreter) and while a CUDA graph is being captured (nothing can be timed then)
an unseen key takes the first candidate. A candidate that raises while timed (a tile this GPU cannot run: out of
shared memory or registers) is left out, with a warning; if every candidate raises, the first error propagates.
The candidates compute the same values up to floating-point rounding,
so which one wins changes results only at that level (like ``torch.backends.cudnn.benchmark``).
"""
from __future__ import annotations

import os
import statistics
import warnings
from typing import Callable

import torch

_chosen: dict[tuple, str] = {}


def choices() -> dict[tuple, str]:
    """The choices made so far: ``(op, key) -> candidate name``."""
    return dict(_chosen)


def forget() -> None:
    """Forget every choice (tests; or after changing GPU clocks or drivers)."""
    _chosen.clear()


def fastest(op: str, key: tuple, candidates: dict[str, Callable[[], object]], device: torch.device) -> Callable:
    """The candidate of ``op`` to run for ``key`` (see the module docstring); each candidate takes no arguments."""
    pinned = os.environ.get(f"HGFAST_{op}", "auto").strip().lower()
    if pinned != "auto":
        if pinned not in candidates:
            raise ValueError(f"HGFAST_{op} must be auto or one of {', '.join(candidates)}, got {pinned!r}")
        return candidates[pinned]
    name = _chosen.get((op, key))
    if name is None:
        if device.type != "cuda" or torch.cuda.is_current_stream_capturing():
            return next(iter(candidates.values()))
        times, errors = {}, {}
        with torch.cuda.device(device):  # events on the stream the candidates launch on
            for candidate, fn in candidates.items():
                try:
                    times[candidate] = cuda_median_ms(fn)
                except Exception as exc:  # noqa: BLE001 (Triton's resource and compile errors have no common base)
                    errors[candidate] = exc
        if not times:
            raise next(iter(errors.values()))
        if errors:
            failed = ", ".join(f"{c} ({type(e).__name__}: {e})" for c, e in errors.items())
            warnings.warn(f"hgfast: {op} {key}: left out {failed}; chose among the others")
        name = _chosen[(op, key)] = min(times, key=times.get)
    return candidates[name]


def cuda_median_ms(fn: Callable[[], object], warmup: int = 2, reps: int = 10,
                   flush_l2: bool = False) -> float:
    """Median time of ``fn()`` in milliseconds from CUDA events on the current stream, after ``warmup`` calls (the
    first call of a candidate compiles its kernels). The reps are queued back to back with one synchronisation at
    the end, so the host's launch time overlaps the GPU's work instead of being counted (as in
    ``triton.testing.do_bench``); ``flush_l2``: before each rep, 256 MB are zeroed (outside its events), so inputs
    smaller than the L2 cache are read from memory."""
    for _ in range(warmup):
        fn()
    flush = torch.empty(2**28, dtype=torch.uint8, device="cuda") if flush_l2 else None
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    torch.cuda.synchronize()
    for start, end in events:
        if flush is not None:
            flush.zero_()
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events)
