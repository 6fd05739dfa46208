"""Helpers shared by tests/test_ops_*.py: devices to run on and whether hgfast._C kernels are loaded."""
import pytest
import torch

from hgfast import _ext

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def needs_kernel(name, device):
    """Skip unless hgfast._C serves op `name` on `device` (compiled or JIT tier)."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if _ext.op(name, device) is None:
        pytest.skip(f"hgfast._C has no {device} kernel for {name}: {_ext.resolve()}")


def random_keypoints(B, N, K, H, W, device, margin=4.0):
    """(B,N,K,2) keypoints spread over the map and up to `margin` pixels beyond each border."""
    scale = torch.tensor([W + 2 * margin, H + 2 * margin], device=device)
    return torch.rand(B, N, K, 2, device=device) * scale - margin
