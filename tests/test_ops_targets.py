"""gaussian_heatmaps: reference semantics (DESIGN.md §5), C++/CUDA kernels against the reference, bad input."""
import math

import numpy as np
import pytest
import torch

from _ops_common import DEVICES, needs_kernel, random_keypoints
from hgfast import _ext
from hgfast.ops import argmax_decode, gaussian_heatmaps, numpy_ref
from hgfast.ops.reference import gaussian_heatmaps_ref

CASES = [  # B, N, K, H, W
    (3, 1, 16, 64, 64), (2, 1, 1, 17, 9), (1, 3, 5, 33, 31), (4, 2, 3, 1, 7), (2, 1, 2, 5, 1),
]


@pytest.mark.parametrize("integer", [False, True])
def test_reference_matches_numpy_formula(integer):
    kp = random_keypoints(4, 1, 7, 21, 19, "cpu")[:, 0]
    vis = torch.rand(4, 7) > 0.3
    sigma = torch.linspace(0.5, 4.0, 7)
    public = gaussian_heatmaps(kp, vis, (21, 19), sigma, "integer" if integer else "unbiased")  # _C where built
    reference = gaussian_heatmaps_ref(kp[:, None], vis[:, None], sigma, (21, 19), integer, torch.float32)
    for got in (public.numpy(), reference.numpy()):
        for oracle in (numpy_ref.gaussian_heatmaps_dense, numpy_ref.gaussian_heatmaps_separable):
            want = oracle(kp.numpy(), vis.numpy(), (21, 19), sigma.numpy(), integer)
            np.testing.assert_allclose(got, want, atol=1e-6)


def test_values_by_hand():
    kp = torch.tensor([[[2.5, 1.0]]])
    h = gaussian_heatmaps(kp, size=(4, 8), sigma=1.0)[0, 0].double()
    i, j = torch.meshgrid(torch.arange(4.0), torch.arange(8.0), indexing="ij")
    want = torch.exp(-((j - 2.5) ** 2 + (i - 1.0) ** 2) / 2) * ((j - 2.5).abs() <= 3) * ((i - 1).abs() <= 3)
    torch.testing.assert_close(h, want.double(), atol=1e-6, rtol=0)
    assert h[0, 6] == 0 and h[0, 5] > 0  # |6 - 2.5| > 3σ is cut, |5 - 2.5| is kept


def test_invisible_outside_and_max_merge():
    kp = torch.tensor([[[[10.0, 10.0], [30.0, 30.0], [-2.5, 5.0]], [[12.0, 10.0], [0.0, 0.0], [100.0, 5.0]]]])
    vis = torch.tensor([[[1, 0, 1], [1, 1, 1]]])
    h = gaussian_heatmaps(kp, vis, (20, 20), 1.0)
    single = [gaussian_heatmaps(kp[:, n], vis[:, n], (20, 20), 1.0) for n in range(2)]
    torch.testing.assert_close(h, torch.maximum(*single), atol=0, rtol=0)
    assert single[0][0, 1].abs().sum() == 0  # invisible
    assert single[1][0, 2].abs().sum() == 0  # far outside
    assert single[0][0, 2, :, 0].max() > 0  # 2.5 px outside with σ=1 still touches column 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("B,N,K,H,W", CASES)
@pytest.mark.parametrize("integer", [False, True])
def test_kernel_matches_reference(device, B, N, K, H, W, integer):
    needs_kernel("gaussian_heatmaps", device)
    kp = random_keypoints(B, N, K, H, W, device)
    kp[..., :1, :] = kp[..., :1, :].round()  # integer and half-integer centres hit the floor(x + 0.5) edge
    kp[..., -1:, :] = kp[..., -1:, :].floor() + 0.5
    vis = torch.rand(B, N, K, device=device) > 0.25
    sigma = torch.rand(K, device=device) * 3.5 + 0.5
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        got = torch.ops.hgfast.gaussian_heatmaps(kp, vis, sigma, H, W, integer, dtype)
        want = gaussian_heatmaps_ref(kp, vis, sigma, (H, W), integer, dtype)
        assert got.dtype == dtype and got.shape == (B, K, H, W)
        tol = 1e-6 if dtype in (torch.float32, torch.float64) else 0
        torch.testing.assert_close(got.double(), want.double(), atol=tol, rtol=tol)


@pytest.mark.parametrize("device", DEVICES)
def test_decode_of_integer_encoding_is_exact(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    kp = (torch.rand(5, 16, 2, device=device) * torch.tensor([31.0, 25.0], device=device)).floor()
    kp[:, 0] = 0  # corner
    kp[:, 1] = torch.tensor([30.0, 24.0], device=device)
    h = gaussian_heatmaps(kp, size=(25, 31), sigma=torch.rand(16) * 3.5 + 0.5, encoding="integer")
    for refine in ("none", "quarter"):
        coords, scores = argmax_decode(h, refine=refine)
        torch.testing.assert_close(coords, kp, atol=0, rtol=0)
        torch.testing.assert_close(scores, torch.ones_like(scores))


def test_public_defaults_and_options():
    kp = torch.rand(2, 3, 2).double() * 10
    h = gaussian_heatmaps(kp)
    assert h.shape == (2, 3, 64, 64) and h.dtype == torch.float32
    assert gaussian_heatmaps(kp, size=16, dtype=torch.bfloat16).shape == (2, 3, 16, 16)
    nc = torch.rand(3, 2, 2).transpose(0, 1) * 10  # non-contiguous input gives the same result
    torch.testing.assert_close(gaussian_heatmaps(nc, size=12), gaussian_heatmaps(nc.contiguous(), size=12))
    assert gaussian_heatmaps(torch.zeros(0, 3, 2)).shape == (0, 3, 64, 64)  # empty batch: empty maps
    nan_hidden = torch.tensor([[[float("nan"), 1.0], [3.0, 3.0]]])
    assert gaussian_heatmaps(nan_hidden, torch.tensor([[0, 1]]), 8)[0, 0].abs().sum() == 0
    narrow = gaussian_heatmaps(torch.tensor([[[3.0, 4.0]]]), size=8, sigma=1e-3)  # the smallest sigma allowed
    assert narrow.isfinite().all() and narrow.sum() == narrow[0, 0, 4, 3] == 1


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(keypoints=torch.zeros(2, 3)), ValueError, "keypoints"),
    (dict(keypoints=torch.zeros(2, 3, 3)), ValueError, "keypoints"),
    (dict(keypoints=torch.zeros(2, 3, 2, dtype=torch.int64)), TypeError, "keypoints"),
    (dict(keypoints=[[0.0, 0.0]]), TypeError, "keypoints"),
    (dict(visible=torch.ones(2, 4)), ValueError, "visible"),
    (dict(size=(0, 8)), ValueError, "size"),
    (dict(size=(8.0, 8)), ValueError, "size"),
    (dict(size=(True, 8)), ValueError, "size"),
    (dict(size=torch.tensor(8.0)), ValueError, "size"),
    (dict(size=np.int64(-8)), ValueError, "size"),
    (dict(size="88"), ValueError, "size"),
    (dict(sigma=0.0), ValueError, "sigma"),
    (dict(sigma=float("nan")), ValueError, "sigma"),
    (dict(sigma=1e-24), ValueError, "sigma must be finite and >= 0.001"),  # 2σ² = 0 in float32: NaN targets
    (dict(sigma=torch.tensor([1.0, 1e-24, 1.0])), ValueError, "sigma must be finite and >= 0.001"),
    (dict(sigma=torch.tensor(1e-4)), ValueError, "sigma"),
    (dict(sigma=torch.ones(4)), ValueError, "sigma"),
    (dict(sigma=[1.0, 0.0, 1.0]), ValueError, "sigma must be finite"),
    (dict(sigma="1"), TypeError, "sigma must be a number"),
    (dict(sigma=None), TypeError, "sigma must be a number"),
    (dict(sigma=True), TypeError, "sigma must be real numbers"),
    (dict(sigma=torch.ones(3, dtype=torch.complex64)), TypeError, "sigma must be real numbers"),
    (dict(encoding="round"), ValueError, "encoding"),
    (dict(dtype=torch.int32), TypeError, "dtype"),
    (dict(keypoints=torch.full((2, 3, 2), float("inf"))), ValueError, "keypoints"),
])
def test_bad_input(kwargs, err, match):
    args = dict(keypoints=torch.zeros(2, 3, 2)) | kwargs
    with pytest.raises(err, match=match):
        gaussian_heatmaps(**args)


def test_float64_keypoints_beyond_float32_range_are_far_off_the_map():
    """A finite float64 coordinate past float32's range (1e300) is off the map (zeros), not a NaN/Inf error."""
    kp = torch.tensor([[[1e300, 3.0], [-1e300, 2.0], [2.0, 3.0]]], dtype=torch.float64)
    maps = gaussian_heatmaps(kp, None, 8)
    assert maps[0, :2].abs().sum() == 0 and maps[0, 2].max() == 1
    with pytest.raises(ValueError, match="NaN or Inf"):  # a real Inf still is one
        gaussian_heatmaps(torch.tensor([[[float("inf"), 3.0]]], dtype=torch.float64), None, 8)


def test_size_takes_numpy_and_tensor_integers():
    kp = torch.rand(1, 2, 2) * 8
    want = gaussian_heatmaps(kp, size=(8, 10))
    for size in ((np.int64(8), np.int32(10)), (torch.tensor(8), torch.tensor(10)), np.array([8, 10]),
                 torch.tensor([8, 10])):
        torch.testing.assert_close(gaussian_heatmaps(kp, size=size), want)
    assert gaussian_heatmaps(kp, size=np.int64(8)).shape == gaussian_heatmaps(kp, size=torch.tensor(8)).shape == (
        1, 2, 8, 8)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    needs_kernel("gaussian_heatmaps", device)
    kp = random_keypoints(2, 2, 3, 9, 11, device)
    args = (kp, torch.rand(2, 2, 3, device=device) > 0.3, torch.tensor([0.5, 1.0, 2.5], device=device), 9, 11, False,
            torch.float32)
    torch.library.opcheck(torch.ops.hgfast.gaussian_heatmaps.default, args)


def test_kernel_rejects_bad_arguments():
    needs_kernel("gaussian_heatmaps", "cpu")
    kp, vis, sig = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, dtype=torch.bool), torch.ones(2)
    with pytest.raises(RuntimeError, match="visible must be bool"):
        torch.ops.hgfast.gaussian_heatmaps(kp, vis.float(), sig, 4, 4, False, torch.float32)
    with pytest.raises(RuntimeError, match="keypoints must be contiguous"):
        torch.ops.hgfast.gaussian_heatmaps(torch.zeros(1, 1, 2, 4)[..., ::2], vis, sig, 4, 4, False, torch.float32)
    with pytest.raises(RuntimeError, match="height and width"):
        torch.ops.hgfast.gaussian_heatmaps(kp, vis, sig, 0, 4, False, torch.float32)


def test_sigma_extremes_draw_no_nan_and_the_same_maps_on_every_path():
    """The raw op (no wrapper checks) and the reference agree where sigma is zero, negative or NaN (nothing drawn),
    tiny (1 at the integer keypoint, 0 elsewhere: no 0/0) or huge (about 1 everywhere: no x/inf); so does the
    public API for a huge sigma it accepts."""
    needs_kernel("gaussian_heatmaps", "cpu")
    kp = torch.tensor([[[[2.0, 3.0], [1.5, 0.25], [2.0, 1.0], [3.0, 3.0], [4.0, 0.0]]]])
    vis = torch.ones(1, 1, 5, dtype=torch.bool)
    sigma = torch.tensor([0.0, -1.0, float("nan"), 1e-30, 1e20])
    got = torch.ops.hgfast.gaussian_heatmaps(kp, vis, sigma, 4, 5, False, torch.float32)
    want = gaussian_heatmaps_ref(kp, vis, sigma, (4, 5), False, torch.float32)
    assert torch.equal(got, want) and not got.isnan().any()
    assert not got[0, :3].any()
    assert got[0, 3, 3, 3] == 1 and got[0, 3].sum() == 1
    torch.testing.assert_close(got[0, 4], torch.ones(4, 5), rtol=0, atol=1e-6)
    huge = gaussian_heatmaps(torch.tensor([[[4.0, 0.0], [1e20, 1.0]]]), None, (4, 5), 1e20)  # (d / sigma)², not
    torch.testing.assert_close(huge[0, 0], torch.ones(4, 5), rtol=0, atol=1e-6)  # d² / sigma², which overflows
    torch.testing.assert_close(huge[0, 1], torch.full((4, 5), math.exp(-0.5)), rtol=1e-6, atol=0)


def test_reference_with_no_instances_draws_zeros():
    """(B, 0, K, 2) keypoints: all-zero maps on the reference path as on the kernel's."""
    got = gaussian_heatmaps_ref(torch.zeros(2, 0, 3, 2), torch.zeros(2, 0, 3, dtype=torch.bool), torch.ones(3),
                                (4, 5), False, torch.float16)
    assert got.shape == (2, 3, 4, 5) and got.dtype == torch.float16 and not got.any()
    if _ext.op("gaussian_heatmaps", "cpu") is not None:
        assert torch.equal(gaussian_heatmaps(torch.zeros(2, 0, 3, 2), size=(4, 5), dtype=torch.float16), got)


@pytest.mark.parametrize("encoding", ["unbiased", "integer"])
def test_targets_on_map_says_where_a_gaussian_is_drawn(encoding):
    """A joint is on the map exactly where gaussian_heatmaps draws a pixel of it: keypoints around and across the
    edges of a 7 x 5 map, per-joint sigmas, window edges hit exactly."""
    from hgfast.ops import targets_on_map

    g = torch.Generator().manual_seed(0)
    kp = torch.rand(64, 6, 2, generator=g) * torch.tensor([7.0 + 12, 5.0 + 12]) - 6
    kp[0, 0], kp[0, 1], kp[0, 2] = torch.tensor([-3.0, 2.0]), torch.tensor([9.0, 2.0]), torch.tensor([2.0, -3.5])
    kp[1, 0] = float("nan")
    sigma = torch.tensor([1.0, 1.0, 1.0, 0.5, 2.0, 1.5])
    drawn = gaussian_heatmaps(kp.nan_to_num(-1e6), None, (5, 7), sigma, encoding).amax((-1, -2)) > 0
    drawn[1, 0] = False
    on = targets_on_map(kp, (5, 7), sigma, encoding)
    assert torch.equal(on, drawn) and on.dtype == torch.bool
    assert 0.2 < on.float().mean() < 0.9  # both kinds present
    assert on[0, 0] and on[0, 1] and not on[1, 0]  # 3 sigma from the edge pixel: just on
    assert on[0, 2] == (encoding == "integer")  # 3.5 sigma off, but its integer centre is 3 sigma off
    with pytest.raises(ValueError, match="keypoints must have 3 dims"):
        targets_on_map(kp[None], (5, 7))
