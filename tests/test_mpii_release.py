"""MPII's release file (``mpii_human_pose_v1_u12_1.mat``) converted by ``hgfast convert-mpii``."""
import copy
import json

import h5py
import numpy as np
import pytest

from hgfast.cli import main
from hgfast.data import read_annotations
from hgfast.data.mpii import write_annotations
from hgfast.data.mpii_release import convert_release, read_release

scipy_io = pytest.importorskip("scipy.io")

EMPTY = np.zeros((0, 0))


def _struct_array(rows: list[dict], fields) -> np.ndarray:
    """A MATLAB 1 × n struct array (every element has every field; ``EMPTY`` where a row lacks it)."""
    array = np.empty((1, len(rows)), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for f in fields:
            array[0, i][f] = row.get(f, EMPTY)
    return array


def _rect(person: dict, train: bool) -> dict:
    rect = {}
    if person.get("objpos") is not None:
        rect["objpos"] = {"x": person["objpos"][0], "y": person["objpos"][1]}
    if person.get("scale") is not None:
        rect["scale"] = person["scale"]
    if train and person.get("head") is not None:
        rect.update(zip(("x1", "y1", "x2", "y2"), person["head"]))
    if train and person.get("joints"):
        points = [{"id": float(j), "x": x, "y": y, **({} if v is None else {"is_visible": v})}
                  for j, (x, y, v) in person["joints"].items()]
        flags = ("is_visible",) if any(v is not None for *_, v in person["joints"].values()) else ()
        rect["annopoints"] = {"point": _struct_array(points, ("x", "y", "id", *flags))}
    return rect


def _release(path, images: list[dict]):
    """A release file as MATLAB writes it: ``images`` of ``{"name", "train", "people": [{"objpos", "scale", "head",
    "joints": {id: (x, y, is_visible)}}], "single": [1-based person numbers]}``."""
    annolist = []
    for im in images:
        fields = ("scale", "objpos", "x1", "y1", "x2", "y2", "annopoints") if im["train"] else ("scale", "objpos")
        rects = [_rect(p, im["train"]) for p in im["people"]]
        annolist.append({"image": {"name": im["name"]}, "frame_sec": EMPTY, "vididx": EMPTY,
                         "annorect": _struct_array(rects, fields) if rects else EMPTY})
    single = np.empty((len(images), 1), dtype=object)
    for i, im in enumerate(images):
        single[i, 0] = np.array(im.get("single", []), float).reshape(-1, 1) if im.get("single") else EMPTY
    release = {"annolist": _struct_array(annolist, ("image", "annorect", "frame_sec", "vididx")),
               "img_train": np.array([[float(im["train"]) for im in images]]), "single_person": single,
               "version": "12"}
    scipy_io.savemat(path, {"RELEASE": release})
    return path


def _joints(seed, n=16, skip=()):
    rng = np.random.default_rng(seed)
    flags = [1.0, 0.0, "1", "0", EMPTY, None]  # MATLAB's mix: numbers, text, empty, absent
    return {j: (*rng.uniform(10, 600, 2).round(1).tolist(), flags[j % len(flags)]) for j in range(n) if j not in skip}


IMAGES = [
    {"name": "a.jpg", "train": True, "single": [1, 2], "people": [
        {"objpos": (300, 200), "scale": 2.0, "head": (10, 20, 40, 60), "joints": _joints(0)},
        {"objpos": (100, 150), "scale": 1.5, "head": (5, 5, 35, 45), "joints": _joints(1, skip=(0, 1, 5))}]},
    {"name": "b.jpg", "train": True, "single": [2], "people": [
        {"objpos": (50, 60), "scale": 3.0, "head": (1, 2, 13, 18), "joints": {9: (44.0, 55.0, "1")}},  # one point
        {"objpos": None, "scale": None, "head": (1, 1, 2, 2), "joints": _joints(2)},  # no position: left out
        {"objpos": (70, 80), "scale": 1.0, "head": (3, 4, 6, 8), "joints": None}]},  # no joints: left out
    {"name": "c.jpg", "train": False, "single": [1], "people": [{"objpos": (400, 300), "scale": 4.0},
                                                                 {"objpos": (10, 20), "scale": 0.5}]},
    {"name": "d.jpg", "train": False, "people": []},
    {"name": "e.jpg", "train": True, "people": [
        {"objpos": (210, 220), "scale": 2.5, "head": None, "joints": _joints(3)}]},  # no head box: normalize 0
]


def test_release_people_become_the_adjusted_h5_fields(tmp_path):
    splits, left_out = read_release(_release(tmp_path / "release.mat", IMAGES))
    train, test = splits["train"], splits["test"]
    assert left_out == {"train": 2, "test": 0}
    assert train["imgname"].tolist() == ["a.jpg", "a.jpg", "b.jpg", "e.jpg"]
    assert train["index"].tolist() == [0, 0, 1, 4] and train["person"].tolist() == [0, 1, 0, 0]
    np.testing.assert_allclose(train["center"], [[300, 230], [100, 172.5], [50, 105], [210, 257.5]])
    np.testing.assert_allclose(train["scale"], [2.5, 1.875, 3.75, 3.125])
    np.testing.assert_allclose(train["normalize"], [0.6 * 50, 0.6 * 50, 0.6 * 20, 0])
    joints = _joints(1, skip=(0, 1, 5))
    for j in range(16):
        want = joints[j][:2] if j in joints else (0, 0)
        assert train["part"][1, j].tolist() == list(want)
        flag = joints[j][2] if j in joints else 0
        assert train["visible"][1, j] == (1 if flag is None or isinstance(flag, np.ndarray) else float(flag))
    assert train["part"][2, 9].tolist() == [44, 55] and (train["part"][2, :9] == 0).all()
    assert train["visible"][2].tolist() == [0] * 9 + [1] + [0] * 6
    assert test["imgname"].tolist() == ["c.jpg", "c.jpg"] and test["index"].tolist() == [2, 2]
    np.testing.assert_allclose(test["center"], [[400, 360], [10, 27.5]])
    assert "part" not in test


def test_single_person_keeps_the_people_the_benchmark_lists(tmp_path):
    splits, left_out = read_release(_release(tmp_path / "release.mat", IMAGES), single_person=True)
    assert splits["train"]["imgname"].tolist() == ["a.jpg", "a.jpg"] and left_out["train"] == 1  # b's no-position
    assert splits["test"]["person"].tolist() == [0]


def test_convert_writes_train_valid_and_test_h5_in_the_validation_files_order(tmp_path):
    source = _release(tmp_path / "release.mat", IMAGES)
    splits, _ = read_release(source)
    train = splits["train"]
    valid = tmp_path / "peer_valid.h5"  # a peer's valid.h5: its people in its own order, joints cut to pixels
    rows = [3, 1]
    write_annotations(valid, train["imgname"][rows], train["center"][rows], train["scale"][rows],
                      np.trunc(train["part"][rows]), train["visible"][rows], train["normalize"][rows],
                      index=train["index"][rows], person=train["person"][rows])
    written = convert_release(source, tmp_path / "annot", valid_from=valid)
    assert [(w["split"], w["people"]) for w in written] == [("train", 2), ("test", 2), ("valid", 2)]
    got = read_annotations(tmp_path / "annot" / "valid.h5")
    np.testing.assert_array_equal(got["part"], train["part"][rows])
    np.testing.assert_array_equal(got["normalize"], train["normalize"][rows])
    with h5py.File(tmp_path / "annot" / "valid.h5") as f:
        assert f["index"][:].tolist() == [4, 0] and f["person"][:].tolist() == [0, 1]
    assert read_annotations(tmp_path / "annot" / "train.h5")["imgname"].tolist() == ["a.jpg", "b.jpg"]
    test = read_annotations(tmp_path / "annot" / "test.h5")
    assert test["imgname"].tolist() == ["c.jpg", "c.jpg"] and not test["part"].any()
    assert written[2]["scorable"] == 1  # e.jpg has no head box


def test_a_validation_file_left_in_the_output_folder_is_refused(tmp_path):
    source = _release(tmp_path / "release.mat", IMAGES)
    train = read_release(source)[0]["train"]
    valid = tmp_path / "peer_valid.h5"
    first = {k: v[:1] for k, v in train.items()}
    write_annotations(valid, first["imgname"], first["center"], first["scale"], first["part"], first["visible"],
                      first["normalize"], index=first["index"], person=first["person"])
    convert_release(source, tmp_path / "annot", valid_from=valid)
    before = (tmp_path / "annot" / "train.h5").read_bytes()
    with pytest.raises(ValueError, match="valid.h5 exists.*train.h5 would hold its people"):  # without --valid-from
        convert_release(source, tmp_path / "annot", overwrite=True)
    assert (tmp_path / "annot" / "train.h5").read_bytes() == before


def test_hrnets_valid_json_finds_its_people_by_image_and_centre(tmp_path):
    source = _release(tmp_path / "release.mat", IMAGES)
    train = read_release(source)[0]["train"]
    rows = [1, 0]  # a.jpg's two people, the second first
    raw = [[100, 150], [300, 200]]  # their objpos; scales 1.5 and 2.0, as HRNet's file holds them (-1 joints: none)
    entries = [{"image": "a.jpg", "center": c, "scale": s, "joints_vis": [1] * 16,
                "joints": np.where(train["part"][r] == 0, -1, train["part"][r]).tolist()}
               for r, c, s in zip(rows, raw, (1.5, 2.0))]
    (tmp_path / "valid.json").write_text(json.dumps(entries))
    written = convert_release(source, tmp_path / "annot", valid_from=tmp_path / "valid.json")
    assert [(w["split"], w["people"]) for w in written] == [("train", 2), ("test", 2), ("valid", 2)]
    np.testing.assert_array_equal(read_annotations(tmp_path / "annot" / "valid.h5")["part"], train["part"][rows])
    entries[0]["center"] = [100, 160]  # 10 pixels off: nobody there
    (tmp_path / "off.json").write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r"person 0: a.jpg at \[100.0, 182.5\] is not a person with joints"):
        convert_release(source, tmp_path / "o", valid_from=tmp_path / "off.json")


def test_a_validation_file_of_other_people_is_refused(tmp_path):
    source = _release(tmp_path / "release.mat", IMAGES)
    train = read_release(source)[0]["train"]
    other = tmp_path / "other.h5"
    write_annotations(other, ["z.jpg"], [[1, 1]], [1.0], train["part"][:1] + 5, np.ones((1, 16)), [1.0],
                      index=[0], person=[0])
    with pytest.raises(ValueError, match="joint 0 is at .* not the same people"):
        convert_release(source, tmp_path / "o1", valid_from=other)
    write_annotations(other, ["z.jpg"], [[1, 1]], [1.0], index=[1], person=[2])  # b's person without joints
    with pytest.raises(ValueError, match="index 1, person 2 is not a person with joints"):
        convert_release(source, tmp_path / "o2", valid_from=other)
    write_annotations(other, ["z.jpg"], [[1, 1]], [1.0])
    with h5py.File(other, "a") as f:
        del f["imgname"]
    with pytest.raises(ValueError, match="neither MPII image and person numbers .* nor image names and centres"):
        convert_release(source, tmp_path / "o3", valid_from=other)
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3"))


@pytest.mark.parametrize("change, match", [
    (lambda ims: ims[0]["people"][0]["joints"].update({16: (1.0, 2.0, 1.0)}), "joint id 16"),
    (lambda ims: ims[0]["people"][0]["joints"].update({3: (1.0, 2.0, "x")}), "is_visible: expected a number"),
    (lambda ims: ims[0]["people"][0]["joints"].update({3: (1.0, 2.0, 2.0)}), "joint 3 has .* is_visible 2.0"),
    (lambda ims: ims[0]["people"][0].update(scale="big"), "objpos / scale: expected a number"),
    (lambda ims: ims[0].update(name=""), "image 0 .* has people but no image.name"),
])
def test_bad_release_entries_are_named(tmp_path, change, match):
    images = copy.deepcopy(IMAGES)
    change(images)
    with pytest.raises(ValueError, match=match):
        read_release(_release(tmp_path / "bad.mat", images))


def test_files_that_are_not_the_release_are_refused(tmp_path):
    scipy_io.savemat(tmp_path / "gt_valid.mat", {"headboxes_src": np.zeros((2, 2, 3))})
    with pytest.raises(ValueError, match="no RELEASE.annolist"):
        read_release(tmp_path / "gt_valid.mat")
    (tmp_path / "junk.mat").write_bytes(b"not matlab")
    with pytest.raises(ValueError, match="not a MATLAB v5 file"):
        read_release(tmp_path / "junk.mat")
    with pytest.raises(FileNotFoundError, match="release file not found"):
        read_release(tmp_path / "none.mat")


def test_cli_converts_the_release(tmp_path, capsys):
    source = _release(tmp_path / "mpii_human_pose_v1_u12_1.mat", IMAGES)
    assert main(["convert-mpii", str(source), "--out", str(tmp_path / "annot"), "--single-person"]) == 0
    out = capsys.readouterr().out
    assert "train.h5: 2 people" in out and "test.h5: 1 person" in out and "1 without a position or joints" in out
    assert main(["convert-mpii", str(source), "--out", str(tmp_path / "annot"), "--head-boxes", str(source)]) == 2
    assert "--head-boxes applies to a peer's JSON" in capsys.readouterr().err
    json_file = tmp_path / "x.json"
    json_file.write_text("[]")
    assert main(["convert-mpii", str(json_file), "--out", str(tmp_path / "o"), "--single-person"]) == 2
    assert "--single-person applies to MPII's release" in capsys.readouterr().err
