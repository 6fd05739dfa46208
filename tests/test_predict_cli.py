"""Predictor and the train / eval / predict / export CLI end to end, with bad inputs."""
import importlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from hgfast.cli import main
from hgfast.data import crop, render
from hgfast.models import StackedHourglass
from hgfast.ops import MPII_FLIP_PERMUTATION, gaussian_heatmaps
from hgfast.predict import MAX_DARK_KERNEL, Predictor, dark_kernel_for, predict_crops

TINY = ["model.nstack=1", "model.nfeat=16", "model.depth=2", "data.input_size=32", "data.image_size=48",
        "data.train_length=16", "data.val_length=8", "data.workers=0", "batch_size=4", "steps=2", "val_every=2",
        "vis_every=2", "ckpt_every=2", "threads=1"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli") / "run"
    argv = ["train", "--workdir", str(work)] + [a for s in TINY for a in ("--set", s)]
    assert main(argv) == 0
    return work


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "person.png"
    cv2.imwrite(str(path), render(0, "val", 0, 64)["image"][..., ::-1])
    return path


def test_predictor_shapes_batching_and_boxes(workdir, image_file):
    predictor = Predictor(workdir / "best.safetensors", input_size=32, device="cpu", batch_size=2)
    images = [render(0, "val", i, 48)["image"] for i in range(3)]
    kp, scores = predictor(images + [str(image_file)])
    assert kp.shape == (4, 16, 2) and scores.shape == (4, 16) and kp.dtype == np.float32
    one, _ = predictor(images[:1])
    np.testing.assert_allclose(one[0], kp[0], atol=1e-4)
    boxed, _ = predictor(images[:1], boxes=[(10, 5, 20, 30)])
    assert np.all(np.abs(boxed - np.array([20, 20])) < 30)  # inside the 1.25 × 30 px crop around the box
    flipped, _ = Predictor(StackedHourglass.from_checkpoint(workdir / "best.safetensors"), 32, "cpu", flip=True)(
        images[:1])
    assert flipped.shape == (1, 16, 2)
    empty, _ = predictor([])
    assert empty.shape == (0, 16, 2)
    with pytest.warns(UserWarning):  # no CUDA here: the fused path falls back to the reference, and says so
        fused, _ = Predictor(workdir / "best.safetensors", 32, "cpu", batch_size=2, fused=True)(images)
    np.testing.assert_allclose(fused, kp[:3], atol=1e-4)  # same model, channels_last: the same keypoints
    half, _ = Predictor(workdir / "best.safetensors", 32, "cpu", batch_size=2, amp="bf16")(images)
    assert np.median(np.abs(half - kp[:3])) < 1.0  # bf16 autocast: nearly the fp32 keypoints
    with pytest.raises(ValueError, match="amp must be one of"):
        Predictor(workdir / "best.safetensors", 32, "cpu", amp="fp8")
    with pytest.raises(ValueError, match="dark_kernel must be a positive odd int"):
        Predictor(workdir / "best.safetensors", 32, "cpu", refine="dark", dark_kernel=4)
    # the kernel of a checkpoint's stored sigma: an absurd sigma gives the largest one, not an int too big for torch
    assert [dark_kernel_for(s) for s in (0.1, 2, 3, 1e300)] == [3, 11, 17, MAX_DARK_KERNEL]
    dark, _ = Predictor(workdir / "best.safetensors", 32, "cpu", refine="dark", dark_kernel=3)(images)
    assert dark.shape == kp[:3].shape and np.isfinite(dark).all()
    with pytest.raises(ValueError, match="fused=True needs a hgfast StackedHourglass"):
        Predictor(torch.nn.Conv2d(3, 16, 1), 32, "cpu", fused=True)


class _Oracle(torch.nn.Module):
    """Returns the training target (a Gaussian at crop keypoints / 4) of each crop it knows, mirrored ones too."""

    def __init__(self, table):
        super().__init__()
        self.table, self.p = table, torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        keys = (x * 255).round().to(torch.uint8)
        kps = [next(kp for im, kp in self.table if torch.equal(im, key)) for key in keys]
        return gaussian_heatmaps(torch.stack(kps) / 4, size=(x.shape[-2] // 4, x.shape[-1] // 4), sigma=1.0)[:, None]


@pytest.mark.parametrize("flip,permutation,size", [
    (False, MPII_FLIP_PERMUTATION, (64, 64)), (True, MPII_FLIP_PERMUTATION, (64, 64)),
    (True, tuple(range(16)), (64, 64)), (True, MPII_FLIP_PERMUTATION, (64, 48))],
    ids=["no-flip", "flip", "flip-own-pairs", "flip-non-square"])
def test_predict_crops_returns_image_coordinates(flip, permutation, size):
    """``flip-own-pairs``: a skeleton whose joints all map to themselves under a flip (not MPII's pairs)."""
    S, table, crops, meta, gt = size[0], [], [], [], []  # S: crop pixels per 200 * scale image pixels
    for i in range(24):
        r = render(0, "val", i, 128)
        args = (r["image"], r["joints"], r["center"], float(r["scale"]), 30.0 * (i % 3 - 1), size)
        for mirrored in (False, True):
            im, kp = crop(*args, flip=mirrored, flip_permutation=permutation)
            table.append((torch.from_numpy(im).permute(2, 0, 1), torch.from_numpy(kp)))
        crops.append(table[-2][0])
        meta.append((*r["center"], args[3], args[4]))
        gt.append(r["joints"])
    meta = torch.tensor(meta, dtype=torch.float64)
    kp, _ = predict_crops(_Oracle(table), torch.stack(crops), meta[:, :2], meta[:, 2], meta[:, 3], flip=flip,
                          flip_permutation=permutation)
    err = (kp.numpy() - np.stack(gt)) / (200 * meta[:, 2, None, None].numpy() / S)  # in crop pixels
    # argmax_decode's quarter-pixel steps leave < 1 crop px per joint and no bias; the old whole-pixel flip shift
    # was biased by +0.5 crop px in x
    assert np.abs(err.mean((0, 1))).max() < 0.15
    assert np.linalg.norm(err, axis=-1).mean() < 1.0
    dark, _ = predict_crops(_Oracle(table), torch.stack(crops), meta[:, :2], meta[:, 2], meta[:, 3], flip=flip,
                            flip_permutation=permutation, refine="dark", dark_kernel=5)
    dark_err = (dark.numpy() - np.stack(gt)) / (200 * meta[:, 2, None, None].numpy() / S)
    assert np.linalg.norm(dark_err, axis=-1).mean() < 0.5 * np.linalg.norm(err, axis=-1).mean()  # DARK: sub-pixel


def test_predict_crops_legacy_decoding_conventions():
    """half_pixel moves every joint by half a heatmap pixel (in image pixels: 0.5 · 200 · scale / heatmap side);
    truncate then drops the fraction of the image coordinates, toward zero."""
    S, table, crops = 64, [], []
    for i in range(4):
        r = render(0, "val", i, 128)
        im, kp = crop(r["image"], r["joints"], r["center"], float(r["scale"]), 0.0, S)
        table.append((torch.from_numpy(im).permute(2, 0, 1), torch.from_numpy(kp)))
        crops.append(table[-1][0])
    center, scale = torch.full((4, 2), 61.3, dtype=torch.float64), torch.tensor([0.5, 0.6, 0.7, 0.8]).double()
    center[0] = 2.0  # puts joints at negative image coordinates: truncation is toward zero, not floor
    args = (_Oracle(table), torch.stack(crops), center, scale)
    plain, _ = predict_crops(*args)
    half, _ = predict_crops(*args, half_pixel=True)
    legacy, _ = predict_crops(*args, half_pixel=True, truncate=True)
    step = (0.5 * 200 * scale / (S // 4)).float()
    torch.testing.assert_close(half - plain, step[:, None, None].expand_as(plain), atol=1e-4, rtol=0)
    torch.testing.assert_close(legacy, torch.trunc(half))
    assert (legacy != half).any() and ((half < 0) & (half % 1 != 0)).any()


def test_cli_predict_decoding_options_reach_the_decoder(workdir, image_file, tmp_path):
    """A 64-pixel box: scale 1.25 · 64 / 200 = 0.4, 8x8 heatmaps, so half a heatmap pixel is 0.5 · 200 · 0.4 / 8 =
    5 image pixels. The box is off the pixel grid so that no coordinate is a whole number (truncating those is
    float rounding's call)."""
    def run(*flags):
        out = tmp_path / "_".join(flags or ("plain",))
        assert main(["predict", str(image_file), "--checkpoint", str(workdir / "best.safetensors"), "--out",
                     str(out), "--box", "0.3,0.3,64,64", *flags]) == 0
        return np.array(list(json.loads((out / "predictions.json").read_text())[0]["keypoints"].values()))

    plain = run()
    np.testing.assert_allclose(run("--half-pixel") - plain, 5.0, atol=0.011)
    np.testing.assert_allclose(run("--half-pixel", "--truncate"), np.trunc(plain + 5.0), atol=0.011)
    assert not np.allclose(run("--flip"), run("--flip", "--no-flip-shift"))


def test_predictor_flip_needs_the_permutation_of_other_skeletons():
    model = StackedHourglass(nstack=1, nfeat=16, njoints=5, depth=2)
    with pytest.raises(ValueError, match="needs flip_permutation .* or skeleton; .*leave out --flip"):
        Predictor(model, 32, "cpu", flip=True)
    kp, _ = Predictor(model, 32, "cpu", flip=True, flip_permutation=(1, 0, 2, 4, 3))([np.zeros((40, 40, 3), np.uint8)])
    assert kp.shape == (1, 5, 2)
    with pytest.raises(ValueError, match=r"Predictor: flip_permutation must swap pairs of range\(5\)"):
        Predictor(model, 32, "cpu", flip=True, flip_permutation=(1, 2, 0, 4, 3))  # a cycle is no mirror


def test_predict_dataset_refuses_augmented_and_empty_datasets():
    from hgfast.data import SyntheticPoses
    from hgfast.eval import predict_dataset

    model = StackedHourglass(nstack=1, nfeat=16, depth=2)
    with pytest.raises(ValueError, match="augment"):
        predict_dataset(model, SyntheticPoses("train", 4, 48, 32, "bearpaw"))
    with pytest.raises(ValueError, match="empty"):
        predict_dataset(model, torch.utils.data.Subset(SyntheticPoses("val", 4, 48, 32), []))


def test_predict_dataset_starts_no_more_workers_than_batches(monkeypatch):
    """One batch: no worker processes; three batches and 6 workers asked: 3. Same predictions either way."""
    from hgfast.data import SyntheticPoses
    evaluate_module = importlib.import_module("hgfast.eval.evaluate")  # the package's name is the function
    started = []

    def recording_loader(*args, num_workers=0, **kwargs):
        started.append(num_workers)
        return torch.utils.data.DataLoader(*args, num_workers=0, **kwargs)

    monkeypatch.setattr(evaluate_module, "DataLoader", recording_loader)
    model = StackedHourglass(nstack=1, nfeat=16, depth=2)
    dataset = SyntheticPoses("val", 6, 48, 32)
    one = evaluate_module.predict_dataset(model, dataset, batch_size=8, workers=6)
    three = evaluate_module.predict_dataset(model, dataset, batch_size=2, workers=6)
    assert started == [0, 3]
    np.testing.assert_allclose(one["pred"], three["pred"], atol=1e-5)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        evaluate_module.predict_dataset(model, dataset, batch_size=0)


def test_predictor_bad_inputs(workdir, tmp_path):
    predictor = Predictor(workdir / "best.safetensors", input_size=32, device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        predictor([np.zeros((10, 10), np.float32)])
    with pytest.raises(ValueError, match="boxes"):
        predictor([np.zeros((10, 10, 3), np.uint8)], boxes=[None, None])
    for one in (str(tmp_path / "person.jpg"), tmp_path / "person.jpg", np.zeros((10, 10, 3), np.uint8)):
        with pytest.raises(TypeError, match=r"images must be a list .*wrap it: predictor\(\[image\]\)"):
            predictor(one)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        predictor([tmp_path / "nope.jpg"])
    image = np.zeros((10, 20, 3), np.uint8)
    for far in ((20, 0, 5, 5), (0, 10, 5, 5), (-5, 0, 5, 5), (0, -5, 3, 5)):  # edge coordinates: touching is outside
        with pytest.raises(ValueError, match=r"box 1 .* lies outside its 20x10 image"):
            predictor([image, image], boxes=[None, far])
    assert predictor([image], boxes=[(19.5, 9.5, 30, 30)])[0].shape == (1, 16, 2)  # a corner is enough
    for small in ((0, 0, -5, 5), (0, 0, 0.5, 5), (0.1, 0.2, 0.3, 0.4)):  # also boxes in image fractions
        with pytest.raises(ValueError, match=r"w and h at least 1"):
            predictor([image], boxes=[small])
    with pytest.raises(ValueError, match=r"within ±1e\+06"):
        predictor([image], boxes=[(0, 0, 1e20, 5)])
    # a NaN or infinite box, five numbers, one box for several images: named as the box, not "outside its image"
    for boxes in ([None, (np.nan, 0, 5, 5)], [None, (0, 0, np.inf, 5)], [None, (0, 0, 5, 5, 0.9)], (0, 0, 5, 5)):
        with pytest.raises(ValueError, match=r"box [01]: box must be 4 finite numbers"):
            predictor([image] * len(boxes), boxes=boxes)
    with pytest.raises(ValueError, match="input_size"):
        Predictor(workdir / "best.safetensors", input_size=30)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        Predictor(tmp_path / "missing.safetensors")
    for margin in (0, float("inf"), float("nan"), 1e300, 1e-300, "1.25", [1.25]):  # 1e300: its crop scale
        with pytest.raises(ValueError, match="box_margin must be a number from 0.01 to 100"):  # overflowed float32
            Predictor(workdir / "best.safetensors", box_margin=margin)
    for size in (0, 2.5, "8", True):  # 2.5 was a TypeError at the first call, "8" one from a comparison
        with pytest.raises(ValueError, match=r"batch_size must be >= 1 and at most 65536 \(an int\), got "):
            Predictor(workdir / "best.safetensors", batch_size=size)


def test_cli_eval(workdir, capsys):
    assert main(["eval", "--workdir", str(workdir), "--flip", "--thresholds", "0.2,0.1"]) == 0
    out = capsys.readouterr().out
    assert "Mean(w)" in out and "0.2" in out
    table = json.loads((workdir / "eval.json").read_text())
    assert table["flip_test"] and table["samples"] == 8 and "mean_unweighted" in table["pck"]["0.2"]
    assert not table["half_pixel"] and not table["truncate"] and "auc" not in table  # an MPII (PCKh) figure only
    legacy = workdir.parent / "legacy.json"
    assert main(["eval", "--workdir", str(workdir), "--half-pixel", "--truncate", "--json", str(legacy)]) == 0
    assert json.loads(legacy.read_text())["half_pixel"] and json.loads(legacy.read_text())["truncate"]
    assert cv2.imread(str(workdir / "eval.jpg")).shape[:2] == (512, 1024)
    plain, fast = workdir.parent / "plain.json", workdir.parent / "fast.json"
    assert main(["eval", "--workdir", str(workdir), "--device", "cpu", "--json", str(plain)]) == 0
    with pytest.warns(UserWarning):  # the fused path's CPU fallback warning
        assert main(["eval", "--workdir", str(workdir), "--device", "cpu", "--fused", "--amp", "bf16", "--json",
                     str(fast)]) == 0
    plain, fast = json.loads(plain.read_text()), json.loads(fast.read_text())
    assert (plain["amp"], fast["amp"], fast["fused_active"]) == ("none", "bf16", False)
    assert abs(fast["pck"]["0.2"]["mean_weighted"] - plain["pck"]["0.2"]["mean_weighted"]) < 0.2
    dark = workdir.parent / "dark.json"
    assert main(["eval", "--workdir", str(workdir), "--refine", "dark", "--json", str(dark)]) == 0
    dark = json.loads(dark.read_text())
    assert (dark["refine"], dark["dark_kernel"], plain["refine"]) == ("dark", 5, "quarter")  # sigma 1: 5
    assert "dark_kernel" not in plain
    assert main(["eval", "--workdir", str(workdir), "--dark-kernel", "5"]) == 2  # without --refine dark
    assert main(["eval", "--workdir", str(workdir), "--refine", "dark", "--dark-kernel", "4"]) == 2


@pytest.mark.gpu
def test_cli_eval_fused_on_the_gpu(workdir, tmp_path):
    """On a CUDA device --fused runs the Triton path (bf16, channels_last) and agrees with the reference."""
    plain, fast = tmp_path / "plain.json", tmp_path / "fast.json"
    assert main(["eval", "--workdir", str(workdir), "--device", "cuda", "--json", str(plain)]) == 0
    assert main(["eval", "--workdir", str(workdir), "--device", "cuda", "--fused", "--amp", "bf16", "--json",
                 str(fast)]) == 0
    plain, fast = json.loads(plain.read_text()), json.loads(fast.read_text())
    assert fast["fused_active"]
    assert abs(fast["pck"]["0.2"]["mean_weighted"] - plain["pck"]["0.2"]["mean_weighted"]) < 0.1


def test_cli_eval_refuses_a_picture_it_cannot_write_before_evaluating(workdir, tmp_path, capsys):
    assert main(["eval", "--workdir", str(workdir), "--json", str(tmp_path / "e.json"),
                 "--picture", str(tmp_path / "e.txt")]) == 2
    assert "--picture" in capsys.readouterr().err and not (tmp_path / "e.json").exists()


def test_cli_eval_names_a_work_dir_or_a_config_that_is_not_one(workdir, capsys):
    """A weights file as --workdir, a work dir as the config, a folder as --checkpoint: each named as what it is
    (they were blamed on --json, reported "not found", or a UnicodeDecodeError)."""
    best = workdir / "best.safetensors"
    for argv, message in ((["--workdir", str(best)], f"--workdir {best} is a file: give the run's folder"),
                          ([str(workdir), "--checkpoint", str(best)], f"config file {workdir} is a folder"),
                          ([str(best), "--checkpoint", str(best)], f"config file {best} is not a text (YAML) file"),
                          (["--checkpoint", str(workdir)], f"checkpoint {workdir} is a folder, not a file")):
        assert main(["eval", *argv]) == 2
        assert message in capsys.readouterr().err


def test_cli_eval_device(workdir, tmp_path, capsys):
    assert main(["eval", "--workdir", str(workdir), "--device", "cpu", "--json", str(tmp_path / "a.json")]) == 0
    if not torch.cuda.is_available():
        assert main(["eval", "--workdir", str(workdir), "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def test_cli_eval_takes_the_config_beside_the_checkpoint(workdir, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(workdir / "best.safetensors"), "--json", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["samples"] == 8  # the run's data.val_length
    alone = tmp_path / "alone.safetensors"
    alone.write_bytes((workdir / "best.safetensors").read_bytes())
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(alone)]) == 2  # not the default config, silently
    err = capsys.readouterr().err
    assert "config.yaml" in err and "--preset" in err and "--workdir" in err


def test_cli_predict(workdir, image_file, tmp_path):
    out = tmp_path / "pred"
    assert main(["predict", str(image_file), str(image_file), "--checkpoint", str(workdir / "best.safetensors"),
                 "--box", "8,4,40,50", "--out", str(out)]) == 0
    results = json.loads((out / "predictions.json").read_text())
    assert len(results) == 2 and len(results[0]["keypoints"]) == 16 and results[0]["box"] == [8, 4, 40, 50]
    assert cv2.imread(results[0]["picture"]).shape == (64, 64, 3)
    twin = tmp_path / "b" / image_file.name
    twin.parent.mkdir()
    twin.write_bytes(image_file.read_bytes())
    assert main(["predict", str(image_file), str(twin), "--checkpoint", str(workdir / "best.safetensors"),
                 "--out", str(out)]) == 0
    pictures = [r["picture"] for r in json.loads((out / "predictions.json").read_text())]
    assert [r["image"] for r in json.loads((out / "predictions.json").read_text())] == [str(image_file), str(twin)]
    assert len(set(pictures)) == 2 and all(cv2.imread(p) is not None for p in pictures)


def test_cli_predict_streams_batches_of_images(workdir, image_file, tmp_path, capsys):
    """Images are read --batch-size at a time: the same predictions and picture names as in one batch; every file
    is checked before any work, and an image that fails to decode later stops the run naming it, without a
    predictions.json."""
    checkpoint = ["--checkpoint", str(workdir / "best.safetensors")]
    others = []
    for i in (1, 2):
        other = tmp_path / f"d{i}" / image_file.name  # one name: person_pose.jpg, _2, _3
        other.parent.mkdir()
        cv2.imwrite(str(other), render(0, "val", i, 64)["image"][..., ::-1])
        others.append(str(other))
    images = [str(image_file), *others]
    for batch in ("1", "2", "32"):
        assert main(["predict", *images, *checkpoint, "--batch-size", batch, "--out", str(tmp_path / batch),
                     "--device", "cpu"]) == 0  # cuDNN may pick other algorithms per batch size: not bit-identical
    runs = [json.loads((tmp_path / b / "predictions.json").read_text()) for b in ("1", "2", "32")]
    for run, batch in zip(runs, ("1", "2", "32")):
        assert [Path(r["picture"]).name for r in run] == ["person_pose.jpg", "person_pose_2.jpg", "person_pose_3.jpg"]
        assert [r["keypoints"] for r in run] == [r["keypoints"] for r in runs[2]], batch
    text, truncated = tmp_path / "notes.jpg", tmp_path / "cut.jpg"
    text.write_text("not an image")
    truncated.write_bytes(b"\xff\xd8\xff broken")  # a JPEG header: passes the check, fails to decode
    capsys.readouterr()
    assert main(["predict", *images, str(text), *checkpoint, "--out", str(tmp_path / "no")]) == 2
    assert "not an image file OpenCV reads: " + str(text) in capsys.readouterr().err
    assert main(["predict", *images, str(tmp_path / "gone.jpg"), *checkpoint, "--out", str(tmp_path / "no")]) == 2
    assert "image not found: " + str(tmp_path / "gone.jpg") in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    assert main(["predict", *images, str(truncated), *checkpoint, "--batch-size", "2", "--out",
                 str(tmp_path / "cut")]) == 2
    err = capsys.readouterr().err
    assert "cut.jpg" in err and "2 of 4 pictures written, predictions.json not" in err
    assert not (tmp_path / "cut" / "predictions.json").exists()


def test_cli_predict_takes_folders(workdir, image_file, tmp_path, capsys):
    """A folder stands for its image files (any case of the suffix), sorted by name; not its other files or
    subfolders; a folder without images, or one that is the output folder, is refused."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.PNG", "a.jpg", "sub/c.png"):
        cv2.imwrite(str(folder / name), render(0, "val", 1, 64)["image"])
    (folder / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    checkpoint = ["--checkpoint", str(workdir / "best.safetensors")]
    assert main(["predict", str(folder), str(image_file), *checkpoint, "--out", str(tmp_path / "out")]) == 0
    images = [r["image"] for r in json.loads((tmp_path / "out" / "predictions.json").read_text())]
    assert images == [str(folder / "a.jpg"), str(folder / "b.PNG"), str(image_file)]
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "empty"), *checkpoint, "--out", str(tmp_path / "no")]) == 2
    assert "no image files" in capsys.readouterr().err and not (tmp_path / "no").exists()
    # Nothing a user gave is replaced: a picture landing on an image of the folder, the results on --boxes.
    (folder / "a_pose.jpg").write_bytes((folder / "a.jpg").read_bytes())
    boxes = tmp_path / "out" / "predictions.json"
    boxes.write_text(json.dumps({str(image_file): [[0, 0, 64, 64]]}))
    before = {p: p.read_bytes() for p in (folder / "a_pose.jpg", boxes)}
    for argv in ([str(folder / "a.jpg"), str(folder / "a_pose.jpg"), "--out", str(folder)],
                 [str(image_file), "--boxes", str(boxes), "--out", str(tmp_path / "out")]):
        assert main(["predict", *argv, *checkpoint]) == 2
        assert "would replace an input" in capsys.readouterr().err
    assert all(p.read_bytes() == data for p, data in before.items())
    # The output folder given as an input folder: its pictures would be the next run's images.
    (folder / "a_pose.jpg").unlink()
    assert main(["predict", str(folder), *checkpoint, "--out", str(folder / ".." / "photos")]) == 2
    assert f"--out {folder / '..' / 'photos'} is the input folder {folder}: a later run" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["a.jpg", "b.PNG", "notes.txt", "sub"]
    for _ in range(2):  # a folder inside it is not listed: the second run reads the same images
        assert main(["predict", str(folder), *checkpoint, "--out", str(folder / "sub")]) == 0
        images = [r["image"] for r in json.loads((folder / "sub" / "predictions.json").read_text())]
        assert images == [str(folder / "a.jpg"), str(folder / "b.PNG")]


@pytest.fixture
def clip(tmp_path):
    """in/clip.avi: 5 frames of 64 x 48 at 8 fps, a synthetic figure moving right 2 pixels a frame."""
    from hgfast.video import video_writer

    path = tmp_path / "in" / "clip.avi"
    with video_writer(path, 8.0, (64, 48)) as write:
        for i in range(5):
            write(np.roll(render(0, "val", 0, 64)["image"][8:56], 2 * i, axis=1))
    return path


def test_cli_video(workdir, clip, tmp_path, capsys):
    from hgfast.video import VideoFrames, next_box

    out, checkpoint = tmp_path / "out", ["--checkpoint", str(workdir / "best.safetensors")]
    assert main(["video", str(clip), *checkpoint, "--box", "10,4,40,40", "--track-threshold", "0",
                 "--out", str(out)]) == 0  # threshold 0: every joint counts (the 2-step model scores low)
    result = json.loads((out / "clip.json").read_text())
    assert result["video"] == str(clip) and result["size"] == [64, 48] and result["fps"] == pytest.approx(8.0)
    assert len(result["joints"]) == 16 and [f["frame"] for f in result["frames"]] == list(range(5))
    assert all(len(f["people"]) == 1 and "box_score" not in f["people"][0] and f["people"][0]["id"] == 0
               for f in result["frames"])
    frames = [f["people"][0] for f in result["frames"]]
    assert frames[0]["box"] == [10, 4, 40, 40] and np.shape(frames[4]["keypoints"]) == (16, 2)
    for before, after in zip(frames, frames[1:]):  # the first size, centred on the joints of the frame before
        want = next_box(np.array(before["keypoints"]), np.array(before["scores"]), 0.0, (64, 48), (40, 40))
        np.testing.assert_allclose(after["box"], want or before["box"], atol=0.05)
        assert after["box"][2:] == [40, 40]
    assert any(f["box"] != frames[0]["box"] for f in frames[1:])  # the box moved
    drawn = VideoFrames(out / "clip_pose.mp4")
    assert drawn.size == (64, 48) and len(list(drawn)) == 5
    assert main(["video", str(clip), *checkpoint, "--no-track", "--out", str(tmp_path / "fixed")]) == 0
    fixed = json.loads((tmp_path / "fixed" / "clip.json").read_text())["frames"]
    assert all(f["people"][0]["box"] == [0, 0, 64, 48] for f in fixed)
    boxes = tmp_path / "dets.json"  # a detector's boxes: two people in frame 0, none in 1, one in 3
    boxes.write_text(json.dumps({"0": [[10, 4, 40, 40, 0.9], {"bbox": [30, 0, 30, 48], "score": 0.2}],
                                 "3": [[0, 0, 20, 20]], "9": [[1, 1, 5, 5]]}))
    assert main(["video", str(clip), *checkpoint, "--boxes", str(boxes), "--min-score", "0.5",
                 "--out", str(tmp_path / "dets")]) == 0
    assert "frames up to 9" in capsys.readouterr().err
    people = [f["people"] for f in json.loads((tmp_path / "dets" / "clip.json").read_text())["frames"]]
    assert [len(p) for p in people] == [1, 0, 0, 1, 0]  # the 0.2 box is below --min-score
    drawn = [f.astype(int) for f in VideoFrames(tmp_path / "dets" / "clip_pose.mp4")]
    plain = [f.astype(int) for f in VideoFrames(clip)]
    changed = [np.abs(d - p).max(-1) > 60 for d, p in zip(drawn, plain)]  # skeleton pixels, not codec noise
    assert [int(c.sum() > 20) for c in changed] == [1, 0, 0, 1, 0]  # drawn where someone is, nowhere else
    assert people[0][0]["box"] == [10, 4, 40, 40] and people[0][0]["box_score"] == 0.9
    assert people[0][0]["id"] == 0 and people[3][0]["id"] == 1  # the frame-3 box overlaps no one before it
    predictor = Predictor(workdir / "best.safetensors", device="cpu")
    want, _ = predictor([list(VideoFrames(clip))[3]], [(0, 0, 20, 20)])
    np.testing.assert_allclose(people[3][0]["keypoints"], want[0], atol=0.01)
    capsys.readouterr()
    twin = tmp_path / "b" / "clip.avi"
    twin.parent.mkdir()
    twin.write_bytes(clip.read_bytes())
    far = tmp_path / "far.json"
    far.write_text(json.dumps({"2": [[100, 0, 5, 5]]}))
    (tmp_path / "file").write_text("")
    for argv, message in ((["nope.mp4"], "video not found: nope.mp4"),
                          ([str(clip), str(twin)], "would replace another output"),
                          ([str(out / "clip_pose.mp4"), str(clip), "--out", str(out)], "would replace an input"),
                          ([str(clip), "--boxes", str(out / "clip.json"), "--out", str(out)],
                           "would replace an input"),  # the boxes file where the output JSON goes
                          ([str(clip), "--out", str(tmp_path / "file")], "is a file, not a folder"),
                          ([str(clip), "--batch-size", "0"], "--batch-size must be >= 1"),
                          ([str(clip), "--no-track", "--batch-size", str(10 ** 23)], "--batch-size must be >= 1 and "
                           "at most 65536"),
                          ([str(clip), "--track-threshold", "nan"], "--track-threshold must be in [0, 1]"),
                          ([str(clip), "--box-margin", "1e300"], "--box-margin must be a number from 0.01 to 100"),
                          ([str(clip), "--no-track", "--track-threshold", "0.5"], "not with --no-track"),
                          ([str(clip), "--box", "64,0,10,10"], "--box (64.0, 0.0, 10.0, 10.0) lies outside"),
                          ([str(clip), "--boxes", str(boxes), "--box", "1,1,5,5"], "not with --box"),
                          ([str(clip), "--boxes", str(boxes), "--no-track"], "not with --no-track"),
                          ([str(clip), "--boxes", str(boxes), "--track-threshold", "0.3"], "not with --track-threshold"),
                          ([str(clip), str(twin), "--boxes", str(boxes)], "not with several videos"),
                          ([str(clip), "--boxes", "", "--min-score", "0.5"], "boxes file: the path is empty"),
                          ([str(clip), "--boxes", str(boxes), "--min-score", "nan"], "--min-score must be a number"),
                          ([str(clip), "--boxes", str(far)], "frame 2: the box (100.0, 0.0, 5.0, 5.0) lies outside"),
                          ([str(clip), "--min-score", "0.5"], "--min-score applies to the scored boxes of --boxes"),
                          ([str(clip), "--boxes", str(clip)], "is not valid JSON")):
        default_out = [] if "--out" in argv else ["--out", str(tmp_path / "refused")]
        assert main(["video", *argv, *checkpoint, *default_out]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    with pytest.raises(SystemExit):
        main(["video", str(clip), *checkpoint, "--box", "nan,0,10,10"])
    assert "finite" in capsys.readouterr().err
    assert json.loads((out / "clip.json").read_text()) == result  # the refused runs wrote nothing
    assert not (tmp_path / "refused").exists()


def test_cli_video_smooth(workdir, clip, tmp_path, capsys):
    """--smooth puts each person's keypoints through hgfast.smoothing's filter (per id, with the defaults or the
    given parameters) before they are drawn and written; the tracked boxes are those of the unsmoothed run."""
    from hgfast import smoothing
    from hgfast.smoothing import PeopleSmoother
    from hgfast.video import VideoFrames

    checkpoint = ["--checkpoint", str(workdir / "best.safetensors")]
    boxes = tmp_path / "dets.json"  # two people in frames 0-3, the second missing in frame 2: a new id in frame 3
    boxes.write_text(json.dumps({str(i): [[0, 0, 40, 48], [24, 0, 40, 48]][: 1 if i == 2 else 2] for i in range(4)}))
    for mode, options in (("track", ["--track-threshold", "0"]), ("boxes", ["--boxes", str(boxes)])):
        runs = {}
        for name, extra in (("raw", []), ("default", ["--smooth"]),
                            ("given", ["--smooth", "--smooth-min-cutoff", "0.5", "--smooth-beta", "2"])):
            out = tmp_path / mode / name
            assert main(["video", str(clip), *checkpoint, *options, *extra, "--out", str(out)]) == 0
            runs[name] = json.loads((out / "clip.json").read_text())
        assert runs["raw"]["smoothing"] is None
        if mode == "boxes":
            assert [[p["id"] for p in f["people"]] for f in runs["raw"]["frames"]] == [[0, 1], [0, 1], [0], [0, 2], []]
        for name, settings in (("default", {}), ("given", {"min_cutoff": 0.5, "beta": 2.0})):
            want = {"min_cutoff": smoothing.MIN_CUTOFF, "beta": smoothing.BETA, "d_cutoff": smoothing.D_CUTOFF,
                    **settings}
            assert runs[name]["smoothing"] == want
            smoother = PeopleSmoother(runs["raw"]["fps"], **want)
            for raw, smooth in zip(runs["raw"]["frames"], runs[name]["frames"], strict=True):
                assert [p["box"] for p in smooth["people"]] == [p["box"] for p in raw["people"]]
                assert [p["scores"] for p in smooth["people"]] == [p["scores"] for p in raw["people"]]
                for r, sm in zip(raw["people"], smooth["people"], strict=True):
                    expected = smoother(raw["frame"], r["id"], np.array(r["keypoints"]), r["box"])
                    np.testing.assert_allclose(sm["keypoints"], expected, atol=0.02)
        moved = [np.abs(np.subtract(s["people"][0]["keypoints"], r["people"][0]["keypoints"])).max()
                 for r, s in zip(runs["raw"]["frames"], runs["given"]["frames"]) if r["people"]]
        assert moved[0] < 0.01 and max(moved[1:]) > 0.1  # the first frame as predicted, the next ones smoothed
        drawn = [[f.astype(int) for f in VideoFrames(tmp_path / mode / name / "clip_pose.mp4")]
                 for name in ("raw", "given")]
        assert max(np.abs(a - b).max() for a, b in zip(*drawn)) > 60  # the smoothed skeletons are drawn
    capsys.readouterr()
    for argv, message in ((["--smooth-beta", "1"], "--smooth-beta without --smooth"),
                          (["--smooth", "--smooth-min-cutoff", "0"], "--smooth-min-cutoff must be a finite number"),
                          (["--smooth", "--smooth-beta", "-1"], "--smooth-beta must be a finite number >= 0")):
        assert main(["video", str(clip), *checkpoint, *argv, "--out", str(tmp_path / "refused")]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "refused").exists()


def test_track_synthetic_script_runs(workdir, monkeypatch, capsys):
    """benchmarks/track_synthetic.py (the README's tracking numbers) keeps working; its clips put the joints where
    the camera moved them."""
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "benchmarks" / "track_synthetic.py"
    proc = subprocess.run([sys.executable, str(script), str(workdir / "best.safetensors"), "--clips", "1",
                           "--frames", "4", "--swing", "20"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "tracking from the first box, smoothed" in proc.stdout and "whole frame" in proc.stdout
    sys.path.insert(0, str(script.parent))
    try:
        import track_synthetic
    finally:
        sys.path.remove(str(script.parent))
    monkeypatch.setattr(sys, "argv", ["track_synthetic.py", str(workdir / "best.safetensors"), "--clips", "1",
                                      "--frames", "3", "--smooth-grid"])
    track_synthetic.main()
    from hgfast import smoothing

    assert f"min_cutoff {smoothing.MIN_CUTOFF:g} beta {smoothing.BETA:g} " in capsys.readouterr().out
    _, moving, _ = track_synthetic.clip(0, 5, amplitude=30)
    for root, middle, end in track_synthetic.LIMBS:  # the limbs move, their lengths stay
        lengths = np.linalg.norm(moving[:, [middle, end]] - moving[:, [root, middle]], axis=-1)
        np.testing.assert_allclose(lengths, lengths[:1].repeat(5, 0) * (0.4 + 0.05 * np.arange(5))[:, None]
                                   / 0.4, rtol=1e-5)
        direction = moving[:, end] - moving[:, root]
        assert np.ptp(np.degrees(np.unwrap(np.arctan2(direction[:, 1], direction[:, 0])))) > 5
    r = render(0, "val", 0, 384)
    dot = dict(r, image=np.zeros_like(r["image"]))
    x, y = np.round(r["joints"][0]).astype(int)
    dot["image"][y - 3:y + 4, x - 3:x + 4] = 255  # a bright block at joint 0
    monkeypatch.setattr(track_synthetic, "render", lambda *args, **kwargs: dot)
    frames, joints, heights = track_synthetic.clip(0, 3)
    assert frames[0].shape == (240, 320, 3) and joints.shape == (3, 16, 2)
    for frame, where in zip(frames, joints[:, 0]):  # the block lands where the clip says joint 0 is
        rows, cols = np.nonzero(frame[..., 0] > 100)
        assert np.hypot(cols.mean() - where[0], rows.mean() - where[1]) <= 1.0
    np.testing.assert_allclose(heights, 0.4 * r["normalize"] * np.array([1, 1.25, 1.5]), rtol=1e-6)


def test_cli_predict_several_people_per_image(workdir, image_file, tmp_path, capsys):
    """--boxes: a detector's boxes per image, each person predicted in its own box (as --box would), all drawn on
    the image's one picture; an image with no box has no people."""
    other = tmp_path / "other.png"
    other.write_bytes(image_file.read_bytes())
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({image_file.name: [[8, 4, 40, 50, 0.9], {"bbox": [0, 0, 30, 30]}],
                                 str(other): []}))
    checkpoint = str(workdir / "best.safetensors")
    out = tmp_path / "many"
    assert main(["predict", str(image_file), str(other), "--checkpoint", checkpoint, "--boxes", str(boxes), "--out",
                 str(out)]) == 0
    results = json.loads((out / "predictions.json").read_text())
    assert [(r["image"], r["box"], r.get("box_score")) for r in results] == [
        (str(image_file), [8, 4, 40, 50], 0.9), (str(image_file), [0, 0, 30, 30], None)]
    assert results[0]["picture"] == results[1]["picture"] and (out / "other_pose.jpg").is_file()
    single = tmp_path / "one"
    assert main(["predict", str(image_file), "--checkpoint", checkpoint, "--box", "0,0,30,30", "--out",
                 str(single)]) == 0
    assert json.loads((single / "predictions.json").read_text())[0]["keypoints"] == results[1]["keypoints"]
    drawn = cv2.imread(results[0]["picture"]).astype(int) - cv2.imread(str(image_file)).astype(int)
    alone = cv2.imread(str(single / "person_pose.jpg")).astype(int) - cv2.imread(str(image_file)).astype(int)
    assert (np.abs(drawn) > 40).sum() > (np.abs(alone) > 40).sum()  # two people drawn, not one
    from hgfast.predict import read_boxes_file

    boxes.write_text(json.dumps({"./imgs/a.jpg": [[1, 2, 3, 4, 0.2]], "b.jpg": [[1, 2, 3, 4, 0.8], [0, 0, 5, 5]]}))
    assert read_boxes_file(boxes, ["imgs/a.jpg", "x/b.jpg"], min_score=0.5) == [[], [((1, 2, 3, 4), 0.8),
                                                                                 ((0, 0, 5, 5), None)]]
    with pytest.raises(ValueError, match="no entry for x/b.jpg"):  # two images named b.jpg: the name is ambiguous
        read_boxes_file(boxes, ["x/b.jpg", "y/b.jpg"])
    boxes.write_text(json.dumps({"imgs/a.jpg": [[1, 2, 3, 4]], "./imgs/a.jpg": []}))
    with pytest.raises(ValueError, match="keys 'imgs/a.jpg' and './imgs/a.jpg' name the same image"):
        read_boxes_file(boxes, ["imgs/a.jpg"])
    boxes.write_text(json.dumps({"imgs/a.jpg": [[1, 2, 3, 4]], "a.jpg": []}))  # its path and its name
    with pytest.raises(ValueError, match="keys 'imgs/a.jpg' and 'a.jpg' both name imgs/a.jpg"):
        read_boxes_file(boxes, ["imgs/a.jpg"])
    capsys.readouterr()
    for content, match in (({"nobody.png": []}, "no entry for"), ({image_file.name: [[1, 2, 3]]}, "a box must be"),
                           ({image_file.name: [[1, 2, 0, 3]]}, "w and h at least 1"), ([1], "must map images"),
                           ({image_file.name: [[1, 2, 3, 4, True]]}, "a box must be"),
                           ({image_file.name: [["1", 2, 3, 4]]}, "a box must be"),
                           ({image_file.name: [[1, 2, 3, 10 ** 400]]}, "a box must be"),
                           ({image_file.name: {"bbox": [1, 2, 3, 4]}}, "must be a list of boxes")):
        boxes.write_text(json.dumps(content))
        assert main(["predict", str(image_file), "--checkpoint", checkpoint, "--boxes", str(boxes), "--out",
                     str(out)]) == 2
        assert match in capsys.readouterr().err
    height, width = cv2.imread(str(image_file)).shape[:2]
    for flags in (["--box", f"{width},0,5,5"], ["--boxes", str(boxes)]):
        boxes.write_text(json.dumps({image_file.name: [[0, 0, 5, 5], [0, height + 1, 5, 5]]}))
        assert main(["predict", str(image_file), "--checkpoint", checkpoint, *flags, "--out", str(out)]) == 2
        assert f"{flags[0]}: the box " in (err := capsys.readouterr().err)
        assert f"lies outside the {width}x{height} image {image_file}" in err
    assert main(["predict", str(image_file), "--checkpoint", checkpoint, "--boxes", str(boxes), "--box",
                 "1,2,3,4"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["predict", str(image_file), "--checkpoint", checkpoint, "--min-score", "0.5"]) == 2
    assert "--min-score applies" in capsys.readouterr().err
    assert main(["predict", str(image_file), "--checkpoint", checkpoint, "--boxes", str(tmp_path / "no.json")]) == 2
    assert "boxes file not found" in capsys.readouterr().err


class _Recorder(torch.nn.Module):
    """Keeps its inputs; returns zero heatmaps."""

    def __init__(self):
        super().__init__()
        self.p, self.inputs = torch.nn.Parameter(torch.zeros(1)), []

    def forward(self, x):
        self.inputs.append(x)
        return x.new_zeros(x.shape[0], 1, 16, x.shape[-2] // 4, x.shape[-1] // 4)


def test_input_norm_conventions(workdir, tmp_path):
    """bearpaw checkpoints were trained on RGB minus the MPII mean, anibali's on (RGB - mean) / std."""
    from hgfast.predict import MPII_RGB_MEAN, MPII_RGB_STD, to_input
    from hgfast.train.config import ConfigError, resolve

    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    x01, cpu = images.float() / 255, torch.device("cpu")
    mean, std = torch.tensor(MPII_RGB_MEAN).view(3, 1, 1), torch.tensor(MPII_RGB_STD).view(3, 1, 1)
    torch.testing.assert_close(to_input(images, cpu), x01)
    torch.testing.assert_close(to_input(images, cpu, input_norm="bearpaw"), x01 - mean)
    torch.testing.assert_close(to_input(images, cpu, True, "anibali"), (x01 - mean) / std)
    recorder = _Recorder()
    image = np.full((32, 32, 3), 255, np.uint8)
    Predictor(recorder, 32, "cpu", input_norm="anibali")([image])
    torch.testing.assert_close(recorder.inputs[0][0, :, 16, 16], (1 - mean.flatten()) / std.flatten())  # not padding
    with pytest.raises(ValueError, match="input_norm"):
        to_input(images, cpu, input_norm="imagenet")
    with pytest.raises(ValueError, match="input_norm"):
        Predictor(recorder, 32, "cpu", input_norm="imagenet")
    with pytest.raises(ConfigError, match="data.input_norm"):
        resolve(None, None, ["data.input_norm=imagenet"])
    out = tmp_path / "pred"
    assert main(["predict", str(tmp_path / "nothing.png"), "--checkpoint", str(workdir / "best.safetensors"),
                 "--input-norm", "bearpaw", "--out", str(out)]) == 2  # the option parses; the image is missing


def test_cli_predict_other_skeleton(image_file, tmp_path):
    """A 5-joint model: joints named joint_0..joint_4, drawn without MPII's limbs."""
    from hgfast.visualize import draw_skeleton

    checkpoint = tmp_path / "k5.safetensors"
    StackedHourglass(nstack=1, nfeat=16, njoints=5, depth=2).save(checkpoint)
    out = tmp_path / "pred"
    assert main(["predict", str(image_file), "--checkpoint", str(checkpoint), "--input-size", "32",
                 "--out", str(out)]) == 0
    result = json.loads((out / "predictions.json").read_text())[0]
    assert list(result["keypoints"]) == [f"joint_{i}" for i in range(5)] and len(result["scores"]) == 5
    image, kp = np.zeros((64, 64, 3), np.uint8), np.array([[8.0, 8], [56, 8], [32, 32], [8, 56], [56, 56]])
    drawn = draw_skeleton(image, kp)
    assert drawn[8, 32].sum() == 0  # no line between joints 0 and 1 (MPII's first limb)
    assert drawn[8, 32].sum() < draw_skeleton(image, kp, limbs=[(0, 1, "c")])[8, 32].sum()
    far = kp.copy()
    far[1] = (1e20, 8)  # a diverged prediction: its joint and limb are left out, the others drawn
    limb = [(0, 1, "c"), (0, 2, "c")]
    np.testing.assert_array_equal(draw_skeleton(image, far, limbs=limb),
                                  draw_skeleton(image, np.delete(kp, 1, 0), limbs=[(0, 1, "c")]))


def test_a_non_square_model_trains_evaluates_predicts_and_exports(image_file, tmp_path, capsys):
    """data.input_size [32, 16] (height, width): crops, heatmaps (8x4), checkpoint, Predictor, CLI and ONNX."""
    from hgfast.checkpoint import read_metadata
    from hgfast.data import box_to_center_scale, read_image

    work = tmp_path / "tall"
    argv = ["train", "--workdir", str(work)] + [a for s in TINY + ["data.input_size=[32,16]"] for a in ("--set", s)]
    assert main(argv) == 0
    checkpoint = work / "best.safetensors"
    assert read_metadata(checkpoint)["inference"]["input_size"] == [32, 16]
    assert main(["eval", "--workdir", str(work)]) == 0 and json.loads((work / "eval.json").read_text())["samples"] == 8
    square = yaml.safe_load((work / "config.yaml").read_text())
    square["data"]["input_size"] = 32
    (tmp_path / "square.yaml").write_text(yaml.safe_dump(square))
    capsys.readouterr()
    evaluate = ["eval", str(tmp_path / "square.yaml"), "--checkpoint", str(checkpoint), "--json", str(tmp_path / "e")]
    assert main(evaluate) == 2  # not silently on other crops than the model learnt from
    assert "trained with data.input_size = [32,16], the config has 32: pass --set data.input_size=[32,16]" in \
        capsys.readouterr().err
    assert main(evaluate + ["--set", "data.input_size=[32,16]"]) == 0
    assert main(evaluate + ["--set", "data.input_size=32"]) == 0  # another size on purpose
    for key, value, shown in (("input_norm", "bearpaw", "none"), ("box_margin", 1.5, "1.25")):
        other = yaml.safe_load((work / "config.yaml").read_text())
        other["data"][key] = value
        (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
        assert main(["eval", str(tmp_path / "other.yaml"), "--checkpoint", str(checkpoint)]) == 2
        assert f"trained with data.{key} = {shown}, the config has {value}" in capsys.readouterr().err
    predictor = Predictor(checkpoint, device="cpu")
    assert predictor.input_size == (32, 16)
    box = (10, 5, 40, 50)
    kp, scores = predictor([str(image_file)], boxes=[box])
    center, scale = box_to_center_scale(box, 1.25, 0.5)
    assert scale == pytest.approx(1.25 * 80 / 200)  # the box is wider than the 1:2 crop: heightened to 80
    image, _ = crop(read_image(image_file), np.zeros((0, 2)), center, scale, 0.0, (32, 16))
    model = StackedHourglass.from_checkpoint(checkpoint).eval()
    want, want_scores = predict_crops(model, torch.from_numpy(image).permute(2, 0, 1)[None],
                                      torch.tensor(center[None]), torch.tensor([scale]))
    np.testing.assert_allclose(kp, want.numpy(), atol=1e-4)
    np.testing.assert_allclose(scores, want_scores.numpy(), atol=1e-6)
    out = tmp_path / "pred"
    assert main(["predict", str(image_file), "--checkpoint", str(checkpoint), "--box", "10,5,40,50",
                 "--out", str(out)]) == 0
    written = json.loads((out / "predictions.json").read_text())[0]["keypoints"]  # {joint name: [x, y]}
    np.testing.assert_allclose(list(written.values()), kp[0], atol=0.01)
    with pytest.raises(SystemExit):
        main(["predict", str(image_file), "--checkpoint", str(checkpoint), "--input-size", "32x2x"])
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
        pytest.skip("onnx / onnxscript not installed")
    path = tmp_path / "tall.onnx"
    assert main(["export", "--onnx", str(path), "--checkpoint", str(checkpoint)]) == 0
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        x = torch.rand(2, 3, 32, 16)
        got = onnxruntime.InferenceSession(str(path)).run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)


def test_cli_export_onnx(workdir, tmp_path, capsys):
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
        pytest.skip("onnx / onnxscript not installed")
    path = tmp_path / "model.onnx"
    assert main(["export", "--onnx", str(path), "--checkpoint", str(workdir / "best.safetensors")]) == 0
    assert path.is_file()
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime not installed: export written, not run")
    import onnxruntime

    model = StackedHourglass.from_checkpoint(workdir / "best.safetensors").eval()
    x = torch.rand(5, 3, 32, 32)
    got = onnxruntime.InferenceSession(str(path)).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)
    assert "onnxruntime max |diff|" in capsys.readouterr().out
    last = tmp_path / "last.onnx"
    assert main(["export", "--onnx", str(last), "--checkpoint", str(workdir / "best.safetensors"),
                 "--last-stack"]) == 0
    assert onnxruntime.InferenceSession(str(last)).run(["heatmaps"], {"image": x.numpy()})[0].shape == (5, 16, 8, 8)


def test_cli_export_refuses_a_folder_as_output_and_names_its_flags(workdir, tmp_path, capsys):
    """--onnx naming a folder is refused by flag before any work (it was a raw IsADirectoryError at the end); a
    bad --input-size is named as the flag."""
    folder = tmp_path / "out"
    folder.mkdir()
    best = str(workdir / "best.safetensors")
    assert main(["export", "--onnx", str(folder), "--checkpoint", best, "--no-check"]) == 2
    assert "--onnx" in capsys.readouterr().err and not any(folder.iterdir())
    assert main(["export", "--onnx", str(tmp_path / "m.onnx"), "--checkpoint", best, "--input-size", "100",
                 "--no-check"]) == 2
    assert "error: --input-size" in capsys.readouterr().err


def test_an_error_in_a_dataloader_worker_is_one_line(capsys):
    """PyTorch re-raises a worker's error with the worker's traceback in its message: the CLI prints the error's
    own message and which worker, not the traceback."""
    from hgfast.commands import fail

    wrapped = ValueError("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                         "last):\n  File \"x.py\", line 1, in f\n    raise ValueError(...)\nValueError: corrupt "
                         "image a.jpg: cannot decode")
    assert fail("train", wrapped) == 2
    assert capsys.readouterr().err == ("hgfast train: error: corrupt image a.jpg: cannot decode (ValueError in "
                                       "DataLoader worker process 0)\n")


def test_export_last_stack_outputs_the_final_prediction(tmp_path):
    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")):
        pytest.skip("onnx / onnxscript / onnxruntime not installed")
    import onnxruntime

    from hgfast.export import export_onnx

    torch.manual_seed(0)
    model = StackedHourglass(nstack=2, nfeat=16, njoints=3, depth=2).eval()
    assert export_onnx(model, tmp_path / "last.onnx", 32, last_stack=True) < 1e-4
    x = torch.rand(2, 3, 32, 32)
    got = onnxruntime.InferenceSession(str(tmp_path / "last.onnx")).run(["heatmaps"], {"image": x.numpy()})[0]
    with torch.no_grad():
        stacks = model(x).numpy()
    assert got.shape == (2, 3, 8, 8) and np.abs(stacks[:, 0] - stacks[:, 1]).max() > 1e-2  # the stacks differ
    np.testing.assert_allclose(got, stacks[:, 1], atol=1e-4)


def test_export_leaves_the_callers_model_alone(workdir, tmp_path):
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
        pytest.skip("onnx / onnxscript not installed")
    from hgfast.export import export_onnx

    model = StackedHourglass.from_checkpoint(workdir / "best.safetensors")
    model._apply = lambda *a, **k: pytest.fail("export_onnx moved or cast the caller's model")
    export_onnx(model, tmp_path / "m.onnx", 32, check=False)
    assert model.training


def test_a_loaded_checkpoint_saved_elsewhere_keeps_its_skeleton_and_settings(workdir, tmp_path):
    """from_checkpoint + save (no config.yaml beside the copy): the copy still carries the skeleton and the training
    data's settings, so Predictor cuts the same crops and flips the same joints (they were dropped: 256 px crops
    and joint_0, ...)."""
    from hgfast.data.skeleton import Skeleton
    from hgfast.predict import checkpoint_settings

    best = workdir / "best.safetensors"
    model = StackedHourglass.from_checkpoint(best)
    (tmp_path / "moved").mkdir()
    model.save(tmp_path / "moved" / "copy.safetensors")
    copy = tmp_path / "moved" / "copy.safetensors"
    assert checkpoint_settings(copy) == checkpoint_settings(best) != {}
    assert Skeleton.from_checkpoint(copy) == Skeleton.from_checkpoint(best)
    original, moved = Predictor(best, device="cpu"), Predictor(copy, device="cpu")
    assert moved.input_size == original.input_size and moved.skeleton == original.skeleton
    assert StackedHourglass.from_checkpoint(model.state_dict()).checkpoint_inference is None


def test_export_refuses_to_replace_a_checkpoint(workdir, tmp_path, capsys):
    """--onnx naming the --checkpoint (it was overwritten with the ONNX graph) or another checkpoint file is
    refused before any work; the weights stay."""
    import shutil

    best = tmp_path / "best.safetensors"
    shutil.copy(workdir / "best.safetensors", best)
    other, config = tmp_path / "pytorch_model.bin", tmp_path / "config.yaml"
    other.write_bytes(b"weights")
    config.write_text("steps: 1\n")
    before = best.read_bytes()
    for target, message in ((best, "give a .onnx path (it is the --checkpoint it exports)"),
                            (other, "give a .onnx path (a file of another kind is not replaced)"),
                            (config, "give a .onnx path (a file of another kind is not replaced)")):
        assert main(["export", "--onnx", str(target), "--checkpoint", str(best), "--no-check"]) == 2
        assert message in capsys.readouterr().err
    assert best.read_bytes() == before and other.read_bytes() == b"weights" and config.read_text() == "steps: 1\n"


def test_export_prints_nothing_but_its_result(workdir, tmp_path):
    """A fresh process's export writes no warnings to stderr (torch listed each torchvision op it skipped and
    raised a FutureWarning from its own pytree code)."""
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
        pytest.skip("onnx / onnxscript not installed")
    proc = subprocess.run([sys.executable, "-m", "hgfast", "export", "--onnx", str(tmp_path / "m.onnx"),
                           "--checkpoint", str(workdir / "best.safetensors"), "--no-check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and (tmp_path / "m.onnx").is_file()
    assert proc.stderr == ""


def test_cli_resume_uses_the_saved_config(workdir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    assert main(["train", "--workdir", str(copy), "--resume", "--set", "steps=3"]) == 0
    from hgfast.train.state import load_state

    state = load_state(copy)
    assert state["step"] == 3 and state["config"]["model"]["nfeat"] == 16


def test_cli_resume_takes_the_work_dir_given_by_set(workdir, tmp_path, monkeypatch):
    """--set workdir=DIR is --workdir DIR: the resumed run's base config is DIR's own, not that of runs/hgfast (a
    default run there gave its config to DIR's state, and without one the error named runs/hgfast)."""
    from hgfast.train.state import load_state

    monkeypatch.chdir(tmp_path)
    run = _copy_run(workdir, tmp_path / "mine")
    saved = load_state(run)["config"]
    default = _copy_run(workdir, tmp_path / "runs" / "hgfast")
    (default / "config.yaml").write_text((default / "config.yaml").read_text().replace(
        f"lr: {saved['optim']['lr']}", "lr: 0.123"))
    assert "lr: 0.123" in (default / "config.yaml").read_text()
    assert main(["train", "--resume", "--set", f"workdir={run}", "--set", "steps=3"]) == 0
    state = load_state(run)
    assert state["step"] == 3 and state["config"]["optim"]["lr"] == saved["optim"]["lr"]
    assert load_state(default)["step"] == load_state(workdir)["step"]  # runs/hgfast untouched


def _copy_run(workdir, path):
    import shutil

    shutil.copytree(workdir, path)
    return path


def test_cli_resume_dir_is_the_work_dir(workdir, tmp_path, monkeypatch, capsys):
    from hgfast.train.state import load_state

    monkeypatch.chdir(tmp_path)  # where the default work dir runs/hgfast would be
    run = _copy_run(workdir, tmp_path / "A")
    config = tmp_path / "tiny.yaml"  # a config without a workdir key
    config.write_text("model: {nstack: 1, nfeat: 16, depth: 2}\nbatch_size: 4\nthreads: 1\n"
                      "data: {input_size: 32, image_size: 48, train_length: 16, val_length: 8, workers: 0}\n")
    assert main(["train", str(config), "--resume", str(run), "--set", "steps=3"]) == 0
    assert load_state(run)["step"] == 3 and not (tmp_path / "runs").exists()
    assert main(["train", "--resume", str(run / "last.state.pt"), "--set", "steps=4"]) == 0  # its config.yaml
    assert load_state(run)["step"] == 4 and not (tmp_path / "runs").exists()

    other = _copy_run(workdir, tmp_path / "B")
    before = (other / "last.state.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", "--workdir", str(other), "--resume", str(run), "--set", "steps=5"]) == 2
    assert "holds another run" in capsys.readouterr().err  # A's state is not continued over B's run
    assert (other / "last.state.pt").read_bytes() == before
    assert main(["train", "--workdir", str(tmp_path / "C"), "--resume", str(run), "--set", "steps=5"]) == 0
    assert load_state(tmp_path / "C")["step"] == 5 and load_state(run)["step"] == 4  # a branch in a new folder


def test_cli_resume_refuses_a_changed_model_without_writing(workdir, tmp_path, capsys):
    run = _copy_run(workdir, tmp_path / "K")
    config = (run / "config.yaml").read_text()
    assert main(["train", "--workdir", str(run), "--resume", "--set", "model.nfeat=32"]) == 2
    assert "'model.nfeat' = 32" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == config
    assert main(["train", "--workdir", str(run), "--resume", "--set", "data.input_norm=bearpaw"]) == 2
    assert "'data.input_norm' = 'bearpaw': the saved run has 'none'" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == config


def test_cli_train_nonfinite_loss_and_early_ctrl_c(tmp_path, monkeypatch, capsys):
    from hgfast.train import loop

    argv = ["train", "--workdir", str(tmp_path / "run")] + [a for s in TINY for a in ("--set", s)]
    real = loop.heatmap_mse_loss
    monkeypatch.setattr(loop, "heatmap_mse_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    assert main(argv) == 2
    assert "hgfast train: error: training loss is nan" in capsys.readouterr().err

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "build_dataset", ctrl_c)  # Ctrl-C while the datasets are built
    assert main(argv[:2] + [str(tmp_path / "fresh")] + argv[3:]) == 130
    err = capsys.readouterr().err
    assert "before a state was written" in err and "state written to" not in err


def test_cli_bad_inputs(workdir, tmp_path, capsys):
    assert main(["train", "--set", "optim.lrr=1", "--workdir", str(tmp_path / "x")]) == 2
    assert "'optim.lrr'" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "none.safetensors"), "--preset", "cpu-small"]) == 2
    assert "none.safetensors" in capsys.readouterr().err
    assert main(["eval", "--workdir", str(workdir), "--results", str(tmp_path / "r.json")]) == 2
    assert "COCO-format or MPII-format data" in capsys.readouterr().err and not (tmp_path / "r.json").exists()
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff broken")
    assert main(["predict", str(corrupt), "--checkpoint", str(workdir / "best.safetensors"), "--out",
                 str(tmp_path / "corrupt")]) == 2
    assert "corrupt.jpg" in capsys.readouterr().err and not (tmp_path / "corrupt").exists()
    with pytest.raises(SystemExit):
        main(["predict", str(corrupt), "--checkpoint", "x", "--box", "1,2,3"])
    assert "--box" in capsys.readouterr().err
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), render(0, "val", 1, 64)["image"])
    assert main(["predict", str(image), "--checkpoint", str(workdir / "best.safetensors"), "--box", "-8,-4,40,60",
                 "--out", str(tmp_path / "negative")]) == 0  # a box from left of and above the image
    assert json.loads((tmp_path / "negative" / "predictions.json").read_text())[0]["box"] == [-8, -4, 40, 60]
    capsys.readouterr()
    (tmp_path / "plain").write_text("")
    (tmp_path / "folder.jpg").mkdir()
    huge = str(10 ** 23 + 1)  # a number no int64 holds: it overflowed in torch or islice, or a traceback
    for argv, message in ((["--threads", "-1"], "--threads must be >= 0"),
                          (["--threads", huge], "--threads must be >= 0 (0: torch's default) and at most 1024"),
                          (["--batch-size", "0"], "--batch-size must be >= 1"),
                          (["--batch-size", huge], "--batch-size must be >= 1 and at most 65536"),
                          (["--refine", "dark", "--dark-kernel", huge], "--dark-kernel must be a positive odd int"),
                          (["--thresholds", "0.5,abc"], "--thresholds must be comma-separated numbers > 0"),
                          (["--thresholds", "0"], "--thresholds must be"),
                          (["--json", str(tmp_path / "plain" / "e.json")], "plain is a file, not a folder"),
                          (["--picture", str(tmp_path / "negative")], "not an image format"),
                          (["--picture", str(tmp_path / "folder.jpg")], "is a folder, not a file")):
        assert main(["eval", "--workdir", str(workdir), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    # The library's checks of what a flag sets name the flag.
    no_gpu = [(["--device", "cuda"], "--device is 'cuda'")] if not torch.cuda.is_available() else []
    for argv, message in ((["--box-margin", "0"], "--box-margin must be a number from 0.01 to 100"),
                          (["--box-margin", "1e300"], "--box-margin must be a number from 0.01 to 100"),
                          (["--input-size", "30"], "--input-size must be"),
                          (["--batch-size", "0"], "--batch-size must be >= 1"),
                          (["--batch-size", huge], "--batch-size must be >= 1 and at most 65536"),
                          (["--refine", "dark", "--dark-kernel", "4"], "--dark-kernel must be a positive odd int"),
                          (["--refine", "dark", "--dark-kernel", huge],
                           "--dark-kernel must be a positive odd int up to 1023"),
                          *no_gpu):
        assert main(["predict", str(image), "--checkpoint", str(workdir / "best.safetensors"), *argv]) == 2
        assert f"hgfast predict: error: {message}" in capsys.readouterr().err, argv
    for argv, message in ((["--refine", "dark", "--dark-kernel", "2"], "--dark-kernel must be"), *no_gpu):
        assert main(["eval", "--workdir", str(workdir), *argv]) == 2
        assert f"hgfast eval: error: {message}" in capsys.readouterr().err, argv


def test_checkpoints_carry_their_inference_settings(workdir, tmp_path):
    """hgfast train stores the data's input size, input norm, box margin and sigma with the weights, so a
    checkpoint copied away from its config.yaml still predicts as trained; older ones fall back to the yaml."""
    from hgfast.checkpoint import read_metadata, save_weights
    from hgfast.predict import checkpoint_settings

    stored = read_metadata(workdir / "best.safetensors")["inference"]
    assert stored == {"input_size": 32, "input_norm": "none", "box_margin": 1.25, "sigma": 1.0}
    alone = tmp_path / "alone" / "model.safetensors"
    alone.parent.mkdir()
    alone.write_bytes((workdir / "best.safetensors").read_bytes())
    predictor = Predictor(alone, device="cpu")
    assert (predictor.input_size, predictor.input_norm, predictor.box_margin) == ((32, 32), "none", 1.25)
    assert Predictor(alone, device="cpu", refine="dark").dark_kernel == 5  # sigma 1
    assert Predictor(alone, 64, device="cpu", input_norm="bearpaw").input_size == (64, 64)  # given beats stored
    older = tmp_path / "older" / "model.safetensors"  # written before the settings were stored
    older.parent.mkdir()
    model = StackedHourglass.from_checkpoint(workdir / "best.safetensors")
    save_weights(model.state_dict(), older, config=model.config)
    assert checkpoint_settings(older) == {}
    (older.parent / "config.yaml").write_text((workdir / "config.yaml").read_text())
    assert checkpoint_settings(older)["input_size"] == (32, 32)
    peer = older.parent / "peer.pth"  # not hgfast's: a config.yaml beside it is not its own
    torch.save(model.state_dict(), peer)
    assert checkpoint_settings(peer) == {} and Predictor(peer, device="cpu").input_size == (256, 256)
    for bad, match in (("data: [1]\n", "must be a mapping"), ("data:\n  input_size: big\n", "bad training data"),
                       ("data:\n  input_size: '64'\n", "input_size must be S or \\(height, width\\)")):
        (older.parent / "config.yaml").write_text(bad)
        with pytest.raises(ValueError, match=match):
            checkpoint_settings(older)
    (older.parent / "config.yaml").write_text("data:\n  input_size: [64, 32]\n  box_margin: 1\n")
    assert checkpoint_settings(older) == {"input_size": (64, 32), "box_margin": 1.0}  # hand-written yaml: typed
    out = tmp_path / "pred"
    image = tmp_path / "im.png"
    cv2.imwrite(str(image), render(0, "val", 0, 64)["image"][..., ::-1])
    assert main(["predict", str(image), "--checkpoint", str(alone), "--out", str(out), "--device", "cpu"]) == 0


def test_main_job_baselines_script():
    """benchmarks/main_job_baselines.py (the README's untrained and mean-pose scores): a figure's own pose, put back
    into its crop, scores 1 at every threshold (the crop-to-image mapping is right); an untrained model scores."""
    import sys

    script = Path(__file__).parents[1] / "benchmarks"
    sys.path.insert(0, str(script))
    try:
        import main_job_baselines
    finally:
        sys.path.remove(str(script))
    from hgfast.data import build_dataset
    from hgfast.train.config import resolve

    cfg = resolve("cpu-small", overrides=["data.val_length=2"])
    val_set = build_dataset(cfg.data, "val")
    one = torch.utils.data.Subset(val_set, [1])
    one.skeleton, one.input_size = val_set.skeleton, val_set.input_size
    assert main_job_baselines.mean_pose(cfg, one, one, 1) == {"0.2": 1.0, "0.1": 1.0, "0.05": 1.0}
    assert main_job_baselines.mean_pose(cfg, val_set, one, 1)["0.05"] < 1.0  # another figure's pose
    assert all(0 <= v <= 1 for v in main_job_baselines.untrained(cfg, val_set, seed=0).values())


def test_predict_and_video_refuse_a_file_as_the_out_folder(workdir, image_file, clip, tmp_path, capsys):
    """--out naming an existing file is refused by name before any work (it was an OS error mid-run)."""
    taken = tmp_path / "taken.jpg"
    taken.write_bytes(b"x")
    best = str(workdir / "best.safetensors")
    for cmd in (["predict", str(image_file)], ["video", str(clip)]):
        assert main([*cmd, "--checkpoint", best, "--out", str(taken)]) == 2
        assert f"--out {taken}" in capsys.readouterr().err and taken.read_bytes() == b"x"


def test_video_refuses_an_image(workdir, image_file, clip, tmp_path, capsys):
    """An image given to video (OpenCV reads one as a one-frame video, a truncated one half grey) is refused by
    name, pointing to predict, before anything is written; the check goes by the suffix, in any case."""
    shouting = tmp_path / "PERSON.JPG"
    shouting.write_bytes(image_file.read_bytes()[:100])  # truncated
    for image in (image_file, shouting):
        assert main(["video", str(clip), str(image), "--checkpoint", str(workdir / "best.safetensors"),
                     "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"videos: {image} is an image" in err and "hgfast predict" in err
    assert not (tmp_path / "out").exists()


def test_inputs_of_absurd_sizes_and_stored_settings_out_of_range_are_refused(workdir, tmp_path, capsys):
    """--input-size beyond 4096 px (gigabytes per image) and a config.yaml beside an old checkpoint whose sigma is
    not a positive number, or whose box margin is absurd, end as errors naming them, not an out-of-memory traceback
    or NaN keypoints."""
    import shutil

    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((40, 30, 3), 90, np.uint8))
    assert main(["predict", str(image), "--checkpoint", str(workdir / "best.safetensors"), "--input-size",
                 "1000000", "--out", str(tmp_path / "o")]) == 2
    assert "--input-size must be S or (height, width), positive multiples of 16 up to 4096" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    from hgfast.checkpoint import save_weights
    from hgfast.models import StackedHourglass

    save_weights(StackedHourglass.from_checkpoint(workdir / "best.safetensors").state_dict(), old / "m.safetensors")
    shutil.copy(workdir / "config.yaml", old / "config.yaml")
    text = (old / "config.yaml").read_text()
    (old / "config.yaml").write_text(re.sub(r"sigma: .*", "sigma: .inf", text))
    assert main(["predict", str(image), "--checkpoint", str(old / "m.safetensors"), "--out", str(tmp_path / "p")]) == 2
    assert "training data setting 'sigma' must be finite and > 0, got inf" in capsys.readouterr().err
    (old / "config.yaml").write_text(re.sub(r"box_margin: .*", "box_margin: 1.0e+300", text))
    assert main(["predict", str(image), "--checkpoint", str(old / "m.safetensors"), "--out", str(tmp_path / "p")]) == 2
    assert "training data setting 'box_margin' must be a number from 0.01 to 100" in capsys.readouterr().err


def test_a_boxes_file_giving_an_image_or_frame_twice_is_refused(tmp_path):
    """JSON parsers keep the last of two equal keys: one image's (or frame's) people would be lost unseen."""
    from hgfast.predict import read_boxes_file
    from hgfast.video import read_frame_boxes

    boxes = tmp_path / "boxes.json"
    boxes.write_text('{"a.jpg": [[0, 0, 40, 60, 0.9]], "a.jpg": [[10, 10, 30, 30, 0.8]]}')
    with pytest.raises(ValueError, match="boxes file .*boxes.json gives the key 'a.jpg' twice"):
        read_boxes_file(boxes, ["a.jpg"])
    boxes.write_text('{"0": [[0, 0, 40, 60]], "0": [[1, 1, 5, 5]]}')
    with pytest.raises(ValueError, match="gives the key '0' twice"):
        read_frame_boxes(boxes)
