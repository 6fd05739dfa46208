"""heatmap_mse_loss forward + backward over (B, S, K, 64, 64) = (8, 2, 16, 64, 64): hgfast's fused op (targets
computed on the fly, none written) vs rendering the targets and calling F.mse_loss per stack."""
import pytest
import torch
import torch.nn.functional as F

from common import ON_GPU, nbytes, rel_error, run_case
from hgfast.ops import gaussian_heatmaps, heatmap_mse_loss

SHAPE = (8, 2, 16, 64, 64)


def targets_plus_mse(pred, kp):
    target = gaussian_heatmaps(kp, size=SHAPE[-2:])
    return sum(F.mse_loss(pred[:, s], target) for s in range(pred.shape[1]))


IMPLS = {"targets+F.mse_loss": targets_plus_mse, "hgfast": lambda pred, kp: heatmap_mse_loss(pred, kp)}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not ON_GPU, reason="needs a CUDA GPU"))])
def test_loss_fwd_bwd(benchmark, device, impl):
    benchmark.group = f"heatmap_mse_loss fwd+bwd 8x2x16x64x64 {device}"
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(SHAPE, generator=g).to(device).requires_grad_()
    kp = (torch.rand(SHAPE[0], SHAPE[2], 2, generator=g) * 64).to(device)

    def step():
        pred.grad = None
        loss = IMPLS[impl](pred, kp)
        loss.backward()
        return loss

    loss = step()
    reference = targets_plus_mse(pred.detach().double(), kp.double())
    run_case(benchmark, step, impl=impl, bytes_moved=2 * nbytes(pred), error=rel_error(loss, reference))
