"""The hourglass's 2x2 max-pool with the next training BN's batch statistics, forward and forward + backward, at
64/32/16/8: eager (``F.max_pool2d`` + ``torch.var_mean``, indices kept for the backward) vs torch.compile vs the
Triton ``maxpool2x2`` (statistics as per-tile partials, which the next BN's coefficient launch merges in the fused
model anyway; no indices: the backward finds the maxima again).

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


def eager_pool(x):
    """``(pooled, (var, mean) of each channel)``: what the eager model computes before the next BN."""
    y = F.max_pool2d(x, 2, 2)
    return y, torch.var_mean(y.detach().float(), dim=(0, 2, 3), correction=0)


def _fused_pool():
    from hgfast.fused import runs_on

    if not runs_on(torch.device(DEVICE)):
        pytest.skip("fused kernels need CUDA and triton")
    from hgfast.fused.functions import MaxPoolFn

    def pool(x):  # a channels_last NCHW tensor is a contiguous NHWC one under a permute
        y, partial = MaxPoolFn.apply(x.permute(0, 2, 3, 1), True)
        return y.permute(0, 3, 1, 2), partial
    return pool


@pytest.mark.parametrize("contender", ["eager", "compile", "fused"])
@pytest.mark.parametrize("pass_", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("size", [64, 32, 16, 8])
def test_maxpool(benchmark, size, pass_, contender):
    benchmark.group = f"maxpool + BN statistics {size}x{size} b{BATCH} c{CHANNELS} {pass_}"
    if contender != "eager" and not ON_GPU:
        pytest.skip(GPU_ONLY)
    x = torch.randn(BATCH, CHANNELS, size, size, device=DEVICE, dtype=DTYPE).to(memory_format=torch.channels_last)
    x.requires_grad_(pass_ == "fwd+bwd")
    grad = torch.randn(BATCH, CHANNELS, size // 2, size // 2, device=DEVICE, dtype=DTYPE).to(
        memory_format=torch.channels_last)
    pool = {"eager": lambda: eager_pool, "compile": lambda: torch.compile(eager_pool, mode="max-autotune"),
            "fused": _fused_pool}[contender]()

    def step():
        y, stats = pool(x)
        if pass_ == "fwd+bwd":
            return torch.autograd.grad(y, x, grad)[0]
        return y

    out = step()  # warm-up / compile outside the timed region
    ref_x = x.detach().double().requires_grad_()
    ref = F.max_pool2d(ref_x, 2, 2)
    if pass_ == "fwd+bwd":
        ref = torch.autograd.grad(ref, ref_x, grad.double())[0]
    pooled = x.detach()[:, :, ::2, ::2]  # its size: the pooled output, or the gradient read
    moved = nbytes(x, pooled) + (nbytes(x, pooled, x) if pass_ == "fwd+bwd" else 0)  # + backward: x, dy, dx
    run_case(benchmark, step, impl=contender, bytes_moved=moved, error=rel_error(out, ref))
    stats = pool(x)[1]
    if contender == "fused":  # the per-tile partials, merged as the next BN does
        from hgfast.kernels import finalize_stats

        stats = finalize_stats(stats)[::-1]
    want = torch.var_mean(F.max_pool2d(x.detach().double(), 2, 2), dim=(0, 2, 3), correction=0)
    benchmark.extra_info["stats_rel_error"] = rel_error(torch.stack(stats), torch.stack(want))
