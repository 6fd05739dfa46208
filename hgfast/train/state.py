"""Resumable training state: model, optimiser, AMP scaler, step, best metric and RNG states, written atomically.

A work dir holds ``last.state.pt`` (everything needed to resume; loaded with ``weights_only=True``),
``last.safetensors`` and ``best.safetensors`` (weights with the model config, for ``from_checkpoint``).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_path

STATE_FILE = "last.state.pt"


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    state = {"torch": torch.get_rng_state(), "numpy": np_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np_state = dict(state["numpy"])
    np_state["state"] = dict(np_state["state"], key=np.array(np_state["state"]["key"], dtype=np.uint32))
    np.random.set_state(np_state)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():  # a run resumed on fewer GPUs restores the ones it has
        for device, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


def save_state(path: str | os.PathLike, model, optimizer, scaler, step: int, best: float | None,
               config: dict) -> None:
    """Write the resumable state (``model`` unwrapped from DDP) to ``path`` atomically."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
             "step": step, "best": best, "rng": rng_state(), "config": config}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | os.PathLike) -> dict:
    """Read a state written by ``save_state``; FileNotFoundError / ValueError name the file."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"resume state not found: {path} (give a work dir holding {STATE_FILE} or a "
                                f"state file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip / pickle raise many types
        raise ValueError(f"corrupt or unreadable training state {path}: {exc}") from exc
    missing = {"model", "optimizer", "scaler", "step", "rng"} - set(state)
    if missing:
        raise ValueError(f"training state {path} lacks {sorted(missing)}")
    return state
