"""MPII's test-set submission file from test-split predictions (``hgfast mpii-submission``)."""
import h5py
import numpy as np
import pytest

from hgfast.cli import main
from hgfast.data import read_annotations
from hgfast.data.mpii_release import convert_release
from hgfast.eval.mpii_submission import write_mpii_submission

from test_mpii_release import IMAGES, _release

scipy_io = pytest.importorskip("scipy.io")


@pytest.fixture
def files(tmp_path):
    """MPII's release (``IMAGES``: test image c.jpg with two people, d.jpg with none), its converted splits and
    predictions of test.h5's rows whose thorax lies at each person's centre."""
    release = _release(tmp_path / "release.mat", IMAGES)
    convert_release(release, tmp_path / "annot")
    test = read_annotations(tmp_path / "annot" / "test.h5")
    preds = np.random.default_rng(0).uniform(1, 500, (len(test["imgname"]), 16, 2))
    preds[:, 7] = test["center"]
    with h5py.File(tmp_path / "test_preds.h5", "w") as f:
        f["preds"], f["imgname"] = preds, [n.encode() for n in test["imgname"]]
    return release, tmp_path / "annot", tmp_path / "test_preds.h5", preds


def test_submission_is_the_test_images_annolist_with_the_predicted_points(files, tmp_path):
    release, annot, predictions, preds = files
    written = write_mpii_submission(predictions, annot / "test.h5", release, tmp_path / "pred.mat")
    assert (written["people"], written["images"]) == (2, 1) and np.allclose(written["correlation"], 1)
    pred = scipy_io.loadmat(tmp_path / "pred.mat")["pred"]
    assert pred.shape == (1, 2)  # the test images c.jpg and d.jpg, in the release's order
    assert [str(pred[0, i]["image"][0, 0]["name"][0]) for i in range(2)] == ["c.jpg", "d.jpg"]
    rects = pred[0, 0]["annorect"]
    for p in range(2):
        point = rects[0, p]["annopoints"][0, 0]["point"]
        assert point.shape == (1, 16)
        got = [[float(point[0, j][k][0, 0]) for k in ("x", "y")] for j in range(16)]
        np.testing.assert_allclose(got, preds[p])
        assert [int(point[0, j]["id"][0, 0]) for j in range(16)] == list(range(16))
    assert float(rects[0, 1]["objpos"][0, 0]["x"][0, 0]) == 10.0  # the release's fields stay
    assert pred[0, 1]["annorect"].size == 0


def test_predictions_that_are_not_the_test_splits_are_refused(files, tmp_path):
    release, annot, predictions, preds = files
    out = tmp_path / "pred.mat"
    with h5py.File(predictions, "a") as f:
        f["preds"][0, 3, 0] = np.nan
    with pytest.raises(ValueError, match="row 0 has non-finite coordinates"):
        write_mpii_submission(predictions, annot / "test.h5", release, out)
    with h5py.File(predictions, "a") as f:
        f["preds"][0, 3, 0] = 1.0
    train = read_annotations(annot / "train.h5")
    with h5py.File(tmp_path / "train_preds.h5", "w") as f:
        f["preds"] = train["part"]
    with pytest.raises(ValueError, match="row 0: index 0, person 0 is a training image of"):
        write_mpii_submission(tmp_path / "train_preds.h5", annot / "train.h5", release, out)
    with h5py.File(annot / "test.h5", "a") as f:
        f["person"][1] = 0
    with pytest.raises(ValueError, match="row 1: index 2, person 0 again"):
        write_mpii_submission(predictions, annot / "test.h5", release, out)
    with h5py.File(annot / "test.h5", "a") as f:
        del f["person"]
    with pytest.raises(ValueError, match="no 'index' / 'person'"):
        write_mpii_submission(predictions, annot / "test.h5", release, out)
    assert not out.exists()


def test_cli_writes_the_submission_and_warns_of_rows_out_of_order(files, tmp_path, capsys):
    release, annot, predictions, preds = files
    out = tmp_path / "pred_keypoints_mpii.mat"
    args = ["mpii-submission", str(predictions), "--annotations", str(annot / "test.h5"), "--release", str(release),
            "--out", str(out)]
    assert main(args) == 0
    assert f"wrote {out}: 2 people in 1 test images" in capsys.readouterr().out
    assert main(args) == 2 and "exists; give --overwrite" in capsys.readouterr().err
    with h5py.File(predictions, "a") as f:  # the two rows' thorax swapped: as if in another order
        f["preds"][:, 7] = preds[::-1, 7]
    assert main(args + ["--overwrite"]) == 0
    assert "correlate little with the people's positions (x -1.00, y -1.00)" in capsys.readouterr().out
    assert main(args[:-1] + [str(tmp_path / "pred.h5")]) == 2
    assert "must be a .mat file" in capsys.readouterr().err
    assert main(args[:-1] + [str(release), "--overwrite"]) == 2
    assert "would replace an input" in capsys.readouterr().err


def test_the_submission_never_replaces_an_input(files):
    release, annot, predictions, _ = files
    before = release.read_bytes()
    for out in (release, annot / "test.h5", predictions):
        with pytest.raises(ValueError, match="would replace an input"):
            write_mpii_submission(predictions, annot / "test.h5", release, out)
    assert release.read_bytes() == before


def test_rows_whose_numbers_name_another_image_or_person_are_refused(files, tmp_path):
    _, annot, predictions, _ = files
    release = _release(tmp_path / "release2.mat", IMAGES + [  # g.jpg: a test image with people where c.jpg's go
        {"name": "g.jpg", "train": False, "people": [{"objpos": (400, 300), "scale": 4.0},
                                                     {"objpos": (10, 20), "scale": 0.5}]}])
    with h5py.File(annot / "test.h5", "a") as f:
        f["index"][:] = 5  # (as if 1-based or of another release)
    with pytest.raises(ValueError, match="row 0: index 5 is g.jpg in .*, c.jpg in"):
        write_mpii_submission(predictions, annot / "test.h5", release, tmp_path / "pred.mat")
    with h5py.File(annot / "test.h5", "a") as f:
        f["index"][:], f["person"][:] = 2, [1, 0]
    with pytest.raises(ValueError, match="row 0: person 1 of c.jpg is at x 10 in .*, at x 400 in"):
        write_mpii_submission(predictions, annot / "test.h5", release, tmp_path / "pred.mat")


def test_struct_arrays_stored_as_columns_take_the_points(files, tmp_path):
    release, annot, predictions, preds = files
    data = scipy_io.loadmat(release)["RELEASE"]
    annolist = data[0, 0]["annolist"]
    annolist[0, 2]["annorect"] = annolist[0, 2]["annorect"].reshape(2, 1)  # c.jpg's people: 2 x 1
    data[0, 0]["annolist"] = annolist.reshape(-1, 1)  # the images: N x 1
    scipy_io.savemat(tmp_path / "columns.mat", {"RELEASE": data})
    write_mpii_submission(predictions, annot / "test.h5", tmp_path / "columns.mat", tmp_path / "pred.mat")
    rects = scipy_io.loadmat(tmp_path / "pred.mat")["pred"][0, 0]["annorect"]
    assert rects.shape == (2, 1)
    for p in range(2):
        point = rects[p, 0]["annopoints"][0, 0]["point"]
        np.testing.assert_allclose([[float(point[0, j][k][0, 0]) for k in "xy"] for j in range(16)], preds[p])
