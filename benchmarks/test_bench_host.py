"""Host time of the fused model's eager path: the CPU time spent around the kernel launches of one step.

An 8-stack training step launches ~2200 Triton kernels. Without CUDA graphs (``hgfast.graphs``) the GPU idles
whenever the host takes longer to issue a step's launches than the GPU takes to run them. This measures the host
side alone, on any machine with triton: CPU tensors, every Triton launch replaced by a counter (so what is timed
is the launchers' argument checks and output allocations, the autotuner's lookup, the autograd Functions, the op
calls and the module code - everything but Triton's own launch path and the driver), on a narrow model
(32 features, 64x64 input, batch 2) so that the few ATen ops that run for real on the CPU (the stem's conv and
BN, weight packing) cost little.
Records ``launches`` per step and ``us_per_launch`` (host time over launches).
"""
import contextlib

import pytest
import torch

from common import run_case
from hgfast import StackedHourglass
from hgfast.fused import force_triton_on_cpu, runs_on
from hgfast.kernels.common import interpreting


@contextlib.contextmanager
def launches_counted_not_run():
    """Inside, every Triton kernel launch (``JITFunction.run``) only counts itself, and the autotuner takes the first
    config that fits instead of timing them (its per-call work still runs). The autotuners' choices are restored
    on the way out."""
    from triton.runtime import autotuner, jit
    from hgfast.kernels import common, conv, conv_dgrad, conv_wgrad

    tuned = (conv.conv_fwd_kernel, conv_dgrad.conv_dgrad_kernel, conv_wgrad.conv_wgrad_kernel)
    count = [0]

    def count_launch(self, *args, **kwargs):
        count[0] += 1

    saved = jit.JITFunction.run, autotuner.Autotuner._bench, [dict(k.cache) for k in tuned], dict(common._chosen)
    jit.JITFunction.run = count_launch
    autotuner.Autotuner._bench = lambda self, *args, config, **kwargs: [0.0]
    try:
        yield count
    finally:
        jit.JITFunction.run, autotuner.Autotuner._bench = saved[:2]
        for kernel, cache in zip(tuned, saved[2]):
            kernel.cache.clear()
            kernel.cache.update(cache)
        common._chosen.clear()
        common._chosen.update(saved[3])


@pytest.mark.parametrize("mode", ["train-step", "inference"])
@pytest.mark.parametrize("nstack", [2, 8])
def test_fused_host_time(benchmark, nstack, mode):
    benchmark.group = f"host time per {mode}, fused {nstack}-stack (launches not run)"
    if interpreting():
        pytest.skip("TRITON_INTERPRET=1: the kernels are interpreted functions, whose launches are not stubbed")
    with force_triton_on_cpu():
        if not runs_on(torch.device("cpu")):
            pytest.skip("needs triton")
        model = StackedHourglass(nstack=nstack, nfeat=32, fused=True).to(memory_format=torch.channels_last)
        model.train(mode == "train-step")
        x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)

        def step():
            if mode == "inference":
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                    return model(x)
            model.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                heatmaps = model(x)
            heatmaps.float().sum().backward()
            return heatmaps

        with launches_counted_not_run() as launches:
            step()
            launches[0] = 0
            step()
            per_step = launches[0]
            run_case(benchmark, step, impl="fused")
    info = benchmark.extra_info
    info["launches"] = per_step
    if info.get("median_ms"):
        info["us_per_launch"] = info["median_ms"] * 1e3 / per_step
