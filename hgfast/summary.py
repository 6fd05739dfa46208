"""Per-block table of output shapes, parameters and multiply-accumulates (MACs) of a StackedHourglass."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .models import StackedHourglass


@dataclass
class BlockRow:
    name: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


def summarize(model: StackedHourglass, input_size: int | tuple[int, int] = 256, batch: int = 1) -> list[BlockRow]:
    """Run one forward on a zeros batch (on the model's device, unfused) and return a row per block (stem, each
    hourglass, head, merge).

    MACs count convolutions only (BN, ReLU, pooling, upsampling and adds are negligible), for one image.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    blocks = [("stem", model.stem)]
    for i in range(model.nstack):
        blocks += [(f"hourglass[{i}]", model.hourglasses[i]), (f"head[{i}]", model.heads[i])]
        if i < model.nstack - 1:
            blocks.append((f"merge[{i}]", model.merges[i]))
    macs: dict[str, int] = {name: 0 for name, _ in blocks}
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, block in blocks:
        def on_output(module, inputs, output, name=name):
            out = output[-1] if isinstance(output, tuple) else output
            shapes[name] = tuple(out.shape[1:])
        handles.append(block.register_forward_hook(on_output))
        for conv in block.modules():
            if isinstance(conv, nn.Conv2d):
                def on_conv(module, inputs, output, name=name):
                    macs[name] += _conv_macs(module, output) // output.shape[0]
                handles.append(conv.register_forward_hook(on_conv))
    was_training, was_fused = model.training, model.fused
    device = next(model.parameters()).device
    try:
        model.eval()
        model.fused = False  # the fused forward bypasses the per-conv hooks
        with torch.no_grad():
            model(torch.zeros(batch, model.in_channels, h, w, device=device))
    finally:
        model.train(was_training)
        model.fused = was_fused
        for handle in handles:
            handle.remove()
    return [BlockRow(name, shapes[name], sum(p.numel() for p in block.parameters()), macs[name])
            for name, block in blocks]


def format_table(rows: list[BlockRow]) -> str:
    """Render rows as a fixed-width text table with totals (params in M, MACs in G)."""
    lines = [f"{'block':<14} {'output (C, H, W)':<18} {'params (M)':>11} {'MACs (G)':>10}"]
    lines.append("-" * len(lines[0]))
    for row in rows:
        lines.append(f"{row.name:<14} {str(row.output_shape):<18} {row.params / 1e6:>11.3f} {row.macs / 1e9:>10.3f}")
    lines.append("-" * len(lines[0]))
    total_params, total_macs = sum(r.params for r in rows), sum(r.macs for r in rows)
    lines.append(f"{'total':<14} {'':<18} {total_params / 1e6:>11.3f} {total_macs / 1e9:>10.3f}")
    lines.append(f"({total_macs * 2 / 1e9:.1f} GFLOP per image forward, counting a MAC as 2 FLOPs)")
    return "\n".join(lines)
