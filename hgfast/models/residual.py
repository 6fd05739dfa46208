"""Pre-activation bottleneck residual of the Stacked Hourglass (Newell et al. 2016)."""
from torch import Tensor, nn
import torch.nn.functional as F

from ..fused import impl as fused_impl, wants_fused


class Residual(nn.Module):
    """BN-ReLU-conv1x1 -> BN-ReLU-conv3x3 -> BN-ReLU-conv1x1, plus a skip.

    ``(B, cin, H, W) -> (B, cout, H, W)``. The bottleneck width is ``cout // 2``. The skip is the identity
    when ``cin == cout`` and a biased 1x1 conv (no BN) otherwise. Every conv has a bias, as in the paper's code.
    With ``fused = True`` (set by ``StackedHourglass(fused=True)``) it runs the Triton kernels where they apply.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        if cout % 2:
            raise ValueError(f"Residual: cout must be even (bottleneck is cout // 2), got {cout}")
        mid = cout // 2
        self.cin, self.cout = cin, cout
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.fused = False

    def forward(self, x: Tensor) -> Tensor:
        if wants_fused(self, x):
            return fused_impl().residual_forward(self, x)
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.skip is None else self.skip(x))

    def extra_repr(self) -> str:
        return f"{self.cin} -> {self.cout}"
