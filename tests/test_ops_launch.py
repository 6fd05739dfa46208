"""The hgfast._C ops at launch limits: more maps than a CUDA grid's y/z extent, empty batches, and on the GPU the
caller's stream and a tensor on another device than the current one."""
import pytest
import torch

from _ops_common import DEVICES, needs_kernel, random_keypoints
from hgfast.ops.reference import argmax_peaks_ref, gaussian_heatmaps_ref


def _targets_args(B, N, K, H, W, device):
    kp = random_keypoints(B, N, K, H, W, device)
    vis = torch.rand(B, N, K, device=device) > 0.2
    sigma = torch.rand(K, device=device) + 0.5
    return kp, vis, sigma


@pytest.mark.parametrize("device", DEVICES)
def test_more_maps_than_a_grid_axis(device):
    """4096 x 17 = 69632 maps, above 65535 (the most blocks along a CUDA grid's y or z)."""
    needs_kernel("gaussian_heatmaps", device)
    needs_kernel("argmax_decode", device)
    kp, vis, sigma = _targets_args(4096, 1, 17, 4, 4, device)
    got = torch.ops.hgfast.gaussian_heatmaps(kp, vis, sigma, 4, 5, False, torch.float32)
    torch.testing.assert_close(got, gaussian_heatmaps_ref(kp, vis, sigma, (4, 5), False, torch.float32))
    hm = torch.randn(4096, 17, 4, 5, device=device)
    for g, w in zip(torch.ops.hgfast.argmax_decode(hm, True), argmax_peaks_ref(hm, True)):
        torch.testing.assert_close(g, w, atol=0, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch_launches_nothing(device):
    needs_kernel("gaussian_heatmaps", device)
    needs_kernel("argmax_decode", device)
    kp, vis, sigma = _targets_args(0, 1, 3, 8, 8, device)
    assert torch.ops.hgfast.gaussian_heatmaps(kp, vis, sigma, 8, 8, False, torch.float32).shape == (0, 3, 8, 8)
    coords, scores = torch.ops.hgfast.argmax_decode(torch.zeros(0, 3, 8, 8, device=device), True)
    assert coords.shape == (0, 3, 2) and scores.shape == (0, 3)
    if device == "cuda":
        torch.cuda.synchronize()  # a launch of zero blocks would be reported here


@pytest.mark.gpu
def test_ops_run_on_the_callers_stream():
    """Inputs written on a side stream after a long sleep: an op launched on another stream would read them
    before they are written."""
    needs_kernel("argmax_decode", "cuda")
    needs_kernel("gaussian_heatmaps", "cuda")
    kp_src, vis, sigma = _targets_args(8, 2, 16, 64, 64, "cuda")
    hm_src = torch.randn(8, 16, 64, 64, device="cuda")
    kp, hm = torch.zeros_like(kp_src), torch.zeros_like(hm_src)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)  # about 50 ms
        kp.copy_(kp_src)
        hm.copy_(hm_src)
        targets = torch.ops.hgfast.gaussian_heatmaps(kp, vis, sigma, 64, 64, False, torch.float32)
        coords, scores = torch.ops.hgfast.argmax_decode(hm, False)
    side.synchronize()
    torch.testing.assert_close(targets, gaussian_heatmaps_ref(kp_src, vis, sigma, (64, 64), False, torch.float32))
    for g, w in zip((coords, scores), argmax_peaks_ref(hm_src, False)):
        torch.testing.assert_close(g, w, atol=0, rtol=0)


@pytest.mark.gpu
def test_ops_on_another_device_than_the_current_one():
    needs_kernel("argmax_decode", "cuda")
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    with torch.cuda.device(0):
        kp, vis, sigma = _targets_args(2, 1, 4, 16, 16, "cuda:1")
        targets = torch.ops.hgfast.gaussian_heatmaps(kp, vis, sigma, 16, 16, False, torch.float32)
        hm = torch.randn(2, 4, 16, 16, device="cuda:1")
        coords, _ = torch.ops.hgfast.argmax_decode(hm, False)
    assert targets.device == coords.device == torch.device("cuda:1")
    torch.testing.assert_close(targets, gaussian_heatmaps_ref(kp, vis, sigma, (16, 16), False, torch.float32))
    torch.testing.assert_close(coords, argmax_peaks_ref(hm, False)[0], atol=0, rtol=0)
