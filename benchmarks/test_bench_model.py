"""Whole StackedHourglass: inference and a full training step (forward, loss, backward, optimiser).

GPU: 2 and 8 stacks, batch 16/32/64, bf16 (AMP) and fp32, eager vs torch.compile(max-autotune) vs fused.
CPU: a small model (2 stacks, 64 features, 128x128 input, batch 2), eager only.
"""
import pytest
import torch

from common import ON_GPU, run_case
from models import CONTENDERS, autocast, prepare
from hgfast import StackedHourglass

if ON_GPU:
    SHAPES = [(nstack, batch) for nstack in (2, 8) for batch in (16, 32, 64)]
    NFEAT, SIZE, DTYPES = 256, 256, [torch.bfloat16, torch.float32]
else:
    SHAPES, NFEAT, SIZE, DTYPES = [(2, 2)], 64, 128, [torch.float32]



def _flops_per_image(nstack: int) -> float:
    from hgfast.summary import summarize

    return 2 * sum(r.macs for r in summarize(StackedHourglass(nstack=nstack, nfeat=NFEAT), SIZE))


def _model_and_images(nstack: int, batch: int, contender: str, train: bool):
    """The contender's model and a random channels_last image batch on its device."""
    model = prepare(StackedHourglass(nstack=nstack, nfeat=NFEAT), contender, train=train)
    device = next(model.parameters()).device
    return model, torch.rand(batch, 3, SIZE, SIZE, device=device).to(memory_format=torch.channels_last)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nstack,batch", SHAPES)
def test_model_inference(benchmark, nstack, batch, dtype, contender):
    benchmark.group = f"model inference {nstack} stacks b{batch} {dtype}"
    model, x = _model_and_images(nstack, batch, contender, train=False)

    def step():
        with torch.no_grad(), autocast(dtype):
            return model(x)

    for _ in range(3):  # compile / autotune / cudnn.benchmark outside the timed region
        step()
    run_case(benchmark, step, impl=contender, flops=_flops_per_image(nstack) * batch)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nstack,batch", SHAPES)
def test_model_train_step(benchmark, nstack, batch, dtype, contender):
    benchmark.group = f"model train step {nstack} stacks b{batch} {dtype}"
    model, x = _model_and_images(nstack, batch, contender, train=True)
    optimiser = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    target = torch.rand(batch, 1, 16, SIZE // 4, SIZE // 4, device=x.device)

    def step():
        with autocast(dtype):
            loss = torch.nn.functional.mse_loss(model(x).float(), target.expand(-1, nstack, -1, -1, -1))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return loss

    for _ in range(3):
        step()
    # forward + backward is about 3x the forward FLOPs
    run_case(benchmark, step, impl=contender, flops=3 * _flops_per_image(nstack) * batch)
