"""One pre-activation residual Res(256, 256): forward and forward+backward, eval and train-mode BN.

GPU: batch 32 at 64x64 and 16x16, bf16 (AMP) and channels_last; eager vs torch.compile(max-autotune) vs fused
(eval: also each implementation of the inference residual, pinned: one kernel with its default or 64-row
tiles, three kernels).
CPU: batch 2, 64 channels, fp32, eager only. ``rel_error``: the output (and, with backward, the input gradient for
a random output gradient) against the same block in float64, ||diff|| / ||reference||, the larger.
"""
import copy

import pytest
import torch

from common import ON_GPU, rel_error, run_case
from models import CONTENDERS, autocast, prepare
from hgfast import Residual

if ON_GPU:
    BATCH, CHANNELS, SIZES, DTYPE = 32, 256, (64, 16), torch.bfloat16
else:
    BATCH, CHANNELS, SIZES, DTYPE = 2, 64, (32, 16), torch.float32


def _forward_flops(size: int) -> float:
    c, mid = CHANNELS, CHANNELS // 2
    return 2.0 * BATCH * size * size * (c * mid + mid * mid * 9 + mid * c)


# The inference residual's implementations, each pinned ("fused" lets hgfast time them and take the fastest).
EVAL_VARIANTS = ["fused-single", "fused-single-64", "fused-three"]


@pytest.mark.parametrize("contender", CONTENDERS + EVAL_VARIANTS)
@pytest.mark.parametrize("bn", ["eval", "train"])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("size", SIZES)
def test_residual(benchmark, monkeypatch, size, backward, bn, contender):
    benchmark.group = f"residual {size}x{size} b{BATCH} {'fwd+bwd' if backward else 'fwd'} {bn}-BN"
    if contender in EVAL_VARIANTS:
        if bn != "eval" or backward:
            pytest.skip("one kernel or three: an inference-only choice")
        monkeypatch.setenv("HGFAST_EVAL_RESIDUAL", contender.removeprefix("fused-"))
    plain = Residual(CHANNELS, CHANNELS)
    reference = copy.deepcopy(plain).double().train(bn == "train")
    block = prepare(plain, contender, train=bn == "train")
    device = next(block.parameters()).device
    # input in the compute dtype, as inside the model (after the stem every activation is bf16 under AMP)
    x = torch.randn(BATCH, CHANNELS, size, size, device=device, dtype=DTYPE).to(memory_format=torch.channels_last)
    grad = torch.randn_like(x)
    x.requires_grad_(backward)

    def step():
        with torch.set_grad_enabled(backward), autocast(DTYPE):
            out = block(x)
        if backward:
            out.backward(grad)
        return out

    for _ in range(3):
        step()
    element = torch.finfo(DTYPE).bits // 8
    io_bytes = 2 * BATCH * CHANNELS * size * size * element * (2 if backward else 1)
    run_case(benchmark, step, impl=contender, bytes_moved=io_bytes,
             flops=_forward_flops(size) * (3 if backward else 1),
             error=_error(block, reference.to(device), x, grad, backward))


def _error(block, reference, x, grad, backward: bool) -> float:
    """Relative error of ``block``'s output (and input gradient) against ``reference`` in float64; the timed input
    ``x`` itself (a new tensor would make torch.compile compile again)."""
    x.grad = None
    x64 = x.detach().double().requires_grad_(backward)
    with torch.set_grad_enabled(backward):
        with autocast(DTYPE):
            out = block(x)
        want = reference(x64)
    errors = [rel_error(out, want)]
    if backward:
        out.backward(grad)
        want.backward(grad.double())
        errors.append(rel_error(x.grad, x64.grad))
    return max(errors)
