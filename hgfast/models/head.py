"""Per-stack head (features + heatmaps) and the merge that feeds the next stack."""
from torch import Tensor, nn
import torch.nn.functional as F

from ..fused import impl as fused_impl, wants_fused
from .residual import Residual


class StackHead(nn.Module):
    """``y -> Res(f, f) -> conv1x1 + BN + ReLU = feature -> conv1x1 (f -> K) = heatmaps``.

    Returns ``(feature (B, f, h, w), heatmaps (B, K, h, w))``; the heatmaps have no activation.
    """

    def __init__(self, f: int, njoints: int):
        super().__init__()
        self.res = Residual(f, f)
        self.lin_conv = nn.Conv2d(f, f, 1)
        self.lin_bn = nn.BatchNorm2d(f)
        self.heatmap = nn.Conv2d(f, njoints, 1)
        self.fused = False

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        if wants_fused(self, y):
            return fused_impl().head_forward(self, y)
        feature = F.relu(self.lin_bn(self.lin_conv(self.res(y))))
        return feature, self.heatmap(feature)


class Merge(nn.Module):
    """Intermediate-supervision merge: ``x + conv1x1(feature) + conv1x1(heatmaps -> f)``."""

    def __init__(self, f: int, njoints: int):
        super().__init__()
        self.feature = nn.Conv2d(f, f, 1)
        self.heatmap = nn.Conv2d(njoints, f, 1)
        self.fused = False

    def forward(self, x: Tensor, feature: Tensor, heatmaps: Tensor) -> Tensor:
        if wants_fused(self, x):
            return fused_impl().merge_forward(self, x, feature, heatmaps)
        return x + self.feature(feature) + self.heatmap(heatmaps)
