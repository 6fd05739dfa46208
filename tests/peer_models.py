"""Minimal stand-ins for the two public PyTorch ports, written here only to produce their state-dict key names
(princeton-vl/pytorch_stacked_hourglass ``models/{layers,posenet}.py`` and bearpaw/pytorch-pose
``pose/models/hourglass.py``, num_blocks = 1) and an independent forward pass to compare outputs against."""
import torch
import torch.nn.functional as F
from torch import nn


# ---- princeton-vl layout -------------------------------------------------------------------------------------
class PVConv(nn.Module):
    def __init__(self, cin, cout, k=3, stride=1, bn=False, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.use_relu = relu

    def forward(self, x):
        x = self.conv(x)
        x = self.bn(x) if self.bn is not None else x
        return F.relu(x) if self.use_relu else x


class PVResidual(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), PVConv(cin, cout // 2, 1, relu=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout // 2), PVConv(cout // 2, cout // 2, 3, relu=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(cout // 2), PVConv(cout // 2, cout, 1, relu=False)
        self.skip_layer = PVConv(cin, cout, 1, relu=False)  # built even when unused, as upstream does
        self.need_skip = cin != cout

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (self.skip_layer(x) if self.need_skip else x)


class PVHourglass(nn.Module):
    def __init__(self, n, f):
        super().__init__()
        self.up1, self.low1 = PVResidual(f, f), PVResidual(f, f)
        self.low2 = PVHourglass(n - 1, f) if n > 1 else PVResidual(f, f)
        self.low3 = PVResidual(f, f)

    def forward(self, x):
        low3 = self.low3(self.low2(self.low1(F.max_pool2d(x, 2, 2))))
        return self.up1(x) + F.interpolate(low3, scale_factor=2, mode="nearest")


class PVMerge(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = PVConv(cin, cout, 1, relu=False)

    def forward(self, x):
        return self.conv(x)


class PVPoseNet(nn.Module):
    def __init__(self, nstack, f, k):
        super().__init__()
        self.nstack = nstack
        self.pre = nn.Sequential(PVConv(3, 64, 7, 2, bn=True, relu=True), PVResidual(64, 128), nn.MaxPool2d(2, 2),
                                 PVResidual(128, 128), PVResidual(128, f))
        self.hgs = nn.ModuleList(nn.Sequential(PVHourglass(4, f)) for _ in range(nstack))
        self.features = nn.ModuleList(nn.Sequential(PVResidual(f, f), PVConv(f, f, 1, bn=True, relu=True))
                                      for _ in range(nstack))
        self.outs = nn.ModuleList(PVConv(f, k, 1, relu=False) for _ in range(nstack))
        self.merge_features = nn.ModuleList(PVMerge(f, f) for _ in range(nstack - 1))
        self.merge_preds = nn.ModuleList(PVMerge(k, f) for _ in range(nstack - 1))

    def forward(self, x):
        x = self.pre(x)
        preds = []
        for i in range(self.nstack):
            feature = self.features[i](self.hgs[i](x))
            preds.append(self.outs[i](feature))
            if i < self.nstack - 1:
                x = x + self.merge_preds[i](preds[-1]) + self.merge_features[i](feature)
        return torch.stack(preds, 1)


# ---- bearpaw / anibali layout --------------------------------------------------------------------------------
class BPBottleneck(nn.Module):
    def __init__(self, inplanes, planes):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(inplanes), nn.Conv2d(inplanes, planes, 1)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, padding=1)
        self.bn3, self.conv3 = nn.BatchNorm2d(planes), nn.Conv2d(planes, 2 * planes, 1)
        self.downsample = nn.Sequential(nn.Conv2d(inplanes, 2 * planes, 1)) if inplanes != 2 * planes else None

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class BPHourglass(nn.Module):
    def __init__(self, planes, depth):
        super().__init__()
        self.depth = depth
        self.hg = nn.ModuleList(
            nn.ModuleList(nn.Sequential(BPBottleneck(2 * planes, planes)) for _ in range(4 if i == 0 else 3))
            for i in range(depth))

    def _forward(self, n, x):
        up1 = self.hg[n - 1][0](x)
        low1 = self.hg[n - 1][1](F.max_pool2d(x, 2, stride=2))
        low2 = self._forward(n - 1, low1) if n > 1 else self.hg[n - 1][3](low1)
        return up1 + F.interpolate(self.hg[n - 1][2](low2), scale_factor=2)

    def forward(self, x):
        return self._forward(self.depth, x)


class BPHourglassNet(nn.Module):
    def __init__(self, nstack, f, k):
        super().__init__()
        self.nstack = nstack
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64)
        self.layer1 = nn.Sequential(BPBottleneck(64, 64))
        self.layer2 = nn.Sequential(BPBottleneck(128, 128))  # built after layer1 raised inplanes to 128: 128 -> 256
        self.layer3 = nn.Sequential(BPBottleneck(256, f // 2))
        self.hg = nn.ModuleList(BPHourglass(f // 2, 4) for _ in range(nstack))
        self.res = nn.ModuleList(nn.Sequential(BPBottleneck(f, f // 2)) for _ in range(nstack))
        self.fc = nn.ModuleList(nn.Sequential(nn.Conv2d(f, f, 1), nn.BatchNorm2d(f), nn.ReLU())
                                for _ in range(nstack))
        self.score = nn.ModuleList(nn.Conv2d(f, k, 1) for _ in range(nstack))
        self.fc_ = nn.ModuleList(nn.Conv2d(f, f, 1) for _ in range(nstack - 1))
        self.score_ = nn.ModuleList(nn.Conv2d(k, f, 1) for _ in range(nstack - 1))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(F.max_pool2d(self.layer1(x), 2, 2)))
        out = []
        for i in range(self.nstack):
            y = self.fc[i](self.res[i](self.hg[i](x)))
            out.append(self.score[i](y))
            if i < self.nstack - 1:
                x = x + self.fc_[i](y) + self.score_[i](out[-1])
        return torch.stack(out, 1)


def randomize_bn_stats(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters, so eval outputs depend on them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model
