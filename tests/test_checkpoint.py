"""Checkpoints: safetensors round trip, peer layouts (princeton-vl, bearpaw, anibali) and bad files."""
import warnings
from pathlib import Path

import pytest
import torch

from hgfast import StackedHourglass
from hgfast.checkpoint import atomic_path
from hgfast.predict import Predictor
from hgfast.models.convert import detect_layout, strip_wrappers, to_hgfast_layout
from peer_models import BPHourglassNet, PVPoseNet, randomize_bn_stats

NSTACK, NFEAT, NJOINTS = 2, 32, 5


@pytest.fixture
def image():
    return torch.randn(2, 3, 64, 64)


def test_safetensors_round_trip_rebuilds_the_architecture(tmp_path, image):
    model = randomize_bn_stats(StackedHourglass(nstack=NSTACK, nfeat=NFEAT, njoints=NJOINTS)).eval()
    model.save(tmp_path / "w.safetensors")
    loaded = StackedHourglass.from_checkpoint(tmp_path / "w.safetensors").eval()
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(loaded(image), model(image))
    # A file saved before stem_channels existed (its config without it) takes it from the weights.
    from hgfast.checkpoint import save_weights

    older = {k: v for k, v in model.config.items() if k != "stem_channels"}
    save_weights(model.state_dict(), tmp_path / "older.safetensors", config=older)
    assert StackedHourglass.from_checkpoint(tmp_path / "older.safetensors").config == model.config


def test_peer_model_equals_reference_on_same_weights(image):
    """The stand-in peers compute the same function as hgfast once weights are remapped (guards the stand-ins)."""
    peer = randomize_bn_stats(PVPoseNet(NSTACK, NFEAT, NJOINTS)).eval()
    ours = StackedHourglass.from_checkpoint(peer.state_dict()).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(image), peer(image), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prefix", ["", "model.module."])
def test_princeton_vl_checkpoint_loads_with_identical_outputs(tmp_path, image, prefix):
    peer = randomize_bn_stats(PVPoseNet(NSTACK, NFEAT, NJOINTS)).eval()
    state = {prefix + k: v for k, v in peer.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "checkpoint.pt")
    assert detect_layout(strip_wrappers(state)) == "princeton-vl"
    ours = StackedHourglass.from_checkpoint(tmp_path / "checkpoint.pt").eval()
    assert ours.config == dict(nstack=NSTACK, nfeat=NFEAT, njoints=NJOINTS, depth=4, in_channels=3, stem_channels=128)
    with torch.no_grad():
        torch.testing.assert_close(ours(image), peer(image), rtol=1e-5, atol=1e-5)


def test_princeton_vl_unused_skip_convs_are_dropped():
    peer = PVPoseNet(NSTACK, NFEAT, NJOINTS)
    remapped = to_hgfast_layout(peer.state_dict())
    assert not any("skip_layer" in k for k in remapped)
    ours = StackedHourglass(nstack=NSTACK, nfeat=NFEAT, njoints=NJOINTS)
    assert set(remapped) == set(ours.state_dict())
    # Only the two channel-changing stem residuals keep a skip conv (64->128 and 128->nfeat).
    assert sorted(k for k in remapped if ".skip." in k) == ["stem.res1.skip.bias", "stem.res1.skip.weight",
                                                            "stem.res3.skip.bias", "stem.res3.skip.weight"]


@pytest.mark.parametrize("prefix", ["module.", ""], ids=["bearpaw", "anibali"])
def test_bearpaw_and_anibali_checkpoints_load_with_identical_outputs(tmp_path, image, prefix):
    peer = randomize_bn_stats(BPHourglassNet(NSTACK, NFEAT, NJOINTS)).eval()
    state = {prefix + k: v for k, v in peer.state_dict().items()}
    torch.save({"epoch": 1, "arch": "hg", "state_dict": state}, tmp_path / "model_best.pth.tar")
    ours = StackedHourglass.from_checkpoint(tmp_path / "model_best.pth.tar").eval()
    assert ours.stem_channels == 256  # its layer2 is Res(128, 256), layer3 Res(256, nfeat)
    with torch.no_grad():
        torch.testing.assert_close(ours(image), peer(image), rtol=1e-5, atol=1e-5)
    ours.save(tmp_path / "converted.safetensors")  # and the converted weights rebuild from their own file
    again = StackedHourglass.from_checkpoint(tmp_path / "converted.safetensors").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(image), peer(image), rtol=1e-5, atol=1e-5)


def test_pre_0_4_1_checkpoint_without_num_batches_tracked_loads(tmp_path, image):
    """bearpaw's 2017-era weights have no BatchNorm num_batches_tracked: they load with the counters at 0."""
    peer = randomize_bn_stats(BPHourglassNet(NSTACK, NFEAT, NJOINTS)).eval()
    state = {"module." + k: v for k, v in peer.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": state}, tmp_path / "old.pth.tar")
    ours = StackedHourglass.from_checkpoint(tmp_path / "old.pth.tar").eval()
    assert all(v.item() == 0 for k, v in ours.state_dict().items() if k.endswith("num_batches_tracked"))
    with torch.no_grad():
        torch.testing.assert_close(ours(image), peer(image), rtol=1e-5, atol=1e-5)


def test_compiled_model_checkpoint_loads():
    """A state dict saved from torch.compile(model) has every key under ``_orig_mod.``."""
    model = StackedHourglass(nstack=1, nfeat=16, depth=2)
    state = {"_orig_mod." + k: v for k, v in model.state_dict().items()}
    assert strip_wrappers(state).keys() == model.state_dict().keys()
    loaded = StackedHourglass.from_checkpoint(state)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_bearpaw_multi_block_checkpoint_is_refused():
    state = BPHourglassNet(1, NFEAT, NJOINTS).state_dict()
    state["res.0.1.conv1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="num_blocks > 1"):
        StackedHourglass.from_checkpoint(state)


def test_partial_checkpoint_lists_missing_and_unexpected_keys():
    state = StackedHourglass(nstack=NSTACK, nfeat=NFEAT, njoints=NJOINTS).state_dict()
    del state["heads.1.heatmap.bias"]
    state["heads.1.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \[heads\.1\.heatmap\.bias\].*unexpected keys "
                                         r"\[heads\.1\.extra\.weight\]"):
        StackedHourglass.from_checkpoint(state)


def test_a_diverged_checkpoint_is_refused_by_name(tmp_path):
    """NaN weights would make every prediction NaN (and fail later, in decoding, far from the cause)."""
    model = StackedHourglass(nstack=NSTACK, nfeat=NFEAT, njoints=NJOINTS)
    with torch.no_grad():
        model.heads[0].heatmap.bias[3] = float("nan")
        model.stem.bn.running_var.fill_(float("inf"))
    model.save(tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match=r"NaN or infinite values in 2 tensor\(s\), e.g. \['heads.0.heatmap.bias', "
                                         r"'stem.bn.running_var'\]: the run that wrote it had diverged"):
        StackedHourglass.from_checkpoint(tmp_path / "nan.safetensors")


def test_wrong_architecture_reports_shape_mismatch():
    state = StackedHourglass(nstack=1, nfeat=NFEAT, njoints=NJOINTS).state_dict()
    with pytest.raises(ValueError, match="shape mismatches.*heads.0.heatmap.weight"):
        StackedHourglass.from_checkpoint(state, njoints=NJOINTS + 1)


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="unrecognised checkpoint layout"):
        StackedHourglass.from_checkpoint({"backbone.conv.weight": torch.zeros(1)})


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        StackedHourglass.from_checkpoint(tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="corrupt"):
        StackedHourglass.from_checkpoint(tmp_path / "bad.safetensors")
    (tmp_path / "bad.pt").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="corrupt"):
        StackedHourglass.from_checkpoint(tmp_path / "bad.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        StackedHourglass.from_checkpoint(tmp_path / "list.pt")
    (tmp_path / "photo.pth").write_bytes(b"\xff\xd8\xff\xe0 a JPEG given as the checkpoint")
    with pytest.raises(ValueError, match=r"^corrupt or unreadable torch checkpoint .*photo.pth: [^\n]*$"):
        StackedHourglass.from_checkpoint(tmp_path / "photo.pth")


class _Code:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_peer_checkpoint_with_numpy_numbers_loads_and_code_does_not(tmp_path, image, capsys):
    """bearpaw's trainer stores best_acc as a numpy number beside the weights: read (numpy data only); a pickle
    that would call a function is refused with torch's reason on one line, and nothing runs."""
    import numpy as np

    peer = BPHourglassNet(NSTACK, NFEAT, NJOINTS).eval()
    extras = {"best_acc": np.float64(0.8), "epoch": np.int64(3), "curve": np.array([0.1, 0.2], np.float32)}
    torch.save({"state_dict": peer.state_dict(), **extras}, tmp_path / "model_best.pth.tar")
    with torch.no_grad():
        torch.testing.assert_close(StackedHourglass.from_checkpoint(tmp_path / "model_best.pth.tar").eval()(image),
                                   peer(image), rtol=1e-5, atol=1e-5)
    torch.save({"state_dict": peer.state_dict(), "hook": _Code()}, tmp_path / "code.pth.tar")
    with pytest.raises(ValueError, match="code.pth.tar: .*Unsupported global: GLOBAL .*print"):
        StackedHourglass.from_checkpoint(tmp_path / "code.pth.tar")
    assert "code ran" not in capsys.readouterr().out


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "w.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_atomic_write_gives_normal_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "new.bin") as tmp:
            open(tmp, "wb").write(b"x")
        (tmp_path / "kept.bin").write_bytes(b"old")
        os.chmod(tmp_path / "kept.bin", 0o640)
        with atomic_path(tmp_path / "kept.bin") as tmp:
            open(tmp, "wb").write(b"new")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "kept.bin").stat().st_mode) == 0o640


def test_partial_hgfast_file_reports_missing_keys_using_the_stored_config(tmp_path):
    """The architecture comes from the file's stored config, so a key the shape inference needs may be missing."""
    from hgfast.checkpoint import save_weights

    model = StackedHourglass(nstack=1, nfeat=NFEAT, njoints=NJOINTS)
    state = model.state_dict()
    del state["stem.res3.conv3.weight"]
    save_weights(state, tmp_path / "partial.safetensors", config=model.config)
    with pytest.raises(ValueError, match=r"missing keys \[stem\.res3\.conv3\.weight\]"):
        StackedHourglass.from_checkpoint(tmp_path / "partial.safetensors")
    loaded = StackedHourglass.from_checkpoint(tmp_path / "partial.safetensors", strict=False)
    assert loaded.config == model.config
    # Without a stored config, explicit arguments stand in for the inference.
    with pytest.raises(ValueError, match="cannot infer the architecture"):
        StackedHourglass.from_checkpoint(state)
    assert StackedHourglass.from_checkpoint(state, strict=False, **model.config).config == model.config
    # The five keys of files and callers from before stem_channels: only the missing one is read off the weights.
    del state["heads.0.heatmap.weight"]
    older = {k: v for k, v in model.config.items() if k != "stem_channels"}
    assert StackedHourglass.from_checkpoint(state, strict=False, **older).config == model.config


def test_saving_onto_a_folder_names_it_and_leaves_no_temporary_file(tmp_path):
    """Was an IsADirectoryError naming the temporary file beside it, raised after the whole write."""
    (tmp_path / "out.safetensors").mkdir()
    with pytest.raises(IsADirectoryError, match=r"cannot write .*out.safetensors: it is a folder \(give a file"):
        StackedHourglass(nstack=1, nfeat=16, njoints=4, depth=1).save(tmp_path / "out.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]
    assert not list((tmp_path / "out.safetensors").iterdir())


def test_saving_under_another_suffix_than_safetensors_is_refused(tmp_path):
    """A model.pt written as safetensors was then read by from_checkpoint as a torch pickle and called corrupt."""
    model = StackedHourglass(nstack=1, nfeat=16, njoints=4, depth=1)
    for name in ("model.pt", "model", "model.safetensors.bak"):
        with pytest.raises(ValueError, match=f"save: .*{name} must end in .safetensors"):
            model.save(tmp_path / name)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(inference={"input_size": -3}), ValueError, r"save: inference: bad training data setting \(input_size"),
    (dict(inference={"input_size": 100}), ValueError, "save: inference input_size must be .* multiples of 8"),
    (dict(inference={"sigma": float("nan")}), ValueError, "training data setting 'sigma' must be finite"),
    (dict(inference={"input_norm": "imagenet"}), ValueError, "input_norm must be one of"),
    (dict(inference={"size": object()}), ValueError, "inference must be a mapping with keys among"),
    (dict(inference=[1, 2]), ValueError, "inference must be a mapping"),
    (dict(skeleton="mpii"), TypeError, "skeleton must be a hgfast.data.Skeleton, got str")])
def test_save_refuses_settings_that_from_checkpoint_would_refuse(tmp_path, kwargs, error, message):
    """Was: written (input_size -3: a file from_checkpoint then refused), or an AttributeError / a JSON TypeError."""
    with pytest.raises(error, match=message):
        StackedHourglass(nstack=1, nfeat=16, njoints=4, depth=1).save(tmp_path / "m.safetensors", **kwargs)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("bad", ["str", "complex", "none", "int"])
def test_from_checkpoint_names_a_source_that_is_no_state_dict(bad):
    """Was: TypeError "'NoneType' object is not iterable", AttributeError, or complex weights loaded silently."""
    state = StackedHourglass(nstack=1, nfeat=16, njoints=4, depth=1).state_dict()
    if bad in ("none", "int"):
        with pytest.raises(TypeError, match="source must be a checkpoint path or a state dict, got " +
                           ("NoneType" if bad == "none" else "int")):
            StackedHourglass.from_checkpoint(None if bad == "none" else 5)
        return
    w = state["stem.conv.weight"]
    state["stem.conv.weight"] = "weights" if bad == "str" else w.to(torch.complex64)
    with pytest.raises(ValueError, match=r"source must map names to real tensors, got .* for \['stem.conv.weight'\]"):
        StackedHourglass.from_checkpoint(state)


def test_atomic_path_keeps_the_suffix_only_when_asked(tmp_path):
    """onnx and others choose a format by the name they write to: the temporary file ends in .tmp unless a writer
    (OpenCV's video writer) needs the suffix."""
    from hgfast.checkpoint import atomic_path

    with atomic_path(tmp_path / "m.json") as tmp:
        assert tmp.endswith(".tmp") and Path(tmp).parent == tmp_path
        Path(tmp).write_text("{}")
    with atomic_path(tmp_path / "clip.mp4", keep_suffix=True) as tmp:
        assert tmp.endswith(".tmp.mp4")
        Path(tmp).write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "m.json"]


def test_bearpaw_weights_as_model_init_need_its_stem(tmp_path):
    """Fine-tuning from bearpaw's weights (``model.init``) asks for its wider stem by name, and warns where the
    training data's input_norm is none."""
    from hgfast.train.config import resolve
    from hgfast.train.pretrained import apply_pretrained, read_pretrained

    peer = BPHourglassNet(NSTACK, NFEAT, NJOINTS)
    torch.save({"state_dict": {"module." + k: v for k, v in peer.state_dict().items()}}, tmp_path / "bp.pth.tar")
    model_cfg = resolve(overrides=[f"model.nstack={NSTACK}", f"model.nfeat={NFEAT}"]).model
    with pytest.raises(ValueError, match=r"stem_channels 256 \(the config: 128\); give --set model.stem_channels=256"):
        read_pretrained(tmp_path / "bp.pth.tar", model_cfg, input_norm="bearpaw")
    model_cfg.stem_channels = 256
    model = StackedHourglass(nstack=NSTACK, nfeat=NFEAT, njoints=NJOINTS, stem_channels=256)
    with pytest.warns(UserWarning, match="trained on normalised inputs, but data.input_norm is none"):
        state = read_pretrained(tmp_path / "bp.pth.tar", model_cfg)  # the default input_norm: none
    assert apply_pretrained(model, state) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # told the inputs: no warning
        read_pretrained(tmp_path / "bp.pth.tar", model_cfg, input_norm="bearpaw")


def test_a_training_state_or_a_non_checkpoint_is_refused_by_name(tmp_path):
    """last.state.pt holds weights without the model's training settings (input size, skeleton), so predicting
    from it would silently use defaults: it is refused, naming the last.safetensors beside it; a file that is not
    a checkpoint at all says so rather than quoting a pickle opcode."""
    import torch

    model = StackedHourglass(nstack=1, nfeat=16, njoints=4, depth=2)
    state = {"model": model.state_dict(), "optimizer": {}, "scaler": {}, "step": 3, "best": None, "rng": {},
             "config": {}, "progress": {}, "skeleton": None}
    torch.save(state, tmp_path / "last.state.pt")
    with pytest.raises(ValueError, match=r"training state .*last.safetensors"):
        StackedHourglass.from_checkpoint(tmp_path / "last.state.pt")
    for name, data in (("garbage.pth", b"garbage bytes"), ("picture.pt", b"\xff\xd8\xff\xe0 JFIF")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=rf"{name}: not a file torch.save wrote"):
            StackedHourglass.from_checkpoint(tmp_path / name)
    (tmp_path / "run").mkdir()
    model.save(tmp_path / "run" / "best.safetensors")
    with pytest.raises(ValueError, match=r"checkpoint .*run is a folder, not a file \(its weights: .*best"):
        StackedHourglass.from_checkpoint(tmp_path / "run")  # was "checkpoint not found"
    misshapen = dict(model.state_dict(), **{"stem.conv.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"stem.conv.weight has shape \(3,\), expected a conv weight"):
        StackedHourglass.from_checkpoint(misshapen)  # was an IndexError


def test_a_stored_skeleton_that_does_not_fit_is_ignored_with_a_warning(tmp_path):
    """A checkpoint whose stored skeleton has no list of K joint names loads without it, saying so."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp_path / "m.safetensors"
    StackedHourglass(nstack=1, nfeat=16, njoints=4, depth=2).save(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    for names in (7, "abcd", ["a", "b"], ["a", "b", "c", 4]):
        save_file(load_file(str(path)), str(path), {**metadata, "hgfast_skeleton": json.dumps({"names": names})})
        with pytest.warns(UserWarning, match="its stored skeleton is ignored: it needs 'names', 4 joint names"):
            assert StackedHourglass.from_checkpoint(path).checkpoint_skeleton is None
        with pytest.warns(UserWarning, match="its stored skeleton is ignored"):  # Predictor too
            assert Predictor(path, input_size=32).skeleton.names == tuple(f"joint_{i}" for i in range(4))
