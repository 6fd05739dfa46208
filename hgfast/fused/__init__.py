"""Fused (Triton) execution of the Stacked Hourglass: switches deciding when it runs.

``StackedHourglass(fused=True)`` runs the fused path only on CUDA tensors with triton importable; elsewhere it
runs the reference path and reports ``model.fused_active == False``. ``fused_active`` says only that much: a given
forward still takes the reference path where ``wants_fused`` says no (float64 input, a submodule in the other
train/eval mode or a SyncBatchNorm in training, eval mode with gradients needed). The default for ``fused=None``
comes from ``set_default_fused`` or else the ``HGFAST_FUSED`` environment variable (``1``/``true``/``on``).
``invalidate(module)`` forgets the memoised inference coefficients after writes through ``.data`` (see ``memo``).
``force_triton_on_cpu()`` (tests and CPU-side checks) sends CPU tensors down the Triton path (kernels run under
``TRITON_INTERPRET=1``; otherwise only compiled or stubbed, as in .ci/triton_sm90_check and the host-time benchmark);
``count_stats_passes()`` (debugging) counts the standalone batch-statistics passes a block runs.
Importing this package does not import triton; ``hgfast.fused.modules`` does.
"""
from __future__ import annotations

import collections
import contextlib
import os
import warnings

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .memo import invalidate  # noqa: F401 (public: hgfast.fused.invalidate)

_default: bool | None = None
_force_cpu = False
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # the kernels' I/O dtypes


def set_default_fused(enabled: bool | None) -> None:
    """Set the process-wide default for ``StackedHourglass(fused=None)``; ``None`` returns to ``HGFAST_FUSED``."""
    global _default
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool or None, got {enabled!r}")
    _default = enabled


def default_fused() -> bool:
    if _default is not None:
        return _default
    return os.environ.get("HGFAST_FUSED", "0").strip().lower() in ("1", "true", "yes", "on")


_triton_ok: bool | None = None
_triton_error = ""


def triton_available() -> bool:
    """Whether triton (and so ``hgfast.kernels``) can be imported (checked once; a plain global rather than
    ``functools.lru_cache``, which ``torch.compile`` warns about when it traces the fused model). Where not,
    ``triton_error()`` says why."""
    global _triton_ok, _triton_error
    if _triton_ok is None:
        try:
            import hgfast.kernels  # noqa: F401
            _triton_ok = True
        except Exception as exc:  # absent, or a broken install: both count as absent
            _triton_ok, _triton_error = False, f"{type(exc).__name__}: {exc}"
    return _triton_ok


def triton_error() -> str:
    """Why ``hgfast.kernels`` does not import (``ModuleNotFoundError: No module named 'triton'``, ...); empty where
    it does."""
    triton_available()
    return _triton_error


def runs_on(device: torch.device) -> bool:
    """Whether the fused path runs for tensors on ``device``."""
    return triton_available() and (device.type == "cuda" or (_force_cpu and device.type == "cpu"))


@contextlib.contextmanager
def force_triton_on_cpu():
    """Tests and CPU-side checks: CPU tensors take the Triton path (to run the kernels, ``TRITON_INTERPRET=1`` must be
    set before import)."""
    global _force_cpu
    previous, _force_cpu = _force_cpu, True
    try:
        yield
    finally:
        _force_cpu = previous


class _StatsPassCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        if name == "hgfast::channel_stats":
            self.counts["batch_stats"] += 1
        elif name == "hgfast::bn_relu":
            self.counts["bn_relu"] += 1
        elif "batch_norm" in name and "backward" not in name:
            names = [a.name for a in func._schema.arguments]
            if "training" in names and {**dict(zip(names, args)), **kwargs}["training"]:
                self.counts["batch_norm"] += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_stats_passes():
    """Debugging: count the standalone batch-statistics passes run in the block.

    Yields a ``Counter``: ``"batch_stats"`` counts ``hgfast::channel_stats`` calls (a fused residual whose input's
    statistics were not handed over by their producer), ``"batch_norm"`` training-mode aten batch norms (a plain
    ``nn.BatchNorm2d``), ``"bn_relu"`` BN-ReLU passes that write their output out (a standalone ``StackHead``'s
    feature). Intercepts every op (``TorchDispatchMode``), so it is slow; eager mode only.
    """
    mode = _StatsPassCounter()
    with mode:
        yield mode.counts


def wants_fused(module: torch.nn.Module, x: torch.Tensor) -> bool:
    """True when ``module`` (flagged ``module.fused``) should run its fused forward on ``x``.

    Only float32/float16/bfloat16 inputs run fused (others, e.g. float64, take the reference path).
    Eval mode runs fused only when no gradient is needed (the folded-BN kernels have no backward). The fused
    forwards take train/eval from the module, so a submodule whose mode differs from the module's (frozen BN
    fine-tuning: ``model.train()`` then ``bn.eval()``; ``model.heads[0].training = False``) sends the module to the
    reference path, where each submodule runs in its own mode; so does a ``SyncBatchNorm`` in training (the fused
    kernels compute per-process batch statistics; said once per process).
    """
    if not getattr(module, "fused", False) or not runs_on(x.device) or x.dtype not in FUSED_DTYPES:
        return False
    if _needs_reference(module):
        return False
    return module.training or not (torch.is_grad_enabled() and
                                   (x.requires_grad or any(p.requires_grad for p in module.parameters())))


_sync_bn_warned = False


def _needs_reference(module: torch.nn.Module) -> bool:
    """True when a submodule of ``module`` is not in ``module``'s train/eval mode, or is a ``SyncBatchNorm`` in
    training (warned once). Walks the ``_modules`` dicts (~4x faster than ``module.modules()``: this runs on every
    forward of the whole model)."""
    global _sync_bn_warned
    training, pending = module.training, [module]
    while pending:
        for child in pending.pop()._modules.values():
            if child is not None:
                if child.training != training:
                    return True
                if training and issubclass(type(child), torch.nn.SyncBatchNorm):  # ~5x cheaper than isinstance
                    if not _sync_bn_warned:
                        _sync_bn_warned = True
                        warnings.warn("fused=True: modules with SyncBatchNorm run the reference path in training "
                                      "(statistics across processes; fused_active does not show this)")
                    return True
                pending.append(child)
    return False


def impl():
    """``hgfast.fused.modules`` (imports triton)."""
    from . import modules

    return modules
