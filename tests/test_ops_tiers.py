"""Tier resolution: the reference fallback works without hgfast._C, and `python -m hgfast.info` reports tiers."""
import os
import subprocess
import sys

import torch

from hgfast import _ext
from hgfast.info import report

SCRIPT = """
import torch, hgfast
from hgfast import _ext
kp = torch.tensor([[[3.0, 4.0], [1.0, 2.0]]])
h = hgfast.gaussian_heatmaps(kp, size=8, encoding="integer")
c, s = hgfast.argmax_decode(h)
pred = torch.rand(1, 2, 2, 8, 8, requires_grad=True)
hgfast.heatmap_mse_loss(pred, kp).backward()
assert torch.equal(c, kp) and pred.grad is not None
print(_ext.STATUS["tier"], sorted(_ext.STATUS["skipped"]))
"""


def test_reference_fallback_without_extension():
    env = dict(os.environ, HGFAST_NO_EXT="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "['compiled',", "'jit']"]


def test_info_lists_every_op_and_device():
    text = "\n".join(report())
    for name in ("gaussian_heatmaps", "argmax_decode", "heatmap_mse_loss"):
        assert f"{name} on cpu" in text and f"{name} on cuda" in text
    assert torch.__version__ in text
    if _ext.resolve()["tier"] is not None:
        assert "C++ kernel" in text


def test_extension_is_built():
    """A development install (the README's test command) must end with a working hgfast._C, compiled or JIT:
    otherwise every kernel test would skip and only the references would be tested."""
    status = _ext.resolve()
    assert status["tier"] is not None, f"hgfast._C did not load: {status['skipped']}"
