"""Whole StackedHourglass: a full training step (forward, loss, backward, optimiser) and inference, in that order
(the step carries two of the issue-7 ratios, so a stage cut short loses inference first).

GPU: 2 and 8 stacks, batch 16/32/64, bf16 (AMP) and fp32, eager vs torch.compile(max-autotune) vs fused, and
eager and fused replayed from CUDA graphs. CPU: a small model (2 stacks, 64 features, 128x128 input, batch 2),
eager only. Inference records ``rel_error``: the last stack's heatmaps against the same model in float64.
"""
import copy

import pytest
import torch

from common import GPU_ONLY, ON_GPU, rel_error, run_case
from models import CONTENDERS, GRAPHED, autocast, prepare
from hgfast import StackedHourglass
from hgfast.graphs import GraphedForward, GraphedTrainStep

if ON_GPU:
    SHAPES = [(nstack, batch) for nstack in (2, 8) for batch in (16, 32, 64)]
    NFEAT, SIZE, DTYPES = 256, 256, [torch.bfloat16, torch.float32]
else:
    SHAPES, NFEAT, SIZE, DTYPES = [(2, 2)], 64, 128, [torch.float32]


def _flops_per_image(nstack: int) -> float:
    from hgfast.summary import summarize

    return 2 * sum(r.macs for r in summarize(StackedHourglass(nstack=nstack, nfeat=NFEAT), SIZE))


def _model_and_images(nstack: int, batch: int, contender: str, train: bool):
    """The contender's model, a random channels_last image batch on its device and, for inference, the model's
    float64 copy (unfused; None for training)."""
    if contender in GRAPHED and not ON_GPU:
        pytest.skip(GPU_ONLY)
    plain = StackedHourglass(nstack=nstack, nfeat=NFEAT)
    reference = None if train else copy.deepcopy(plain).double().eval()
    model = prepare(plain, contender.removesuffix("-graph"), train=train)
    device = next(model.parameters()).device
    return (model, torch.rand(batch, 3, SIZE, SIZE, device=device).to(memory_format=torch.channels_last),
            None if reference is None else reference.to(device))


def _amp(dtype: torch.dtype) -> torch.dtype | None:
    return None if dtype == torch.float32 else dtype


@pytest.mark.parametrize("contender", CONTENDERS + GRAPHED)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nstack,batch", SHAPES)
def test_model_train_step(benchmark, nstack, batch, dtype, contender):
    benchmark.group = f"model train step {nstack} stacks b{batch} {dtype}"
    model, x, _ = _model_and_images(nstack, batch, contender, train=True)
    optimiser = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    target = torch.rand(batch, 1, 16, SIZE // 4, SIZE // 4, device=x.device)

    def loss_fn(pred, target):
        return torch.nn.functional.mse_loss(pred.float(), target.expand(-1, nstack, -1, -1, -1))

    graphed = GraphedTrainStep(model, optimiser, loss_fn, amp_dtype=_amp(dtype)) if contender in GRAPHED else None

    def step():
        if graphed is not None:
            return graphed(x, target)
        with autocast(dtype):
            loss = loss_fn(model(x), target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return loss

    for _ in range(3):
        step()
    # forward + backward is about 3x the forward FLOPs
    run_case(benchmark, step, impl=contender, flops=3 * _flops_per_image(nstack) * batch)


@pytest.mark.parametrize("contender", CONTENDERS + GRAPHED)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nstack,batch", SHAPES)
def test_model_inference(benchmark, nstack, batch, dtype, contender):
    benchmark.group = f"model inference {nstack} stacks b{batch} {dtype}"
    model, x, reference = _model_and_images(nstack, batch, contender, train=False)
    graphed = GraphedForward(model, amp_dtype=_amp(dtype)) if contender in GRAPHED else None

    def step():
        if graphed is not None:
            return graphed(x)
        with torch.no_grad(), autocast(dtype):
            return model(x)

    for _ in range(3):  # compile / autotune / cudnn.benchmark outside the timed region
        step()
    with torch.no_grad():
        error = rel_error(step()[:, -1], reference(x.double())[:, -1])
    del reference
    run_case(benchmark, step, impl=contender, flops=_flops_per_image(nstack) * batch, error=error)
