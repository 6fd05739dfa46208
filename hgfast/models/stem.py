"""Stride-4 stem that turns an image into hourglass features."""
from torch import Tensor, nn
import torch.nn.functional as F

from .residual import Residual


class Stem(nn.Module):
    """conv7x7/2 (cin -> 64) + BN + ReLU -> Res(64, 128) -> maxpool 2x2 -> Res(128, c) -> Res(c, f).

    ``(B, cin, H, W) -> (B, f, H/4, W/4)``. ``c``: 128 in the paper's code (and princeton-vl's); bearpaw's
    pytorch-pose (and anibali's port) has 256, as its ``layer2`` is built after ``layer1`` has raised the width.
    """

    def __init__(self, in_channels: int, f: int, c: int = 128):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3)
        self.bn = nn.BatchNorm2d(64)
        self.res1 = Residual(64, 128)
        self.res2 = Residual(128, c)
        self.res3 = Residual(c, f)

    def forward(self, x: Tensor) -> Tensor:
        return self.res3(self.res2(F.max_pool2d(self.before_pool(x), 2, 2)))

    def before_pool(self, x: Tensor) -> Tensor:
        """Everything before the max-pool: conv7x7/2 + BN + ReLU -> Res(64, 128)."""
        return self.res1(F.relu(self.bn(self.conv(x))))
