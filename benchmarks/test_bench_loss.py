"""heatmap_mse_loss forward + backward, 8×2 stacks×16×64×64: fused hgfast op vs targets + F.mse_loss per stack."""
import pytest
import torch
import torch.nn.functional as F

from hgfast.ops import gaussian_heatmaps, heatmap_mse_loss

SHAPE = (8, 2, 16, 64, 64)


def _inputs(device):
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(SHAPE, generator=g).to(device).requires_grad_()
    kp = (torch.rand(SHAPE[0], SHAPE[2], 2, generator=g) * 64).to(device)
    return pred, kp


def _unfused(pred, kp):
    target = gaussian_heatmaps(kp, size=SHAPE[-2:])
    return sum(F.mse_loss(pred[:, s], target) for s in range(pred.shape[1]))


IMPLS = {"hgfast_fused": lambda p, k: heatmap_mse_loss(p, k), "targets_plus_mse": _unfused}


def _step(impl, pred, kp, sync):
    def run():
        pred.grad = None
        IMPLS[impl](pred, kp).backward()
        if sync:
            torch.cuda.synchronize()
    return run


@pytest.mark.benchmark(group="loss-fwd-bwd-cpu-8x2x16x64x64")
@pytest.mark.parametrize("impl", list(IMPLS))
def test_loss_cpu(benchmark, impl):
    pred, kp = _inputs("cpu")
    benchmark(_step(impl, pred, kp, False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.benchmark(group="loss-fwd-bwd-cuda-8x2x16x64x64")
@pytest.mark.parametrize("impl", list(IMPLS))
def test_loss_cuda(benchmark, impl):
    pred, kp = _inputs("cuda")
    benchmark(_step(impl, pred, kp, True))
