"""ONNX export of the unfused model (plain convolutions, BN and nearest upsampling), checked with onnxruntime.

The graph has input ``image`` (B, 3, H, W) float32 in [0, 1] (dynamic batch, fixed H, W) and output
``heatmaps`` (B, nstack, K, H/4, W/4), or with ``last_stack`` the final prediction (B, K, H/4, W/4) alone (what
inference decodes; the earlier stacks still run, the later ones need them). A fused model is exported through its
unfused twin (they share one state dict).
"""
from __future__ import annotations

import contextlib
import logging
import numbers
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_path
from .data.crop import crop_size
from .models import StackedHourglass


def unfused(model: StackedHourglass) -> StackedHourglass:
    """A plain ``StackedHourglass`` with ``model``'s weights, in eval mode on the CPU."""
    plain = StackedHourglass(**model.config, fused=False)
    plain.load_state_dict(model.state_dict())
    return plain.eval()


class _LastStack(torch.nn.Module):
    """``model``'s last stack's heatmaps (B, K, h, w)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, -1]


@contextlib.contextmanager
def _quiet_exporter():
    """Only errors from the exporter while the block runs: onnxscript's down-conversion warnings carry whole
    tracebacks (a failed one is reported by the opset check), torch lists each torchvision op it skips when
    torchvision is not installed, and torch's own pytree use raises a FutureWarning meant for its developers."""
    loggers = [logging.getLogger(name) for name in
               ("onnxscript.version_converter", "torch.onnx._internal.exporter._registration")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(model: StackedHourglass, path: str | os.PathLike, input_size=256, opset: int = 18,
                check: bool = True, last_stack: bool = False) -> float | None:
    """Write ``model`` as ONNX to ``path`` (atomically). With ``check`` and onnxruntime installed, run the graph
    on a random batch of 2 and return the max absolute difference from PyTorch (``None`` without onnxruntime).
    ``input_size``: S or (height, width) of the graph's fixed image size (the batch is dynamic); ``last_stack``:
    output the last stack's heatmaps only (module docstring).
    Needs the ``onnx`` and ``onnxscript`` packages (``pip install hgfast[onnx]``)."""
    try:
        import onnx
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"ONNX export needs onnx and onnxscript (pip install 'hgfast[onnx]'): {exc}") from exc
    if not isinstance(model, StackedHourglass):
        raise TypeError(f"export_onnx: model must be a StackedHourglass, got {type(model).__name__}")
    if not isinstance(opset, numbers.Integral) or isinstance(opset, bool):  # a float opset breaks the exporter
        raise TypeError(f"export_onnx: opset must be an int, got {opset!r}")
    height, width = crop_size(input_size, "input_size", model.input_multiple)
    plain = unfused(model)  # a CPU copy: the caller's model stays where it is
    if last_stack:
        plain = _LastStack(plain).eval()
    example = torch.rand(2, model.in_channels, height, width)
    path = Path(path)
    with atomic_path(path) as tmp:
        with _quiet_exporter():
            program = torch.onnx.export(plain, (example,), input_names=["image"], output_names=["heatmaps"],
                                        dynamo=True, opset_version=int(opset), verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
        program.save(tmp)
        written = next((o.version for o in onnx.load(tmp).opset_import if o.domain in ("", "ai.onnx")), None)
        if written != opset:  # the exporter falls back to the opsets it supports without failing
            raise ValueError(f"opset {opset} is not supported by this torch's ONNX exporter (it wrote opset "
                             f"{written}); choose another --opset")
    if not check:
        return None
    try:
        import onnxruntime
    except ImportError:
        return None
    x = torch.rand(3, model.in_channels, height, width)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["heatmaps"], {"image": x.numpy()})[0]
    with torch.no_grad():
        want = plain(x).numpy()
    return float(np.abs(got - want).max())
