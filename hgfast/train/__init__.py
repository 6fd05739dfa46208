"""Training: config (dataclasses, presets, YAML, ``--set``), the loop and its parts (schedule, interrupts, run dir,
validation), resumable state, distributed helpers."""
from .config import PRESETS, Config, ConfigError, resolve
from .loop import train

__all__ = ["train", "resolve", "Config", "ConfigError", "PRESETS"]
