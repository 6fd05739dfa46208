"""gaussian_heatmaps for a 32×16×64×64 batch: hgfast (C++/CUDA), its PyTorch reference, vectorised numpy."""
import numpy as np
import pytest
import torch

from hgfast import _ext
from hgfast.ops import gaussian_heatmaps, numpy_ref

B, K, H, W = 32, 16, 64, 64


def _keypoints(device):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(B, K, 2, generator=g) * 64).to(device), (torch.rand(B, K, generator=g) > 0.1).to(device)


def _cuda(fn):
    def run():
        out = fn()
        torch.cuda.synchronize()
        return out
    return run


IMPLS = {
    "hgfast": lambda kp, vis: lambda: gaussian_heatmaps(kp, vis, (H, W), 1.0),
    "torch_reference": lambda kp, vis: lambda: _reference(kp, vis),
    "numpy_dense": lambda kp, vis: lambda: numpy_ref.gaussian_heatmaps_dense(kp.cpu().numpy(), vis.cpu().numpy(),
                                                                             (H, W), 1.0),
    "numpy_separable": lambda kp, vis: lambda: numpy_ref.gaussian_heatmaps_separable(kp.cpu().numpy(),
                                                                                     vis.cpu().numpy(), (H, W), 1.0),
}


def _reference(kp, vis):
    from hgfast.ops.reference import gaussian_heatmaps_ref

    return gaussian_heatmaps_ref(kp.unsqueeze(1), vis.unsqueeze(1), torch.ones(K, device=kp.device), (H, W), False,
                                 torch.float32)


@pytest.mark.benchmark(group="targets-cpu-32x16x64x64")
@pytest.mark.parametrize("impl", list(IMPLS))
def test_targets_cpu(benchmark, impl):
    kp, vis = _keypoints("cpu")
    if impl == "hgfast":
        benchmark.extra_info["tier"] = _ext.resolve()["tier"] or "reference"
    out = benchmark(IMPLS[impl](kp, vis))
    np.testing.assert_allclose(np.asarray(out), _reference(kp, vis).numpy(), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.benchmark(group="targets-cuda-32x16x64x64")
@pytest.mark.parametrize("impl", ["hgfast", "torch_reference"])
def test_targets_cuda(benchmark, impl):
    kp, vis = _keypoints("cuda")
    benchmark(_cuda(IMPLS[impl](kp, vis)))
