"""argmax_decode with the quarter-pixel offset, 16 joints, 64x64, batch 32 and 256, fp32 and bf16 heatmaps.

Contenders: the per-joint numpy loop of the peer projects (bearpaw ``final_preds``), vectorised numpy, the
PyTorch reference and hgfast (``_C`` CPU; ``_C`` CUDA on a GPU): ``hgfast`` as users call it (with its check for
non-finite peaks, which reads a sum back to the host), ``hgfast-kernel`` the registered op alone. numpy has no bf16:
its cases convert to fp32 inside the timed call. GB/s counts the heatmaps read.
"""
import pytest
import torch

from common import ON_GPU, nbytes, rel_error, run_case
from hgfast.ops import argmax_decode, numpy_ref
from hgfast.ops.reference import argmax_peaks_ref

K, H, W = 16, 64, 64


def _numpy(fn):
    return lambda hm: fn(hm.float().cpu().numpy())


IMPLS = {
    "numpy-loop": _numpy(numpy_ref.argmax_decode_loop),
    "numpy-vectorised": _numpy(numpy_ref.argmax_decode_vectorised),
    "torch-reference": lambda hm: argmax_peaks_ref(hm, True),
    "hgfast": argmax_decode,
    "hgfast-kernel": lambda hm: torch.ops.hgfast.argmax_decode(hm, True),
}


def _case(benchmark, impl, batch, dtype, device):
    benchmark.group = f"argmax_decode b{batch}x{K}x64x64 {str(dtype).replace('torch.', '')} {device}"
    hm = torch.rand(batch, K, H, W, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    coords, _ = IMPLS[impl](hm)
    run_case(benchmark, lambda: IMPLS[impl](hm), impl=impl, bytes_moved=nbytes(hm),
             error=rel_error(torch.as_tensor(coords), argmax_peaks_ref(hm.float().cpu(), True)[0]))


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch", [32, 256])
def test_decode_cpu(benchmark, batch, dtype, impl):
    if impl == "numpy-loop" and batch == 256:
        pytest.skip("the per-joint loop is measured at batch 32 only (4096 Python iterations per call at 256)")
    _case(benchmark, impl, batch, dtype, "cpu")


@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("impl", ["torch-reference", "hgfast", "hgfast-kernel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch", [32, 256])
def test_decode_cuda(benchmark, batch, dtype, impl):
    _case(benchmark, impl, batch, dtype, "cuda")
