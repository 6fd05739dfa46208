"""Device names from the config / command line → ``torch.device``."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" → cuda if available else cpu; otherwise ``torch.device(name)`` (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device is {name!r} but no CUDA GPU is available")
    return device
