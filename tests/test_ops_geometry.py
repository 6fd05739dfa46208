"""Affine maps between image and heatmap coordinates, and flip-test helpers."""
import math
import re

import numpy as np
import pytest
import torch

from _ops_common import DEVICES
from hgfast.ops import (MPII_FLIP_PERMUTATION, crop_matrix, flip_heatmaps, flip_keypoints, flip_permutation,
                        flip_test, gaussian_heatmaps, heatmap_to_image, image_to_heatmap, invert_affine,
                        transform_points)


def _boxes(B=5):
    center = torch.rand(B, 2, dtype=torch.float64) * 500
    scale = torch.rand(B, dtype=torch.float64) * 2 + 0.5
    rotation = torch.rand(B, dtype=torch.float64) * 120 - 60
    return center, scale, rotation


def test_crop_matrix_known_values():
    m = crop_matrix(torch.tensor([[100.0, 50.0]]), torch.tensor([1.0]), 0.0, (64, 64))
    pts = torch.tensor([[[100.0, 50.0], [200.0, 150.0], [0.0, -50.0]]])
    torch.testing.assert_close(transform_points(pts, m), torch.tensor([[[32.0, 32.0], [64.0, 64.0], [0.0, 0.0]]]))
    r = crop_matrix(torch.tensor([[0.0, 0.0]]), torch.tensor([1.0]), torch.tensor([90.0]), (64, 64))
    # rotation by +90° (bearpaw convention R(-rot)): image +x maps to output -y
    torch.testing.assert_close(transform_points(torch.tensor([[[100.0, 0.0]]]), r), torch.tensor([[[32.0, 0.0]]]),
                               atol=1e-5, rtol=0)


def test_round_trip_and_inverse():
    center, scale, rotation = _boxes()
    pts = torch.rand(5, 16, 2, dtype=torch.float64) * 600
    hm = image_to_heatmap(pts, center, scale, rotation, (64, 48))
    torch.testing.assert_close(heatmap_to_image(hm, center, scale, rotation, (64, 48)), pts)
    m = crop_matrix(center, scale, rotation, (64, 48))
    eye = torch.eye(3, dtype=torch.float64).expand(5, 3, 3)
    full = lambda a: torch.cat([a, eye[:, 2:]], dim=1)  # noqa: E731
    torch.testing.assert_close(full(invert_affine(m)) @ full(m), eye)
    # distances scale by output / (200 · scale) and rotation preserves them
    d_img = (pts[:, 1] - pts[:, 0]).norm(dim=-1)
    d_hm = (image_to_heatmap(pts, center, scale, rotation, (64, 64))[:, 1]
            - image_to_heatmap(pts, center, scale, rotation, (64, 64))[:, 0]).norm(dim=-1)
    torch.testing.assert_close(d_hm, d_img * 64 / (200 * scale))


def test_crop_matrix_keeps_the_aspect_of_a_non_square_output():
    """(H, W) = (64, 48): the box is 200·s high and 200·s·48/64 wide, mapped without stretching."""
    center, scale = torch.tensor([[100.0, 50.0]], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    m = crop_matrix(center, scale, 0.0, (64, 48))
    torch.testing.assert_close(m[0, :, :2], torch.eye(2, dtype=torch.float64) * 64 / 100)
    corners = torch.tensor([[[100.0 - 37.5, 0.0], [137.5, 100.0], [100.0, 50.0]]], dtype=torch.float64)
    torch.testing.assert_close(transform_points(corners, m),
                               torch.tensor([[[0.0, 0.0], [48.0, 64.0], [24.0, 32.0]]], dtype=torch.float64))
    center, scale, rotation = _boxes()
    pts = torch.rand(5, 2, 2, dtype=torch.float64) * 600
    d = image_to_heatmap(pts, center, scale, rotation, (16, 32)).diff(dim=1).norm(dim=-1)[:, 0]
    torch.testing.assert_close(d, (pts[:, 1] - pts[:, 0]).norm(dim=-1) * 16 / (200 * scale))  # rotations too


def test_transforms_of_an_empty_batch():
    """B = 0 gives empty results of the right shape (reshape(0, -1, 2) raised)."""
    empty = torch.zeros(0, 3, 2, dtype=torch.float64)
    assert transform_points(empty, crop_matrix(torch.zeros(0, 2), 1.0)).shape == (0, 3, 2)
    assert heatmap_to_image(empty, torch.zeros(0, 2), 1.0).shape == (0, 3, 2)
    assert image_to_heatmap(torch.zeros(0, 2, 3, 2), torch.zeros(0, 2), 1.0).shape == (0, 2, 3, 2)


def test_legacy_options():
    c, s = torch.tensor([[128.0, 128.0]]), torch.tensor([1.28])
    coords = torch.tensor([[[10.3, 20.6]]])
    plain = heatmap_to_image(coords, c, s, 0.0, (64, 64))
    torch.testing.assert_close(heatmap_to_image(coords, c, s, 0.0, (64, 64), half_pixel=True), plain + 0.5 * 4)
    torch.testing.assert_close(heatmap_to_image(coords, c, s, 0.0, (64, 64), truncate=True), plain.trunc())


def test_flip_heatmaps_and_keypoints_agree():
    kp = torch.rand(2, 16, 2) * torch.tensor([47.0, 63.0])
    h = gaussian_heatmaps(kp, size=(64, 48), encoding="integer")
    flipped_kp = flip_keypoints(kp, 48)
    h_of_flipped_image = gaussian_heatmaps(flipped_kp, size=(64, 48), encoding="integer")
    torch.testing.assert_close(flip_heatmaps(h_of_flipped_image), h)
    torch.testing.assert_close(flip_test(h, h_of_flipped_image), h)
    torch.testing.assert_close(flip_keypoints(flipped_kp, 48), kp)
    shifted = flip_heatmaps(h_of_flipped_image, shift=True)
    torch.testing.assert_close(shifted[..., 1:], h[..., :-1])
    torch.testing.assert_close(shifted[..., 0], h[..., 0])


def test_fractional_flip_shift_is_exact_for_stride_4_targets():
    S, W = 64, 16  # targets at crop px / 4: the mirrored crop puts a joint at W − 1/4 − x, so shift 1 − W/S
    kp = torch.rand(3, 16, 2) * 40 + 12
    h = gaussian_heatmaps(kp / 4, size=(W, W))
    h_of_flipped_crop = gaussian_heatmaps(flip_keypoints(kp, S) / 4, size=(W, W))
    centroid = lambda hm: (hm.sum(-2) * torch.arange(W)).sum(-1) / hm.sum((-2, -1))  # noqa: E731
    torch.testing.assert_close(centroid(flip_heatmaps(h_of_flipped_crop, shift=1 - W / S)), kp[..., 0] / 4,
                               atol=0.06, rtol=0)  # a sampled Gaussian's centroid is within 0.02 px of its centre
    torch.testing.assert_close(centroid(flip_test(h, h_of_flipped_crop, shift=0.75)), kp[..., 0] / 4, atol=0.06,
                               rtol=0)
    assert (centroid(flip_heatmaps(h_of_flipped_crop, shift=True)) - kp[..., 0] / 4).mean() > 0.2
    torch.testing.assert_close(flip_heatmaps(h, shift=np.float32(0.75)), flip_heatmaps(h, shift=0.75))
    for bad in (float("nan"), float("inf"), "1", None):
        with pytest.raises(ValueError, match="shift must be a bool or a finite number"):
            flip_heatmaps(h, shift=bad)


def test_flip_permutation_and_errors():
    assert flip_permutation([(0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)], 16) == MPII_FLIP_PERMUTATION
    assert flip_permutation([np.array([0, 2])], 3) == (2, 1, 0)  # numpy indices are indices
    for bad in ([(0, 1), (1, 2)], [(0, 5)], [(1, 1)], [(0, 1, 2)], [(0.0, 1)], [3]):  # was garbage or an IndexError
        with pytest.raises(ValueError, match=r"flip pairs must be pairs of two different joints in range\(3\)"):
            flip_permutation(bad, 3)
    for bad in (-1, 4.0, True, None):  # -1 gave (), 4.0 a TypeError, True (0,)
        with pytest.raises(ValueError, match="num_joints must be an int >= 0"):
            flip_permutation([], bad)
    for bad in (float("nan"), "48", None, torch.tensor([48.0, 48.0])):  # NaN gave NaN keypoints, the others bare
        with pytest.raises(ValueError, match="width must be a finite number"):  # errors
            flip_keypoints(torch.zeros(1, 3, 2), bad, (0, 1, 2))
    # not a permutation; a cycle, not pairs swapped; not ints (were truncated to (1, 0, 2), or a TypeError)
    for bad in ((0, 0, 1), (1, 2, 0), (1.5, 0.5, 2.5), torch.tensor([1.0, 0.0, 2.0]), "abc", None, [[1, 0, 2]]):
        with pytest.raises(ValueError, match=r"permutation must swap pairs of range\(3\)"):
            flip_heatmaps(torch.zeros(1, 3, 4, 4), bad)
    with pytest.raises(ValueError, match="heatmaps_flipped"):
        flip_test(torch.zeros(1, 16, 4, 4), torch.zeros(1, 16, 4, 5))
    with pytest.raises(TypeError, match="heatmaps must be a torch.Tensor"):
        flip_test(np.zeros((1, 16, 4, 4)), torch.zeros(1, 16, 4, 4))
    with pytest.raises(ValueError, match="matrix"):
        transform_points(torch.zeros(2, 3, 2), torch.zeros(3, 2, 3))
    for shape in ((2, 2, 2), (2, 2, 4), (2, 3, 3)):  # (B, 2, 2) and (B, 2, 4) were returned "inverted" as such
        with pytest.raises(ValueError, match=rf"matrix must have shape \(B, 2, 3\), got {re.escape(str(shape))}"):
            invert_affine(torch.eye(*shape[1:]).expand(shape))
    with pytest.raises(ValueError, match="scale"):
        crop_matrix(torch.zeros(2, 2), torch.ones(3))
    with pytest.raises(ValueError, match="center"):
        crop_matrix(torch.zeros(2, 3), torch.ones(2))
    assert math.isclose(float(crop_matrix(torch.zeros(1, 2), 2.0)[0, 0, 0]), 64 / 400, rel_tol=1e-6)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kwargs,match", [
    (dict(scale=0.0), "scale must be finite and > 0"),  # inf/NaN matrix before
    (dict(scale=-1.0), "scale must be finite and > 0"),  # a point-reflected crop before
    (dict(scale=NAN), "scale"),
    (dict(scale=INF), "scale"),
    (dict(scale=[1.0, 0.0]), "scale"),
    (dict(scale=[1.0, -2.0]), "scale"),
    (dict(rotation=NAN), "rotation must be finite"),
    (dict(rotation=[0.0, INF]), "rotation"),
    (dict(center=[[0.0, 0.0], [NAN, 1.0]]), "center must be finite"),
    (dict(center=[[0.0, -INF], [0.0, 1.0]]), "center"),
    (dict(pixel_std=0.0), "pixel_std"),
    (dict(scale=1e-320), "scale 1e-320 is too small or too large for torch.float64"),  # a NaN matrix before
    (dict(scale=1e306), "scale 1e[+]306 is too small or too large"),  # a zero matrix, a linalg error before
    (dict(scale="1"), "scale must be a number or a tensor of numbers"),  # torch's "invalid data type 'str'"
    (dict(rotation=None), "rotation must be a number or a tensor of numbers"),
    (dict(scale=((1.0,), 2.0)), "scale must be a number or a tensor of numbers"),  # ragged
])
def test_transforms_reject_degenerate_boxes(device, kwargs, match):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    box = dict(center=torch.zeros(2, 2, dtype=torch.float64), scale=1.0, rotation=0.0)
    box |= {k: torch.tensor(v, dtype=torch.float64) if isinstance(v, list) else v for k, v in kwargs.items()}
    box = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in box.items()}
    pts = torch.zeros(2, 3, 2, dtype=torch.float64, device=device)
    for fn in (lambda: crop_matrix(**box), lambda: image_to_heatmap(pts, **box),
               lambda: heatmap_to_image(pts, **box)):
        with pytest.raises(ValueError, match=match):
            fn()
    ok = dict(box, center=torch.zeros(2, 2, device=device), scale=torch.full((2,), 1e-6, device=device),
              rotation=torch.full((2,), 1e6, device=device), pixel_std=200.0)
    assert crop_matrix(**ok).isfinite().all()  # tiny boxes and big angles are fine
    with pytest.raises(ValueError, match="scale 1e-40 is too small"):  # fine in float64, not in float32
        crop_matrix(torch.zeros(2, 2, device=device), 1e-40)
