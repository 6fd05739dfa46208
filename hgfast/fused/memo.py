"""Inference-time memo of values derived from parameters and buffers (eval BN coefficients, packed 3x3 weights).

A value is reused while every tensor it was derived from is the same object, at the same data pointer and version.
Detected: in-place updates through the tensor itself (``load_state_dict``, ``p.copy_()`` under ``torch.no_grad()``)
bump its version; ``.to()``, ``p.data = ...`` or a new Parameter change the object or the data pointer; a
``torch.optim`` step forgets the values derived from its parameters (a global step hook registered on import: fused
optimisers, ``Adam(fused=True)``, move no version counter). Not detected: other writes that move no version
counter - through
``p.data`` (``p.data.mul_(2)``, ``p.data.copy_(...)``) or by a CUDA graph replay. After those, call
``invalidate(module)`` (``hgfast.graphs`` does after each training replay). Memos live in a module-level
``WeakKeyDictionary`` keyed by module, so they never travel with a pickled or deep-copied module and never keep a
module alive; sources are held by weak reference, so they never keep old weights alive either. Nothing is
memoised while ``torch.compile`` traces (it sees the computation).
"""
from __future__ import annotations

import operator
import weakref
from typing import Callable, Hashable, Sequence

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

_memos: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {name: (source refs, states, value)}
_generation = 0


def invalidate(module: nn.Module | None = None) -> None:
    """Forget the memoised values of ``module`` and its submodules (of every module with ``None``) and move
    ``generation()``, so a ``GraphedForward`` captures again on its next call. Needed after writes that bump no
    version counter (through ``.data``, CUDA graph replays)."""
    global _generation
    _generation += 1
    if module is None:
        _memos.clear()
    else:
        for m in module.modules():
            _memos.pop(m, None)


def _forget_stepped(optimizer, args, kwargs) -> None:
    """After ``optimizer.step()``: forget the values derived from its parameters and, if there were any, move
    ``generation()`` (fused optimisers write parameters without moving their version counters)."""
    global _generation
    if not _memos:
        return
    params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    stale = [(store, name) for store in list(_memos.values()) for name, (refs, _, _) in store.items()
             if any(id(ref()) in params for ref in refs)]
    for store, name in stale:
        del store[name]
    if stale:
        _generation += 1


register_optimizer_step_post_hook(_forget_stepped)


def generation() -> int:
    """How many times ``invalidate`` has run."""
    return _generation


def _state(t: torch.Tensor) -> tuple:
    return t.data_ptr(), t._version, t.dtype, t.device


def memo(module: nn.Module, name: Hashable, sources: Sequence[torch.Tensor], compute: Callable[[], object]):
    """``compute()``, memoised for ``module`` under ``name`` until one of ``sources`` changes. (A hit costs ~0.3 µs
    per source: it runs for every fused inference residual.)"""
    if torch.compiler.is_compiling():
        return compute()
    store = _memos.get(module)
    if store is None:
        store = _memos[module] = {}
    hit = store.get(name)
    if hit is not None and len(hit[0]) == len(sources) and all(map(operator.is_, [ref() for ref in hit[0]], sources)) \
            and tuple(map(_state, sources)) == hit[1]:
        return hit[2]
    value = compute()
    store[name] = ([weakref.ref(t) for t in sources], tuple(map(_state, sources)), value)
    return value
