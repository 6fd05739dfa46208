"""The residual's 3x3 convolution alone (69 % of the model's FLOPs; DESIGN.md §6: within 10 % of cuDNN): forward,
input gradient and weight gradient, hgfast's Triton kernels vs PyTorch's (cuDNN on the GPU), no BN or ReLU fused.

GPU: batch 32, 128 -> 128 channels (the bottleneck of Res(256, 256)), 64x64 and 16x16, bf16, channels_last.
CPU: batch 2, 32 channels, fp32, PyTorch only. ``rel_error`` against the same pass in float64.
"""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

from common import GPU_ONLY, ON_GPU, nbytes, rel_error, run_case

if ON_GPU:
    BATCH, CHANNELS, SIZES, DTYPE, DEVICE = 32, 128, (64, 16), torch.bfloat16, "cuda"
else:
    BATCH, CHANNELS, SIZES, DTYPE, DEVICE = 2, 32, (32, 16), torch.float32, "cpu"


def eager_passes(x, w, dy):
    """NCHW (channels_last) tensors: the three passes as PyTorch runs them."""
    return {"fwd": lambda: F.conv2d(x, w, padding=1),
            "dgrad": lambda: conv2d_input(x.shape, w, dy, padding=1),
            "wgrad": lambda: conv2d_weight(x, w.shape, dy, padding=1)}


def fused_passes(x, w, dy):
    """The same through hgfast.kernels on the NHWC views, results as NCHW views."""
    from hgfast.fused import runs_on

    if not runs_on(torch.device(DEVICE)):
        pytest.skip("fused kernels need CUDA and triton")
    from hgfast import kernels
    from hgfast.kernels.conv import pack_weight

    x_nhwc, dy_nhwc, packed = x.permute(0, 2, 3, 1), dy.permute(0, 2, 3, 1), pack_weight(w, x.dtype)
    return {"fwd": lambda: kernels.conv2d_fwd(x_nhwc, w, packed=packed)[0].permute(0, 3, 1, 2),
            "dgrad": lambda: kernels.conv2d_dgrad(dy_nhwc, w, packed=packed)[0].permute(0, 3, 1, 2),
            "wgrad": lambda: kernels.conv2d_wgrad(x_nhwc, dy_nhwc, 3, bias=False)[0]}


@pytest.mark.parametrize("contender", ["eager", "fused"])
@pytest.mark.parametrize("direction", ["fwd", "dgrad", "wgrad"])
@pytest.mark.parametrize("size", SIZES)
def test_conv3x3(benchmark, size, direction, contender):
    benchmark.group = f"conv3x3 {CHANNELS}->{CHANNELS} {size}x{size} b{BATCH} {direction}"
    if contender != "eager" and not ON_GPU:
        pytest.skip(GPU_ONLY)
    g = torch.Generator().manual_seed(0)

    def tensor(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(DEVICE, DTYPE)

    x = tensor(BATCH, CHANNELS, size, size).to(memory_format=torch.channels_last)
    dy = tensor(BATCH, CHANNELS, size, size).to(memory_format=torch.channels_last)
    w = tensor(CHANNELS, CHANNELS, 3, 3, scale=(CHANNELS * 9) ** -0.5)
    passes = {"eager": eager_passes, "fused": fused_passes}[contender](x, w, dy)
    out = passes[direction]()  # autotuning / cudnn.benchmark outside the timed region
    reference = eager_passes(x.double(), w.double(), dy.double())[direction]()
    inputs = {"fwd": (x, w), "dgrad": (dy, w), "wgrad": (x, dy)}[direction]
    run_case(benchmark, passes[direction], impl=contender, bytes_moved=nbytes(*inputs, out),
             flops=2.0 * BATCH * size * size * CHANNELS * CHANNELS * 9, error=rel_error(out, reference))
