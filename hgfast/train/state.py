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

from ..checkpoint import atomic_path, load_torch_file
from ..data.crop import crop_size
from .config import default_thresholds

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
               config: dict, progress: dict | None = None, skeleton: dict | None = None) -> None:
    """Write the resumable state (``model`` unwrapped from DDP) to ``path`` atomically. ``progress``: the loop's
    loss sum and count in the current log window, images seen and elapsed seconds; ``skeleton``: the data's
    (``Skeleton.to_dict()``), which a resumed run must have."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
             "step": step, "best": best, "rng": rng_state(), "config": config, "progress": progress or {},
             "skeleton": skeleton}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def state_path(path: str | os.PathLike) -> Path:
    """The state file ``path`` names: itself, or ``<path>/last.state.pt`` for a work dir; FileNotFoundError if
    there is none."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"resume state not found: {path} (give a work dir holding {STATE_FILE} or a "
                                f"state file)")
    return path


# Model keys a resumed run may change: runtime switches that leave the state dict as it is.
_RUNTIME_MODEL_KEYS = {"fused", "init"}  # a resumed run takes its weights from the state


# What a run saved before a key existed had: its value then (best.safetensors was chosen by PCK, in GT boxes; the
# inputs were RGB in [0, 1]).
_BEFORE_KEY = {"val_metric": "pck", "val_detections": "", "input_norm": "none"}


def _first_threshold(config: dict) -> float | None:
    """The PCK threshold ``best`` is chosen by (``Config.thresholds()[0]``) of a config dict; None for AP."""
    if config.get("val_metric", "pck") != "pck":
        return None
    return float((config.get("val_thresholds") or default_thresholds(config.get("data", {}).get("dataset")))[0])


def _validation_keys(saved: dict) -> list[tuple[str, str]]:
    """The data keys that define the saved run's validation set or score beyond its files: synthetic data is
    rendered from val_length, seed and image_size; COCO crops are the boxes times box_margin, of category_id's
    people, scored by oks_sigmas where AP chooses best; MPII's one_based shifts the ground truth."""
    dataset = saved.get("data", {}).get("dataset")
    if dataset == "synthetic":
        return [("data", "val_length"), ("data", "seed"), ("data", "image_size")]
    if dataset == "coco":
        return [("data", "box_margin"), ("data", "category_id")] + \
            ([("data", "oks_sigmas")] if saved.get("val_metric") == "ap" else [])
    if dataset == "mpii":
        return [("data", "one_based")]
    return []


def check_resumable(saved: dict, config: dict) -> None:
    """Raise ValueError naming the first config key whose change from ``saved`` (the state's config) to
    ``config`` makes the state unloadable or the continuation another run: the model (its shapes), optim.name
    (the optimiser state's layout), amp (the fp16 scaler's state), data.dataset, data.input_size, data.input_norm
    (the inputs the weights learnt from), and what the state's best value measures: val_metric, its first PCK
    threshold (val_thresholds), val_flip and the validation set (data.val_detections, data.val_annotations and
    ``_validation_keys``)."""
    keys = [("model", k) for k in saved.get("model", {}) if k not in _RUNTIME_MODEL_KEYS]
    keys += [("optim", "name"), (None, "amp"), ("data", "dataset"), ("data", "input_size"), ("data", "input_norm"),
             (None, "val_metric"), (None, "val_thresholds"), (None, "val_flip"), ("data", "val_detections"),
             ("data", "val_annotations")] + _validation_keys(saved)
    for section, key in keys:
        old, new = ((c.get(section, {}) if section else c).get(key, _BEFORE_KEY.get(key)) for c in (saved, config))
        name = f"{section}.{key}" if section else key
        if key == "input_size" and old is not None:  # 256 is [256, 256]
            old, new = crop_size(old), crop_size(new)
        if key == "val_thresholds" and old is not None:  # only the first one chooses best.safetensors
            old, new = _first_threshold(saved), _first_threshold(config)
            name = "val_thresholds (its first, which chooses best.safetensors)"
        if old is not None and old != new:
            raise ValueError(f"cannot resume with config key {name!r} = {new!r}: the saved run has {old!r} and it "
                             f"must not change on resume (start a new run in another work dir)")


def load_state(path: str | os.PathLike) -> dict:
    """Read a state written by ``save_state``; FileNotFoundError / ValueError name the file."""
    path = state_path(path)
    state = load_torch_file(path, "training state")
    missing = {"model", "optimizer", "scaler", "step", "rng"} - set(state)
    if missing:
        raise ValueError(f"training state {path} lacks {sorted(missing)}")
    return state
