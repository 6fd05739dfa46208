"""Where a case's time goes: per-kernel GPU time (torch.profiler) and how busy the GPU is over the step.

    python benchmarks/profile_kernels.py residual --size 64 --train --backward --contender fused --out DIR
    python benchmarks/profile_kernels.py model --nstack 8 --train --contender fused-graph --out DIR

Prints and writes ``DIR/profile-<case>.md`` and ``.json``: the wall time per step (CUDA events), the summed kernel
time per step and their ratio (GPU busy: far below 100 % means launch-bound), and every kernel's calls, time per
step and share. Shapes default to the issue-7 targets (batch 32, bf16, channels_last). Without a GPU it profiles
the CPU ops of the eager contender at the size given (a smoke run).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))

from common import ON_GPU, cuda_median_ms, environment  # noqa: E402
from models import GRAPHED, autocast, prepare  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def build_step(args):
    """The case as a no-argument callable, like the benchmark's, after its warm-up calls."""
    from hgfast import Residual, StackedHourglass
    from hgfast.graphs import GraphedForward, GraphedTrainStep

    dtype, device = DTYPES[args.dtype], "cuda" if ON_GPU else "cpu"
    base = args.contender.removesuffix("-graph")
    graphed = args.contender in GRAPHED
    if args.case == "residual":
        module = prepare(Residual(args.channels, args.channels), base, train=args.train)
        x = torch.randn(args.batch, args.channels, args.size, args.size, device=device, dtype=dtype)  # as the bench
    else:
        module = prepare(StackedHourglass(nstack=args.nstack, nfeat=args.channels), base, train=args.train)
        x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    x = x.to(memory_format=torch.channels_last).requires_grad_(args.backward and args.case == "residual")
    amp = None if dtype == torch.float32 else dtype

    if args.backward and args.case == "model":
        optimiser = torch.optim.RMSprop(module.parameters(), lr=2.5e-4)

        def loss_fn(pred):
            return pred.float().square().mean()

        if graphed:
            step = GraphedTrainStep(module, optimiser, loss_fn, amp_dtype=amp)
            fn = lambda: step(x)  # noqa: E731
        else:
            def fn():
                with autocast(dtype):
                    loss = loss_fn(module(x))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
    elif graphed:
        if args.backward:
            raise SystemExit("residual fwd+bwd has no graphed contender; use --case model for graphed training")
        forward = GraphedForward(module, amp_dtype=amp)
        fn = lambda: forward(x)  # noqa: E731
    else:
        def fn():
            with torch.set_grad_enabled(args.backward), autocast(dtype):
                out = module(x)
            if args.backward:
                out.backward(torch.ones_like(out))
    for _ in range(3):
        fn()
    return fn


def kernel_table(prof, steps: int) -> list[dict]:
    """One row per kernel (GPU) or op (CPU): calls and microseconds per step, sorted by time."""
    rows = []
    for e in prof.key_averages():
        if ON_GPU:
            if e.device_type != torch.autograd.DeviceType.CUDA:
                continue
            us = e.self_device_time_total
        else:
            us = e.self_cpu_time_total
        if us > 0:
            rows.append({"kernel": e.key, "calls_per_step": e.count / steps, "us_per_step": us / steps})
    rows.sort(key=lambda r: -r["us_per_step"])
    total = sum(r["us_per_step"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["us_per_step"] / total
    return rows


def profile(args) -> dict:
    fn = build_step(args)
    wall_ms = cuda_median_ms(fn, warmup=3, reps=args.steps) if ON_GPU else None
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if ON_GPU else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.steps):
            fn()
        if ON_GPU:
            torch.cuda.synchronize()
    rows = kernel_table(prof, args.steps)
    kernel_ms = sum(r["us_per_step"] for r in rows) / 1e3
    return {"case": vars(args) | {"out": str(args.out)}, "environment": environment(), "wall_ms": wall_ms,
            "kernel_ms": kernel_ms, "gpu_busy": kernel_ms / wall_ms if wall_ms else None,
            "launches_per_step": sum(r["calls_per_step"] for r in rows), "kernels": rows}


def markdown(result: dict, top: int = 40) -> str:
    c, env = result["case"], result["environment"]
    name = case_name(c)
    head = [f"# {name}", "", f"{env['device']}, torch {env['torch']}, triton {env['triton']}, CUDA {env['cuda']}, "
            f"{env['date']}", ""]
    if result["wall_ms"]:
        head.append(f"wall {result['wall_ms']:.3f} ms per step (CUDA-event median), kernels {result['kernel_ms']:.3f}"
                    f" ms, GPU busy {100 * result['gpu_busy']:.0f} %, {result['launches_per_step']:.0f} kernels per "
                    f"step")
    else:
        head.append(f"CPU ops {result['kernel_ms']:.3f} ms per step (no GPU: a smoke run)")
    lines = head + ["", "| kernel | calls/step | µs/step | share |", "| --- | ---: | ---: | ---: |"]
    for r in result["kernels"][:top]:
        lines.append(f"| `{r['kernel'][:90]}` | {r['calls_per_step']:g} | {r['us_per_step']:.1f} | "
                     f"{100 * r['share']:.1f} % |")
    return "\n".join(lines) + "\n"


def case_name(c: dict) -> str:
    what = f"residual{c['size']}" if c["case"] == "residual" else f"hg{c['nstack']}-{c['size']}px"
    mode = ("train" if c["train"] else "eval") + ("-fwdbwd" if c["backward"] else "-fwd")
    return f"{what}-b{c['batch']}-{c['dtype']}-{mode}-{c['contender']}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("case", choices=["residual", "model"])
    p.add_argument("--contender", default="fused", choices=["eager", "compile", "fused", *GRAPHED])
    p.add_argument("--size", type=int, default=None, help="residual: map side (64); model: input side (256)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--nstack", type=int, default=8)
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--train", action="store_true", help="training-mode BN")
    p.add_argument("--backward", action="store_true", help="residual: forward+backward; model: a training step")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path("."))
    args = p.parse_args(argv)
    if args.size is None:
        args.size = 64 if args.case == "residual" else 256
    if not ON_GPU and args.contender != "eager":
        p.error(f"--contender {args.contender} needs a CUDA GPU (without one only 'eager' runs)")
    result = profile(args)
    text = markdown(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"profile-{case_name(result['case'])}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
