"""argmax_decode (quarter offset) for 32×16×64×64 heatmaps: hgfast, its PyTorch reference, vectorised numpy,
and the per-joint Python loop of the peer projects."""
import numpy as np
import pytest
import torch

from hgfast import _ext
from hgfast.ops import argmax_decode, numpy_ref
from hgfast.ops.reference import argmax_peaks_ref

SHAPE = (32, 16, 64, 64)

IMPLS = {
    "hgfast": lambda hm: lambda: argmax_decode(hm),
    "torch_reference": lambda hm: lambda: argmax_peaks_ref(hm, True),
    "numpy_vectorised": lambda hm: lambda: numpy_ref.argmax_decode_vectorised(hm.cpu().numpy()),
    "numpy_per_joint_loop": lambda hm: lambda: numpy_ref.argmax_decode_loop(hm.cpu().numpy()),
}


@pytest.mark.benchmark(group="decode-cpu-32x16x64x64")
@pytest.mark.parametrize("impl", list(IMPLS))
def test_decode_cpu(benchmark, impl):
    hm = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0))
    if impl == "hgfast":
        benchmark.extra_info["tier"] = _ext.resolve()["tier"] or "reference"
    coords, scores = benchmark(IMPLS[impl](hm))
    np.testing.assert_array_equal(np.asarray(coords), argmax_peaks_ref(hm, True)[0].numpy())


@pytest.mark.benchmark(group="decode-cpu-32x16x64x64-bf16")
@pytest.mark.parametrize("impl", ["hgfast", "torch_reference"])
def test_decode_cpu_bf16(benchmark, impl):
    hm = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0)).bfloat16()
    benchmark(IMPLS[impl](hm))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.benchmark(group="decode-cuda-32x16x64x64")
@pytest.mark.parametrize("impl", ["hgfast", "torch_reference"])
def test_decode_cuda(benchmark, impl):
    hm = torch.rand(SHAPE, device="cuda")
    fn = IMPLS[impl](hm)

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out
    benchmark(run)
