"""Reading and writing weight files: safetensors (hgfast's format) and torch pickles (peer checkpoints).

Every write goes to a temporary file in the destination folder, is flushed to disk, then renamed over the
target, so an interrupted write never leaves a truncated file behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

_PREFIX = "hgfast_"  # safetensors metadata keys hgfast writes: hgfast_config (architecture), hgfast_skeleton


def _file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give: the existing file's, else 0o666 minus the umask."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically. ``keep_suffix``: the
    temporary name ends in ``path``'s suffix, for writers that choose the format by it (OpenCV's video writer);
    otherwise in ``.tmp`` (so that, e.g., onnx writes its binary format whatever ``path`` is called).

    The result gets the permissions a normal write would (mkstemp alone would leave it at 0600). A folder at
    ``path`` is an IsADirectoryError naming it, before anything is written.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder (give a file path)")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp{path.suffix}" if keep_suffix else ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_weights(state: Mapping[str, Tensor], path: str | os.PathLike, config: Mapping | None = None,
                 **metadata) -> None:
    """Save a state dict as safetensors (contiguous CPU copies), with an optional JSON ``config`` and further
    JSON-ready ``metadata`` entries (e.g. ``skeleton=``) that ``read_metadata`` returns. ``path`` must end in
    ``.safetensors``: files are read by their suffix, and any other is taken for a torch pickle."""
    from safetensors.torch import save_file

    if Path(path).suffix != ".safetensors":
        raise ValueError(f"save: {path} must end in .safetensors (the weights are written as safetensors, and a "
                         f"checkpoint of another suffix is read as a torch pickle)")

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    entries = {"config": dict(config) if config else None, **metadata}
    stored = {_PREFIX + k: json.dumps(v) for k, v in entries.items() if v is not None}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=stored or None)


def non_finite_tensors(state: Mapping[str, Tensor]) -> list[str]:
    """The names (sorted) of the floating-point tensors of ``state`` holding a NaN or infinity (one host sync)."""
    floats = {k: v for k, v in state.items() if v.is_floating_point()}
    if not floats:
        return []
    finite = torch.stack([torch.isfinite(v).all() for v in floats.values()]).cpu().tolist()
    return sorted(k for k, ok in zip(floats, finite) if not ok)


def checkpoint_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it is a file; FileNotFoundError if missing, ValueError for a folder (naming the run's
    ``best.safetensors`` where it is a run's folder)."""
    path = Path(path)
    if path.is_dir():
        best = path / "best.safetensors"
        raise ValueError(f"checkpoint {path} is a folder, not a file" +
                         (f" (its weights: {best})" if best.is_file() else ""))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata hgfast stored with a safetensors file (``{"config": {...}, "skeleton": {...}}``, entries
    present only where written); ``{}`` for other files. FileNotFoundError / ValueError name the file."""
    path = checkpoint_file(path)
    if path.suffix != ".safetensors":
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            stored = f.metadata() or {}
        return {k[len(_PREFIX):]: json.loads(v) for k, v in stored.items() if k.startswith(_PREFIX)}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"corrupt or unreadable safetensors checkpoint {path}: {exc}") from exc


def load_state_dict(path: str | os.PathLike, weights_only: bool = False) -> tuple[dict[str, Tensor], dict]:
    """Load ``(state_dict, config)`` from a safetensors file or a torch checkpoint.

    Torch checkpoints may hold the state dict directly or under ``"state_dict"`` / ``"model"`` (as peer training
    scripts save it); they are read with ``weights_only=True``. ``config`` is ``{}`` unless hgfast wrote the file.
    An hgfast training state (``last.state.pt``) is refused, naming the ``last.safetensors`` written beside it,
    unless ``weights_only`` (the caller needs only its weights: fine-tuning from it, ``model.init``).
    """
    path = checkpoint_file(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        config = read_metadata(path).get("config", {})
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"corrupt or unreadable safetensors checkpoint {path}: {exc}") from exc
        return state, config
    obj = load_torch_file(path, "torch checkpoint")
    if not weights_only and isinstance(obj, dict) and {"model", "optimizer", "rng", "step", "config"} <= obj.keys():
        raise ValueError(f"{path} is an hgfast training state (what hgfast train --resume continues): its weights "
                         f"come without the model's training settings (input size, skeleton); load the weights "
                         f"written with it, {path.parent / 'last.safetensors'}")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(obj), {}


def load_torch_file(path: Path, what: str):
    """``torch.load`` of ``path`` on the CPU with ``weights_only=True``, numpy scalars and arrays allowed (peers'
    training scripts store their scores as numpy numbers); ValueError naming ``what`` and the file otherwise, with
    the reason's line (not torch's advice on unsafe loading)."""
    allowed = getattr(torch.serialization, "safe_globals", None)
    try:
        if allowed is None:  # torch 2.4: a process-wide allow-list
            torch.serialization.add_safe_globals(_numpy_globals())
            return torch.load(path, map_location="cpu", weights_only=True)
        with allowed(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt pickles / zip archives
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((line for line in lines if "Unsupported" in line), lines[0] if lines else repr(exc))
        if "Unsupported operand" in reason or "invalid load key" in reason:  # the pickle opcode of a text or image
            reason = "not a file torch.save wrote (nor a .safetensors file)"
        raise ValueError(f"corrupt or unreadable {what} {path}: {reason}") from exc


def _numpy_globals() -> list:
    """What pickles of numpy scalars and arrays reference: their constructors and dtype classes (data only)."""
    core = getattr(np, "_core", None) or np.core
    dtypes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGUS"}
    return [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]
