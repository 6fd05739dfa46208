"""Stopping a run cleanly: SIGINT / SIGTERM set a flag the loop checks between steps (a second one stops at once,
but never inside a parameter update), and the state of the last whole step is what an interrupt or an error
writes."""
from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
from typing import Callable

import torch
from torch import nn

from . import distributed

log = logging.getLogger("hgfast.train")


class StopFlag:
    """SIGINT or SIGTERM (a scheduler's preemption, ``docker stop``) sets a flag (the loop stops at the next step
    boundary); a second one raises at once, or, inside ``critical()``, when it ends: the state the interrupt
    handler saves is always that of a whole step, and its writing is not cut short."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.set, self._old, self._critical, self._deferred, self._stopping = False, {}, False, False, False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if not self.set:
            self.set = True
        elif self._critical or self._stopping:  # the interrupt's state is being written, or about to be
            self._deferred = True
        else:
            self.interrupt()

    def interrupt(self):
        """Raise KeyboardInterrupt; signals from then on wait (the interrupt's state is written next)."""
        self._stopping = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self):
        self._critical = True
        try:
            yield
        finally:
            self._critical = False
        if self._deferred:
            self.interrupt()

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            if handler is not None:  # None: a handler not installed from Python, which cannot be put back
                signal.signal(sig, handler)


class WholeStepBuffers:
    """The model's buffers (BN running statistics and counters) as they were before the step in progress: a second
    Ctrl-C inside a step's forward has updated them already, and the state written then must be that of whole
    steps, so that the resumed run is the uninterrupted one."""

    def __init__(self, model: nn.Module):
        self.live = list(model.buffers())
        self.before = [b.clone() for b in self.live]
        self.in_step = False

    def start(self) -> None:
        if self.live:
            torch._foreach_copy_(self.before, self.live)
        self.in_step = True

    def undo(self) -> None:
        """Put back the buffers of the last whole step if a step is in progress."""
        if self.in_step and self.live:
            torch._foreach_copy_(self.live, self.before)
        self.in_step = False


def write_interrupted(stop: StopFlag, whole_step: WholeStepBuffers | None, checkpoint: Callable,
                       message: str, main: bool) -> None:
    """Log ``message`` (on the ``main`` process, the one that writes) and write the interrupt's checkpoint: of the
    last whole step, not cut short by a signal."""
    with contextlib.suppress(KeyboardInterrupt), stop.critical():  # a signal meanwhile: the caller raises anyway
        if main:
            log.warning(message)
        if whole_step is not None:
            whole_step.undo()
        checkpoint()


def save_before_error(stop: StopFlag, whole_step: WholeStepBuffers | None, checkpoint: Callable, step: int,
                       error: Exception, main: bool, loss_sum: torch.Tensor) -> None:
    """Write the state of the last whole step before ``error`` (bad data found mid-run, a failing callback, ...)
    propagates, so ``--resume`` goes on from there once it is fixed; not where the loss since the last log step
    (``loss_sum``; the earlier ones were checked) is not finite: a diverged model does not replace the last
    checkpoint. A failure to write is logged, not raised over ``error``."""
    try:
        if not math.isfinite(loss_sum.item()):
            log.error("step %d: %s: %s; the loss had diverged, so no checkpoint is written", step,
                      type(error).__name__, error)
            return
        write_interrupted(stop, whole_step, checkpoint, f"step {step}: {type(error).__name__}: {error}; writing "
                           f"the checkpoint (fix the cause, then --resume)", main)
    except FloatingPointError as diverged:  # checkpoint() found the weights no longer finite
        log.error("%s", diverged)
    except Exception as save_error:  # e.g. the disk that is full
        log.error("could not write the checkpoint at step %d: %s", step, save_error)


def stop_requested(stop: StopFlag, info: distributed.Dist, device: torch.device, boundary: bool) -> bool:
    """Single process: the flag. DDP: agreed by all ranks (all-reduce, at log boundaries only), so every rank
    stops after the same step."""
    if not info.enabled:
        return stop.set
    if not boundary:
        return False
    flag = torch.tensor([float(stop.set)], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())
