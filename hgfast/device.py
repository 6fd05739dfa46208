"""Device names from the config / command line → ``torch.device``."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" → cuda if available else cpu; otherwise ``torch.device(name)`` (checked: ValueError for an unknown
    name, no CUDA GPU, or a CUDA index the machine does not have)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device is {name!r} but no CUDA GPU is available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device is {name!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device
