"""Skeletons from joint names, COCO-format keypoint files (read, write, bad input) and a custom skeleton end to end:
train, checkpoint with its skeleton, eval table with its groups, predict with flip test."""
import csv
import dataclasses
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hgfast.checkpoint import read_metadata
from hgfast.cli import main
from hgfast.data import (JOINT_NAMES, LIMBS, MPII_SKELETON, PCKH_JOINTS, COCOKeypoints, Skeleton, box_to_center_scale,
                         crop_affine, read_coco, render, write_coco)
from hgfast.data.coco_format import keypoint_box
from hgfast.eval import format_table, pck_table
from hgfast.models import StackedHourglass
from hgfast.ops import MPII_FLIP_PERMUTATION

COCO_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
              "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
              "right_knee", "left_ankle", "right_ankle")


def _csv_rows(path) -> list[dict]:
    """The rows of a run's metrics.csv (read whole: no file left open)."""
    return list(csv.DictReader(Path(path).read_text().splitlines()))


def test_skeleton_from_names_finds_mpii_and_coco_pairs():
    mpii = Skeleton.from_names(JOINT_NAMES, [(a, b) for a, b, _ in LIMBS])
    assert mpii.flip_permutation == MPII_FLIP_PERMUTATION and mpii.limbs == LIMBS
    coco = Skeleton.from_names(COCO_NAMES, [(15, 13), (5, 6), (0, 1), (5, 11)])
    assert coco.flip_permutation == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    assert [side for *_, side in coco.limbs] == ["l", "c", "l", "l"]  # left-right limbs are centre ones
    assert list(coco.groups) == ["nose", "eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle"]
    assert coco.groups["knee"] == (13, 14)
    styles = ["Tail", "LeftPaw", "rightPaw", "Left Ear", "r_ear", "LShoulder", "RShoulder"]
    assert Skeleton.from_names(styles).flip_permutation == (0, 2, 1, 4, 3, 6, 5)  # camel case, spaces, l_/r_ mixed
    custom = Skeleton.from_names(styles, flip_pairs=[(1, 2)])
    assert custom.flip_permutation == (0, 2, 1, 3, 4, 5, 6)  # given pairs replace the ones found in the names
    assert Skeleton.from_names(styles, flip_pairs=[]).flip_permutation == tuple(range(7))
    with pytest.warns(UserWarning, match=r"\['left_eye'\] name a side"):
        assert Skeleton.from_names(["nose", "left_eye"]).flip_permutation == (0, 1)
    assert Skeleton.from_dict(json.loads(json.dumps(coco.to_dict()))) == coco
    assert hash(Skeleton(["a", "b"], [1, 0])) == hash(Skeleton(("a", "b"), (1, 0)))  # types normalised
    assert Skeleton.for_joints(16) == MPII_SKELETON and Skeleton.for_joints(5).flip_permutation is None


def test_skeleton_refuses_inconsistent_descriptions():
    with pytest.raises(ValueError, match="distinct"):
        Skeleton(("a", "a"))
    with pytest.raises(ValueError, match="involution"):
        Skeleton(("a", "b", "c"), (1, 2, 0))
    with pytest.raises(ValueError, match="limb"):
        Skeleton(("a", "b"), limbs=((0, 2, "c"),))
    with pytest.raises(ValueError, match="flip_pairs"):
        Skeleton.from_names(["a", "b", "c"], flip_pairs=[(0, 1), (1, 2)])
    for bad in ([(0, 1, 2)], [(1, 1)]):
        with pytest.raises(ValueError, match="two different joints"):
            Skeleton.from_names(["a", "b", "c"], flip_pairs=bad)
    with pytest.raises(ValueError, match="'left_ear' and 'Left Ear' read the same"):
        Skeleton.from_names(["left_ear", "Left Ear"])
    with pytest.raises(ValueError, match="edge"):
        Skeleton.from_names(["a", "b"], edges=[(0, 5)])
    for bad in ({"flip_permutation": [0]}, ["a"], {"names": ["a"], "limbs": [[0]]}):
        with pytest.raises(ValueError, match="skeleton"):
            Skeleton.from_dict(bad)


def _write_coco(tmp_path, n=3, size=(90, 120)):
    """n people on n images (one has its image twice, for two people); returns the path and the arrays written."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    files = [f"img{i % 2}.png" for i in range(n)]
    for f in set(files):
        cv2.imwrite(str(images / f), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    kp = rng.uniform(20, 80, (n, 17, 2))
    annotated = np.ones((n, 17), bool)
    annotated[0, 3] = False
    visible = annotated.copy()
    visible[1, 5] = False
    boxes = np.array([[10.0, 15, 60, 70]] * n)
    path = tmp_path / "ann.json"
    write_coco(path, files, kp, annotated, visible, COCO_NAMES, [(15, 13), (13, 11)], boxes)
    return path, images, kp, annotated, visible


def test_coco_round_trip_and_samples(tmp_path):
    path, images, kp, annotated, visible = _write_coco(tmp_path)
    data = json.loads(path.read_text())
    assert len(data["images"]) == 2 and data["categories"][0]["skeleton"] == [[16, 14], [14, 12]]
    assert data["annotations"][0]["keypoints"][9:12] == [0.0, 0.0, 0]  # not annotated: (0, 0, v=0)
    assert data["annotations"][1]["keypoints"][17] == 1  # annotated, not visible: v=1
    ann = read_coco(path)
    assert ann["names"] == list(COCO_NAMES) and ann["edges"] == [(15, 13), (13, 11)]
    np.testing.assert_allclose(ann["keypoints"][annotated][:, :2], kp[annotated])
    ds = COCOKeypoints(path, images, input_size=32)
    assert len(ds) == 3 and ds.skeleton.flip_permutation[1] == 2
    rec = ds.record(1)
    assert rec["visible"][5] == 0 and rec["annotated"][5] == 1 and rec["visible"].sum() == 16
    assert rec["normalize"] == 70.0 and rec["scale"] == pytest.approx(1.25 * 70 / 200)
    np.testing.assert_allclose(rec["center"], [10 + 30 - 0.5, 15 + 35 - 0.5])
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["annotated"][3] == 0 and (item["joints"][3] == 0).all()
    m = crop_affine(rec["center"], rec["scale"], 0.0, 32)
    np.testing.assert_allclose(item["keypoints"][4].numpy(), kp[0, 4] @ m[:, :2].T + m[:, 2], atol=1e-3)


def test_ground_truth_boxes_are_clipped_to_their_image_and_areas_default_to_mmposes(tmp_path):
    """A box reaching past the image border is clipped to the image where the file gives its size (HRNet, mmpose);
    without width/height the box stays; a person whose box lies outside its image is left out. An image whose pixels
    are not the size its entry says is an error when read. write_coco's area and OKS's fill-in for a missing one are
    0.53 x the box area, at least 1 (mmpose's)."""
    from hgfast.eval.oks import ground_truth

    path, images, *_ = _write_coco(tmp_path)
    data = json.loads(path.read_text())
    assert data["annotations"][0]["area"] == pytest.approx(0.53 * 60 * 70)
    data["images"][0].update(width=60, height=50)  # img0.png (120x90 pixels), people 0 and 2
    data["annotations"][0]["bbox"] = [-5.0, 10.0, 30.0, 60.0]  # left and bottom edges outside
    data["annotations"][2]["bbox"] = [59.5, 10.0, 1.0, 1.0]  # half a pixel inside: under a pixel once clipped
    data["annotations"][1]["bbox"] = [-5.0, 10.0, 30.0, 60.0]  # img1.png has no size: stays
    for a in data["annotations"]:
        a.pop("area")
    path.write_text(json.dumps(data))
    ann = read_coco(path)
    np.testing.assert_allclose(ann["box"], [[0, 10, 25, 40], [-5, 10, 30, 60]])
    assert ann["skipped"]["box outside image"] == 1 and list(ann["id"]) == [1, 2]
    np.testing.assert_array_equal(ann["image_size"], [[60, 50], [np.nan, np.nan]])
    ds = COCOKeypoints(path, images, input_size=32)
    assert ds[1]["image"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"img0.png is 120x90 pixels \(EXIF orientation applied\), but its COCO file "
                                         r"says 60x50"):
        ds[0]
    pytest.importorskip("pycocotools")
    areas = [a["area"] for a in ground_truth(path, 1).dataset["annotations"]]
    assert areas == pytest.approx([0.53 * 30 * 60, 0.53 * 30 * 60, 1.0])  # the file's boxes, not clipped


def test_coco_crops_take_the_aspect_of_the_input(tmp_path):
    """input_size (32, 16): the 60x70 box is heightened to 1:2 (60 x 120) before the 1.25 margin, as HRNet's and
    mmpose's 256x192 crops widen or heighten the box to 3:4."""
    path, images, kp, *_ = _write_coco(tmp_path)
    ds = COCOKeypoints(path, images, input_size=(32, 16))
    rec, item = ds.record(0), ds[0]
    assert rec["scale"] == pytest.approx(1.25 * 120 / 200) and item["image"].shape == (3, 32, 16)
    m = crop_affine(rec["center"], rec["scale"], 0.0, (32, 16))
    np.testing.assert_allclose(item["keypoints"][4].numpy(), kp[0, 4] @ m[:, :2].T + m[:, 2], atol=1e-3)
    np.testing.assert_allclose(m[:, :2], np.eye(2) * 32 / (1.25 * 120))


def test_coco_joint_lands_on_its_pixel_and_flips_with_its_pair(tmp_path):
    """A keypoint at (x, y) is image pixel column x, row y (pixel centres at integers); a flipped crop mirrors it
    and swaps it with its pair."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[30, 20] = 255
    (tmp_path / "im").mkdir()
    cv2.imwrite(str(tmp_path / "im" / "a.png"), image)
    kp = np.full((1, 17, 2), 32.0)
    kp[0, 9] = [20, 30]  # left_wrist
    path = tmp_path / "a.json"
    write_coco(path, ["a.png"], kp, np.ones((1, 17)), np.ones((1, 17)), COCO_NAMES, boxes=[[0.9, 0.9, 51.2, 51.2]])
    ds = COCOKeypoints(path, tmp_path / "im", input_size=64)  # 1.25 x 51.2 = 64: a 1:1 crop
    item = ds[0]
    bright = np.unravel_index(item["image"][0].numpy().argmax(), (64, 64))
    np.testing.assert_allclose(item["keypoints"][9].numpy(), [bright[1], bright[0]], atol=1e-4)
    flipped = COCOKeypoints(path, tmp_path / "im", input_size=64, augment_preset="bearpaw", seed=0)
    key = next(e * len(flipped) for e in range(50) if flipped[e * len(flipped)]["flipped"])
    it = flipped[key]
    bright = np.unravel_index(it["image"][0].numpy().argmax(), (64, 64))
    np.testing.assert_allclose(it["keypoints"][10].numpy(), [bright[1], bright[0]], atol=0.6)  # now right_wrist


def test_coco_skips_crowds_and_unlabelled_and_boxes_from_keypoints(tmp_path):
    path, images, *_ = _write_coco(tmp_path, n=2)
    data = json.loads(path.read_text())
    first = data["annotations"][0]
    one = [0.0] * 51
    one[3:6] = [7.0, 8.0, 2]
    data["annotations"] += [dict(first, id=10, iscrowd=1), dict(first, id=11, keypoints=[0] * 51),
                            dict(first, id=12, category_id=7), {k: v for k, v in first.items() if k != "bbox"}
                            | {"id": 13, "keypoints": one}]
    del data["annotations"][1]["bbox"]
    data["annotations"][0]["keypoints"][9:12] = [5.0, 6.0, 0]  # not labelled: its x, y are ignored
    path.write_text(json.dumps(data))
    ds = COCOKeypoints(path, images, input_size=32)
    assert len(ds) == 2 and ds.skipped == {"crowd": 1, "no labelled keypoint": 1, "no box": 1,
                                           "box outside image": 0}
    kp = ds.ann["keypoints"][1]
    lo, hi = kp[:, :2].min(0), kp[:, :2].max(0)
    np.testing.assert_allclose(ds.ann["box"][1], [*lo, *(hi - lo + 1)])  # no bbox: the joints' pixels' box
    np.testing.assert_allclose(box_to_center_scale(ds.ann["box"][1])[0], (lo + hi) / 2)  # centred on the joints
    rec = ds.record(0)
    assert (rec["joints"][3] == 0).all() and rec["annotated"][3] == 0
    for a in data["annotations"]:
        a["keypoints"] = one
        a.pop("bbox", None)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"no usable person \(left out: .*'no box': 4"):
        COCOKeypoints(path, images)


def test_coco_bad_inputs(tmp_path):
    path, images, *_ = _write_coco(tmp_path)
    good = json.loads(path.read_text())

    def variant(name, change):
        data = json.loads(json.dumps(good))
        change(data)
        p = tmp_path / name
        p.write_text(json.dumps(data))
        return p

    with pytest.raises(FileNotFoundError, match="nope.json"):
        COCOKeypoints(tmp_path / "nope.json", images)
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match="bad.json.*not valid JSON"):
        read_coco(bad)
    with pytest.raises(ValueError, match="has no 'annotations': an image-info file"):
        read_coco(variant("list.json", lambda d: d.pop("annotations")))
    with pytest.raises(ValueError, match="'images', 'annotations'"):
        read_coco(variant("dict.json", lambda d: d.update(annotations={})))
    with pytest.raises(ValueError, match="no category has 'keypoints'"):
        read_coco(variant("nocat.json", lambda d: d["categories"][0].pop("keypoints")))
    two = variant("two.json", lambda d: d["categories"].append(dict(d["categories"][0], id=2)))
    with pytest.raises(ValueError, match="2 categories.*category_id"):
        read_coco(two)
    assert len(read_coco(two, category_id=1)["file_name"]) == 3
    with pytest.raises(ValueError, match="no category with id 5"):
        read_coco(two, category_id=5)
    with pytest.raises(ValueError, match="annotation 1: .keypoints. must be a list of 51 numbers"):
        read_coco(variant("short.json", lambda d: d["annotations"][0].update(keypoints=[1, 2, 2])))
    with pytest.raises(ValueError, match="visibility flags"):
        read_coco(variant("flag.json", lambda d: d["annotations"][0]["keypoints"].__setitem__(2, 3)))
    with pytest.raises(ValueError, match="image_id 99"):
        read_coco(variant("img.json", lambda d: d["annotations"][0].update(image_id=99)))
    with pytest.raises(ValueError, match=r"image_id \[1\]"):
        read_coco(variant("imglist.json", lambda d: d["annotations"][0].update(image_id=[1])))
    with pytest.raises(ValueError, match="annotation 1: .bbox. must be a list of 4 numbers"):
        read_coco(variant("text.json", lambda d: d["annotations"][0].update(bbox=["x", 1, 2, 3])))
    with pytest.raises(ValueError, match="annotation 1: 'keypoints' must be a list of 51 numbers"):
        read_coco(variant("nest.json", lambda d: [a.update(keypoints=[[v] for v in a["keypoints"]])
                                                  for a in d["annotations"]]))
    with pytest.raises(ValueError, match="annotation 2: 'bbox' must be a list of 4 numbers, got box"):
        read_coco(variant("strbox.json", lambda d: d["annotations"][1].update(bbox="box")))
    unlabelled = variant("unl.json", lambda d: d["annotations"][0].update(image_id=99, keypoints=[0] * 51))
    assert len(read_coco(unlabelled)["file_name"]) == 2  # a person left out is not checked for its image
    with pytest.raises(ValueError, match="category with keypoints needs an 'id'"):
        read_coco(variant("noid.json", lambda d: d["categories"][0].pop("id")))
    for skeleton in ([[0, 1]], [[1.7, 2]], "ab", [[1, 2, 3]]):
        with pytest.raises(ValueError, match="'skeleton' must be pairs of 1-based joint numbers in 1..17"):
            read_coco(variant("skel.json", lambda d: d["categories"][0].update(skeleton=skeleton)))
    with pytest.raises(ValueError, match="'keypoints' must be a list of joint names, got head"):
        read_coco(variant("names.json", lambda d: d["categories"][0].update(keypoints="head")))
    # what would otherwise be quietly wrong: people on the wrong image, AP of 100 or 0, numbers read from text
    annotation = lambda **fields: lambda d: d["annotations"][0].update(fields)  # noqa: E731
    joint = lambda i, value: lambda d: d["annotations"][0]["keypoints"].__setitem__(i, value)  # noqa: E731
    for change, match in (
            (lambda d: d["images"].append(dict(d["images"][0], file_name="other.png")),
             r"image id 1 is in 'images' twice \('img0.png' and 'other.png'\)"),
            (lambda d: d["images"][0].update(id=True), r"'images' entry 0 needs an 'id'"),
            (lambda d: d["annotations"].append("x"), r"'annotations' entry 3 is not an object, got x"),
            (lambda d: d["images"][0].update(file_name=7), r"'images' entry 0 needs an 'id' .* and a 'file_name'"),
            (lambda d: d["images"][0].update(width=-5, height=10), r"image 1: 'width' and 'height' must be whole numbers"),
            (lambda d: d["images"][0].update(width="640"), r"image 1: 'width' and 'height'"),
            (lambda d: d["images"][0].update(width=120.5, height=90), r"image 1: 'width' and 'height' must be whole"),
            (annotation(area=float("nan")), r"annotation 1: 'area' must be a number in \[0, 1e\+10\]"),
            (annotation(area=-1), "annotation 1: 'area'"), (annotation(area=1e12), "annotation 1: 'area'"),
            (annotation(area="12"), "annotation 1: 'area'"),
            (annotation(num_keypoints="16"), "annotation 1: 'num_keypoints' must be an integer"),
            (annotation(num_keypoints=0), "annotation 1: 'num_keypoints' is 0 but 16 joints are labelled"),
            (annotation(iscrowd="0"), "annotation 1: 'iscrowd' must be 0 or 1, got '0'"),
            (annotation(category_id="1"), r"annotation 1: category_id '1' is not the category's id 1"),
            (annotation(image_id=True), "annotation 1: image_id True is not in 'images'"),
            (joint(0, "12.5"), "annotation 1: 'keypoints' must be a list"),
            (joint(2, True), "annotation 1: 'keypoints' must be a list"),  # numpy would read it as 1
            (joint(0, 1e39), r"annotation 1: 'keypoints' must be numbers within ±1e\+06"),
            (joint(0, float("inf")), "annotation 1: 'keypoints' must be numbers within"),
            (annotation(bbox=[0, 0, 1e20, 5]), r"annotation 1: 'bbox' must be numbers within ±1e\+06"),
            (annotation(bbox=[0, 0, 10 ** 400, 5]), "annotation 1: 'bbox' must be a list of 4 numbers"),
            (annotation(area=10 ** 400), "annotation 1: 'area' must be a number")):
        with pytest.raises(ValueError, match=match):
            read_coco(variant("odd.json", change))
    tiny = read_coco(variant("tiny.json", annotation(bbox=[30, 30, 1e-30, 1e-30])))  # under a pixel: no box
    labelled = tiny["keypoints"][0][:, 2] > 0
    np.testing.assert_allclose(tiny["box"][0], keypoint_box(tiny["keypoints"][0][labelled, :2]))
    crowd = read_coco(variant("crowd.json", annotation(iscrowd=True, keypoints=None)))  # a crowd region: no keypoints
    assert crowd["skipped"]["crowd"] == 1
    assert len(read_coco(variant("float.json", annotation(num_keypoints=16.0, iscrowd=0.0)))["id"]) == 3  # tolist()'s
    with pytest.raises(ValueError, match="dup.json.*read the same"):
        COCOKeypoints(variant("dup.json", lambda d: d["categories"][0]["keypoints"].__setitem__(1, "Left Ear")),
                      images)
    with pytest.raises(FileNotFoundError, match="image folder"):
        COCOKeypoints(path, tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) of .*gone.json not found.*gone.png"):
        COCOKeypoints(variant("gone.json", lambda d: d["images"][0].update(file_name="gone.png")), images)
    with pytest.raises(ValueError, match="margin"):
        COCOKeypoints(path, images, margin=0)
    with pytest.raises(ValueError, match=r"keypoints must be \(N, 17, 2\)"):
        write_coco(tmp_path / "w.json", ["a.png"], np.zeros((1, 5, 2)), np.ones((1, 5)), np.ones((1, 5)), COCO_NAMES)
    nan = np.zeros((2, 17, 2))
    nan[1, 3] = np.nan
    with pytest.raises(ValueError, match="keypoints of sample 1 must be finite numbers"):
        write_coco(tmp_path / "w.json", ["a.png"] * 2, nan, np.ones((2, 17)), np.ones((2, 17)), COCO_NAMES)
    unlabelled = np.ones((2, 17))
    unlabelled[1, 3] = 0
    write_coco(tmp_path / "w.json", ["a.png"] * 2, nan, unlabelled, unlabelled, COCO_NAMES)  # NaN where unlabelled
    assert json.loads((tmp_path / "w.json").read_text())["annotations"][1]["keypoints"][9:12] == [0, 0, 0]
    two = ["a.png", "b.png", "a.png"], np.full((3, 17, 2), 5.0), np.ones((3, 17)), np.ones((3, 17)), COCO_NAMES
    write_coco(tmp_path / "sized.json", *two, image_sizes=np.array([[640, 480], [20, 10], [640, 480]], np.float32))
    images_written = json.loads((tmp_path / "sized.json").read_text())["images"]
    assert images_written == [{"id": 1, "file_name": "a.png", "width": 640, "height": 480},
                              {"id": 2, "file_name": "b.png", "width": 20, "height": 10}]
    with pytest.raises(ValueError, match=r"image_sizes: samples of image a.png disagree"):
        write_coco(tmp_path / "sized.json", *two, image_sizes=[[640, 480], [20, 10], [480, 640]])
    for bad in ([[640, 0]] * 3, [[640, 10.5]] * 3):  # (an image is whole pixels)
        with pytest.raises(ValueError, match=r"image_sizes must be \(3, 2\) \(width, height\), whole numbers"):
            write_coco(tmp_path / "sized.json", *two, image_sizes=bad)
    write_coco(tmp_path / "none.json", [], np.zeros((0, 17, 2)), np.zeros((0, 17)), np.zeros((0, 17)), COCO_NAMES)
    assert json.loads((tmp_path / "none.json").read_text())["annotations"] == []
    with pytest.raises(ValueError, match="boxes of sample 0 must be finite"):
        write_coco(tmp_path / "w.json", ["a.png"], np.zeros((1, 17, 2)), np.ones((1, 17)), np.ones((1, 17)),
                   COCO_NAMES, boxes=[[0, 0, np.inf, 1]])
    (images / "img1.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(ValueError, match="img1.png"):
        COCOKeypoints(path, images)[1]


def test_pck_table_uses_the_skeleton_groups():
    skeleton = Skeleton.from_names(COCO_NAMES)
    gt = np.zeros((2, 17, 2))
    pred = gt.copy()
    pred[:, 1, 0] = 5.0  # left eye off by 5 of a 10-pixel box: wrong at 0.2, right at 0.6
    table = pck_table(pred, gt, np.ones((2, 17)), np.full(2, 10.0), (0.2, 0.6), skeleton=skeleton)
    assert table["pck"]["0.2"]["per_group"]["eye"] == 0.5 and table["pck"]["0.6"]["per_group"]["eye"] == 1.0
    assert table["pck"]["0.2"]["mean_weighted"] == pytest.approx(16 / 17)
    assert len(table["mean_joints"]) == 17 and "Eye" in format_table(table) and "Head" not in format_table(table)
    with pytest.raises(ValueError, match="skeleton has 17 joints"):
        pck_table(pred[:, :5], gt[:, :5], np.ones((2, 5)), np.full(2, 10.0), skeleton=skeleton)
    mpii = dataclasses.replace(MPII_SKELETON, flip_permutation=tuple(range(16)))  # data.flip_pairs given
    assert pck_table(np.zeros((2, 16, 2)), np.zeros((2, 16, 2)), np.ones((2, 16)), np.full(2, 10.0),
                     skeleton=mpii)["mean_joints"] == [JOINT_NAMES[j] for j in PCKH_JOINTS]  # Tompson's 14
    generic = pck_table(pred[:, :5], gt[:, :5], np.ones((2, 5)), np.full(2, 10.0), (0.2,))
    assert list(generic["count"]) == [f"joint_{i}" for i in range(5)] and generic["pck"]["0.2"]["per_group"] == {}


FIVE = ("head_top", "right_wrist", "left_wrist", "right_ankle", "left_ankle")
FROM_MPII = [9, 10, 15, 0, 5]


def _synthetic_coco(root, split, n, size=48):
    """Synthetic figures as a 5-joint COCO-format dataset under root: <split>.json and <split>/."""
    folder = root / split
    folder.mkdir(parents=True)
    files, kps, vis, boxes = [], [], [], []
    for i in range(n):
        r = render(0, split, i, size)
        cv2.imwrite(str(folder / f"{i}.png"), r["image"][..., ::-1])
        files.append(f"{i}.png")
        kps.append(r["joints"][FROM_MPII])
        vis.append(r["visible"][FROM_MPII])
        side = 200 * float(r["scale"]) / 1.25
        boxes.append([r["center"][0] + 0.5 - side / 2, r["center"][1] + 0.5 - side / 2, side, side])
    write_coco(root / f"{split}.json", files, np.stack(kps), np.ones((n, 5)), np.stack(vis), FIVE,
               [(1, 0), (2, 0), (3, 0), (4, 0)], np.array(boxes))


def test_custom_skeleton_trains_evaluates_and_predicts(tmp_path):
    root = tmp_path / "data"
    _synthetic_coco(root, "train", 12)
    _synthetic_coco(root, "val", 6)
    work = tmp_path / "run"
    sets = ["data.dataset=coco", f"data.train_annotations={root / 'train.json'}", f"data.image_dir={root / 'train'}",
            f"data.val_annotations={root / 'val.json'}", f"data.val_image_dir={root / 'val'}", "model.nstack=1",
            "model.nfeat=16", "model.depth=2", "data.input_size=32", "data.workers=0", "batch_size=4", "steps=2",
            "val_every=2", "vis_every=2", "ckpt_every=2", "threads=1"]
    assert main(["train", "--workdir", str(work)] + [a for s in sets for a in ("--set", s)]) == 0
    stored = read_metadata(work / "best.safetensors")
    assert stored["config"]["njoints"] == 5 and stored["skeleton"]["names"] == list(FIVE)
    assert StackedHourglass.from_checkpoint(work / "best.safetensors").njoints == 5
    table = json.loads((work / "val" / "step_0000002.json").read_text())
    assert list(table["pck"]["0.2"]["per_group"]) == ["head_top", "wrist", "ankle"]
    assert "data.oks_sigmas" in table["oks"]["skipped"]  # 5 joints: COCO's sigmas do not apply
    sigmas = "data.oks_sigmas=[0.1, 0.06, 0.06, 0.09, 0.09]"
    results = tmp_path / "results.json"
    assert main(["eval", "--workdir", str(work), "--flip", "--set", sigmas, "--results", str(results)]) == 0
    written = json.loads(results.read_text())
    assert len(written) == 6 and len(written[0]["keypoints"]) == 15 and written[0]["category_id"] == 1
    assert {r["image_id"] for r in written} == set(read_coco(root / "val.json")["image_id"])
    result = json.loads((work / "eval.json").read_text())
    assert result["flip_test"] and result["normaliser"] == "longer side of the person box"
    assert result["samples"] == 6 and list(result["count"]) == list(FIVE)
    if importlib.util.find_spec("pycocotools"):
        assert 0.0 <= result["oks"]["AP"] <= 1.0 and "OKS AP" in format_table(result)
    else:
        assert "pycocotools" in result["oks"]["skipped"]
    out = tmp_path / "pred"
    assert main(["predict", str(root / "val" / "0.png"), "--checkpoint", str(work / "best.safetensors"), "--flip",
                 "--out", str(out)]) == 0  # flip test with the checkpoint's own flip pairs, no flag needed
    prediction = json.loads((out / "predictions.json").read_text())[0]
    assert list(prediction["keypoints"]) == list(FIVE)
    skeleton = Skeleton.from_checkpoint(work / "best.safetensors")
    assert skeleton.limbs == ((1, 0, "r"), (2, 0, "l"), (3, 0, "r"), (4, 0, "l"))
    resume = ["train", "--workdir", str(work), "--resume", "--set", "steps=4", "--set", "data.flip_pairs=[[1, 2]]"]
    assert main(resume) == 2  # another skeleton: refused before anything is written
    assert not (work / "val" / "step_0000004.json").exists()


def test_train_refuses_mismatched_splits(tmp_path):
    root = tmp_path / "data"
    _synthetic_coco(root, "train", 4)
    val = tmp_path / "val.json"
    write_coco(val, ["0.png"], np.zeros((1, 2, 2)), np.ones((1, 2)), np.ones((1, 2)), ("a", "b"), boxes=[[0, 0, 9, 9]])
    from hgfast.train.config import resolve
    from hgfast.train.loop import train

    cfg = resolve(overrides=["data.dataset=coco", f"data.train_annotations={root / 'train.json'}",
                             f"data.image_dir={root / 'train'}", f"data.val_annotations={val}", "batch_size=2",
                             "model.nstack=1", "model.nfeat=16", "model.depth=2", "data.input_size=32"],
                  workdir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="validation set's joints"):
        train(cfg)


def test_build_dataset_finds_the_coco_layout_and_passes_the_options(tmp_path):
    from hgfast.data import build_dataset
    from hgfast.train.config import resolve

    root = tmp_path / "coco"
    for split, n in (("train", 3), ("val", 2)):
        _synthetic_coco(root, split, n)
        (root / "annotations").mkdir(exist_ok=True)
        (root / f"{split}.json").rename(root / "annotations" / f"person_keypoints_{split}2017.json")
        (root / split).rename(root / f"{split}2017")
    cfg = resolve(overrides=["data.dataset=coco", f"data.root={root}", "data.box_margin=1.5",
                             "data.flip_pairs=[[3, 4]]", "data.category_id=1", "data.input_size=64"])
    train, val = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "val")
    assert (len(train), len(val)) == (3, 2) and val.image_dir == root / "val2017"
    assert train.augment_preset == "bearpaw" and val.augment_preset == "none"
    assert train.margin == 1.5 and train.skeleton.flip_permutation == (0, 1, 2, 4, 3)
    assert val.record(0)["scale"] == pytest.approx(1.5 * val.ann["box"][0, 2:].max() / 200)
    with pytest.raises(ValueError, match="no category with id 3"):
        build_dataset(resolve(overrides=["data.dataset=coco", f"data.root={root}", "data.category_id=3"]).data,
                      "val")


def test_predictor_takes_a_skeleton_and_box_margin():
    from hgfast.predict import Predictor

    model = StackedHourglass(nstack=1, nfeat=16, njoints=5, depth=2)
    five = Skeleton.from_names(FIVE)
    predictor = Predictor(model, 32, "cpu", flip=True, skeleton=five, box_margin=2.0)
    assert predictor.flip_permutation == (0, 2, 1, 4, 3)
    image = np.zeros((40, 40, 3), np.uint8)
    kp, _ = predictor([image], boxes=[(10, 10, 10, 10)])
    assert ((kp >= 15 - 10 - 0.5) & (kp <= 15 + 10 - 0.5)).all()  # inside the 20-pixel crop around the box centre
    with pytest.raises(ValueError, match="skeleton has 16 joints, the model 5"):
        Predictor(model, 32, "cpu", skeleton=MPII_SKELETON)
    with pytest.raises(ValueError, match="box_margin"):
        Predictor(model, 32, "cpu", box_margin=0)


def test_format_table_keeps_column_names_apart_and_datasets_take_a_flip_permutation():
    from hgfast.data import SyntheticPoses

    skeleton = Skeleton.from_names(["front_paw", "front_knee"], flip_pairs=[])
    table = pck_table(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.ones((1, 2)), np.ones(1), (0.5,),
                      skeleton=skeleton)
    assert "Front_paw" in format_table(table) and "Front_knee" in format_table(table)
    ds = SyntheticPoses("val", 2, 48, 32)
    ds.flip_permutation = tuple(range(16))
    assert ds.skeleton.flip_permutation == tuple(range(16)) and ds.skeleton.names == MPII_SKELETON.names
    assert SyntheticPoses("val", 2, 48, 32).flip_permutation == MPII_FLIP_PERMUTATION  # the class default is kept


def test_config_flip_pairs_and_coco_keys():
    from hgfast.train.config import ConfigError, resolve

    cfg = resolve(overrides=["data.dataset=coco", "data.root=/data/coco", "data.flip_pairs=[[1, 2], [3, 4]]"])
    assert cfg.data.flip_pairs == [[1, 2], [3, 4]]
    with pytest.raises(ConfigError, match="data.flip_pairs"):
        resolve(overrides=["data.flip_pairs=[[1, 2, 3]]"])
    with pytest.raises(ConfigError, match="data.flip_pairs"):
        resolve(overrides=["data.flip_pairs=[1, 2]"])
    with pytest.raises(ConfigError, match="optim.milestones"):
        resolve(overrides=["optim.milestones=[[1, 2]]"])
    with pytest.raises(ConfigError, match="COCO needs 'data.root'"):
        resolve(overrides=["data.dataset=coco"])


def test_saved_skeleton_must_match_the_model(tmp_path):
    model = StackedHourglass(nstack=1, nfeat=16, njoints=5, depth=2)
    with pytest.raises(ValueError, match="skeleton has 16 joints"):
        model.save(tmp_path / "m.safetensors", MPII_SKELETON)
    model.save(tmp_path / "m.safetensors", Skeleton.from_names(FIVE))
    assert Skeleton.from_checkpoint(tmp_path / "m.safetensors").names == FIVE
    torch.save(model.state_dict(), tmp_path / "m.pt")
    assert Skeleton.from_checkpoint(tmp_path / "m.pt") is None


def test_dataset_and_model_joints_must_agree():
    from hgfast.data import SyntheticPoses
    from hgfast.eval import predict_dataset
    from hgfast.train.state import check_resumable

    model = StackedHourglass(nstack=1, nfeat=16, njoints=5, depth=2)
    with pytest.raises(ValueError, match="model predicts 5 joints, the dataset.s skeleton has 16"):
        predict_dataset(model, SyntheticPoses("val", 2, 48, 32))
    with pytest.raises(ValueError, match="'data.dataset'"):
        check_resumable({"data": {"dataset": "mpii"}}, {"data": {"dataset": "coco"}})
    with pytest.raises(ValueError, match="'val_metric'"):  # a run from before val_metric chose its best by PCK
        check_resumable({"data": {"dataset": "coco"}}, {"data": {"dataset": "coco"}, "val_metric": "ap"})
    check_resumable({"data": {"dataset": "coco"}}, {"data": {"dataset": "coco"}, "val_metric": "pck"})
    with pytest.raises(ValueError, match="'data.val_detections'"):  # best was an AP in ground-truth boxes
        check_resumable({"data": {"dataset": "coco"}}, {"data": {"dataset": "coco", "val_detections": "d.json"}})


def test_oks_ap_by_cocoeval(tmp_path):
    pytest.importorskip("pycocotools")
    from hgfast.eval.oks import coco_results, oks_ap, person_scores

    def ap(path, ids, kp, scores, **kwargs):  # the ground-truth-box protocol: one result per annotated person
        return oks_ap(path, 1, coco_results(ids, 1, kp, scores), one_per_person=True, **kwargs)

    path, images, kp, annotated, visible = _write_coco(tmp_path)
    ann = read_coco(path)
    gt, ids, scores = ann["keypoints"][..., :2], list(ann["image_id"]), np.full((3, 17), 0.9)
    assert ap(path, ids, gt, scores)["AP"] == pytest.approx(1.0)
    far = ap(path, ids, gt + 40, scores)
    assert far["AP"] == pytest.approx(0.0) and set(far) >= {"AP50", "AP75", "AR"}
    near = ap(path, ids, gt + 2.5, scores)["AP"]  # 2.5 px in a 60x70 box: some joints within, some not
    assert 0.0 < near < 1.0
    assert ap(path, ids, gt + 2.5, scores, sigmas=[0.2] * 17)["AP"] > near  # wider sigmas forgive more
    np.testing.assert_allclose(person_scores([[0.1, 0.5, 0.7], [0.1, 0.0, 0.2]]), [0.6, 0.0])
    data = json.loads(path.read_text())  # optional fields missing, string image ids, a second category
    for a in data["annotations"]:
        for key in ("bbox", "area", "iscrowd", "num_keypoints"):
            a.pop(key)
        a["image_id"] = f"im{a['image_id']}"
    for im in data["images"]:
        im["id"] = f"im{im['id']}"
    data["categories"].append(dict(data["categories"][0], id=2))
    data["annotations"].append(dict(data["annotations"][0], category_id=2))
    data["annotations"].append({"image_id": "im1", "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 5, 5],
                                "area": 25})  # a crowd region without keypoints, which COCOeval reads
    sparse = tmp_path / "sparse.json"
    sparse.write_text(json.dumps(data))
    ids = [f"im{i}" for i in ids]
    assert ap(sparse, ids, gt, scores)["AP"] == pytest.approx(1.0)  # category 2 is not averaged in
    crowd = tmp_path / "crowd.json"
    files = ["a.png"] * 21
    write_coco(crowd, files, np.tile(gt[:1], (21, 1, 1)), np.ones((21, 17)), np.ones((21, 17)), COCO_NAMES)
    with pytest.warns(UserWarning, match="at most 20 people per image"):
        ap(crowd, [1] * 21, np.tile(gt[:1], (21, 1, 1)), np.full((21, 17), 0.9))
    with pytest.raises(ValueError, match="sigmas for 5"):
        ap(path, ids, gt[:, :5], scores[:, :5])
    with pytest.raises(ValueError, match="sigmas must be 17 numbers > 0"):
        ap(path, ids, gt, scores, sigmas=[0.0] * 17)
    data = json.loads(path.read_text())
    data["annotations"][1]["area"] = float("nan")  # COCOeval would score every result against it as a match
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="annotation 2: 'area' must be a number"):
        ap(path, ids, gt, scores)
    data["annotations"][1]["area"] = 100.0
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"oks_ap: result 1 \(image .*\) has keypoints or a score that are not finite"):
        ap(path, ids, np.where(np.arange(3)[:, None, None] == 1, np.nan, gt), scores)  # COCOeval: AP 1


def test_best_checkpoint_by_oks_ap(tmp_path):
    from hgfast.train.config import ConfigError, resolve
    from hgfast.train.loop import train
    from hgfast.train.state import load_state

    root = tmp_path / "data"
    _synthetic_coco(root, "train", 8)
    _synthetic_coco(root, "val", 4)
    sets = ["data.dataset=coco", f"data.train_annotations={root / 'train.json'}", f"data.image_dir={root / 'train'}",
            f"data.val_annotations={root / 'val.json'}", f"data.val_image_dir={root / 'val'}", "model.nstack=1",
            "model.nfeat=16", "model.depth=2", "data.input_size=32", "data.workers=0", "batch_size=4", "steps=3",
            "val_every=1", "ckpt_every=100", "threads=1", "val_metric=ap"]
    with pytest.raises(ConfigError, match="'val_metric' = 'ap'.*COCO-format"):
        resolve(overrides=["val_metric=ap"])
    work = tmp_path / "run"
    if importlib.util.find_spec("pycocotools") is None:
        with pytest.raises(ValueError, match="pycocotools"):
            train(resolve(overrides=sets, workdir=str(work)))
        return
    with pytest.raises(ValueError, match="data.oks_sigmas"):  # 5 joints: COCO's sigmas do not apply
        train(resolve(overrides=sets, workdir=str(work)))
    assert not work.exists()  # refused before anything is written
    sets.append("data.oks_sigmas=[0.1, 0.06, 0.06, 0.09, 0.09]")
    summary = train(resolve(overrides=sets, workdir=str(work)))
    rows = [r for r in _csv_rows(work / "metrics.csv") if r["val_ap"]]
    assert len(rows) == 3 and all(r["val_pck"] for r in rows)
    assert summary["best_metric"] == "ap"
    assert load_state(work)["best"] == pytest.approx(max(float(r["val_ap"]) for r in rows), abs=1e-5)
    with pytest.raises(ValueError, match="'val_metric'"):  # the state's best is an AP: the metric stays
        train(resolve(overrides=sets[:-2] + sets[-1:] + ["steps=4"], workdir=str(work)), resume=work)
    with open(work / "metrics.csv", newline="") as f:  # a run from before the val_ap column
        old = [r[:8] for r in csv.reader(f)]
    with open(work / "metrics.csv", "w", newline="") as f:
        csv.writer(f).writerows(old)
    train(resolve(overrides=sets + ["steps=4"], workdir=str(work)), resume=work)
    rows = list(_csv_rows(work / "metrics.csv"))
    assert all(r["val_ap"] is not None for r in rows) and rows[-1]["val_ap"] and not rows[0]["val_ap"]
    ann = read_coco(root / "val.json")  # validation in detected boxes, as mmpose validates: AP only
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps([{"image_id": i, "category_id": 1, "bbox": list(b), "score": 0.9}
                                      for i, b in zip(ann["image_id"], ann["box"])]))
    with pytest.raises(ConfigError, match="set val_metric=ap"):
        resolve(overrides=sets[:-2] + [f"data.val_detections={detections}"])
    detected = tmp_path / "detected"
    train(resolve(overrides=sets + ["steps=2", f"data.val_detections={detections}"], workdir=str(detected)))
    rows = [r for r in _csv_rows(detected / "metrics.csv") if r["val_ap"]]
    assert len(rows) == 2 and not any(r["val_pck"] or r["val_pck_threshold"] for r in rows)
    table = json.loads((detected / "val" / "step_0000002.json").read_text())
    assert table["detections"]["used"] == 4 and "pck" not in table
    assert load_state(detected)["best"] == pytest.approx(max(float(r["val_ap"]) for r in rows), abs=1e-5)
