"""The recursive hourglass module."""
from torch import Tensor, nn
import torch.nn.functional as F

from ..fused import impl as fused_impl, wants_fused
from .residual import Residual


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels at ``f`` channels: ``(B, f, H, W) -> (B, f, H, W)``.

    ``up1 = Res(x)``; ``low1 = Res(maxpool2x2(x))``; ``low2 = Hourglass(depth - 1)`` or a Res at depth 1;
    ``low3 = Res(low2)``; ``out = up1 + nearest_upsample_2x(low3)``. H and W must be divisible by ``2**depth``.
    A depth-4 hourglass holds 13 residuals.
    """

    def __init__(self, depth: int, f: int):
        super().__init__()
        if depth < 1:
            raise ValueError(f"Hourglass: depth must be >= 1, got {depth}")
        self.depth = depth
        self.up1 = Residual(f, f)
        self.low1 = Residual(f, f)
        self.low2 = Hourglass(depth - 1, f) if depth > 1 else Residual(f, f)
        self.low3 = Residual(f, f)
        self.fused = False

    def forward(self, x: Tensor) -> Tensor:
        if wants_fused(self, x):
            return fused_impl().hourglass_forward(self, x)
        up1 = self.up1(x)
        low3 = self.low3(self.low2(self.low1(F.max_pool2d(x, 2, 2))))
        return up1 + F.interpolate(low3, scale_factor=2.0, mode="nearest")
