"""CUDA graphs of a fixed-shape training step or forward pass: one replay instead of thousands of launches.

An 8-stack hourglass launches thousands of kernels per training step from Python, and most of its layers run at
4x4-16x16, where a kernel takes less GPU time than Python takes to launch it. ``GraphedTrainStep`` records the
forward (under autocast), the loss, the backward and the optimiser step once and then replays them;
``GraphedForward`` does the same for inference. Each call copies its inputs into static buffers and returns static
outputs, which the next call overwrites.

Capture needs CUDA parameters, the same shapes and dtypes on every call (others raise ``ValueError``) and no host
synchronisation inside the step. The fused path has none; ``heatmap_mse_loss`` needs ``check_keypoints=False``
(check the keypoints on the CPU batch instead). GradScaler (fp16 AMP) and ``BatchNorm(momentum=None)`` synchronise
and cannot be captured. Triton autotuning, cuDNN benchmarking and the optimiser's lazily created state happen in
``warmup`` eager calls on a side stream before capture.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .fused import memo

AMP_DTYPES = (None, torch.bfloat16)
# Only this thread's CUDA calls can spoil a capture: a DataLoader's pin-memory thread may allocate pinned memory
# meanwhile (cudaHostAlloc), which the default "global" mode counts as an error in the capture.
CAPTURE_MODE = "thread_local"


def _device_of(model: nn.Module) -> torch.device:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise ValueError("model: DistributedDataParallel cannot be captured here (its all-reduce hooks need "
                         "torch's DDP graph support); train without CUDA graphs under DDP")
    devices = {p.device for p in model.parameters()}
    if len(devices) != 1 or next(iter(devices)).type != "cuda":
        raise ValueError(f"model: CUDA graphs need all parameters on one CUDA device, found "
                         f"{sorted(map(str, devices))}")
    return next(iter(devices))


def _check_amp(amp_dtype) -> None:
    if amp_dtype not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be None or torch.bfloat16 under CUDA graphs, got {amp_dtype} (fp16 "
                         f"training needs a GradScaler, whose overflow check synchronises the host)")


class _StaticInputs:
    """Static device copies of a call's tensors; ``load`` copies a new call's tensors into them."""

    def __init__(self, owner: str, tensors: Sequence[torch.Tensor], device: torch.device):
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{owner}: argument {i} must be a torch.Tensor, got {type(t).__name__}")
        self.owner = owner
        self.buffers = [torch.empty_like(t, device=device).copy_(t) for t in tensors]

    def load(self, tensors: Sequence[torch.Tensor]) -> None:
        if len(tensors) != len(self.buffers):
            raise ValueError(f"{self.owner}: captured with {len(self.buffers)} tensor arguments, got {len(tensors)}")
        for i, (buf, t) in enumerate(zip(self.buffers, tensors)):
            if not isinstance(t, torch.Tensor) or t.shape != buf.shape or t.dtype != buf.dtype:
                got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{self.owner}: argument {i} must be {tuple(buf.shape)} {buf.dtype} as at capture "
                                 f"(a CUDA graph has fixed shapes), got {got}; capture another one for this shape")
            buf.copy_(t, non_blocking=True)


class _Snapshot:
    """Values of the parameters, buffers and optimiser state, restored in place after the warm-up steps.

    Optimiser state that did not exist before (created by the first warm-up step) is zeroed: the initial state of
    Adam, AdamW and RMSprop, so the first replayed step is the first step of an eager run.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None):
        self.tensors = [t for t in (*model.parameters(), *model.buffers())]
        self.values = [t.detach().clone() for t in self.tensors]
        self.optimizer = optimizer
        self.state = {} if optimizer is None else {
            p: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for p, s in optimizer.state.items()}

    @torch.no_grad()
    def restore(self) -> None:
        for t, v in zip(self.tensors, self.values):
            t.copy_(v)
        if self.optimizer is None:
            return
        for p, state in self.optimizer.state.items():
            before = self.state.get(p, {})
            for key, value in state.items():
                if key not in before:
                    if not torch.is_tensor(value):
                        raise ValueError(f"optimizer: its state {key!r} is not a tensor; cannot reset it after the "
                                         f"warm-up (use Adam, AdamW or RMSprop)")
                    value.zero_()
                elif torch.is_tensor(value):
                    value.copy_(before[key])
                else:
                    state[key] = before[key]


def _warm_up(device: torch.device, steps: int, fn: Callable[[], object]) -> None:
    """``steps`` eager calls on a side stream (as capture requires), then join the current stream."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    try:
        with torch.cuda.stream(stream):
            for _ in range(steps):
                fn()
    finally:  # also on an error: later work on the current stream must come after the warm-up's kernels
        torch.cuda.current_stream(device).wait_stream(stream)


def _autocast(amp_dtype: torch.dtype | None):
    """Autocast for a captured region: without its weight-cast cache (which CUDA graphs do not support)."""
    return torch.autocast("cuda", dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None,
                          cache_enabled=False)


def _check_warmup(warmup) -> int:
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 1:
        raise ValueError(f"warmup must be an int >= 1 (autotuning must finish before capture), got {warmup!r}")
    return warmup


class GraphedTrainStep:
    """A whole training step captured in a CUDA graph on the first call and replayed on every call.

    ``step = GraphedTrainStep(model, optimizer, loss_fn, amp_dtype=torch.bfloat16)``;
    ``loss = step(images, *loss_args)`` runs ``loss_fn(model(images), *loss_args).backward()`` and
    ``optimizer.step()``, and returns the loss as a 0-dim CUDA tensor (overwritten by the next call).

    - ``images`` and ``loss_args``: tensors on any device (copied into static CUDA buffers; pinned CPU tensors copy
      asynchronously) with the shapes and dtypes of the first call.
    - ``loss_fn(pred, *loss_args)`` must not synchronise the host (e.g. ``heatmap_mse_loss(...,
      check_keypoints=False)``) and returns a 0-dim tensor.
    - ``optimizer``: one with a ``capturable`` mode (Adam, AdamW, RMSprop); it is switched to ``capturable=True``
      and each group's ``lr`` becomes a CUDA tensor, so assigning ``group["lr"] = value`` (a float, as LR
      schedules do) between calls still reaches the captured step.
    - The ``warmup`` eager steps before capture train on the first batch; the model's parameters and buffers and
      the optimiser's state are restored afterwards, so the captured steps train as eager steps would.
    - Replace the optimiser state (``optimizer.load_state_dict``) or move the model only before the first call.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[..., torch.Tensor], amp_dtype: torch.dtype | None = None, warmup: int = 3):
        _check_amp(amp_dtype)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if "capturable" not in optimizer.defaults:
            raise ValueError(f"optimizer: {type(optimizer).__name__} has no capturable mode; use Adam, AdamW or "
                             f"RMSprop under CUDA graphs")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        self.warmup = _check_warmup(warmup)
        self.device = _device_of(model)
        cumulative = [name for name, m in model.named_modules()
                      if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is None
                      and m.track_running_stats]
        if cumulative:  # its training factor is 1 / float(num_batches_tracked): a host sync capture cannot hold
            raise ValueError(f"model: BatchNorm(momentum=None) (cumulative average) cannot be captured in training: "
                             f"{cumulative[0]}{f' and {len(cumulative) - 1} more' if len(cumulative) > 1 else ''}; "
                             f"give it a momentum")
        self.model, self.optimizer, self.loss_fn, self.amp_dtype = model, optimizer, loss_fn, amp_dtype
        self._graph = self._inputs = self._loss = self._state = None
        self._lrs: list[torch.Tensor] = []

    def _make_capturable(self) -> None:
        for group in self.optimizer.param_groups:
            group["capturable"] = True
            lr = group["lr"]
            if not (torch.is_tensor(lr) and lr.device == self.device and lr.dtype == torch.float32):
                group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=self.device)
        for state in self.optimizer.state.values():  # e.g. resumed from a non-capturable run: steps on the CPU
            step = state.get("step")
            if torch.is_tensor(step) and step.device != self.device:
                state["step"] = step.to(self.device, torch.float32)
        self._lrs = [g["lr"] for g in self.optimizer.param_groups]

    def _sync_learning_rates(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self._lrs):
            raise RuntimeError("optimizer: param_groups changed after capture; create a new GraphedTrainStep")
        for group, lr in zip(groups, self._lrs):
            value = group["lr"]
            if value is not lr:
                lr.copy_(value) if torch.is_tensor(value) else lr.fill_(float(value))
                group["lr"] = lr

    def _step(self, images: torch.Tensor, *loss_args: torch.Tensor) -> torch.Tensor:
        with _autocast(self.amp_dtype):
            pred = self.model(images)
        loss = self.loss_fn(pred, *loss_args)
        if not (torch.is_tensor(loss) and loss.dim() == 0):
            raise ValueError(f"loss_fn must return a 0-dim tensor, got {loss!r:.80}")
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _capture(self, args: Sequence[torch.Tensor]) -> None:
        self._make_capturable()
        self._inputs = _StaticInputs("GraphedTrainStep", args, self.device)
        snapshot = _Snapshot(self.model, self.optimizer)

        def eager_step():
            self.optimizer.zero_grad(set_to_none=True)
            self._step(*self._inputs.buffers)

        try:
            _warm_up(self.device, self.warmup, eager_step)
        finally:  # also after a failed warm-up: the first batch must not have trained the model
            snapshot.restore()
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates the grads in the graph's pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode=CAPTURE_MODE):
            self._loss = self._step(*self._inputs.buffers)
        self._graph, self._state = graph, self.optimizer.state

    def __call__(self, images: torch.Tensor, *loss_args: torch.Tensor) -> torch.Tensor:
        args = (images, *loss_args)
        if self._graph is None:
            self._capture(args)
        else:
            if self.optimizer.state is not self._state:
                raise RuntimeError("optimizer: its state was replaced after capture (load_state_dict); the graph "
                                   "updates the old tensors - create a new GraphedTrainStep")
            self._inputs.load(args)
        self._sync_learning_rates()
        self._graph.replay()
        memo.invalidate()  # replays update weights without bumping their versions
        return self._loss


def release_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Undo what ``GraphedTrainStep`` put into the optimiser state (capturable groups, lr tensors, step counters on
    the device), e.g. after loading a graphed run's checkpoint, so that the state resumes eagerly on any device."""
    for group in optimizer.param_groups:
        if group.get("capturable"):
            group["capturable"] = False
        if torch.is_tensor(group["lr"]):
            group["lr"] = float(group["lr"])
    for state in optimizer.state.values():
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].to("cpu", torch.float32)


class GraphedForward:
    """``model(x)`` under ``torch.no_grad()`` (and autocast) captured on the first call and replayed after.

    For inference (``model.eval()``) with fixed input shapes. Returns a static output tensor that the next call
    overwrites (clone it to keep it). The graph reads the weights as they were at capture, including hgfast's
    memoised packed weights and BN coefficients: when a parameter or buffer changes in place (its version
    counter moves), a ``GraphedTrainStep`` replays or ``hgfast.fused.invalidate`` runs, the next call captures
    again. Writes through ``.data`` move no version counter: call ``hgfast.fused.invalidate(model)`` after them.
    Replacing a parameter or buffer by another tensor object (``module.weight = ...``, ``.to()``) needs a new
    ``GraphedForward``.
    """

    def __init__(self, model: nn.Module, amp_dtype: torch.dtype | None = None, warmup: int = 2):
        if amp_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"amp_dtype must be None, torch.bfloat16 or torch.float16, got {amp_dtype}")
        self.warmup = _check_warmup(warmup)
        self.device = _device_of(model)
        self.model, self.amp_dtype = model, amp_dtype
        self._graph = self._inputs = self._out = self._versions = None
        self._weights = [*model.parameters(), *model.buffers()]  # a list: walking the modules costs ~2 ms per call

    def _versions_now(self) -> list[int]:
        """Version counters of the weights, and the memo generation (which ``hgfast.fused.invalidate`` moves)."""
        return [memo.generation()] + [t._version for t in self._weights]

    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with _autocast(self.amp_dtype):
            return self.model(x)

    def _capture(self, x: torch.Tensor) -> None:
        self._graph = None  # frees the previous graph's pool first
        self._inputs = _StaticInputs("GraphedForward", (x,), self.device)
        _warm_up(self.device, self.warmup, lambda: self._forward(*self._inputs.buffers))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode=CAPTURE_MODE):
            self._out = self._forward(*self._inputs.buffers)
        self._graph, self._versions = graph, self._versions_now()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._graph is None or self._versions_now() != self._versions:
            self._capture(x)
        else:
            self._inputs.load((x,))
        self._graph.replay()
        return self._out
