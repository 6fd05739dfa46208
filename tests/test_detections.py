"""COCO's detected-box protocol: detections files (read, bad input), crops in detected boxes, OKS-NMS against a
brute-force reference, rescoring, AP over every image, and ``hgfast eval --detections`` end to end."""
import json
import warnings

import numpy as np
import pytest
import torch

from hgfast.cli import main
from hgfast.data import COCODetections, Skeleton, build_detections, read_coco, read_detections
from hgfast.eval import coco_predictions, evaluate, format_table
from hgfast.eval.oks import COCO_OKS_SIGMAS, coco_results, oks_ap, oks_nms, person_scores
from hgfast.models import StackedHourglass
from hgfast.train.config import resolve, save_yaml
from test_coco import COCO_NAMES, _write_coco


def _detections(path, entries):
    path.write_text(json.dumps(entries))
    return path


def _gt_detections(ann, score=0.9):
    """One detection per ground-truth person: its box, ``score``."""
    return [{"image_id": i, "category_id": 1, "bbox": list(b), "score": score}
            for i, b in zip(ann["image_id"], ann["box"])]


def test_detections_are_read_filtered_and_cropped(tmp_path):
    path, images, *_ = _write_coco(tmp_path)
    data = json.loads(path.read_text())
    data["images"][0].update(width=120, height=90)  # image 1's size (image 2 gives none)
    path.write_text(json.dumps(data))
    ann = read_coco(path)
    entries = _gt_detections(ann) + [
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 9, 9], "score": 1.0},     # another category
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 0.01},    # below min_score
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 0, 9], "score": 0.9},     # empty box
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 0.5, 9], "score": 0.9},   # under a pixel wide
        {"image_id": 1, "category_id": 1, "bbox": [120, 5, 9, 9], "score": 0.9},   # right of its image
        {"image_id": 2, "category_id": 1, "bbox": [120, 5, 9, 9], "score": 0.9},   # image of unknown size: kept
        {"image_id": 99, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 0.9},    # not an image of the file
        {"image_id": 2, "bbox": [4.0, 6.0, 30.0, 20.0], "score": 0.7},             # no category: the keypoints'
        {"image_id": 2.0, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.6}]   # an id written as a float
    ds = COCODetections(path, _detections(tmp_path / "det.json", entries), images, input_size=32,
                        min_score=np.float32(0.05))
    assert len(ds) == 6 and ds.skipped == {"other category": 1, "score below min_score": 1, "box under a pixel": 2,
                                           "image not in annotations": 1, "box outside image": 1}
    assert ds.image_ids([4, 0, 5]) == [2, ann["image_id"][0], 2] and ds.category_id == 1
    assert type(ds.image_ids([5])[0]) is int  # as the annotation file's, for COCOeval and JSON
    rec = ds.record(4)
    np.testing.assert_allclose(rec["center"], [4 + 15 - 0.5, 6 + 10 - 0.5])  # the box's centre, pixel centres
    assert rec["scale"] == pytest.approx(1.25 * 30 / 200) and rec["normalize"] == 30
    assert rec["annotated"].shape == (17,) and not rec["annotated"].any()
    assert ds[4]["image"].shape == (3, 32, 32) and ds.skeleton.flip_permutation[1] == 2


def test_detections_bad_inputs(tmp_path):
    path, images, *_ = _write_coco(tmp_path)
    good = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 0.5}
    for entries, match in (({"a": 1}, "must be a list"),
                           ([good, {k: v for k, v in good.items() if k != "score"}], "entry 1: need image_id"),
                           ([dict(good, bbox=[0, 0, 9])], "entry 0"), ([dict(good, bbox=[0, "x", 1, 1])], "entry 0"),
                           ([dict(good, score=float("nan"))], "entry 0"),
                           ([dict(good, bbox=[0, 0, 1e20, 9])], r"entry 0: .*within ±1e\+06"),
                           ([dict(good, bbox=["0", "0", "9", "9"])], "entry 0"), ([dict(good, score="0.9")], "entry 0"),
                           ([dict(good, score=10 ** 400)], "entry 0"), (["box"], "entry 0"),
                           ([good, dict(good, image_id="1")], r"entry 1: image_id '1' is not the annotation file's 1"),
                           ([dict(good, category_id="1")], r"entry 0: category_id '1' is not the annotation file's 1"),
                           ([{**good, "bbox": [1, 2, 3, 10 ** 400]}], "entry 0"),
                           ([dict(good, image_id=99)], r"no usable detection .*'image not in annotations': 1")):
        with pytest.raises(ValueError, match=match):
            COCODetections(path, _detections(tmp_path / "d.json", entries), images)
    both = read_detections(_detections(tmp_path / "d.json", [good, dict(good, image_id="1")]),
                           {1: "a.png", "1": "b.png"}, 1)  # a file with both ids: each to its own image (no sizes)
    assert list(both["file_name"]) == ["a.png", "b.png"]
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        COCODetections(path, tmp_path / "broken.json", images)
    with pytest.raises(FileNotFoundError, match="detections file not found"):
        COCODetections(path, tmp_path / "none.json", images)
    detections = _detections(tmp_path / "d.json", [good])
    with pytest.raises(ValueError, match="min_score must be a number"):
        COCODetections(path, detections, images, min_score=None)
    for margin in (0, float("inf"), 1e300):
        with pytest.raises(ValueError, match="COCODetections: margin must be a number from 0.01 to 100"):
            COCODetections(path, detections, images, margin=margin)
    with pytest.raises(ValueError, match="oks_sigmas must be 17"):
        COCODetections(path, detections, images, oks_sigmas=[0.1])
    with pytest.raises(FileNotFoundError, match="not found in"):
        COCODetections(path, detections, tmp_path)


def _oks_nms_reference(image_ids, keypoints, score, areas, sigmas, threshold):
    """Greedy OKS-NMS written out pair by pair: visit people best first; keep one unless a kept person of its image
    has OKS > threshold with it."""
    kept = []
    for i in sorted(range(len(score)), key=lambda i: (-score[i], i)):
        suppressed = False
        for j in kept:
            if image_ids[j] != image_ids[i]:
                continue
            s = 0.0
            for k, sigma in enumerate(sigmas):
                d2 = float(np.sum((keypoints[i, k] - keypoints[j, k]) ** 2))
                s += np.exp(-d2 / (2 * (areas[i] + areas[j]) / 2 * (2 * sigma) ** 2))
            suppressed |= s / len(sigmas) > threshold
        if not suppressed:
            kept.append(i)
    return sorted(kept)


@pytest.mark.parametrize("threshold", [0.3, 0.9, 1.0])
def test_oks_nms_matches_the_pairwise_reference(threshold):
    rng = np.random.default_rng(1)
    n, k = 40, 5
    image_ids = list(rng.integers(0, 4, n))
    base = rng.uniform(0, 100, (n, k, 2))
    copies = rng.integers(0, n, n // 2)  # near-duplicates of other people, in the same image
    base[n // 2:] = base[copies] + rng.normal(0, 1.5, (n // 2, k, 2))
    for i, c in zip(range(n // 2, n), copies):
        image_ids[i] = image_ids[c]
    score, areas, sigmas = rng.uniform(0, 1, n), rng.uniform(200, 2000, n), rng.uniform(0.03, 0.1, k)
    kept = oks_nms(image_ids, base, score, areas, sigmas, threshold)
    assert kept.tolist() == _oks_nms_reference(image_ids, base, score, areas, sigmas, threshold)
    if threshold == 1.0:
        assert len(kept) == n
    if threshold == 0.9:
        assert n // 2 < len(kept) < n  # some near-duplicates suppressed, not everyone


def test_oks_nms_keeps_the_better_scored_copy():
    kp = np.array([[[10.0, 10.0], [20.0, 20.0]]] * 3)
    kept = oks_nms(["a", "a", "b"], kp, [0.2, 0.8, 0.1], [100.0] * 3, [0.05, 0.05])
    assert kept.tolist() == [1, 2]  # same image: the 0.8 one stays; image "b" is separate


def test_detected_people_are_rescored_thinned_and_evaluated_on_every_image(tmp_path):
    pytest.importorskip("pycocotools")
    path, images, *_ = _write_coco(tmp_path)
    ann = read_coco(path)
    entries = _gt_detections(ann) + [dict(_gt_detections(ann, 0.5)[0])]  # person 0 found twice
    ds = COCODetections(path, _detections(tmp_path / "det.json", entries), images)
    gt = ann["keypoints"][..., :2]
    joint_scores = np.full((4, 17), 0.9)
    joint_scores[3, :3] = 0.1  # below 0.2: not in the person score
    preds = {"index": np.arange(4), "pred": np.concatenate([gt, gt[:1] + 0.5]), "scores": joint_scores}
    results = coco_predictions(ds, preds)
    assert len(results) == 3 and [r["score"] for r in results] == pytest.approx([0.81] * 3)  # copy suppressed
    assert oks_ap(path, 1, results, COCO_OKS_SIGMAS)["AP"] == pytest.approx(1.0)
    every = coco_predictions(ds, preds, nms_threshold=1.0)
    assert len(every) == 4 and every[3]["score"] == pytest.approx(0.5 * person_scores(joint_scores[3:])[0])
    missed = [r for r in results if r["image_id"] != ann["image_id"][1]]  # no detection on the second image
    assert oks_ap(path, 1, missed)["AP"] < 1.0  # its person counts as a miss over every image
    assert oks_ap(path, 1, missed, image_ids=[r["image_id"] for r in missed])["AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"nms_threshold must be in \(0, 1\]"):
        coco_predictions(ds, preds, nms_threshold=0)
    five = COCODetections(path, tmp_path / "det.json", images, oks_sigmas=None)
    five.skeleton = type(five.skeleton).from_names([f"j{i}" for i in range(17)])  # no COCO names: no sigmas
    with pytest.raises(ValueError, match="data.oks_sigmas"):
        coco_predictions(five, preds)
    assert len(coco_predictions(five, preds, nms_threshold=1.0)) == 4  # no NMS needs no sigmas
    with pytest.raises(ValueError, match="box_scores must be"):
        coco_results([1, 2], 1, gt[:2], joint_scores[:2], box_scores=[0.5])
    with pytest.raises(ValueError, match="keypoints must be"):
        coco_results([1, 2], 1, gt[:2], joint_scores[:3])
    with pytest.raises(ValueError, match="no results"):
        oks_ap(path, 1, [])


def test_evaluate_on_detections_reports_ap_only(tmp_path):
    path, images, *_ = _write_coco(tmp_path)
    ds = COCODetections(path, _detections(tmp_path / "det.json", _gt_detections(read_coco(path))), images,
                        input_size=32)
    torch.manual_seed(0)
    model = StackedHourglass(nstack=1, nfeat=16, njoints=17, depth=2)
    table, preds = evaluate(model, ds, batch_size=2)
    assert "pck" not in table and table["samples"] == 3 and preds["pred"].shape == (3, 17, 2)
    assert table["detections"]["used"] == 3 and table["detections"]["nms_threshold"] == 0.9
    assert "AP" in table["oks"] or "pycocotools" in table["oks"]["skipped"]
    assert format_table(table).startswith("OKS")


def test_cli_eval_with_detections(tmp_path):
    path, images, *_ = _write_coco(tmp_path)
    work = tmp_path / "run"
    work.mkdir()
    StackedHourglass(nstack=1, nfeat=16, njoints=17, depth=2).save(work / "best.safetensors")
    sets = ["data.dataset=coco", f"data.train_annotations={path}", f"data.val_annotations={path}",
            f"data.image_dir={images}",
            "model.nstack=1", "model.nfeat=16", "model.depth=2", "data.input_size=32", "data.workers=0"]
    save_yaml(resolve(overrides=sets), work / "config.yaml")
    detections = _detections(tmp_path / "det.json", _gt_detections(read_coco(path)) * 2)
    results = tmp_path / "results.json"
    assert main(["eval", "--workdir", str(work), "--detections", str(detections), "--results", str(results),
                 "--nms-threshold", "1"]) == 0
    assert len(json.loads(results.read_text())) == 6  # every detection, no NMS
    table = json.loads((work / "eval_detections.json").read_text())
    assert table["detections"]["file"] == str(detections) and "pck" not in table
    assert not (work / "eval.json").exists()
    assert (work / "eval_detections.jpg").is_file() and not (work / "eval.jpg").exists()
    for bad in (["--nms-threshold", "0"], ["--min-score", "nan"], ["--thresholds", "0.2"], ["--inclusive"],
                ["--results", str(detections)], ["--json", str(path)]):  # nor over the data evaluated
        assert main(["eval", "--workdir", str(work), "--detections", str(detections)] + bad) == 2
    assert json.loads(detections.read_text()) and read_coco(path)
    assert main(["eval", "--workdir", str(work), "--min-score", "0.3"]) == 2  # no --detections
    (tmp_path / "gt_valid.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    assert main(["eval", "--workdir", str(work), "--results", str(tmp_path / "gt_valid.mat")]) == 2  # JSON only
    assert (tmp_path / "gt_valid.mat").read_bytes() == b"MATLAB 5.0 MAT-file"
    assert main(["eval", "--workdir", str(work), "--nms-threshold", "1", "--results", str(results)]) == 0  # GT boxes
    assert len(json.loads(results.read_text())) == 3
    assert main(["eval", "--workdir", str(work), "--set", "data.dataset=synthetic", "--nms-threshold", "1"]) == 2
    with pytest.raises(ValueError, match="'score below min_score': 6"):
        build_detections(resolve(overrides=sets).data, detections, 0.95)
    with pytest.raises(ValueError, match="detected boxes need COCO-format data"):
        build_detections(resolve().data, detections)


def test_oks_nms_scales_by_the_crop_area(tmp_path):
    """HRNet and mmpose measure a detected person's OKS with its crop's area ((margin x longer side)^2), not the
    detector box's w x h: a 20 x 80 box has a 100 x 100 crop, so a copy 3 px away is a duplicate (OKS 0.95 > 0.9),
    which the box's area (OKS 0.76) would keep."""
    path, images, *_ = _write_coco(tmp_path)
    image = int(read_coco(path)["image_id"][0])
    box = {"image_id": image, "category_id": 1, "bbox": [10, 10, 20, 80]}
    ds = COCODetections(path, _detections(tmp_path / "d.json", [dict(box, score=0.9), dict(box, score=0.8)]), images)
    kp = np.random.default_rng(0).uniform(20, 60, (1, 17, 2))
    preds = {"index": np.arange(2), "pred": np.concatenate([kp, kp + 3 / np.sqrt(2)]), "scores": np.ones((2, 17))}
    sigmas = np.asarray(COCO_OKS_SIGMAS)
    oks = [np.exp(-9 / (2 * area * (2 * sigmas) ** 2)).mean() for area in (20 * 80, 100 * 100)]
    assert oks[0] < 0.9 < oks[1]
    assert len(coco_predictions(ds, preds)) == 1


def test_oks_nms_crop_area_follows_the_input_aspect(tmp_path, monkeypatch):
    """A non-square input's crop is the box widened or heightened to its aspect: a 80 x 20 box under a 1:2
    (height 2 x width) input has a 100 x 200 crop (HRNet's 200² s_w s_h), under a square one 100 x 100."""
    import importlib

    evaluate_mod = importlib.import_module("hgfast.eval.evaluate")  # the module, not the function of that name
    path, images, *_ = _write_coco(tmp_path)
    box = {"image_id": int(read_coco(path)["image_id"][0]), "category_id": 1, "bbox": [10, 10, 80, 20]}
    dets = _detections(tmp_path / "d.json", [dict(box, score=0.9), dict(box, score=0.8)])
    seen = []
    monkeypatch.setattr(evaluate_mod, "oks_nms", lambda ids, kp, score, areas, *a: seen.append(areas) or [0])
    preds = {"index": np.arange(2), "pred": np.zeros((2, 17, 2)), "scores": np.ones((2, 17))}
    for size in ((64, 32), 64):
        coco_predictions(COCODetections(path, dets, images, input_size=size), preds)
    np.testing.assert_allclose(seen, [[200 * 100] * 2, [100 * 100] * 2])


def test_ground_truth_boxes_are_thinned_by_oks_nms_as_hrnets(tmp_path):
    """Two annotated people on one image predicted at the same place: OKS-NMS keeps the better-scored one, as
    HRNet's and mmpose's GT-box evaluations; nms_threshold 1 keeps both."""
    from hgfast.data import COCOKeypoints

    path, images, *_ = _write_coco(tmp_path)
    ds = COCOKeypoints(path, images)
    same = ds.image_ids([0, 2])
    assert same[0] == same[1]  # people 0 and 2 share an image
    pred = ds.ann["keypoints"][..., :2].copy()
    pred[2] = pred[0]
    scores = np.full((3, 17), 0.9)
    scores[2] = 0.8
    results = coco_predictions(ds, {"index": np.arange(3), "pred": pred, "scores": scores})
    assert [r["score"] for r in results] == pytest.approx([0.9, 0.9])
    assert len(coco_predictions(ds, {"index": np.arange(3), "pred": pred, "scores": scores}, 1.0)) == 3


def test_ground_truth_boxes_are_evaluated_on_every_image(tmp_path):
    """The GT-box protocol, as HRNet's: COCOeval runs over every image of the file, so a person the dataset left
    out (no box to crop) is a miss and perfect predictions of the others score AP < 1 (1 without that person)."""
    pytest.importorskip("pycocotools")
    from hgfast.data import COCOKeypoints
    from hgfast.eval.evaluate import _coco_ap

    path, images, *_ = _write_coco(tmp_path)
    data = json.loads(path.read_text())
    lonely = data["annotations"][1]  # the only person on the second image
    lonely.pop("bbox")
    lonely["keypoints"] = [0.0] * 51
    lonely["keypoints"][:3] = [30.0, 30.0, 2]
    lonely["num_keypoints"] = 1
    path.write_text(json.dumps(data))
    ds = COCOKeypoints(path, images)
    assert len(ds) == 2 and ds.skipped["no box"] == 1
    preds = {"index": np.arange(2), "pred": ds.ann["keypoints"][..., :2], "scores": np.full((2, 17), 0.9)}
    assert 0 < _coco_ap(ds, preds, 0.9)["AP"] < 1
    data["annotations"].pop(1)
    path.write_text(json.dumps(data))
    assert _coco_ap(COCOKeypoints(path, images), preds, 0.9)["AP"] == pytest.approx(1.0)


def test_ground_truth_boxes_warn_where_an_image_has_more_people_than_cocoeval_counts(tmp_path):
    """COCOeval scores the 20 best results per image: with one prediction per annotated person (GT boxes) an image
    of 21 people loses one, which a warning says; detections (extra boxes by design) do not warn."""
    pytest.importorskip("pycocotools")
    from hgfast.data import COCOKeypoints
    from hgfast.eval.evaluate import _coco_ap

    path, images, *_ = _write_coco(tmp_path, n=42)  # 21 people on each of the two images
    ds = COCOKeypoints(path, images)
    pred = ds.ann["keypoints"][..., :2] + np.arange(42)[:, None, None]  # apart: OKS-NMS keeps them all
    preds = {"index": np.arange(42), "pred": pred, "scores": np.full((42, 17), 0.9)}
    with pytest.warns(UserWarning, match=r"at most 20 people per image: in 2 image\(s\)"):
        _coco_ap(ds, preds, 1.0)
    results = coco_predictions(ds, preds, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oks_ap(path, 1, results)


def test_cli_eval_on_an_image_info_file_writes_predictions_only(tmp_path, capsys):
    """COCO's test-dev: an image-info file (images and detection categories, no annotations nor keypoints); the
    joints come from the checkpoint and the predictions are those of the same boxes on the annotated file."""
    path, images, *_ = _write_coco(tmp_path)
    data = json.loads(path.read_text())
    info = tmp_path / "image_info_test.json"
    info.write_text(json.dumps({"images": data["images"], "categories": [
        {"id": 3, "name": "car", "supercategory": "vehicle"}, {"id": 1, "name": "person", "supercategory": "person"}]}))
    work = tmp_path / "run"
    work.mkdir()
    torch.manual_seed(0)
    skeleton = COCODetections(path, _detections(tmp_path / "d.json", _gt_detections(read_coco(path))), images,
                              input_size=32).skeleton
    StackedHourglass(nstack=1, nfeat=16, njoints=17, depth=2).save(work / "best.safetensors", skeleton)
    sets = ["data.dataset=coco", f"data.train_annotations={path}", f"data.val_annotations={path}",
            f"data.image_dir={images}", "model.nstack=1", "model.nfeat=16", "model.depth=2", "data.input_size=32",
            "data.workers=0"]
    save_yaml(resolve(overrides=sets), work / "config.yaml")
    detections = _detections(tmp_path / "det.json", _gt_detections(read_coco(path)))
    base = ["eval", "--workdir", str(work), "--detections", str(detections), "--nms-threshold", "1"]
    assert main(base + ["--results", str(tmp_path / "annotated.json")]) == 0
    test_dev = base + ["--set", f"data.val_annotations={info}"]
    assert main(test_dev) == 2
    assert "has no annotations (an image-info file, like COCO's test-dev): predictions only; give --results r.json" \
        in capsys.readouterr().err
    assert main(test_dev + ["--results", str(tmp_path / "test_dev.json")]) == 0
    assert "OKS AP skipped: " in capsys.readouterr().out
    annotated, test_dev_results = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("annotated", "test_dev"))
    assert len(test_dev_results) == 3 and test_dev_results == annotated  # same boxes, same model: same people
    table = json.loads((work / "eval_detections_image_info_test.json").read_text())
    assert "image-info file" in table["oks"]["skipped"] and table["samples"] == 3
    # the image-info file needs detected boxes, a person category and a checkpoint that names its joints
    with pytest.raises(ValueError, match="has no 'annotations': an image-info file .* no ground truth to train"):
        read_coco(info)
    with pytest.raises(ValueError, match="has no usable detection .*'other category': 3"):
        COCODetections(info, detections, images, category_id=3, skeleton=skeleton)  # the cars' category
    for categories, why in (([{"id": 3, "name": "car"}], r"0 categories named 'person' \(give data.category_id; "
                                                         r"ids: \[3\]\)"),
                            ([], "has no 'categories' with ids: it needs the person category"),
                            ([{"id": 1, "name": "person", "keypoints": ["nose"]}], r"lists the joints \['nose'\], "
                                                                                    r"the model predicts \['nose', ")):
        info.write_text(json.dumps({"images": data["images"], "categories": categories}))
        with pytest.raises(ValueError, match=why):
            COCODetections(info, detections, images, skeleton=skeleton)
    info.write_text(json.dumps({"images": data["images"], "categories": [{"id": 1, "name": "person"}]}))
    unnamed = Skeleton.from_names([f"joint_{i}" for i in range(17)], ())  # no OKS sigmas for these joints
    StackedHourglass(nstack=1, nfeat=16, njoints=17, depth=2).save(work / "best.safetensors", unnamed)
    assert main(test_dev + ["--results", str(tmp_path / "t.json"), "--nms-threshold", "0.9"]) == 2
    assert "OKS-NMS of detected people needs per-joint OKS sigmas" in capsys.readouterr().err  # before predicting
    StackedHourglass(nstack=1, nfeat=16, njoints=17, depth=2).save(work / "best.safetensors")  # no skeleton
    assert main(test_dev + ["--results", str(tmp_path / "test_dev.json")]) == 2
    assert "with the joint names a checkpoint stores" in capsys.readouterr().err


def test_score_gives_the_oks_ap_of_a_coco_results_file(tmp_path, capsys):
    """hgfast score on eval's own results file gives eval's AP; perfect predictions give AP 1; bad entries are
    named. Needs pycocotools."""
    pytest.importorskip("pycocotools")
    path, images, kp, *_ = _write_coco(tmp_path)
    ann = read_coco(path)
    perfect = [{"image_id": i, "category_id": 1, "keypoints": np.concatenate([k, np.ones((17, 1))], 1).ravel().tolist(),
                "score": 0.9} for i, k in zip(ann["image_id"], kp)]
    (tmp_path / "perfect.json").write_text(json.dumps(perfect))
    assert main(["score", str(tmp_path / "perfect.json"), "--annotations", str(path), "--json",
                 str(tmp_path / "s.json")]) == 0
    assert "3 people (OKS AP over every image; results of other categories left out: 0)" in capsys.readouterr().out
    table = json.loads((tmp_path / "s.json").read_text())
    assert table["oks"]["AP"] == pytest.approx(1.0) and table["results"] == 3 and len(table["joints"]) == 17
    # eval's results file scores as eval scored it (ground-truth boxes, no NMS)
    work = tmp_path / "run"
    work.mkdir()
    torch.manual_seed(0)
    StackedHourglass(nstack=1, nfeat=16, njoints=17, depth=2).save(work / "best.safetensors")
    sets = ["data.dataset=coco", f"data.train_annotations={path}", f"data.val_annotations={path}",
            f"data.image_dir={images}", "model.nstack=1", "model.nfeat=16", "model.depth=2", "data.input_size=32",
            "data.workers=0"]
    save_yaml(resolve(overrides=sets), work / "config.yaml")
    assert main(["eval", "--workdir", str(work), "--nms-threshold", "1", "--results", str(tmp_path / "r.json")]) == 0
    assert main(["score", str(tmp_path / "r.json"), "--annotations", str(path), "--json", str(tmp_path / "s.json")]) \
        == 0
    assert json.loads((tmp_path / "s.json").read_text())["oks"] == json.loads((work / "eval.json").read_text())["oks"]
    # entries that do not fit the keypoint file, and flags of the other format
    for change, why in (({"image_id": 99}, "image_id 99 is not one of the keypoint file's"),
                        ({"image_id": str(ann["image_id"][0])}, "(a string and a number)"),
                        ({"category_id": 2}, "category_id 2 is not one of the keypoint file's"),
                        ({"category_id": None}, "category_id None is not one of the keypoint file's"),
                        ({"category_id": True}, "category_id True is a bool, not an id"),
                        ({"keypoints": [1.0] * 50}, "keypoints must be 51 numbers"),
                        ({"keypoints": [float("nan")] * 51}, "keypoints must be 51 numbers"),
                        ({"score": True}, "need image_id, category_id, keypoints and a score")):
        (tmp_path / "bad.json").write_text(json.dumps([perfect[0], {**perfect[1], **change}]))
        assert main(["score", str(tmp_path / "bad.json"), "--annotations", str(path)]) == 2
        err = capsys.readouterr().err
        assert "entry 1: " in err and why in err, err
    (tmp_path / "empty.json").write_text("[]")
    assert main(["score", str(tmp_path / "empty.json"), "--annotations", str(path)]) == 2
    assert "must be a non-empty list" in capsys.readouterr().err
    for flag in (["--thresholds", "0.5"], ["--inclusive"]):
        assert main(["score", str(tmp_path / "perfect.json"), "--annotations", str(path), *flag]) == 2
        assert "applies to MPII predictions (.h5)" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "perfect.json"), "--annotations", str(path), "--oks-sigmas", "0.1"]) == 2
    assert "OKS AP needs 17 per-joint sigmas (hgfast score --oks-sigmas) " in capsys.readouterr().err
    # what other tools add is not passed on (a bbox in some entries only; pycocotools would take its area), and
    # results of the file's other categories are left out and counted
    data = json.loads(path.read_text())
    data["categories"].append({"id": 2, "name": "dog"})
    (tmp_path / "two.json").write_text(json.dumps(data))
    extra = [{**perfect[0], "bbox": [0, 0, 1, 1], "area": 1.0}, *perfect[1:], {**perfect[0], "category_id": 2}]
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    assert main(["score", str(tmp_path / "extra.json"), "--annotations", str(tmp_path / "two.json"), "--json",
                 str(tmp_path / "s.json")]) == 0
    table = json.loads((tmp_path / "s.json").read_text())
    assert table["oks"]["AP"] == pytest.approx(1.0) and table["results"] == 3 and table["other_categories"] == 1
