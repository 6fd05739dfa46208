"""Training throughput including the data pipeline: synthetic figures rendered and cropped in DataLoader
workers, targets on the device inside the fused loss, forward, backward and an RMSprop step. Records images/s.

GPU: 2-stack, 256 features, 256x256 input, batch 32, 8 workers, bf16 AMP, eager vs fused vs fused replayed from
a CUDA graph. CPU: 1-stack, 32 features, 64x64 input, batch 8, 1 worker (2 cores), fp32, eager. Each step is the
training loop's: keypoints checked on the CPU batch, asynchronous copies, the loss on the model's output dtype.
"""
import itertools

import pytest
import torch
from torch.utils.data import DataLoader

from common import GPU_ONLY, ON_GPU, run_case
from models import GRAPHED, autocast, prepare
from hgfast import StackedHourglass
from hgfast.data import SyntheticPoses
from hgfast.graphs import GraphedTrainStep
from hgfast.train.config import resolve
from hgfast.train.loop import device_batch, heatmap_loss

if ON_GPU:
    NSTACK, NFEAT, INPUT, BATCH, WORKERS, DTYPE, STEPS = 2, 256, 256, 32, 8, torch.bfloat16, 10
else:
    NSTACK, NFEAT, INPUT, BATCH, WORKERS, DTYPE, STEPS = 1, 32, 64, 8, 1, torch.float32, 2


@pytest.mark.parametrize("contender", ["eager", "fused", "fused-graph"])
def test_train_throughput(benchmark, contender):
    benchmark.group = f"train throughput with data, {NSTACK} stacks b{BATCH} {INPUT}px"
    if contender in GRAPHED and not ON_GPU:
        pytest.skip(GPU_ONLY)
    model = prepare(StackedHourglass(nstack=NSTACK, nfeat=NFEAT), contender.removesuffix("-graph"), train=True)
    device = next(model.parameters()).device
    optimiser = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    loss_fn = heatmap_loss(resolve())
    amp = None if DTYPE == torch.float32 else DTYPE
    graphed = GraphedTrainStep(model, optimiser, loss_fn, amp_dtype=amp) if contender in GRAPHED else None
    dataset = SyntheticPoses("train", length=100_000, image_size=INPUT * 2, input_size=INPUT, augment_preset="none")
    loader = DataLoader(dataset, batch_size=BATCH, num_workers=WORKERS, shuffle=True, drop_last=True,
                        pin_memory=ON_GPU, persistent_workers=True)
    batches = iter(loader)

    def steps():
        for batch in itertools.islice(batches, STEPS):
            x, kp, weights = device_batch(batch, device, INPUT, "visible", channels_last=True)
            if graphed is not None:
                loss = graphed(x, kp, weights)
                continue
            with autocast(DTYPE):
                pred = model(x)
            loss = loss_fn(pred, kp, weights)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        return loss

    steps()  # start the workers and warm up outside the timed region
    run_case(benchmark, steps, impl=contender, rounds=5, images=STEPS * BATCH)
