"""MPII annotations in bearpaw's, HRNet's and mmpose's formats (``hgfast convert-mpii``) and their MATLAB files."""
import gzip
import json

import h5py
import numpy as np
import pytest

from hgfast.cli import main
from hgfast.data import read_annotations
from hgfast.data.peer_mpii import convert_peer_annotations, read_head_boxes, read_peer_annotations
from hgfast.eval import score_mpii_predictions

scipy_io = pytest.importorskip("scipy.io")

N, K = 7, 16


def _people(n=N, seed=0):
    """Raw MPII people as the peers' files hold them: 1-based joints ((0, 0) unannotated), objpos, scale."""
    rng = np.random.default_rng(seed)
    joints = rng.uniform(5, 600, (n, K, 2)).round(3)
    annotated = rng.random((n, K)) > 0.2
    annotated[:, 9] = True
    joints[~annotated] = 0
    return {"imgname": [f"{100 + i:09d}.jpg" for i in range(n)], "objpos": rng.uniform(100, 500, (n, 2)).round(3),
            "scale": rng.uniform(1, 5, n).round(3), "joints": joints, "annotated": annotated,
            "visible": annotated & (rng.random((n, K)) > 0.3)}


def _bearpaw(path, train, valid):
    """bearpaw's mpii_annotations.json: both splits in one list, MATLAB's whole numbers as floats."""
    entries = []
    for split, p in ((0, train), (1, valid)):
        for i in range(len(p["imgname"])):
            entries.append({"dataset": "MPI", "isValidation": float(split), "img_paths": p["imgname"][i],
                            "objpos": p["objpos"][i].tolist(), "scale_provided": float(p["scale"][i]),
                            "joint_self": np.concatenate([p["joints"][i], p["visible"][i, :, None]], 1).tolist(),
                            "annolist_index": float(10 + i), "people_index": 1.0 + i % 2})
    text = json.dumps(entries)
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return path


def _hrnet(path, p, labelled=True):
    """HRNet's / mmpose's train/valid/test.json: joints_vis 1 for every annotated joint, -1 placeholders."""
    entries = []
    for i in range(len(p["imgname"])):
        e = {"image": p["imgname"][i], "center": p["objpos"][i].tolist(), "scale": float(p["scale"][i])}
        if labelled:
            e["joints"] = np.where(p["annotated"][i, :, None], p["joints"][i], -1.0).tolist()
            e["joints_vis"] = p["annotated"][i].astype(int).tolist()
        entries.append(e)
    path.write_text(json.dumps(entries))
    return path


def _head_boxes(p, rng=np.random.default_rng(3)):
    """(N, 2, 2) head boxes and the evaluation file's joints / missing flags for people ``p``."""
    top_left = rng.uniform(0, 300, (len(p["imgname"]), 2))
    return np.stack([top_left, top_left + rng.uniform(20, 60, top_left.shape)], 1)


def _gt_mat(path, p, boxes, v73=False):
    """gt_valid.mat: headboxes_src (2, 2, N), pos_gt_src (K, 2, N), jnt_missing (K, N), as MATLAB shapes them."""
    arrays = {"headboxes_src": boxes.transpose(1, 2, 0), "pos_gt_src": p["joints"].transpose(1, 2, 0),
              "jnt_missing": (~p["annotated"]).T.astype(np.float64)}
    if v73:  # MATLAB -v7.3: HDF5 with the dimensions reversed
        with h5py.File(path, "w") as f:
            for key, value in arrays.items():
                f[key] = value.T
    else:
        scipy_io.savemat(path, {**arrays, "dataset_joints": np.array([["rank"] * K], dtype=object)})
    return path


def test_bearpaw_json_converts_to_the_adjusted_h5_splits(tmp_path):
    train, valid = _people(9, seed=1), _people()
    source = _bearpaw(tmp_path / "mpii_annotations.json.gz", train, valid)
    written = convert_peer_annotations(source, tmp_path / "annot")
    assert [(w["split"], w["people"], w["scorable"]) for w in written] == [("train", 9, 0), ("valid", N, 0)]
    for split, p in (("train", train), ("valid", valid)):
        ann = read_annotations(tmp_path / "annot" / f"{split}.h5")
        assert ann["imgname"].tolist() == p["imgname"]
        np.testing.assert_allclose(ann["center"], p["objpos"] + np.stack([0 * p["scale"], 15 * p["scale"]], 1))
        np.testing.assert_allclose(ann["scale"], 1.25 * p["scale"])
        np.testing.assert_array_equal(ann["part"], p["joints"])  # 1-based, (0, 0) unannotated, as annot/*.h5
        np.testing.assert_array_equal(ann["visible"], p["visible"])
        np.testing.assert_array_equal(ann["normalize"], 0)  # no head boxes given
    with h5py.File(tmp_path / "annot" / "valid.h5") as f:
        assert f["index"][()].tolist() == list(range(9, 9 + N)) and f["person"][()].tolist() == [0, 1] * 3 + [0]


def test_head_boxes_give_the_validation_split_its_pckh_normaliser(tmp_path):
    valid = _people()
    boxes = _head_boxes(valid)
    expected = 0.6 * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1)
    for v73 in (False, True):
        gt = _gt_mat(tmp_path / f"gt_valid{int(v73)}.mat", valid, boxes, v73)
        heads = read_head_boxes(gt)
        np.testing.assert_array_equal(heads["boxes"], boxes)
        np.testing.assert_array_equal(heads["joints"], valid["joints"])
        np.testing.assert_array_equal(heads["missing"], ~valid["annotated"])
        out = tmp_path / f"out{int(v73)}"
        convert_peer_annotations(_bearpaw(tmp_path / "bp.json", _people(3, 1), valid), out, gt)
        np.testing.assert_allclose(read_annotations(out / "valid.h5")["normalize"], expected)
        np.testing.assert_array_equal(read_annotations(out / "train.h5")["normalize"], 0)


def test_hrnet_and_bearpaw_files_of_the_same_people_convert_alike(tmp_path):
    valid = _people()
    gt = _gt_mat(tmp_path / "gt_valid.mat", valid, _head_boxes(valid))
    convert_peer_annotations(_bearpaw(tmp_path / "bp.json", _people(2, 1), valid), tmp_path / "bp", gt)
    written = convert_peer_annotations(_hrnet(tmp_path / "mpii_val.json", valid), tmp_path / "hrnet", gt)
    assert written[0]["path"].name == "valid.h5" and written[0]["scorable"] == N
    a, b = read_annotations(tmp_path / "bp" / "valid.h5"), read_annotations(tmp_path / "hrnet" / "valid.h5")
    for key in ("imgname", "center", "scale", "part", "normalize"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(b["visible"], valid["annotated"])  # HRNet's files: annotated, not visibility


def test_joints_the_head_box_file_marks_missing_are_not_scored(tmp_path):
    valid = _people()
    boxes = _head_boxes(valid)
    marked = {**valid, "annotated": valid["annotated"].copy(), "joints": valid["joints"].copy()}
    marked["annotated"][0, 9] = marked["annotated"][3, 9] = False
    j = int(np.flatnonzero(~valid["annotated"][1])[0])  # a joint only the head-box file has
    marked["annotated"][1, j], marked["joints"][1, j] = True, [40.0, 50.0]
    gt = _gt_mat(tmp_path / "gt.mat", marked, boxes)
    written = convert_peer_annotations(_hrnet(tmp_path / "valid.json", valid), tmp_path / "out", gt)
    assert (written[0]["dropped"], written[0]["added"]) == (2, 1)
    ann = read_annotations(tmp_path / "out" / "valid.h5")
    assert (ann["part"][[0, 3], 9] == 0).all() and ann["visible"][0, 9] == 0
    assert ann["part"][1, j].tolist() == [40.0, 50.0] and ann["visible"][1, j] == 1
    np.testing.assert_array_equal(ann["part"][2], valid["joints"][2])


def test_joints_take_the_head_box_files_coordinates_the_peers_score_against(tmp_path):
    valid = _people()
    nudged = {**valid, "joints": np.where(valid["annotated"][..., None], valid["joints"] + 0.3, 0.0)}
    gt = _gt_mat(tmp_path / "gt.mat", nudged, _head_boxes(valid))  # within MATCH_PIXELS: the same people
    convert_peer_annotations(_hrnet(tmp_path / "valid.json", valid), tmp_path / "out", gt)
    np.testing.assert_array_equal(read_annotations(tmp_path / "out" / "valid.h5")["part"], nudged["joints"])


def test_head_boxes_of_other_people_or_another_split_are_refused(tmp_path):
    valid = _people()
    boxes = _head_boxes(valid)
    source = _hrnet(tmp_path / "valid.json", valid)
    shuffled = {k: v[::-1] for k, v in valid.items()}
    with pytest.raises(ValueError, match=r"person 0 \(000000100.jpg\), joint \d+ .* not the same people"):
        convert_peer_annotations(source, tmp_path / "out", _gt_mat(tmp_path / "a.mat", shuffled, boxes))
    fewer = {k: v[:5] for k, v in valid.items()}
    with pytest.raises(ValueError, match="head-box file has 5 people of 16 joints, the split 7 .* not the same"):
        convert_peer_annotations(source, tmp_path / "out", _gt_mat(tmp_path / "b.mat", fewer, boxes[:5]))
    scipy_io.savemat(tmp_path / "c.mat", {"headboxes_src": boxes.transpose(1, 2, 0)})
    with pytest.raises(ValueError, match=r"has no \['pos_gt_src', 'jnt_missing'\]"):
        read_head_boxes(tmp_path / "c.mat")
    (tmp_path / "d.mat").write_bytes(b"not a mat file" * 20)
    with pytest.raises(ValueError, match="d.mat is not a MATLAB file scipy can read"):
        read_head_boxes(tmp_path / "d.mat")
    with pytest.raises(FileNotFoundError, match="head-box file not found"):
        read_head_boxes(tmp_path / "none.mat")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written


def test_people_without_a_position_are_matched_to_head_boxes_then_left_out(tmp_path):
    valid = _people()
    boxes = _head_boxes(valid)
    gt = _gt_mat(tmp_path / "gt.mat", valid, boxes)
    valid["objpos"][2] = -1
    written = convert_peer_annotations(_bearpaw(tmp_path / "bp.json", _people(3, 1), valid), tmp_path / "out", gt)
    assert [(w["split"], w["people"], w["left_out"]) for w in written] == [("train", 3, 0), ("valid", N - 1, 1)]
    keep = np.arange(N) != 2
    ann = read_annotations(tmp_path / "out" / "valid.h5")
    np.testing.assert_allclose(ann["normalize"], 0.6 * np.linalg.norm(boxes[keep, 1] - boxes[keep, 0], axis=1))
    np.testing.assert_array_equal(ann["part"], valid["joints"][keep])
    with pytest.raises(ValueError, match="has no validation people"):  # head boxes never land on train.h5
        convert_peer_annotations(_bearpaw(tmp_path / "t.json", _people(3, 1), _people(0)), tmp_path / "o2", gt)
    one = {k: v[:1] for k, v in valid.items()}
    single = _gt_mat(tmp_path / "one.mat", one, boxes[:1])  # MATLAB drops the last dimension of one person's
    scipy_io.savemat(single, {"headboxes_src": boxes[0], "pos_gt_src": one["joints"][0],
                              "jnt_missing": (~one["annotated"][0, :, None]).astype(float)})
    assert read_head_boxes(single)["boxes"].shape == (1, 2, 2)
    nan = {**valid, "joints": np.where(valid["annotated"][..., None], np.nan, valid["joints"])}
    with pytest.raises(ValueError, match="joints not marked missing must be finite"):
        read_head_boxes(_gt_mat(tmp_path / "nan.mat", nan, boxes))
    (tmp_path / "o3" / "valid.h5").mkdir(parents=True)
    with pytest.raises(IsADirectoryError, match="valid.h5: not a file"):
        convert_peer_annotations(tmp_path / "bp.json", tmp_path / "o3", overwrite=True)
    assert not (tmp_path / "o3" / "train.h5").exists()


def test_a_test_split_converts_to_an_unlabelled_file(tmp_path):
    people = _people()
    people["objpos"][2] = -1  # no position: left out, as the loaders cannot crop it
    written = convert_peer_annotations(_hrnet(tmp_path / "test.json", people, labelled=False), tmp_path / "out")
    assert [(w["split"], w["people"], w["joints"], w["left_out"]) for w in written] == [("test", N - 1, 0, 1)]
    with h5py.File(tmp_path / "out" / "test.h5") as f:
        assert sorted(f) == ["center", "imgname", "scale"]
    ann = read_annotations(tmp_path / "out" / "test.h5")
    assert ann["imgname"].tolist() == people["imgname"][:2] + people["imgname"][3:]
    with pytest.raises(ValueError, match="a split without joints"):
        convert_peer_annotations(tmp_path / "test.json", tmp_path / "out2", tmp_path / "gt.mat")


@pytest.mark.parametrize("edit, message", [
    (lambda e: e.pop("img_paths"), r"person 1: no 'img_paths'"),
    (lambda e: e.update(joint_self=[[1, 2, 1]] * 15), r"person 1: 'joint_self' must be 16 × 3 numbers"),
    (lambda e: e.update(objpos=["1", 2]), r"person 1: 'objpos' must be 2 numbers"),
    (lambda e: e.update(isValidation=0.5), r"person 1: 'isValidation' must be 0 or 1"),
    (lambda e: e.update(scale_provided=True), r"person 1: 'scale_provided' must be a number"),
    (lambda e: e.update(annolist_index=0), r"'annolist_index' must be a whole number >= 1"),
    (lambda e: e.update(scale_provided=0.0), r"person 1: 'scale_provided' gives the scale 0.0 .* finite and > 0"),
    (lambda e: e.update(joint_self=[[1e7, 2, 1]] * 16), r"person 1: 'joint_self' gives the part .* within ±"),
    (lambda e: e.update(joint_self=[[1, 2, 2]] * 16), r"person 1: 'joint_self' must be 0 or 1 per joint"),
    (lambda e: e.update(objpos=[1, 10**400]), r"person 1: 'objpos' must be 2 numbers"),
    (lambda e: e.pop("annolist_index"), r"person 1 lacks 'annolist_index', person 0 has them"),
    (lambda e: e.pop("people_index"), r"person 1 lacks 'people_index', person 0 has them"),
])
def test_bad_entries_are_refused_by_person_and_key(tmp_path, edit, message):
    source = _bearpaw(tmp_path / "bp.json", _people(3, 1), _people(2))
    entries = json.loads(source.read_text())
    edit(entries[1])
    source.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=message):
        convert_peer_annotations(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_files_of_no_known_format_or_mixed_labels_are_refused(tmp_path):
    bad = tmp_path / "x.json"
    for content, message in (({"people": []}, "expected a non-empty list of people"),
                             ([{"file": "a.jpg"}], r"person 0 has keys \['file'\]; expected bearpaw's")):
        bad.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            read_peer_annotations(bad)
    source = _hrnet(tmp_path / "train.json", _people())
    entries = json.loads(source.read_text())
    del entries[4]["joints"], entries[4]["joints_vis"]
    source.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="person 4 lacks 'joints' / 'joints_vis', person 0 has them"):
        read_peer_annotations(source)
    bad.write_bytes(gzip.compress(b"[{"))
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_peer_annotations(bad)


def test_cli_converts_refuses_to_overwrite_and_scores_peer_predictions(tmp_path, capsys):
    valid = _people()
    gt = _gt_mat(tmp_path / "gt_valid.mat", valid, _head_boxes(valid))
    source = _bearpaw(tmp_path / "mpii_annotations.json", _people(4, 1), valid)
    out = tmp_path / "annot"
    assert main(["convert-mpii", str(source), "--head-boxes", str(gt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'train.h5'}: 4 people" in printed and "not scorable" in printed
    assert f"wrote {out / 'valid.h5'}: {N} people" in printed and f"{N} scorable (PCKh normaliser from" in printed
    assert main(["convert-mpii", str(source), "--out", str(out)]) == 2
    assert "valid.h5 exist(s); give overwrite=True (--overwrite)" in capsys.readouterr().err
    assert read_annotations(out / "valid.h5")["normalize"].min() > 0  # untouched
    assert main(["convert-mpii", str(source), "--out", str(out), "--overwrite"]) == 0
    assert read_annotations(out / "valid.h5")["normalize"].max() == 0
    convert_peer_annotations(source, out, gt, overwrite=True)

    # a peer's predictions (HRNet's pred.mat: (N, K, 2), 1-based) scored against the converted split
    preds = valid["joints"] + np.where(np.arange(N)[:, None, None] < 4, 0.5, 100.0)
    scipy_io.savemat(tmp_path / "pred.mat", {"preds": preds})
    table = score_mpii_predictions(tmp_path / "pred.mat", out / "valid.h5")
    assert table["samples"] == N
    near = (np.arange(N) < 4)[:, None] & valid["annotated"]
    scored = valid["annotated"].copy()
    scored[:, [6, 7]] = False  # pelvis and thorax: not in PCKh's mean
    assert table["pck"]["0.5"]["mean_weighted"] == pytest.approx(near[scored].sum() / scored.sum())
    # MATLAB -v7.3 (HDF5 behind a "MATLAB 7.3" header): stored 2 x K x N, transposed even where N is 2
    two = tmp_path / "two.mat"
    with h5py.File(two, "w", userblock_size=512) as f:
        f["preds"] = preds[:2].T
    with open(two, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file")
    from hgfast.eval.mpii_results import read_mpii_predictions
    np.testing.assert_array_equal(read_mpii_predictions(two)["preds"], preds[:2])
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="text.h5 is not an HDF5 file"):
        read_mpii_predictions(tmp_path / "text.h5")
    scipy_io.savemat(tmp_path / "bad.mat", {"preds": preds[:, :, :1]})
    assert main(["score", str(tmp_path / "bad.mat"), "--annotations", str(out / "valid.h5")]) == 2
    assert "variable 'preds' must be (N, K, 2) numbers" in capsys.readouterr().err


def _peer_pckh(preds, heads, threshold=0.5):
    """PCKh as HRNet's and bearpaw's scripts compute it from a gt_valid.mat (written here from the formula):
    per joint the share of non-missing joints within threshold × 0.6 × head diagonal (<=), and the mean over the
    joints but pelvis and thorax weighted by their counts."""
    scored = ~heads["missing"]
    head = 0.6 * np.linalg.norm(heads["boxes"][:, 1] - heads["boxes"][:, 0], axis=1)
    within = (np.linalg.norm(preds - heads["joints"], axis=2) / head[:, None] <= threshold) & scored
    per_joint, count = within.sum(0) / scored.sum(0), scored.sum(0)
    used = np.array([j not in (6, 7) for j in range(K)])
    return per_joint, (per_joint * count)[used].sum() / count[used].sum()


def test_hgfast_scores_a_converted_split_as_the_peers_scripts_do(tmp_path):
    """A peer's files converted, its predictions scored: hgfast's PCKh (--inclusive, HRNet's <=) is theirs."""
    valid = _people(40, seed=5)
    boxes = _head_boxes(valid, np.random.default_rng(6))
    marked = {**valid, "annotated": valid["annotated"] & (np.random.default_rng(7).random((40, K)) > 0.05)}
    gt = _gt_mat(tmp_path / "gt_valid.mat", marked, boxes)
    convert_peer_annotations(_hrnet(tmp_path / "valid.json", valid), tmp_path / "annot", gt)
    head = 0.6 * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1)
    offsets = np.random.default_rng(8).normal(0, 0.4, (40, K, 2)) * head[:, None, None]
    preds = valid["joints"] + offsets
    scipy_io.savemat(tmp_path / "pred.mat", {"preds": preds})
    table = score_mpii_predictions(tmp_path / "pred.mat", tmp_path / "annot" / "valid.h5", (0.5,), inclusive=True)
    per_joint, mean = _peer_pckh(preds, read_head_boxes(gt))
    ours = table["pck"]["0.5"]
    assert ours["mean_weighted"] == pytest.approx(mean)
    np.testing.assert_allclose([ours["per_joint"][name] for name in table["count"]], per_joint)
    assert 0.2 < mean < 0.9  # neither all hits nor all misses


def test_converted_hrnet_files_train_and_say_their_visible_flag_is_the_annotated_one(tmp_path):
    """HRNet's joints_vis does not tell occluded joints apart: data.loss_weight=visible says so in train.log."""
    cv2 = pytest.importorskip("cv2")
    from hgfast.train.config import resolve
    from hgfast.train.loop import train

    people = _people(4, seed=9)
    people["joints"] = np.where(people["annotated"][..., None], np.random.default_rng(1).uniform(5, 60, (4, K, 2)), 0)
    people["objpos"], people["scale"] = np.full((4, 2), 32.0), np.full(4, 0.3)
    (tmp_path / "images").mkdir()
    for name in people["imgname"]:
        cv2.imwrite(str(tmp_path / "images" / name), np.full((64, 64, 3), 128, np.uint8))
    gt = _gt_mat(tmp_path / "gt.mat", people, _head_boxes(people))
    convert_peer_annotations(_hrnet(tmp_path / "train.json", people), tmp_path / "annot")
    convert_peer_annotations(_hrnet(tmp_path / "valid.json", people), tmp_path / "annot", gt)
    with h5py.File(tmp_path / "annot" / "valid.h5") as f:
        assert f.attrs["visible_is_annotated"]
    bp = convert_peer_annotations(_bearpaw(tmp_path / "bp.json", people, people), tmp_path / "bp")
    with h5py.File(bp[0]["path"]) as f:
        assert "visible_is_annotated" not in f.attrs  # bearpaw's files tell them apart
    sets = ["data.dataset=mpii", f"data.root={tmp_path}", "data.loss_weight=visible", "model.nstack=1",
            "model.nfeat=16", "model.depth=2", "data.input_size=32", "data.workers=0", "batch_size=2", "steps=1",
            "val_every=1", "threads=1"]
    train(resolve(overrides=sets, workdir=str(tmp_path / "run")))
    log = (tmp_path / "run" / "train.log").read_text()
    assert "does not tell visible from occluded joints" in log and "train.h5" in log


def test_a_peers_layout_without_h5_files_says_how_to_convert(tmp_path):
    (tmp_path / "annot").mkdir()
    source = _hrnet(tmp_path / "annot" / "valid.json", _people())
    with pytest.raises(FileNotFoundError, match=r"valid.h5; .*valid.json is there: convert it first, hgfast "
                                                r"convert-mpii .*valid.json --out"):
        read_annotations(tmp_path / "annot" / "valid.h5")
    with pytest.raises(FileNotFoundError, match=r"not found: \S+train.h5$"):  # no JSON beside it: no hint
        read_annotations(tmp_path / "annot" / "train.h5")
    with pytest.raises(ValueError, match="is JSON; MPII-format data reads h5 files: convert a peer's"):
        read_annotations(source)
    (tmp_path / "mpii_human_pose_v1_u12_1.mat").write_bytes(b"")  # MPII's release in data.root
    with pytest.raises(FileNotFoundError, match=r"train.h5; MPII's release \S+u12_1.mat is there: convert it first, "
                                                r"hgfast convert-mpii \S+u12_1.mat --out \S+annot$"):
        read_annotations(tmp_path / "annot" / "train.h5")
    with pytest.raises(FileNotFoundError, match=r"valid.json is there"):  # the split's own JSON first
        read_annotations(tmp_path / "annot" / "valid.h5")
