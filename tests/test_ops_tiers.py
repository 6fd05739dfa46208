"""Tier resolution: the reference fallback works without hgfast._C, and `python -m hgfast.info` reports tiers."""
import os
import subprocess
import sys
import warnings

import pytest
import torch

from hgfast import _ext
from hgfast.info import report

NOT_DIFFERENTIABLE = """
hm = torch.rand(1, 2, 8, 8, requires_grad=True)
outputs = (*hgfast.argmax_decode(hm), *hgfast.argmax_decode(hm, refine="dark", dark_kernel=3),
           hgfast.gaussian_heatmaps(kp.clone().requires_grad_(), sigma=torch.ones(2, requires_grad=True), size=8))
assert not any(t.requires_grad for t in outputs), [t.requires_grad for t in outputs]
"""
SCRIPT = """
import torch, hgfast
from hgfast import _ext
kp = torch.tensor([[[3.0, 4.0], [1.0, 2.0]]])
h = hgfast.gaussian_heatmaps(kp, size=8, encoding="integer")
c, s = hgfast.argmax_decode(h)
pred = torch.rand(1, 2, 2, 8, 8, requires_grad=True)
hgfast.heatmap_mse_loss(pred, kp).backward()
assert torch.equal(c, kp) and pred.grad is not None
""" + NOT_DIFFERENTIABLE + """print(_ext.STATUS["tier"], sorted(_ext.STATUS["skipped"]))
"""


def test_reference_fallback_without_extension():
    env = dict(os.environ, HGFAST_NO_EXT="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "['compiled',", "'jit']"]


def test_decode_and_targets_are_not_differentiable():
    """No output requires grad, whatever the tier (the extension's ops have no autograd formula; without this
    their outputs required grad and backward gave None with a warning)."""
    exec(NOT_DIFFERENTIABLE, {"torch": torch, "hgfast": __import__("hgfast"), "kp": torch.rand(1, 2, 2) * 8})


def test_info_lists_every_op_and_device():
    text = "\n".join(report())
    for name in ("gaussian_heatmaps", "argmax_decode", "heatmap_mse_loss"):
        assert f"{name} on cpu" in text and f"{name} on cuda" in text
    assert torch.__version__ in text
    assert "fused model (Triton kernels): " + ("on for CUDA" if torch.cuda.is_available() else "not here") in text
    if _ext.resolve()["tier"] is not None:
        assert "C++ kernel" in text


def test_extension_is_built():
    """A development install (the README's test command) must end with a working hgfast._C, compiled or JIT:
    otherwise every kernel test would skip and only the references would be tested."""
    status = _ext.resolve()
    assert status["tier"] is not None, f"hgfast._C did not load: {status['skipped']}"


_JIT_TIER = """
import sys
sys.modules["hgfast._C"] = None  # no compiled extension: as after a plain `pip install -e .`
import torch
from hgfast import _ext, ops
from hgfast.ops.reference import argmax_peaks_ref, gaussian_heatmaps_ref
status = _ext.resolve()
assert status["tier"] == "jit (CPU only)", status
hm = torch.randn(2, 3, 9, 11)
for got, want in zip(torch.ops.hgfast.argmax_decode(hm, True), argmax_peaks_ref(hm, True)):
    torch.testing.assert_close(got, want, atol=0, rtol=0)
assert _ext.op("gaussian_heatmaps", "cpu") is not None
kp = torch.rand(2, 1, 3, 2) * 8
want = gaussian_heatmaps_ref(kp, torch.ones(2, 1, 3, dtype=torch.bool), torch.full((3,), 2.0), (9, 11), False,
                             torch.float32)
torch.testing.assert_close(ops.gaussian_heatmaps(kp, size=(9, 11), sigma=2.0), want, atol=1e-6, rtol=0)
print("ok")
"""


def test_jit_tier_builds_and_serves_the_ops(tmp_path):
    """Without the compiled hgfast._C the extension is built with ninja on first use into HGFAST_CACHE, and its
    kernels serve the ops (about a minute on 2 cores)."""
    env = dict(os.environ, HGFAST_CACHE=str(tmp_path), HGFAST_CUDA="0", MAX_JOBS="2")
    env.pop("HGFAST_NO_JIT", None)
    proc = subprocess.run([sys.executable, "-c", _JIT_TIER], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
    assert list(tmp_path.glob("jit_*/hgfast_C.so"))


def _toolkit(root):
    (root / "include").mkdir(parents=True)
    (root / "include" / "cuda_runtime.h").write_text("")
    (root / "bin").mkdir()
    (root / "bin" / "nvcc").write_text("")
    return root


@pytest.fixture
def cuda_torch(monkeypatch, tmp_path):
    """A CUDA torch (as far as cuda_wanted looks) whose guessed CUDA_HOME has no headers, no GPU visible. The
    environment is restored after the test (set variables with os.environ inside it, not monkeypatch.setenv,
    whose undo would run after the restore)."""
    from unittest import mock

    from torch.utils import cpp_extension

    with mock.patch.dict(os.environ):  # cuda_wanted writes CUDA_HOME and TORCH_CUDA_ARCH_LIST: undone after
        for name in ("HGFAST_CUDA", "CUDA_HOME", "CUDA_PATH", "TORCH_CUDA_ARCH_LIST"):
            os.environ.pop(name, None)
        monkeypatch.setattr(torch.version, "cuda", "13.0")
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
        monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path / "guess"))
        monkeypatch.setattr(_ext, "FALLBACK_ROOTS", ())
        monkeypatch.setattr(_ext.shutil, "which", lambda name: None)
        yield cpp_extension


def test_cuda_build_needs_the_toolkit_headers(cuda_torch, monkeypatch, tmp_path):
    """No toolkit anywhere: the CPU kernels are built and the reason names the guessed CUDA_HOME (instead of the
    install failing at `cuda_runtime.h: No such file`)."""
    wanted, why = _ext.cuda_wanted()
    assert not wanted and str(tmp_path / "guess") in why and "cuda_runtime.h" in why
    assert "CUDA_HOME" not in os.environ
    os.environ["HGFAST_CUDA"] = "1"  # forced: built with torch's guess (the build reports what is missing)
    assert _ext.cuda_wanted()[0]
    os.environ["HGFAST_CUDA"] = "0"
    assert _ext.cuda_wanted() == (False, "HGFAST_CUDA=0")


def test_cuda_home_you_set_is_used_as_it_is(cuda_torch, monkeypatch, tmp_path):
    """A CUDA_HOME without headers is refused by name, not replaced by another toolkit (of another version,
    perhaps); HGFAST_CUDA=1 cannot make a CPU torch build CUDA."""
    _toolkit(tmp_path / "fallback")
    monkeypatch.setattr(_ext, "FALLBACK_ROOTS", (str(tmp_path / "fallback"),))
    os.environ["CUDA_HOME"] = str(tmp_path / "mine")
    wanted, why = _ext.cuda_wanted()
    assert not wanted and f"the CUDA_HOME you set, {tmp_path / 'mine'}," in why
    assert os.environ["CUDA_HOME"] == str(tmp_path / "mine")
    monkeypatch.setattr(torch.version, "cuda", None)
    os.environ["HGFAST_CUDA"] = "1"
    assert _ext.cuda_wanted() == (False, f"torch {torch.__version__} is a CPU build (HGFAST_CUDA=1 ignored)")


def test_cuda_build_finds_the_toolkit_behind_nvcc(cuda_torch, monkeypatch, tmp_path):
    """nvcc on PATH a link into the toolkit (torch guessed its parent folder): the link's target is used and
    CUDA_HOME set for the build; without a link, the fallback /usr/local/cuda."""
    toolkit = _toolkit(tmp_path / "cuda-13.0")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").symlink_to(toolkit / "bin" / "nvcc")
    monkeypatch.setattr(_ext.shutil, "which", lambda name: str(tmp_path / "bin" / "nvcc"))
    wanted, why = _ext.cuda_wanted()
    assert wanted and f"CUDA_HOME={toolkit}" in why
    assert os.environ["CUDA_HOME"] == cuda_torch.CUDA_HOME == str(toolkit)
    other = _toolkit(tmp_path / "fallback")
    del os.environ["CUDA_HOME"]  # as in a new process
    monkeypatch.setattr(_ext.shutil, "which", lambda name: None)
    monkeypatch.setattr(cuda_torch, "CUDA_HOME", str(tmp_path / "guess"))
    monkeypatch.setattr(_ext, "FALLBACK_ROOTS", (str(other),))
    assert _ext.cuda_wanted()[0] and cuda_torch.CUDA_HOME == str(other)


def test_cuda_build_without_a_gpu_gets_an_arch_list(cuda_torch, monkeypatch, tmp_path):
    """torch's own arch choice fails with no GPU to look at (IndexError); a set TORCH_CUDA_ARCH_LIST is kept."""
    monkeypatch.setattr(cuda_torch, "CUDA_HOME", str(_toolkit(tmp_path / "cuda")))
    wanted, why = _ext.cuda_wanted()
    assert wanted and os.environ["TORCH_CUDA_ARCH_LIST"] == _ext.DEFAULT_ARCHS and _ext.DEFAULT_ARCHS in why
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
    assert _ext.cuda_wanted() == (True, f"torch CUDA 13.0, CUDA_HOME={tmp_path / 'cuda'}")
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == "9.0"
    del os.environ["TORCH_CUDA_ARCH_LIST"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert _ext.cuda_wanted()[0] and "TORCH_CUDA_ARCH_LIST" not in os.environ


def test_cuda_build_settings_are_undone_after_the_build(cuda_torch, monkeypatch, tmp_path):
    """The JIT build (and hgfast.info) set CUDA_HOME and TORCH_CUDA_ARCH_LIST for the build only: the user's
    process gets its environment back, and torch its guessed CUDA_HOME."""
    toolkit = _toolkit(tmp_path / "cuda-13.0")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").symlink_to(toolkit / "bin" / "nvcc")
    monkeypatch.setattr(_ext.shutil, "which", lambda name: str(tmp_path / "bin" / "nvcc"))
    with _ext.cuda_build_settings() as (wanted, why):
        assert wanted and os.environ["CUDA_HOME"] == cuda_torch.CUDA_HOME == str(toolkit)
        assert os.environ["TORCH_CUDA_ARCH_LIST"] == _ext.DEFAULT_ARCHS
    assert "CUDA_HOME" not in os.environ and "TORCH_CUDA_ARCH_LIST" not in os.environ
    assert cuda_torch.CUDA_HOME == str(tmp_path / "guess")
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
    with _ext.cuda_build_settings():
        pass
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == "9.0"


def test_an_extension_without_cuda_kernels_warns_once_on_a_gpu(monkeypatch):
    """A CPU-only _C used for CUDA tensors: one RuntimeWarning (the ops would quietly run their references)."""
    _ext.resolve()
    if _ext.STATUS["tier"] is None or _ext.op("argmax_decode", "cpu") is None:
        pytest.skip(f"needs hgfast._C: {_ext.STATUS}")
    if torch._C._dispatch_has_kernel_for_dispatch_key("hgfast::argmax_decode", "CUDA"):
        pytest.skip("this hgfast._C has CUDA kernels")
    monkeypatch.delenv("HGFAST_CUDA", raising=False)
    monkeypatch.setattr(_ext, "_OPS", {})
    with pytest.warns(RuntimeWarning, match="no CUDA kernels"):
        assert _ext.op("argmax_decode", "cuda") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _ext.op("gaussian_heatmaps", torch.device("cuda")) is None
        monkeypatch.setattr(_ext, "_OPS", {})
        monkeypatch.setenv("HGFAST_CUDA", "0")  # CUDA left out on purpose
        assert _ext.op("argmax_decode", "cuda") is None


@pytest.mark.gpu
def test_cuda_kernels_are_built_on_a_gpu_machine():
    """On a GPU the CUDA kernels must be there: otherwise every `cuda` op test would skip (needs_kernel) and the
    ops would quietly run their references."""
    if os.environ.get("HGFAST_CUDA") == "0":
        pytest.skip("HGFAST_CUDA=0 builds no CUDA kernels")
    missing = [name for name in ("gaussian_heatmaps", "argmax_decode", "heatmap_mse_loss", "heatmap_mse_loss_backward")
               if _ext.op(name, "cuda") is None]
    assert not missing, f"no CUDA kernel for {missing}: {_ext.resolve()}; {_ext.cuda_wanted()[1]}"
