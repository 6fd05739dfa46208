"""Hourglass merge ``skip + nearest_2x(low)`` at 64/32/16/8/4: eager vs torch.compile vs the Triton upsample_add.

GPU: batch 32, 256 channels, bf16, channels_last. CPU: batch 2, 64 channels, fp32, eager only.
"""
import pytest
import torch
import torch.nn.functional as F

from common import GPU_ONLY, ON_GPU, nbytes, rel_error, run_case

if ON_GPU:
    BATCH, CHANNELS, DTYPE, DEVICE = 32, 256, torch.bfloat16, "cuda"
else:
    BATCH, CHANNELS, DTYPE, DEVICE = 2, 64, torch.float32, "cpu"


def eager_merge(skip, low):
    return skip + F.interpolate(low, scale_factor=2.0, mode="nearest")


def _fused_merge():
    from hgfast.fused import runs_on

    if not runs_on(torch.device(DEVICE)):
        pytest.skip("fused kernels need CUDA and triton")
    from hgfast.fused import ops  # noqa: F401  (registers torch.ops.hgfast.upsample_add)

    def merge(skip, low):  # channels_last NCHW tensors are contiguous NHWC under a permute
        out = torch.ops.hgfast.upsample_add(skip.permute(0, 2, 3, 1), low.permute(0, 2, 3, 1))
        return out.permute(0, 3, 1, 2)
    return merge


@pytest.mark.parametrize("contender", ["eager", "compile", "fused"])
@pytest.mark.parametrize("size", [64, 32, 16, 8, 4])
def test_upsample_add(benchmark, size, contender):
    benchmark.group = f"upsample_add {size}x{size} b{BATCH} c{CHANNELS}"
    if contender != "eager" and not ON_GPU:
        pytest.skip(GPU_ONLY)
    skip = torch.randn(BATCH, CHANNELS, size, size, device=DEVICE, dtype=DTYPE).to(memory_format=torch.channels_last)
    low = torch.randn(BATCH, CHANNELS, size // 2, size // 2, device=DEVICE, dtype=DTYPE).to(
        memory_format=torch.channels_last)
    merge = {"eager": lambda: eager_merge,
             "compile": lambda: torch.compile(eager_merge, mode="max-autotune"),
             "fused": _fused_merge}[contender]()
    out = merge(skip, low)  # warm-up / compile outside the timed region
    run_case(benchmark, lambda: merge(skip, low), impl=contender, bytes_moved=nbytes(skip, low, out),
             error=rel_error(out, eager_merge(skip.double(), low.double())))
