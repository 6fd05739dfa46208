"""Inference-time memo of values derived from parameters and buffers (eval BN coefficients, packed 3x3 weights).

A value is reused while every tensor it was derived from is the same object, on the same storage, at the same
version (in-place updates - optimiser steps, ``load_state_dict``, ``.copy_()`` - bump the version; ``.to()``,
``p.data = ...`` or a new Parameter change the object or the storage). Sources are held by weak reference, so the
memo never keeps old weights alive. Nothing is memoised while ``torch.compile`` traces (it sees the computation).
A CUDA graph replay writes tensors without bumping their versions: whoever replays one that updates parameters
calls ``invalidate_all()`` (``hgfast.graphs`` does).
"""
from __future__ import annotations

import weakref
from typing import Callable, Sequence

import torch
from torch import nn


_generation = 0


def invalidate_all() -> None:
    """Forget every memoised value (O(1): entries from earlier generations no longer match)."""
    global _generation
    _generation += 1


def generation() -> int:
    """How many times ``invalidate_all`` has run."""
    return _generation


def _state(t: torch.Tensor) -> tuple:
    return t.untyped_storage().data_ptr(), t.storage_offset(), t._version, t.dtype, t.device


def memo(module: nn.Module, name: str, sources: Sequence[torch.Tensor], compute: Callable[[], object]):
    """``compute()``, cached on ``module`` under ``name`` until one of ``sources`` changes."""
    if torch.compiler.is_compiling():
        return compute()
    store = module.__dict__.setdefault("_hgfast_memo", {})
    hit = store.get(name)
    if hit is not None and hit[0] == _generation and len(hit[1]) == len(sources) and all(
            ref() is t and state == _state(t) for (ref, state), t in zip(hit[1], sources)):
        return hit[2]
    value = compute()
    store[name] = (_generation, [(weakref.ref(t), _state(t)) for t in sources], value)
    return value
