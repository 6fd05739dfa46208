"""MPII test splits (h5 files without labels) and the predictions file of ``hgfast eval --results``."""
import json
import sys

import cv2
import h5py
import numpy as np
import pytest
import torch

from hgfast.cli import main
from hgfast.data import MPII, write_annotations
from hgfast.eval import (evaluate, format_table, pck_table, predict_dataset, score_mpii_predictions,
                         write_mpii_predictions)
from hgfast.models import StackedHourglass
from hgfast.train.config import resolve
from hgfast.train.loop import train

N = 5
TINY = ["model.nstack=1", "model.nfeat=16", "model.depth=2", "data.input_size=32", "data.workers=0", "batch_size=2",
        "steps=2", "val_every=2", "ckpt_every=2", "threads=1"]


def _images(folder, n=N):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    names = [f"{i:05d}.jpg" for i in range(n)]
    for name in names:
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (90, 100, 3), dtype=np.uint8))
    return names


def _labelled(path, names, normalize=None, ids=True):
    n = len(names)
    part = np.random.default_rng(2).uniform(20, 80, (n, 16, 2))
    write_annotations(path, names, np.tile([50.0, 45.0], (n, 1)), np.full(n, 0.4), part, np.ones((n, 16)),
                      np.full(n, 10.0) if normalize is None else normalize)
    if ids:
        with h5py.File(path, "a") as f:
            f["index"], f["person"] = np.arange(100, 100 + n), np.arange(n) % 2
    return part


def _unlabelled(path, names, **extra):
    """Like a test split: image names, centres, scales and MPII's numbers, no part / visible / normalize."""
    n = len(names)
    with h5py.File(path, "w") as f:
        f["imgname"] = np.array([s.encode() for s in names])
        f["center"], f["scale"] = np.tile([50.0, 45.0], (n, 1)), np.full(n, 0.4)
        f["index"], f["person"] = np.arange(7, 7 + n, dtype=np.float64), np.zeros(n)  # copied as they are
        for key, value in extra.items():
            f[key] = value


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny model trained on an MPII-style folder: annot/{train,valid,test}.h5 and images/."""
    root = tmp_path_factory.mktemp("mpii")
    names = _images(root / "images")
    (root / "annot").mkdir()
    _labelled(root / "annot" / "train.h5", names)
    part = _labelled(root / "annot" / "valid.h5", names)
    _unlabelled(root / "annot" / "test.h5", names)
    work = root / "run"
    sets = ["data.dataset=mpii", f"data.root={root}", *TINY]
    assert main(["train", "--workdir", str(work)] + [a for s in sets for a in ("--set", s)]) == 0
    return root, work, part


def test_an_h5_without_labels_reads_as_unlabelled_samples(tmp_path):
    names = _images(tmp_path / "images", 3)
    _unlabelled(tmp_path / "test.h5", names)
    ds = MPII(tmp_path / "test.h5", tmp_path / "images", input_size=32)
    assert len(ds) == 3 and not ds.labelled.any() and not ds.scorable.any()
    item = ds[1]
    assert item["annotated"].sum() == 0 and item["visible"].sum() == 0 and item["joints"].abs().sum() == 0
    assert "no annotated joint in the file" in ds.no_ground_truth()
    _unlabelled(tmp_path / "half.h5", names, part=np.zeros((3, 16, 2)))  # some labels but not all: refused
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['visible', 'normalize'\]"):
        MPII(tmp_path / "half.h5", tmp_path / "images")
    # index / person are copied into predictions files as they are, never interpreted: any form loads
    _labelled(tmp_path / "odd_ids.h5", names, ids=False)
    with h5py.File(tmp_path / "odd_ids.h5", "a") as f:
        f["index"], f["person"] = np.arange(3)[None], np.array([b"a", b"b", b"c"])
    assert MPII(tmp_path / "odd_ids.h5", tmp_path / "images").scorable.all()


def test_eval_results_are_the_predictions_in_the_files_coordinates(run, tmp_path):
    root, work, part = run
    results = tmp_path / "valid_preds.h5"
    assert main(["eval", "--workdir", str(work), "--results", str(results)]) == 0
    table = json.loads((work / "eval.json").read_text())
    with h5py.File(results) as f:
        preds, scores = f["preds"][()], f["scores"][()]
        assert f["index"][()].tolist() == list(range(100, 100 + N)) and f["person"][()].tolist() == [0, 1, 0, 1, 0]
        assert [s.decode() for s in f["imgname"][()]] == [f"{i:05d}.jpg" for i in range(N)]
        assert f.attrs["one_based"] and f.attrs["checkpoint"] == str(work / "best.safetensors")
        assert not f.attrs["flip_test"] and len(f.attrs["joint_names"]) == 16
    assert preds.shape == (N, 16, 2) and preds.dtype == np.float64 and scores.shape == (N, 16)
    # the file's labels and the predictions share one coordinate base: scoring them directly gives eval's table
    again = pck_table(preds, part, np.ones((N, 16)), np.full(N, 10.0), (0.5, 0.1))
    assert again["pck"] == table["pck"] and table["annotations"] == str(root / "annot" / "valid.h5")
    model = StackedHourglass.from_checkpoint(work / "best.safetensors")
    dataset = MPII(root / "annot" / "valid.h5", root / "images", input_size=32)
    np.testing.assert_allclose(preds, predict_dataset(model, dataset)["pred"] + 1, atol=1e-4)
    # the same predictions as a MATLAB file, as HRNet's pred.mat: what the peers' evaluation scripts read
    loadmat = pytest.importorskip("scipy.io").loadmat
    matlab = tmp_path / "pred.mat"
    assert main(["eval", "--workdir", str(work), "--results", str(matlab), "--json", str(tmp_path / "m.json")]) == 0
    np.testing.assert_array_equal(loadmat(matlab)["preds"], preds)
    np.testing.assert_array_equal(loadmat(matlab)["scores"], scores)
    assert score_mpii_predictions(matlab, root / "annot" / "valid.h5")["pck"] == table["pck"]
    assert main(["eval", "--workdir", str(work), "--results", str(matlab), "--json", str(tmp_path / "m.json")]) == 0
    (tmp_path / "not_preds.mat").write_bytes(matlab.read_bytes().replace(b"preds", b"predz"))
    assert main(["eval", "--workdir", str(work), "--results", str(tmp_path / "not_preds.mat")]) == 2


def test_eval_predicts_an_unlabelled_test_split_only_into_a_results_file(run, tmp_path, capsys):
    root, work, _ = run
    test_set = ["--set", f"data.val_annotations={root / 'annot' / 'test.h5'}"]
    assert main(["eval", "--workdir", str(work), *test_set]) == 2
    assert "test.h5 has no sample PCK can score" in capsys.readouterr().err
    assert main(["eval", "--workdir", str(work), *test_set, "--results", str(tmp_path / "p.json")]) == 2
    assert "name it *.h5" in capsys.readouterr().err
    for own, why in (("test.h5", "would replace an input"), ("valid.h5", "exists and is not a predictions file")):
        assert main(["eval", "--workdir", str(work), *test_set, "--results", str(root / "annot" / own)]) == 2
        assert why in capsys.readouterr().err  # never over an annotation file
    assert main(["eval", "--workdir", str(work), *test_set, "--json", str(root / "annot" / "test.h5")]) == 2
    assert "of --json would replace an input" in capsys.readouterr().err
    assert main(["eval", "--workdir", str(work), "--picture", str(root / "images" / "00001.jpg")]) == 2
    assert "would replace a file in the dataset's image folder" in capsys.readouterr().err
    (tmp_path / "cut.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))  # an HDF5 signature, then nothing
    assert main(["eval", "--workdir", str(work), *test_set, "--results", str(tmp_path / "cut.h5")]) == 2
    assert "exists and is not a predictions file" in capsys.readouterr().err
    same = str(tmp_path / "same.h5")
    assert main(["eval", "--workdir", str(work), *test_set, "--results", same, "--json", same]) == 2
    assert "of --results would replace another output" in capsys.readouterr().err
    assert MPII(root / "annot" / "test.h5", root / "images").ann["imgname"].shape == (N,)
    results = tmp_path / "test_preds.H5"
    before = (work / "eval.json").read_bytes() if (work / "eval.json").exists() else None
    assert main(["eval", "--workdir", str(work), *test_set, "--flip", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"PCK: none of the {N} samples has ground truth" in out and "mpii test.h5, 5 samples" in out
    table = json.loads((work / "eval_test.json").read_text())  # the run's own eval.json stays as it was
    assert "pck" not in table and table["unscored"] == N and table["samples"] == N
    assert (work / "eval_test.jpg").is_file()
    assert ((work / "eval.json").read_bytes() if (work / "eval.json").exists() else None) == before
    assert main(["eval", "--workdir", str(work), "--set", f"data.root={root}"]) == 0  # other data: eval_valid.json
    assert json.loads((work / "eval_valid.json").read_text())["annotations"] == str(root / "annot" / "valid.h5")
    assert ((work / "eval.json").read_bytes() if (work / "eval.json").exists() else None) == before
    with h5py.File(results) as f:
        assert f["preds"].shape == (N, 16, 2) and np.isfinite(f["preds"][()]).all() and f.attrs["flip_test"]
        assert f["index"][()].tolist() == list(range(7, 7 + N))


def test_samples_without_a_normaliser_are_left_out_of_pck(run, tmp_path):
    root, work, part = run
    path = tmp_path / "valid.h5"
    _labelled(path, [f"{i:05d}.jpg" for i in range(N)], normalize=np.array([10.0, 0, 10, 0, 10]))
    with h5py.File(path, "a") as f:  # sample 4: a normaliser, but no annotated joint
        f["part"][4] = 0
    dataset = MPII(path, root / "images", input_size=32)
    assert dataset.scorable.tolist() == [True, False, True, False, False]
    table, preds = evaluate(StackedHourglass.from_checkpoint(work / "best.safetensors"), dataset, (0.5,))
    kept = [0, 2]
    expected = pck_table(preds["pred"][kept], part[kept] - 1, np.ones((2, 16)), np.full(2, 10.0), (0.5,))
    assert table["pck"] == expected["pck"] and table["count"]["r_ankle"] == 2
    assert table["unscored"] == 3 and "left out: 3 sample(s) without ground truth" in format_table(table)


def test_training_refuses_unlabelled_files_before_it_starts(run, tmp_path):
    root, _, _ = run
    test_h5 = root / "annot" / "test.h5"
    base = ["data.dataset=mpii", f"data.root={root}", *TINY]
    with pytest.raises(ValueError, match="training annotations .*test.h5 have no annotated joint"):
        train(resolve(overrides=base + [f"data.train_annotations={test_h5}"], workdir=str(tmp_path / "a")))
    with pytest.raises(ValueError, match="validation: .*test.h5 has no sample PCK can score"):
        train(resolve(overrides=base + [f"data.val_annotations={test_h5}"], workdir=str(tmp_path / "b")))
    assert not (tmp_path / "a" / "last.state.pt").exists() and not (tmp_path / "b" / "last.state.pt").exists()


def test_a_mat_results_file_without_scipy_is_refused_before_the_evaluation(run, tmp_path, monkeypatch, capsys):
    _, work, _ = run
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # as if scipy were not installed
    assert main(["eval", "--workdir", str(work), "--results", str(tmp_path / "pred.mat")]) == 2
    assert "needs scipy: pip install 'hgfast[mat]'" in capsys.readouterr().err
    assert not (tmp_path / "pred.mat").exists()


def test_write_mpii_predictions_orders_rows_by_sample_and_keeps_the_base(run, tmp_path):
    root, _, _ = run
    dataset = MPII(root / "annot" / "valid.h5", root / "images", one_based=False)
    order = np.array([3, 0, 4, 1, 2])
    pred = np.random.default_rng(3).uniform(0, 90, (N, 16, 2))
    preds = {"pred": pred[order], "scores": pred[order, :, 0], "index": order}
    write_mpii_predictions(tmp_path / "p.h5", dataset, {**preds, "pred": pred})
    write_mpii_predictions(tmp_path / "p.h5", dataset, preds, note="x")  # a predictions file is replaced
    with h5py.File(tmp_path / "p.h5") as f:
        np.testing.assert_array_equal(f["preds"][()], pred)  # 0-based file: no shift
        np.testing.assert_allclose(f["scores"][()], pred[..., 0], rtol=1e-6)  # rows in the file's order too
        assert not f.attrs["one_based"] and f.attrs["note"] == "x"
    for index in (order[:4], np.array([0, 0, 1, 2, 3])):
        with pytest.raises(ValueError, match="each of the dataset's 5 samples once"):
            write_mpii_predictions(tmp_path / "q.h5", dataset, {**preds, "index": index, "pred": pred[:len(index)]})
    assert not (tmp_path / "q.h5").exists()
    with pytest.raises(ValueError, match="needs an MPII-style dataset, got Subset"):
        write_mpii_predictions(tmp_path / "q.h5", torch.utils.data.Subset(dataset, range(N)), preds)


def test_score_gives_evals_table_from_the_predictions_file_alone(run, tmp_path, capsys):
    root, work, part = run
    results, valid = tmp_path / "preds.h5", root / "annot" / "valid.h5"
    assert main(["eval", "--workdir", str(work), "--results", str(results), "--json", str(tmp_path / "e.json")]) == 0
    assert main(["score", str(results), "--annotations", str(valid), "--json", str(tmp_path / "s.json")]) == 0
    assert "Mean(w)" in capsys.readouterr().out
    scored, evaluated = (json.loads((tmp_path / f"{s}.json").read_text()) for s in "se")
    assert scored["pck"] == evaluated["pck"] and scored["mean_joints"] == evaluated["mean_joints"]
    assert scored["auc"] == evaluated["auc"] is not None and scored["auc_upper"] == 0.5
    assert len(scored["mean_joints"]) == 14 and scored["samples"] == N
    assert main(["eval", "--workdir", str(work), "--inclusive", "--json", str(tmp_path / "i.json")]) == 0
    assert json.loads((tmp_path / "i.json").read_text())["inclusive"] and not evaluated["inclusive"]
    # strict < by default, <= with --inclusive: every joint exactly 0.5 x normalize (5 px) away
    whole = np.round(part)
    valid = tmp_path / "whole.h5"
    write_annotations(valid, [f"{i:05d}.jpg" for i in range(N)], np.tile([50.0, 45.0], (N, 1)), np.full(N, 0.4),
                      whole, np.ones((N, 16)), np.full(N, 10.0))
    with h5py.File(tmp_path / "edge.h5", "w") as f:
        f["preds"] = whole + [3.0, 4.0]
    assert main(["score", str(tmp_path / "edge.h5"), "--annotations", str(valid), "--thresholds", "0.5",
                 "--json", str(tmp_path / "edge.json")]) == 0
    assert json.loads((tmp_path / "edge.json").read_text())["pck"]["0.5"]["mean_all"] == 0.0
    assert main(["score", str(tmp_path / "edge.h5"), "--annotations", str(valid), "--thresholds", "0.5",
                 "--inclusive", "--json", str(tmp_path / "edge.json")]) == 0
    assert json.loads((tmp_path / "edge.json").read_text())["pck"]["0.5"]["mean_all"] == 1.0


def test_score_reads_other_tools_files_as_eval_mpii_pose_does(run, tmp_path):
    """A (2, K, N) array (MATLAB's n x K x 2 saved -v7.3) is transposed; NaN coordinates count as misses."""
    root, _, part = run
    valid = root / "annot" / "valid.h5"
    near = part + 1.0
    far = near.copy()
    far[:, :8] = 1e5
    missing = near.copy()
    missing[:, :8] = np.nan
    tables = []
    center = np.tile([50.0, 45.0], (N, 1))
    for preds, extra in ((far, {}), (missing, {"center": center}),
                         (missing.transpose(2, 1, 0).astype(np.float32), {"center": center.T})):
        with h5py.File(tmp_path / "p.h5", "w") as f:
            f["preds"] = preds
            f.update(extra)
        tables.append(score_mpii_predictions(tmp_path / "p.h5", valid))
    assert tables[0]["pck"] == tables[1]["pck"] == tables[2]["pck"]
    assert tables[0]["pck"]["0.5"]["per_joint"]["r_ankle"] == 0.0 and tables[0]["pck"]["0.5"]["per_joint"][
        "r_wrist"] == 1.0


def test_score_refuses_files_that_do_not_fit(run, tmp_path, capsys):
    root, _, part = run
    valid = root / "annot" / "valid.h5"

    def refused(fields, message, path=tmp_path / "p.h5"):
        if fields is not None:
            with h5py.File(path, "w") as f:
                for key, value in fields.items():
                    f[key] = value
        assert main(["score", str(path), "--annotations", str(valid)]) == 2
        assert message in capsys.readouterr().err

    refused(None, "predictions file not found", tmp_path / "none.h5")
    refused(None, "is a folder", tmp_path)
    (tmp_path / "v5.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    refused(None, "is neither an HDF5 file nor a MATLAB file (", tmp_path / "v5.mat")
    with h5py.File(tmp_path / "whole.h5", "w") as f:
        f["preds"] = np.zeros((N, 16, 2))
    (tmp_path / "cut.h5").write_bytes((tmp_path / "whole.h5").read_bytes()[:1500])
    refused(None, "corrupt or unreadable predictions file", tmp_path / "cut.h5")
    refused({"pred": part}, "field 'preds' must be (N, K, 2) (or (2, K, N)) numbers, x and y per joint, got none")
    refused({"preds": part[..., 0]}, "got float64 of shape (5, 16)")
    refused({"preds": part[:4]}, "has 'preds' of shape (4, 16, 2)")
    refused({"preds": part.transpose(1, 0, 2)}, "has 'preds' of shape (16, 5, 2)")
    names = np.array([f"{i:05d}.jpg".encode() for i in (0, 1, 3, 2, 4)])
    refused({"preds": part, "imgname": names}, "row 2 has imgname '00003.jpg'")
    refused({"preds": part, "imgname": names[:3]}, "has 'imgname' of shape (3,)")
    refused({"preds": part, "imgname": names[None]}, "field 'imgname' must be 1-D image names, got |S9 of shape")
    center = np.tile([50.0, 45.0], (N, 1))
    center[3] += 40  # another person of the same image
    refused({"preds": part, "center": center}, "row 3 has center [90.0, 85.0]")
    with h5py.File(tmp_path / "p.h5", "a") as f:
        f["center"][3] = [50.0, 45.0]
        f.attrs["joint_names"] = np.array([f"j{i}".encode() for i in range(16)])
    refused(None, "has joints ['j0', 'j1',")
    with h5py.File(tmp_path / "p.h5", "a") as f:
        f.attrs["joint_names"] = np.array([b"\xff"] * 16)
    refused(None, "attribute 'joint_names', entry 0 is not UTF-8 text")
    assert main(["score", str(tmp_path / "whole.h5"), "--annotations", str(root / "annot" / "test.h5")]) == 2
    err = capsys.readouterr().err
    assert "nothing to score: " in err and "test.h5 has no sample PCK can score" in err
    assert main(["score", str(tmp_path / "p.h5"), "--annotations", str(valid), "--oks-sigmas", "0.1"]) == 2
    assert "--oks-sigmas applies to COCO results (.json)" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "p.h5"), "--annotations", str(valid), "--thresholds", "0"]) == 2
    assert "--thresholds must be" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "p.h5"), "--annotations", str(valid), "--json", str(valid)]) == 2
    assert "of --json would replace an input" in capsys.readouterr().err and MPII(valid, root / "images").scorable.all()
