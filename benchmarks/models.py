"""Contenders for the residual and whole-model benchmarks: eager, torch.compile(max-autotune) and fused.

The whole-model cases add the same eager and fused models replayed from a CUDA graph (``hgfast.graphs``), which
separates launch overhead from kernel time (torch.compile's max-autotune mode uses CUDA graphs too)."""
from __future__ import annotations

import pytest
import torch

from common import GPU_ONLY, ON_GPU

CONTENDERS = ["eager", "compile", "fused"]
GRAPHED = ["eager-graph", "fused-graph"]


def prepare(module: torch.nn.Module, contender: str, train: bool) -> torch.nn.Module:
    """Return ``module`` set up for ``contender`` (channels_last, cudnn.benchmark) or skip with a reason."""
    if contender != "eager" and not ON_GPU:
        pytest.skip(GPU_ONLY)
    device = "cuda" if ON_GPU else "cpu"
    torch.backends.cudnn.benchmark = True
    module = module.to(device=device, memory_format=torch.channels_last).train(train)
    if contender == "compile":  # a fresh Dynamo cache per case: each case's module would count toward the
        torch._dynamo.reset()     # recompile limit (8) of the one forward code object, then run eagerly unsaid
        return torch.compile(module, mode="max-autotune")
    if contender.startswith("fused"):
        from hgfast.fused import runs_on

        if not runs_on(torch.device(device)):
            pytest.skip("fused kernels are not active here (needs CUDA and triton)")
        module.fused = True
    return module


def autocast(dtype: torch.dtype):
    """AMP context for half dtypes; plain fp32 otherwise."""
    device = "cuda" if ON_GPU else "cpu"
    return torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32)
