"""Training: config (dataclasses, presets, YAML, ``--set``), the loop, resumable state, distributed helpers."""
from .config import PRESETS, Config, ConfigError, resolve
from .loop import train

__all__ = ["train", "resolve", "Config", "ConfigError", "PRESETS"]
