"""The profiling script runs (a CPU smoke run here; on a GPU ``gpu_validate.sh profile`` runs the real cases)."""
import json

import pytest

import profile_kernels


@pytest.mark.parametrize("case,extra", [("residual", ["--train", "--backward"]), ("model", ["--nstack", "1"])])
def test_profile_script_writes_its_table(tmp_path, case, extra):
    size = "8" if case == "residual" else "64"
    profile_kernels.main([case, "--contender", "eager", "--size", size, "--batch", "2", "--channels", "16",
                          "--steps", "2", "--out", str(tmp_path), *extra])
    (md,), (js,) = tmp_path.glob("profile-*.md"), tmp_path.glob("profile-*.json")
    result = json.loads(js.read_text())
    assert result["kernels"] and result["kernel_ms"] > 0
    assert abs(sum(r["share"] for r in result["kernels"]) - 1) < 1e-6
    assert "| kernel | calls/step |" in md.read_text()


def test_profile_script_refuses_gpu_contenders_without_a_gpu(capsys):
    if profile_kernels.ON_GPU:
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit):
        profile_kernels.main(["residual", "--contender", "fused"])
    assert "needs a CUDA GPU" in capsys.readouterr().err
