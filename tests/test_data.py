"""Data: synthetic determinism and shapes, crops and their inverse, flip permutation, MPII h5 reading, bad input."""
import json
import math

import cv2
import h5py
import numpy as np
import pytest
import torch

from hgfast.data import (MPII, SyntheticPoses, box_to_center_scale, crop, crop_affine, crop_size, render,
                         write_annotations)
from hgfast.data import augment
from hgfast.data.skeleton import JOINT_NAMES, MPII_SKELETON
from hgfast.ops import MPII_FLIP_PERMUTATION, heatmap_to_image


def test_render_is_deterministic_and_shaped():
    a, b = render(3, "train", 7, 96), render(3, "train", 7, 96)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert a["image"].shape == (96, 96, 3) and a["image"].dtype == np.uint8
    assert a["joints"].shape == (16, 2) and a["visible"].shape == (16,)
    assert not np.array_equal(render(4, "train", 7, 96)["image"], a["image"])
    assert not np.array_equal(render(3, "val", 7, 96)["image"], a["image"])
    with pytest.raises(ValueError, match="split"):
        render(0, "test", 0)


def test_render_draws_a_given_pose_in_the_same_scene():
    """``pose`` changes the figure only: the same joints give the same sample, moved joints are drawn where they
    went (the pixels that change lie around the old and new figure), and the background stays."""
    plain = render(1, "val", 2, 96)
    same = render(1, "val", 2, 96, pose=lambda j: j)
    for key in plain:
        np.testing.assert_array_equal(plain[key], same[key])
    moved = render(1, "val", 2, 96, pose=lambda j: j + (9.0, 0.0))
    np.testing.assert_allclose(moved["joints"], plain["joints"] + np.float32([9.0, 0.0]), atol=1e-4)
    changed = np.abs(moved["image"].astype(int) - plain["image"].astype(int)).max(-1) > 40
    rows, cols = np.nonzero(changed)
    lo, hi = plain["joints"].min(0) - 0.12 * plain["normalize"], plain["joints"].max(0) + 0.12 * plain["normalize"]
    assert changed.sum() > 20 and (cols >= lo[0]).all() and (cols <= hi[0] + 9).all()
    assert (rows >= lo[1]).all() and (rows <= hi[1]).all()


def test_synthetic_figures_are_varied_with_occlusion():
    recs = [render(0, "train", i, 128) for i in range(40)]
    vis = np.stack([r["visible"] for r in recs])
    assert 0.5 < vis.mean() < 1.0  # some joints hidden, most visible
    heights = np.array([r["normalize"] for r in recs])
    assert heights.min() < 0.55 * 128 < heights.max()
    # figure faces the camera: right hip on the image left of the left hip for (near-)upright figures
    upright = [r for r in recs if r["joints"][9, 1] < r["joints"][6, 1] - 0.2 * r["normalize"]]
    assert np.mean([r["joints"][2, 0] < r["joints"][3, 0] for r in upright]) > 0.8


def test_dataset_items_and_augmentation_keys():
    ds = SyntheticPoses("train", 10, 64, 32, "newell", seed=1)
    item = ds[3]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.uint8
    assert item["keypoints"].shape == (16, 2) and item["annotated"].sum() == 16
    same = ds[3]
    assert all(torch.equal(item[k], same[k]) for k in item)
    other_epoch = ds[13]  # sample 3 of epoch 1: same figure, new augmentation
    assert torch.equal(other_epoch["joints"], item["joints"]) and other_epoch["index"] == 3
    assert not torch.equal(other_epoch["image"], item["image"])
    with pytest.raises(ValueError, match="augmentation preset"):
        SyntheticPoses("train", 10, augment_preset="nope")


@pytest.mark.parametrize("rotation", [0.0, 35.0])
def test_crop_keypoints_round_trip(rotation):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    joints = rng.uniform(20, 80, (16, 2)).astype(np.float32)
    center, scale = np.array([60.0, 45.0]), 0.4
    _, kp = crop(image, joints, center, scale, rotation, 64)
    f64 = dict(dtype=torch.float64)
    back = heatmap_to_image(torch.from_numpy(kp).double()[None] / 4, torch.from_numpy(center[None]),
                            torch.tensor([scale], **f64), torch.tensor([rotation], **f64), size=(16, 16))
    np.testing.assert_allclose(back[0].numpy(), joints, atol=1e-4)


def test_crop_pixels_follow_the_keypoints():
    image = np.zeros((100, 100, 3), np.uint8)
    image[30, 70] = 255  # a bright pixel at (x=70, y=30)
    out, kp = crop(image, np.array([[70.0, 30.0]]), (50, 50), 0.5, 20.0, 100)
    y, x = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert abs(x - kp[0, 0]) <= 1 and abs(y - kp[0, 1]) <= 1


def test_flip_mirrors_the_crop_and_swaps_joints():
    rec = render(0, "val", 2, 96)
    args = (rec["image"], rec["joints"], rec["center"], float(rec["scale"]), 0.0, 64)
    plain, kp = crop(*args)
    flipped, kp_f = crop(*args, flip=True)
    np.testing.assert_array_equal(flipped, plain[:, ::-1])
    perm = list(MPII_FLIP_PERMUTATION)
    np.testing.assert_allclose(kp_f[:, 0], 63 - kp[perm, 0], atol=1e-4)
    np.testing.assert_allclose(kp_f[:, 1], kp[perm, 1], atol=1e-4)
    names = [JOINT_NAMES[p] for p in perm]
    assert names[0] == "l_ankle" and names[10] == "l_wrist" and names[6] == "pelvis"


def test_flipped_items_permute_keypoints_and_flags_alike():
    perm = (1, 0) + tuple(range(2, 16))  # not MPII's

    class Swapped(SyntheticPoses):
        flip_permutation = perm

    ds = Swapped("train", 40, 64, 32, "newell", seed=1)
    key = next(k for k in range(40) if augment.sample("newell", np.random.default_rng([1, 0, k])).flip)
    aug = augment.sample("newell", np.random.default_rng([1, 0, key]))
    rec = ds.record(key)
    rec["visible"] = np.eye(16, dtype=np.float32)[1]  # only joint 1 visible
    ds.record = lambda index: rec
    item = ds[key]
    assert item["visible"].tolist() == np.eye(16)[0].tolist()
    assert item["flipped"] and not ds[next(k for k in range(40) if k != key and not augment.sample(
        "newell", np.random.default_rng([1, 0, k])).flip)]["flipped"]
    _, kp = crop(rec["image"], rec["joints"], rec["center"], float(rec["scale"]) * aug.scale, aug.rotation, 32,
                 flip=True, flip_permutation=perm)
    np.testing.assert_allclose(item["keypoints"].numpy(), kp)


def test_box_to_center_scale_and_crop_errors():
    c, s = box_to_center_scale((10, 20, 40, 100))
    np.testing.assert_allclose(c, [29.5, 69.5])  # pixel centres at integers: pixels 10..49 and 20..119
    np.testing.assert_allclose(box_to_center_scale((0, 0, 64, 48))[0], [31.5, 23.5])  # the whole image
    assert s == pytest.approx(1.25 * 100 / 200)
    for bad in ((0, 0, 0, 10), (np.nan, 0, 10, 10), (0, 0, np.inf, 10), (0, 0, 10, 10, 0.9), (0, 0, 10), 10,
                ("a", 0, 10, 10)):
        with pytest.raises(ValueError, match="box must be 4 finite numbers"):
            box_to_center_scale(bad)
    for margin in (0, -1, np.inf, np.nan, 1e300, 1e-300):
        with pytest.raises(ValueError, match="margin must be a number from 0.01 to 100"):
            box_to_center_scale((0, 0, 10, 10), margin)
    for joints in (np.zeros(3), np.zeros((4, 3))):
        with pytest.raises(ValueError, match=r"joints must be \(K, 2\)"):
            crop(np.zeros((8, 8, 3), np.uint8), joints, (4, 4), 1.0)
    with pytest.raises(ValueError, match="scale"):
        crop(np.zeros((8, 8, 3), np.uint8), np.zeros((1, 2)), (4, 4), 0.0)
    assert crop_affine((0, 0), 1.0, 0.0, 200).shape == (2, 3)


def test_non_square_crops_keep_the_aspect_and_follow_the_keypoints():
    image = np.zeros((120, 160, 3), np.uint8)
    image[30, 70] = 255  # a bright pixel at (x=70, y=30)
    out, kp = crop(image, np.array([[70.0, 30.0], [50 - 0.5 * 37.5, 50.0]]), (50, 50), 0.5, 0.0, (64, 48))
    assert out.shape == (64, 48, 3)
    y, x = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert abs(x - kp[0, 0]) <= 1 and abs(y - kp[0, 1]) <= 1
    np.testing.assert_allclose(kp[1], [12.0, 32.0], atol=1e-5)  # 64 / 100 px per image px on both axes
    rotated, kp_r = crop(image, np.array([[70.0, 30.0]]), (50, 50), 0.5, 30.0, (64, 48))
    y, x = np.unravel_index(rotated[..., 0].argmax(), rotated.shape[:2])
    assert abs(x - kp_r[0, 0]) <= 1 and abs(y - kp_r[0, 1]) <= 1
    flipped, kp_f = crop(image, np.array([[70.0, 30.0]]), (50, 50), 0.5, 0.0, (64, 48), flip=True,
                         flip_permutation=(0,))
    np.testing.assert_array_equal(flipped, out[:, ::-1])
    np.testing.assert_allclose(kp_f[0], [47 - kp[0, 0], kp[0, 1]], atol=1e-5)  # x ↦ W − 1 − x


def test_box_to_center_scale_widens_or_heightens_the_box_to_the_aspect():
    assert box_to_center_scale((0, 0, 60, 100), 1.0, 0.75)[1] == pytest.approx(100 / 200)  # narrower: height
    assert box_to_center_scale((0, 0, 90, 100), 1.0, 0.75)[1] == pytest.approx(120 / 200)  # wider: w / aspect
    assert box_to_center_scale((0, 0, 90, 100), 1.25, 1.0)[1] == pytest.approx(1.25 * 100 / 200)  # square
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="aspect"):
            box_to_center_scale((0, 0, 90, 100), 1.25, bad)


@pytest.mark.parametrize("value,expected", [(64, (64, 64)), ((64, 32), (64, 32)), ([128, 64], (128, 64)),
                                            (np.int64(32), (32, 32))])
def test_crop_size_takes_a_side_or_height_and_width(value, expected):
    assert crop_size(value, multiple=32) == expected


@pytest.mark.parametrize("value", [0, -64, 48, (64,), (64, 48), (64, 64, 3), "64", 64.0, True, (64.0, 64)])
def test_crop_size_refuses_by_name(value):
    with pytest.raises(ValueError, match="input_size must be S or \\(height, width\\), positive multiples of 32"):
        crop_size(value, multiple=32)


def test_datasets_cut_non_square_crops():
    ds = SyntheticPoses("val", 4, 96, (64, 32), "mmpose", seed=2)
    assert ds.input_size == (64, 32) and ds.aspect == 0.5
    assert all(ds[key]["image"].shape == (3, 64, 32) for key in range(4))  # half-body crops among them
    draws = [augment.sample("mmpose", np.random.default_rng([2, 0, k])) for k in range(4)]
    half = next(k for k, a in enumerate(draws) if a.half_body)
    rec, aug = ds.record(half), draws[half]
    w, h = augment.half_body_box(rec["joints"], rec["annotated"] > 0, ds.skeleton.lower_body, aug.upper_body)[1]
    assert ds[half]["scale"].item() == pytest.approx(max(h, w / 0.5) / 200 * aug.scale, rel=1e-6)
    shifted = next(k for k in range(200) if (lambda a: a.shift != (0, 0) and not a.half_body)(
        augment.sample("mmpose", np.random.default_rng([2, 0, k]))))
    big = SyntheticPoses("val", 200, 96, (64, 32), "mmpose", seed=2)
    rec, aug = big.record(shifted), augment.sample("mmpose", np.random.default_rng([2, 0, shifted]))
    box = 200 * float(rec["scale"]) * np.array([0.5, 1.0])  # no box size: the crop's own width and height
    np.testing.assert_allclose(big[shifted]["center"].numpy(), rec["center"] + np.asarray(aug.shift) * box,
                               rtol=1e-5)
    plain = SyntheticPoses("val", 4, 96, (64, 32))
    item, rec = plain[1], plain.record(1)
    _, kp = crop(rec["image"], rec["joints"], rec["center"], float(rec["scale"]), 0.0, (64, 32))
    np.testing.assert_allclose(item["keypoints"].numpy(), kp, atol=1e-5)


def test_unknown_augment_preset():
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        augment.sample("lua", np.random.default_rng(0))
    assert augment.sample("none", np.random.default_rng(0)) == augment.AugmentParams()


def _clipped_normal_std(c: float) -> float:
    """The standard deviation of a standard normal clipped (not truncated) to ±c."""
    phi, tail = math.exp(-c * c / 2) / math.sqrt(2 * math.pi), 0.5 * math.erfc(c / math.sqrt(2))
    return math.sqrt(1 - 2 * tail - 2 * c * phi + 2 * c * c * tail)


@pytest.mark.parametrize("preset,scale_of,scale_sd,clip,rotate_p,gains", [
    ("newell", np.log2, 0.25, 2.0, 0.4, (0.6, 1.4)),   # 2^clip(0.25 N, ±0.5): log2 is 0.25 N clipped at ±2 sd
    ("bearpaw", lambda s: s - 1, 0.25, 1.0, 0.6, (0.8, 1.2)),  # clip(N(1, 0.25), 0.75, 1.25): ±1 sd
])
def test_newell_and_bearpaw_draw_their_distributions(preset, scale_of, scale_sd, clip, rotate_p, gains):
    draws = [augment.sample(preset, np.random.default_rng([7, k])) for k in range(4000)]
    scale = scale_of(np.array([d.scale for d in draws]))
    assert np.abs(scale).max() <= scale_sd * clip + 1e-12 and abs(scale.mean()) < 0.01
    assert abs(scale.std() / (scale_sd * _clipped_normal_std(clip)) - 1) < 0.05
    clipped = np.isclose(np.abs(scale), scale_sd * clip).mean()  # the share drawn beyond the clip
    assert abs(clipped - math.erfc(clip / math.sqrt(2))) < 0.02
    rotated = np.array([d.rotation for d in draws if d.rotation != 0])
    assert abs(len(rotated) / len(draws) - rotate_p) < 0.03 and np.abs(rotated).max() <= 60
    assert abs(rotated.std() / (30 * _clipped_normal_std(2.0)) - 1) < 0.06  # clip(N(0, 30), ±60)
    colour = np.array([d.colour for d in draws])
    lo, hi = gains
    assert lo <= colour.min() and colour.max() <= hi and np.abs(colour.mean(0) - 1).max() < 0.01
    assert np.abs(colour.std(0) / ((hi - lo) / math.sqrt(12)) - 1).max() < 0.05  # uniform, each channel its own
    assert abs(np.corrcoef(colour.T)[0, 1]) < 0.05
    assert abs(np.mean([d.flip for d in draws]) - 0.5) < 0.03
    assert all(d.shift == (0.0, 0.0) and not d.half_body for d in draws)


def test_apply_colour_scales_each_channel_and_clips():
    image = np.array([[[100, 100, 100], [200, 10, 0]]], np.uint8)
    np.testing.assert_array_equal(augment.apply_colour(image, (0.5, 1.0, 2.6)), [[[50, 100, 255], [100, 10, 0]]])
    assert augment.apply_colour(image, (1.0, 1.0, 1.0)) is image


def test_dataset_items_carry_their_colour_gains(monkeypatch):
    """An item's pixels are the crop times the drawn gains: the same item drawn with gains 1 and with others."""
    ds = SyntheticPoses("train", 8, 64, 32, "bearpaw", seed=3)
    draw = augment.sample("bearpaw", np.random.default_rng([3, 0, 5]))
    assert draw.colour != (1.0, 1.0, 1.0)
    plain = augment.AugmentParams(draw.scale, draw.rotation, draw.flip)
    monkeypatch.setattr(augment, "sample", lambda preset, rng: plain)
    uncoloured = ds[5]["image"].permute(1, 2, 0).numpy()
    monkeypatch.setattr(augment, "sample", lambda preset, rng: draw)
    coloured = ds[5]["image"].permute(1, 2, 0).numpy()
    want = np.clip(uncoloured.astype(np.float32) * np.asarray(draw.colour, np.float32), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(coloured, want)


def _write_mpii(tmp_path, n=3):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    part = rng.uniform(40, 120, (n, 16, 2))
    part[0, 6] = 0  # pelvis of sample 0 not annotated
    names = []
    for i in range(n):
        names.append(f"{i:05d}.jpg".encode())
        cv2.imwrite(str(images / names[-1].decode()), rng.integers(0, 255, (160, 180, 3), dtype=np.uint8))
    path = tmp_path / "valid.h5"
    write_annotations(path, [s.decode() for s in names], np.tile([80.0, 80.0], (n, 1)), np.full(n, 0.6), part,
                      np.ones((n, 16)), np.full(n, 12.0))
    return path, images, part


def test_mpii_reads_h5_and_images(tmp_path):
    path, images, part = _write_mpii(tmp_path)
    ds = MPII(path, images, input_size=64)
    assert len(ds) == 3
    item = ds[0]
    assert item["image"].shape == (3, 64, 64)
    annotated = np.ones(16, bool)
    annotated[6] = False
    # MATLAB's 1-based coordinates become 0-based; an unannotated joint stays (0, 0)
    np.testing.assert_allclose(item["joints"].numpy()[annotated], part[0][annotated] - 1, atol=1e-4)
    assert (item["joints"][6] == 0).all()
    assert item["annotated"][6] == 0 and item["annotated"].sum() == 15
    assert item["normalize"] == 12.0 and item["scale"] == pytest.approx(0.6)
    m = crop_affine((79, 79), 0.6, 0.0, 64)
    np.testing.assert_allclose(item["keypoints"].numpy()[annotated], (part[0] - 1)[annotated] @ m[:, :2].T + m[:, 2],
                               atol=1e-3)
    as_is = MPII(path, images, input_size=64, one_based=False)[0]
    np.testing.assert_allclose(as_is["joints"].numpy(), part[0], atol=1e-4)
    np.testing.assert_allclose(as_is["center"].numpy(), [80, 80])


def test_mpii_one_based_joint_lands_on_its_pixel(tmp_path):
    """A joint annotated at MATLAB (51, 61) is image pixel column 50, row 60: the crop puts the keypoint on it."""
    path, images, _ = _write_mpii(tmp_path, n=1)
    image = np.zeros((160, 180, 3), np.uint8)
    image[60, 50] = 255
    cv2.imwrite(str(images / "00000.png"), image)
    with h5py.File(path, "a") as f:
        f["imgname"][0] = b"00000.png"
        f["part"][0] = np.zeros((16, 2))
        f["part"][0, 9] = [51.0, 61.0]
        f["center"][0] = [51.0, 61.0]
        f["scale"][0] = 64 / 200  # 1:1 crop, 64 px wide
    item = MPII(path, images, input_size=64)[0]
    bright = np.unravel_index(item["image"][0].numpy().argmax(), (64, 64))
    np.testing.assert_allclose(item["keypoints"][9].numpy(), [bright[1], bright[0]], atol=1e-4)


def test_mpii_bad_inputs(tmp_path):
    path, images, _ = _write_mpii(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        MPII(tmp_path / "nope.h5", images)
    with pytest.raises(FileNotFoundError, match="image folder"):
        MPII(path, tmp_path / "missing")
    with pytest.raises(ValueError, match="image_dir"):
        MPII(path, "")
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"not an hdf5 file" * 10)
    with pytest.raises(ValueError, match="corrupt.h5"):
        MPII(bad, images)
    partial = tmp_path / "partial.h5"
    with h5py.File(partial, "w") as f:
        f["imgname"] = np.array([b"x.jpg"])
    with pytest.raises(ValueError, match="center"):
        MPII(partial, images)
    (images / "00001.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    ds = MPII(path, images, input_size=64)
    with pytest.raises(ValueError, match="00001.jpg"):
        ds[1]
    (images / "00002.jpg").unlink()  # found missing before training starts, not at its batch
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) of .*valid.h5 not found in .*00002.jpg"):
        MPII(path, images)


def test_h5_with_another_skeleton_trains_and_evaluates(tmp_path):
    """An MPII-style h5 with 5 named joints: the names give the skeleton (flip pairs, PCK columns, limbs), the
    model predicts 5 joints, and the table averages all of them; without names, K != 16 has no known flip."""
    from hgfast.data import Skeleton, build_dataset, read_annotations
    from hgfast.eval import evaluate
    from hgfast.models import StackedHourglass
    from hgfast.train.config import resolve
    from hgfast.train.loop import train

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    n, names = 4, ("head", "left_hand", "right_hand", "left_foot", "right_foot")
    for i in range(n):
        cv2.imwrite(str(images / f"{i}.jpg"), rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    part = rng.uniform(20, 70, (n, 5, 2))
    args = ([f"{i}.jpg" for i in range(n)], np.tile([48.0, 48.0], (n, 1)), np.full(n, 0.4), part, np.ones((n, 5)),
            np.full(n, 30.0))
    path = tmp_path / "five.h5"
    write_annotations(path, *args, names=names, edges=[(0, 1), (0, 2), (3, 4)])
    assert list(read_annotations(path)["joint_names"]) == list(names)
    ds = MPII(path, images, input_size=32)
    assert ds.skeleton.names == names and ds.skeleton.flip_permutation == (0, 2, 1, 4, 3)
    assert ds.skeleton.limbs == ((0, 1, "l"), (0, 2, "r"), (3, 4, "c")) and list(ds.skeleton.groups) == ["head",
                                                                                                          "hand", "foot"]
    assert MPII(path, images, flip_pairs=[(1, 2)]).skeleton.flip_permutation == (0, 2, 1, 3, 4)
    table, _ = evaluate(StackedHourglass(nstack=1, nfeat=16, njoints=5, depth=2), ds, (0.5,))
    assert table["mean_joints"] == list(names) and list(table["pck"]["0.5"]["per_group"]) == ["head", "hand", "foot"]
    unnamed = tmp_path / "unnamed.h5"
    write_annotations(unnamed, *args)
    assert MPII(unnamed, images).skeleton == Skeleton.for_joints(5)  # flip unknown: flip augmentation refuses
    with pytest.raises(ValueError, match="no flip permutation"):
        MPII(unnamed, images, input_size=32, augment_preset="bearpaw")[next(
            e * n for e in range(50) if augment.sample("bearpaw", np.random.default_rng([0, e, 0])).flip)]
    assert MPII(unnamed, images, flip_pairs=[(1, 2)]).skeleton.names[1] == "joint_1"
    (tmp_path / "m").mkdir()
    sixteen = MPII(_write_mpii(tmp_path / "m")[0], tmp_path / "m" / "images", flip_pairs=[(0, 5)]).skeleton
    assert sixteen.flip_permutation[:6] == (5, 1, 2, 3, 4, 0) and sixteen.groups == MPII_SKELETON.groups
    mpii = MPII(tmp_path / "m" / "valid.h5", tmp_path / "m" / "images", input_size=32, flip_pairs=[(0, 5)])
    table, _ = evaluate(StackedHourglass(nstack=1, nfeat=16, depth=2), mpii, (0.5,))
    assert len(table["mean_joints"]) == 14  # MPII's joints: the Tompson mean, whatever the flip pairs
    with pytest.raises(ValueError, match="names must be a sequence of 5"):
        write_annotations(path, *args, names=names[:4])
    with pytest.raises(ValueError, match="names must be a sequence"):
        write_annotations(path, *args, names="abcde")
    with pytest.raises(ValueError, match="write_annotations: skeleton names must be .* distinct"):
        write_annotations(path, *args, names=("a", "a", "b", "c", "d"))
    with pytest.raises(ValueError, match="edges need names"):
        write_annotations(path, *args, edges=[(0, 1)])
    with h5py.File(unnamed, "a") as f:
        f.attrs["limbs"] = np.arange(5)
    with pytest.raises(ValueError, match="unnamed.h5: attribute 'limbs'"):
        MPII(unnamed, images)
    with pytest.raises(ValueError, match="field 'visible' has shape"):
        write_annotations(path, *args[:4], np.ones((n, 4)), args[5])
    # a test split: no labels (all or none), with MPII's annolist / annorect numbers
    write_annotations(unnamed, *args[:3], names=names, index=[3, 1, 2, 0], person=np.zeros(n))
    with h5py.File(unnamed) as f:
        assert sorted(f) == ["center", "imgname", "index", "person", "scale"] and f["index"].dtype == np.int64
    ann = read_annotations(unnamed)
    assert ann["part"].shape == (n, 5, 2) and not ann["part"].any() and list(ann["joint_names"]) == list(names)
    with pytest.raises(ValueError, match=r"labels \['part', 'visible', 'normalize'\] go all or none; got only "
                                         r"\['part'\]"):
        write_annotations(path, *args[:4])
    for bad in ([0, 1, 2], [0, 1, 2, -1], [0, 1.5, 2, 3], [True] * 4):
        with pytest.raises(ValueError, match=f"index must be {n} whole numbers >= 0"):
            write_annotations(path, *args, index=bad)
    sets = ["data.dataset=mpii", f"data.train_annotations={path}", f"data.val_annotations={path}",
            f"data.image_dir={images}", "data.flip_pairs=[[1, 2], [3, 4]]", "model.nstack=1", "model.nfeat=16",
            "model.depth=2", "data.input_size=32", "data.workers=0", "batch_size=2", "steps=2", "val_every=2",
            "threads=1"]
    cfg = resolve(overrides=sets, workdir=str(tmp_path / "run"))
    assert build_dataset(cfg.data, "train").skeleton.flip_permutation == (0, 2, 1, 4, 3)
    train(cfg)
    assert StackedHourglass.from_checkpoint(tmp_path / "run" / "best.safetensors").njoints == 5
    assert Skeleton.from_checkpoint(tmp_path / "run" / "best.safetensors").names == names


def test_mmpose_augmentation_draws_its_distributions_and_shifts_the_crop():
    rng = np.random.default_rng(0)
    draws = [augment.sample("mmpose", rng) for _ in range(4000)]
    scales = np.array([d.scale for d in draws])
    rotations = np.array([d.rotation for d in draws])
    shifts = np.array([d.shift for d in draws])
    t_std = 0.5376  # the standard deviation of a standard normal truncated to ±1
    assert 0.5 <= scales.min() and scales.max() <= 1.5 and abs(scales.mean() - 1) < 0.02
    assert abs(scales.std() - 0.5 * t_std) < 0.01
    rotated = rotations[rotations != 0]
    assert 0.57 < len(rotated) / len(draws) < 0.63 and np.abs(rotated).max() <= 80
    assert abs(rotated.std() - 80 * t_std) < 2.0  # mmpose 1.x: 80 T(1) degrees
    shifted = shifts[shifts.any(1)]
    assert 0.27 < len(shifted) / len(draws) < 0.33 and np.abs(shifted).max() <= 0.16
    assert abs(shifted.std() - 0.16 * t_std) < 0.005
    assert 0.47 < np.mean([d.flip for d in draws]) < 0.53 and all(d.colour == (1.0, 1.0, 1.0) for d in draws)
    assert 0.28 < np.mean([d.half_body for d in draws]) < 0.32 and 0.67 < np.mean([d.upper_body for d in draws]) < 0.73


def test_mmpose_shift_is_relative_to_the_box_width_and_height(tmp_path):
    """mmpose shifts by a fraction of the padded box's own width and height (before it takes the crop's aspect): a
    tall COCO box moves less sideways than up and down. MPII-style records (no box size) shift by the crop's
    width and height (its side, for square crops)."""
    from test_coco import _write_coco

    from hgfast.data import COCOKeypoints

    path, images, *_ = _write_coco(tmp_path, n=2)
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"] = [20.0, 5.0, 20.0, 80.0]
    path.write_text(json.dumps(data))
    ds = COCOKeypoints(path, images, input_size=32, augment_preset="mmpose", seed=5)
    key = next(e for e in range(200) if (lambda a: a.shift != (0, 0) and not a.half_body)(
        augment.sample("mmpose", np.random.default_rng([5, e, 0]))))
    aug, rec = augment.sample("mmpose", np.random.default_rng([5, key, 0])), ds.record(0)
    item = ds[key * len(ds)]  # sample 0 in epoch key
    np.testing.assert_allclose(item["center"].numpy(), rec["center"] + np.asarray(aug.shift) * [25.0, 100.0],
                               rtol=1e-6)
    assert item["scale"].item() == pytest.approx(100 / 200 * aug.scale, rel=1e-6)
    mpii = SyntheticPoses("train", 40, 64, 32, "mmpose", seed=3)
    key = next(k for k in range(40) if (lambda a: a.shift != (0, 0) and not a.half_body)(
        augment.sample("mmpose", np.random.default_rng([3, 0, k]))))
    aug, rec, item = augment.sample("mmpose", np.random.default_rng([3, 0, key])), mpii.record(key), mpii[key]
    center = rec["center"] + 200 * float(rec["scale"]) * np.asarray(aug.shift)
    np.testing.assert_allclose(item["center"].numpy(), center, rtol=1e-5)
    _, kp = crop(rec["image"], rec["joints"], center, float(rec["scale"]) * aug.scale, aug.rotation, 32,
                 flip=aug.flip)
    np.testing.assert_allclose(item["keypoints"].numpy(), kp, atol=1e-4)


def test_half_body_box_crops_one_half_as_mmpose():
    joints = np.array([[10.0, 10], [20, 12], [14, 30], [12, 60], [18, 80], [16, 100]])
    lower = np.array([False, False, False, True, True, True])
    labelled = np.ones(6, bool)
    center, size = augment.half_body_box(joints, labelled, lower, True, min_total=4)
    np.testing.assert_allclose(center, joints[:3].mean(0))
    np.testing.assert_allclose(size, [1.5 * 10, 1.5 * 20])  # the upper joints' extent, padded
    center, size = augment.half_body_box(joints, labelled, lower, False, min_total=4)
    np.testing.assert_allclose(center, joints[3:].mean(0))
    np.testing.assert_allclose(size, [1.5 * 6, 1.5 * 40])
    two_low = labelled & ~np.array([False, False, False, False, False, True])
    np.testing.assert_allclose(augment.half_body_box(joints, two_low, lower, False, min_total=4)[0],
                               joints[:3].mean(0))  # the lower half needs 3: the upper, whichever was drawn
    one_up = labelled & ~np.array([True, True, False, False, False, False])
    np.testing.assert_allclose(augment.half_body_box(joints, one_up, lower, True, min_total=4)[0],
                               joints[3:].mean(0))  # the upper half needs 2
    assert augment.half_body_box(joints, labelled, lower, True) is None  # fewer than 9 labelled
    assert augment.half_body_box(np.zeros((6, 2)), labelled, lower, True, min_total=4) is None  # coincide
    ds = SyntheticPoses("train", 60, 64, 32, "mmpose", seed=4)
    key = next(k for k in range(60) if augment.sample("mmpose", np.random.default_rng([4, 0, k])).half_body
               and ds.record(k)["annotated"].sum() >= 9)
    aug, rec = augment.sample("mmpose", np.random.default_rng([4, 0, key])), ds.record(key)
    center, size = augment.half_body_box(rec["joints"], rec["annotated"] > 0, ds.skeleton.lower_body,
                                         aug.upper_body)
    item = ds[key]
    np.testing.assert_allclose(item["center"].numpy(), center + np.asarray(aug.shift) * size, rtol=1e-5)
    assert item["scale"].item() == pytest.approx(size.max() / 200 * aug.scale, rel=1e-5)


def test_read_image_refuses_truncated_files_and_reads_whole_ones(tmp_path):
    """A cut-off JPEG is an error naming the file (cv2.imread fills it with grey and warns on stderr only);
    progressive JPEGs, bytes after the end marker, grayscale and RGBA PNGs read as (H, W, 3) RGB."""
    from hgfast.data import read_image

    rng = np.random.default_rng(0)
    picture = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
    files = {}
    for name, ext, flags in (("plain", ".jpg", []), ("progressive", ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                             ("lossless", ".png", [])):
        data = cv2.imencode(ext, picture[..., ::-1], flags)[1].tobytes()
        files[name + ext] = data
        files[name + "_cut" + ext] = data[:len(data) // 3]
        files[name + "_no_end" + ext] = data[:-2]
    files["trailing.jpg"] = files["plain.jpg"] + b"\x00" * 16 + b"camera maker notes"
    # a phone's Motion Photo: a video after the end marker, whose bytes hold start-of-scan markers (ff da)
    files["motion.jpg"] = files["progressive.jpg"] + b"ftypmp42" + rng.integers(0, 256, 65536, np.uint8).tobytes() \
        + b"\xff\xda\x00\x08"
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    for name, whole in (("plain.jpg", "plain.jpg"), ("progressive.jpg", "progressive.jpg"),
                        ("trailing.jpg", "plain.jpg"), ("motion.jpg", "progressive.jpg")):
        want = cv2.imdecode(np.frombuffer(files[whole], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        np.testing.assert_array_equal(read_image(tmp_path / name), want)
    np.testing.assert_array_equal(read_image(tmp_path / "lossless.png"), picture)
    for name in [n for n in files if "_cut" in n or ("_no_end" in n and n.endswith(".jpg"))]:
        with pytest.raises(ValueError, match=name):
            read_image(tmp_path / name)
    cv2.imwrite(str(tmp_path / "gray.png"), picture[..., 0])
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([picture[..., ::-1], np.full((40, 60), 7, np.uint8)]))
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), np.repeat(picture[..., :1], 3, axis=2))
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), picture)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg"):
        read_image(tmp_path / "empty.jpg")


def test_h5_annotations_with_non_finite_numbers_or_zero_scale_are_refused(tmp_path):
    """A NaN joint would count as annotated (it is not (0, 0)) and stop training at its batch or miss silently in
    PCKh: refused when written and when read, naming the field and the sample."""
    from hgfast.data import read_annotations, write_annotations

    path, images, part = _write_mpii(tmp_path)
    args = (["00000.jpg", "00001.jpg"], np.tile([80.0, 80.0], (2, 1)), np.full(2, 0.6), part[:2], np.ones((2, 16)),
            np.full(2, 12.0))
    bad_part = part[:2].copy()
    bad_part[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"write_annotations: field 'part' must be finite, .*; sample 1 \(00001.jpg\)"):
        write_annotations(tmp_path / "w.h5", *args[:3], bad_part, *args[4:])
    with pytest.raises(ValueError, match=r"field 'scale' must be finite and > 0: .*; sample 0"):
        write_annotations(tmp_path / "w.h5", *args[:2], np.array([0.0, 0.6]), *args[3:])
    assert not (tmp_path / "w.h5").exists()
    for field, value in (("part", np.inf), ("center", np.nan), ("normalize", np.nan), ("scale", -1.0),
                         ("part", 1e20), ("scale", 1e-300)):  # (a crop of 1e-298 pixels: an infinite zoom)
        broken = tmp_path / f"{field}.h5"
        with h5py.File(path, "r") as src, h5py.File(broken, "w") as f:
            for key in src:
                data = src[key][()]
                if key == field:
                    data = data.astype(np.float64)
                    data.reshape(len(data), -1)[2, 0] = value
                f[key] = data
        with pytest.raises(ValueError, match=rf"{field}.h5: field '{field}' must be finite.*sample 2 \(00002.jpg\)"):
            read_annotations(broken)
        with pytest.raises(ValueError, match=f"{field}.h5"):
            MPII(broken, images)


def test_h5_fields_of_the_wrong_kind_are_refused_by_name(tmp_path):
    """Fields that are not arrays of their kind (text for imgname, real numbers for the rest) or cannot be read,
    names that are not UTF-8, visibility other than 0/1, a PCK normaliser of 0 or no samples: a ValueError naming the
    file and field."""
    from hgfast.data import read_annotations, write_annotations

    path, images, part = _write_mpii(tmp_path)

    def variant(key, data):
        broken = tmp_path / "broken.h5"
        with h5py.File(path, "r") as src, h5py.File(broken, "w") as f:
            for name in src:
                if name != key:
                    f[name] = src[name][()]
            if isinstance(data, dict):
                f.create_group(key)
            else:
                f[key] = data
        return broken

    cases = [("part", np.full((3, 16, 2), b"12.5"), "field 'part' must be an array of real numbers, got |S4"),
             ("part", part.astype(np.complex128), "field 'part' must be an array of real numbers, got complex128"),
             ("imgname", np.bytes_(b"00000.jpg"), r"'imgname' must be an array of image names, got \|S9 of shape \(\)"),
             ("imgname", np.arange(3), "field 'imgname' must be an array of image names, got int64"),
             ("center", {}, "field 'center' must be an array of real numbers, got a group"),
             ("imgname", np.array([b"00000.jpg", b"\xff\xfe.jpg", b"00002.jpg"]), "imgname of sample 1 is not UTF-8"),
             ("visible", np.full((3, 16), 5.0), r"field 'visible' must be 0 or 1 .*; sample 0 \(00000.jpg\)"),
             ("normalize", np.array([12.0, -1.0, 12.0]), r"field 'normalize' must be finite and >= 0 .*; sample 1")]
    for key, data, match in cases:
        with pytest.raises(ValueError, match=match):
            read_annotations(variant(key, data))
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        for key, shape in (("imgname", (0,)), ("center", (0, 2)), ("scale", (0,)), ("part", (0, 16, 2)),
                           ("visible", (0, 16)), ("normalize", (0,))):
            f[key] = np.zeros(shape, "S4" if key == "imgname" else np.float64)
    with pytest.raises(ValueError, match="empty.h5 has no samples"):
        read_annotations(empty)
    with h5py.File(variant("scale", np.full(3, 0.6)), "a") as f:
        del f["scale"]
        f["scale"] = h5py.SoftLink("/nowhere")
    with pytest.raises(ValueError, match="field 'scale' cannot be read"):
        read_annotations(tmp_path / "broken.h5")
    with h5py.File(variant("scale", np.full(3, 0.6)), "a") as f:
        f.attrs["joint_names"] = np.array([b"\xff"] * 16)
    with pytest.raises(ValueError, match="attribute 'joint_names', entry 0 is not UTF-8"):
        read_annotations(tmp_path / "broken.h5")
    with pytest.raises(ValueError, match="write_annotations: no samples"):
        write_annotations(tmp_path / "none.h5", [], np.zeros((0, 2)), np.zeros(0), np.zeros((0, 16, 2)),
                          np.zeros((0, 16)), np.zeros(0))
    with pytest.raises(ValueError, match="MPII: image_dir must be the folder .*, got None"):
        MPII(path, None)
    ann = read_annotations(variant("visible", np.ones((3, 16), np.int8)))  # integers and bool read as float64
    assert read_annotations(variant("visible", np.full((3, 16), -1.0)))["visible"].min() == -1  # "unknown": 0
    assert read_annotations(variant("normalize", np.array([12.0, 0.0, 12.0])))["normalize"][1] == 0  # no head box
    assert ann["visible"].dtype == np.float64 and ann["imgname"][0] == "00000.jpg"


def test_the_lua_trainers_full_annot_h5_is_refused(tmp_path):
    """pose-hg-train's annot.h5 (fields istrain, multi) holds raw centres and scales that its loader adjusts in
    code: read as an adjusted train.h5 its crops would be 20 % too tight and 15·s too high, so it is refused."""
    from hgfast.data import read_annotations

    path, images, _ = _write_mpii(tmp_path)
    with h5py.File(path, "a") as f:
        f["istrain"] = np.ones(len(f["scale"]))
    with pytest.raises(ValueError, match=r"\['istrain'\]: it is pose-hg-train's full annot.h5"):
        read_annotations(path)
    with pytest.raises(ValueError, match="annot/valid.h5"):
        MPII(path, images)
