"""gaussian_heatmaps, 16 joints, 64x64, batch 32 and 256 (sigma 1, unbiased centres, 10 % invisible joints).

Contenders: the per-joint numpy loop the peer projects use, vectorised numpy (dense and separable), the PyTorch
reference, and hgfast (``_C`` CPU kernel; ``_C`` CUDA kernel on a GPU): ``hgfast`` as users call it (argument
checks included, one of which reads a sum back to the host), ``hgfast-kernel`` the registered op alone on
prepared arguments. GB/s counts the heatmaps written.
"""
import math

import numpy as np
import pytest
import torch

from common import ON_GPU, nbytes, rel_error, run_case
from hgfast.ops import gaussian_heatmaps, numpy_ref
from hgfast.ops.reference import gaussian_heatmaps_ref

K, SIZE, SIGMA = 16, (64, 64), 1.0


def numpy_loop(kp: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Peer style: one 3-sigma patch per visible joint, drawn in a Python loop (same semantics as hgfast)."""
    B, K, _ = kp.shape
    H, W = SIZE
    out = np.zeros((B, K, H, W), np.float32)
    r = 3 * SIGMA
    for b in range(B):
        for k in range(K):
            if not vis[b, k]:
                continue
            x, y = kp[b, k]
            x0, x1, y0, y1 = max(0, math.ceil(x - r)), min(W - 1, math.floor(x + r)), \
                max(0, math.ceil(y - r)), min(H - 1, math.floor(y + r))
            if x0 > x1 or y0 > y1:
                continue
            dx = np.arange(x0, x1 + 1, dtype=np.float32) - x
            dy = np.arange(y0, y1 + 1, dtype=np.float32) - y
            out[b, k, y0:y1 + 1, x0:x1 + 1] = np.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * SIGMA**2))
    return out


def _inputs(batch, device):
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(batch, K, 2, generator=g) * 68 - 2
    vis = torch.rand(batch, K, generator=g) > 0.1
    return kp.to(device), vis.to(device)


def _reference(kp, vis):
    return gaussian_heatmaps_ref(kp[:, None].double(), vis[:, None], torch.full((K,), SIGMA, dtype=torch.float64,
                                 device=kp.device), SIZE, False, torch.float64)


CPU_IMPLS = {
    "numpy-loop": lambda kp, vis: numpy_loop(kp.numpy(), vis.numpy()),
    "numpy-vectorised": lambda kp, vis: numpy_ref.gaussian_heatmaps_dense(kp.numpy(), vis.numpy(), SIZE, SIGMA),
    "numpy-separable": lambda kp, vis: numpy_ref.gaussian_heatmaps_separable(kp.numpy(), vis.numpy(), SIZE, SIGMA),
    "torch-reference": lambda kp, vis: gaussian_heatmaps_ref(kp[:, None], vis[:, None],
                                                             torch.full((K,), SIGMA, device=kp.device), SIZE, False,
                                                             torch.float32),
    "hgfast": lambda kp, vis: gaussian_heatmaps(kp, vis, SIZE, SIGMA),
    "hgfast-kernel": None,  # _kernel
}


def _kernel(kp, vis):
    """The registered op on arguments prepared once, as ``gaussian_heatmaps`` passes them."""
    args = (kp[:, None].contiguous(), vis[:, None].contiguous(), torch.full((K,), SIGMA, device=kp.device), *SIZE,
            False, torch.float32)
    return lambda kp, vis: torch.ops.hgfast.gaussian_heatmaps(*args)


def _impl(name, kp, vis):
    return _kernel(kp, vis) if name == "hgfast-kernel" else CPU_IMPLS[name]


@pytest.mark.parametrize("impl", list(CPU_IMPLS))
@pytest.mark.parametrize("batch", [32, 256])
def test_targets_cpu(benchmark, batch, impl):
    benchmark.group = f"gaussian_heatmaps b{batch}x{K}x64x64 cpu"
    kp, vis = _inputs(batch, "cpu")
    fn = _impl(impl, kp, vis)
    out = torch.as_tensor(fn(kp, vis))
    run_case(benchmark, lambda: fn(kp, vis), impl=impl, bytes_moved=nbytes(out),
             error=rel_error(out, _reference(kp, vis)))


@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("impl", ["torch-reference", "hgfast", "hgfast-kernel"])
@pytest.mark.parametrize("batch", [32, 256])
def test_targets_cuda(benchmark, batch, impl):
    benchmark.group = f"gaussian_heatmaps b{batch}x{K}x64x64 cuda"
    kp, vis = _inputs(batch, "cuda")
    fn = _impl(impl, kp, vis)
    out = fn(kp, vis)
    run_case(benchmark, lambda: fn(kp, vis), impl=impl, bytes_moved=nbytes(out),
             error=rel_error(out, _reference(kp, vis)))
