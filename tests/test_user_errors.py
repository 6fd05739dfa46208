"""User mistakes get a clear error naming what to fix: --set values, config choices, device names, ONNX opsets,
picture suffixes and ``hgfast summary`` sizes."""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from hgfast.device import resolve_device
from hgfast.train.config import ConfigError, resolve
from hgfast.visualize import save_image


def test_malformed_set_value_names_the_key():
    with pytest.raises(ConfigError, match=r"--set optim.milestones: the value '\[100,200' is not valid YAML"):
        resolve(None, None, ["optim.milestones=[100,200"])


def test_unknown_augmentation_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="data.augment.*bearpaw"):
        resolve(None, None, ["data.augment=heavy"])


# explicit ids: an id "gpu" would match the gpu marker's keyword and be skipped on machines without a GPU
@pytest.mark.parametrize("name", ["gpu", "cuda:x", ""], ids=["word", "bad-index", "empty"])
def test_unknown_device_name(name):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(name)


def test_cuda_index_beyond_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="'cuda:3' but this machine has 1 CUDA GPU"):
        resolve_device("cuda:3")


def test_picture_with_an_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"cannot encode an image as '.txt'"):
        save_image(np.zeros((4, 4, 3), np.uint8), tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()


def test_unsupported_onnx_opset_is_refused(tmp_path, caplog):
    """A clear error, and no traceback logged by the exporter's failed down-conversion on the way."""
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
        pytest.skip("onnx / onnxscript not installed")
    from hgfast import StackedHourglass
    from hgfast.export import export_onnx

    with pytest.raises(ValueError, match="opset 13 is not supported"):
        export_onnx(StackedHourglass(nstack=1, nfeat=16, depth=2), tmp_path / "m.onnx", 16, opset=13, check=False)
    assert not (tmp_path / "m.onnx").exists()
    assert not [r for r in caplog.records if r.exc_info], "a logged traceback"


@pytest.mark.parametrize("model,opset,message", [("linear", 18, "model must be a StackedHourglass, got Linear"),
                                                  ("hg", 18.0, "opset must be an int, got 18.0"),
                                                  ("hg", "18", "opset must be an int, got '18'")])
def test_export_onnx_bad_arguments_are_named(tmp_path, model, opset, message):
    """Before any export: a float opset used to fail deep in the exporter and break every later export."""
    from hgfast import StackedHourglass
    from hgfast.export import export_onnx

    net = torch.nn.Linear(2, 2) if model == "linear" else StackedHourglass(nstack=1, nfeat=16, depth=2)
    with pytest.raises(TypeError, match=message):
        export_onnx(net, tmp_path / "m.onnx", 64, opset=opset, check=False)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("args,message", [(["--nfeat", "255"], "nfeat"), (["--nstack", "0"], "nstack"),
                                          (["--input", "0"], "--input: expected S or HEIGHTxWIDTH"),
                                          (["--input", "128x96"], "--input must be S or (height, width), positive "
                                                                  "multiples of 64 up to 4096, got (128, 96)")])
def test_summary_bad_sizes(args, message):
    proc = subprocess.run([sys.executable, "-m", "hgfast.cli", "summary", *args], capture_output=True, text=True)
    assert proc.returncode != 0 and "hgfast summary: error:" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_python_m_hgfast_is_the_hgfast_command():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "hgfast", "export", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "--onnx" in proc.stdout, proc.stderr[-2000:]


def test_an_interrupted_torchrun_run_is_reported_by_rank_0_only(monkeypatch, capsys, tmp_path):
    """Every rank gets the Ctrl-C; only the main process says where the state is (each rank said it)."""
    import hgfast.train.loop as loop
    from hgfast.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    for rank, says in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        assert main(["train", "--preset", "cpu-small", "--workdir", str(tmp_path / "run")]) == 130
        assert ("interrupted" in capsys.readouterr().err) == says
