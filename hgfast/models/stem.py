"""Stride-4 stem that turns an image into hourglass features."""
from torch import Tensor, nn
import torch.nn.functional as F

from .residual import Residual


class Stem(nn.Module):
    """conv7x7/2 (cin -> 64) + BN + ReLU -> Res(64, 128) -> maxpool 2x2 -> Res(128, 128) -> Res(128, f).

    ``(B, cin, H, W) -> (B, f, H/4, W/4)``.
    """

    def __init__(self, in_channels: int, f: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3)
        self.bn = nn.BatchNorm2d(64)
        self.res1 = Residual(64, 128)
        self.res2 = Residual(128, 128)
        self.res3 = Residual(128, f)

    def forward(self, x: Tensor) -> Tensor:
        return self.res3(self.res2(F.max_pool2d(self.before_pool(x), 2, 2)))

    def before_pool(self, x: Tensor) -> Tensor:
        """Everything before the max-pool: conv7x7/2 + BN + ReLU -> Res(64, 128)."""
        return self.res1(F.relu(self.bn(self.conv(x))))
