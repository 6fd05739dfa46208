"""Peer checkpoints decode as their peers do by default (half pixel, no flip shift), hgfast's as hgfast's; a
bearpaw/anibali checkpoint needs its input normalisation said."""
import json

import cv2
import numpy as np
import pytest
import torch
import yaml

from hgfast.cli import main
from hgfast.data import render
from hgfast.models import StackedHourglass
from hgfast.predict import Predictor, decoding_conventions
from peer_models import BPHourglassNet, PVPoseNet, randomize_bn_stats

NSTACK, NFEAT, NJOINTS = 1, 16, 16


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """princeton-vl, bearpaw and hgfast checkpoints of one small architecture."""
    root = tmp_path_factory.mktemp("peers")
    torch.manual_seed(0)
    pv = randomize_bn_stats(PVPoseNet(NSTACK, NFEAT, NJOINTS))
    torch.save({"state_dict": {"model." + k: v for k, v in pv.state_dict().items()}}, root / "pv.pt")
    bp = randomize_bn_stats(BPHourglassNet(NSTACK, NFEAT, NJOINTS))
    torch.save({"state_dict": {"module." + k: v for k, v in bp.state_dict().items()}}, root / "bp.pth.tar")
    StackedHourglass(nstack=NSTACK, nfeat=NFEAT, njoints=NJOINTS).save(root / "own.safetensors")
    return root


@pytest.fixture(scope="module")
def images():
    return [render(0, "val", i, 64)["image"] for i in range(2)]


def test_conventions_of_each_layout():
    model = StackedHourglass(nstack=1, nfeat=16, depth=2)
    assert decoding_conventions(model) == (False, True, "none")
    model.checkpoint_layout = "princeton-vl"
    assert decoding_conventions(model) == (True, False, "none")
    assert decoding_conventions(model, False, True, "anibali") == (False, True, "anibali")
    model.checkpoint_layout = "bearpaw"
    with pytest.raises(ValueError, match="input_norm 'bearpaw'.*or 'anibali'"):
        decoding_conventions(model)
    assert decoding_conventions(model, input_norm="bearpaw") == (True, False, "bearpaw")
    with pytest.raises(ValueError, match="input_norm must be one of"):
        decoding_conventions(model, input_norm="imagenet")


def test_from_checkpoint_records_the_layout_and_save_keeps_a_peers(checkpoints, tmp_path):
    layouts = {name: StackedHourglass.from_checkpoint(checkpoints / name).checkpoint_layout
               for name in ("pv.pt", "bp.pth.tar", "own.safetensors")}
    assert layouts == {"pv.pt": "princeton-vl", "bp.pth.tar": "bearpaw", "own.safetensors": "hgfast"}
    StackedHourglass.from_checkpoint(checkpoints / "pv.pt").save(tmp_path / "converted.safetensors")
    assert StackedHourglass.from_checkpoint(tmp_path / "converted.safetensors").checkpoint_layout == "princeton-vl"
    state = StackedHourglass.from_checkpoint(checkpoints / "pv.pt").state_dict()
    assert StackedHourglass.from_checkpoint(state).checkpoint_layout == "hgfast"  # a state dict in hgfast's names


def test_predictor_decodes_a_peer_checkpoint_as_its_peer(checkpoints, images):
    def predict(name, **options):
        return Predictor(checkpoints / name, 64, "cpu", flip=True, **options)(images)[0]

    peer = Predictor(checkpoints / "pv.pt", 64, "cpu")
    assert (peer.half_pixel, peer.flip_shift, peer.input_norm) == (True, False, "none")
    np.testing.assert_array_equal(predict("pv.pt"), predict("pv.pt", half_pixel=True, flip_shift=False))
    assert not np.allclose(predict("pv.pt"), predict("pv.pt", half_pixel=False, flip_shift=False))
    assert not np.allclose(predict("pv.pt"), predict("pv.pt", half_pixel=True, flip_shift=True))
    own = Predictor(checkpoints / "own.safetensors", 64, "cpu")
    assert (own.half_pixel, own.flip_shift, own.input_norm) == (False, True, "none")
    with pytest.raises(ValueError, match="input_norm"):
        Predictor(checkpoints / "bp.pth.tar", 64, "cpu")
    bp = Predictor(checkpoints / "bp.pth.tar", 64, "cpu", input_norm="anibali")
    assert (bp.half_pixel, bp.flip_shift, bp.input_norm) == (True, False, "anibali")


def test_cli_predict_and_eval_of_peer_checkpoints(checkpoints, tmp_path, capsys):
    image = tmp_path / "person.png"
    cv2.imwrite(str(image), render(0, "val", 0, 64)["image"][..., ::-1])

    def keypoints(*flags):
        out = tmp_path / ("_".join(f.strip("-") for f in flags) or "plain")
        assert main(["predict", str(image), "--checkpoint", str(checkpoints / "pv.pt"), "--input-size", "64",
                     "--flip", "--out", str(out), *flags]) == 0
        return np.array(list(json.loads((out / "predictions.json").read_text())[0]["keypoints"].values()))

    np.testing.assert_array_equal(keypoints(), keypoints("--half-pixel", "--no-flip-shift"))
    assert not np.allclose(keypoints(), keypoints("--no-half-pixel"))
    assert main(["predict", str(image), "--checkpoint", str(checkpoints / "bp.pth.tar"), "--out",
                 str(tmp_path / "bp")]) == 2
    assert "--input-norm" in capsys.readouterr().err

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"dataset": "synthetic", "input_size": 64, "image_size": 80,
                                               "val_length": 4, "workers": 0}}))
    table = tmp_path / "eval.json"
    base = ["eval", str(config), "--flip", "--json", str(table)]
    assert main(base + ["--checkpoint", str(checkpoints / "pv.pt")]) == 0
    assert "princeton-vl-layout checkpoint: decoded as its peers do" in capsys.readouterr().out
    got = json.loads(table.read_text())
    assert (got["checkpoint_layout"], got["half_pixel"], got["flip_shift"], got["input_norm"]) == (
        "princeton-vl", True, False, "none")
    assert main(base + ["--checkpoint", str(checkpoints / "bp.pth.tar")]) == 2
    assert "data.input_norm" in capsys.readouterr().err
    assert main(base + ["--checkpoint", str(checkpoints / "bp.pth.tar"), "--set", "data.input_norm=bearpaw",
                        "--flip-shift"]) == 0
    got = json.loads(table.read_text())
    assert (got["checkpoint_layout"], got["half_pixel"], got["flip_shift"], got["input_norm"]) == (
        "bearpaw", True, True, "bearpaw")
