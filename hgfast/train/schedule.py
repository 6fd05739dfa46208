"""The optimiser and its learning-rate schedule (step, cosine or constant, with warm-up), and what a resumed run's
changed schedule means for its learning rate."""
from __future__ import annotations

import math

import torch

from .config import Config, resolve


def build_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "rmsprop":  # the paper's Lua trainer: alpha 0.99, eps 1e-8, no momentum
        return torch.optim.RMSprop(params, lr=o.lr, alpha=0.99, eps=1e-8, weight_decay=o.weight_decay)
    return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)


def learning_rate(cfg: Config, step: int) -> float:
    """LR for ``step`` (0-based): linear warm-up, then the step / cosine / constant schedule."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "step":
        return o.lr * o.gamma ** sum(step >= m for m in o.milestones)
    if o.schedule == "cosine":
        t = (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps)
        return o.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return o.lr


_SCHEDULE_KEYS = ("steps", "optim.lr", "optim.schedule", "optim.milestones", "optim.gamma", "optim.warmup_steps")


def schedule_change(saved: dict, cfg: Config, step: int) -> str | None:
    """A note for a run resumed at ``step`` whose LR there differs from the saved run's schedule (``saved``: the
    state's config dict), naming the keys that changed (more ``steps`` re-stretch a cosine schedule); None where
    the LR is the same or the saved schedule cannot be read back."""
    try:
        before = resolve(path={"optim": saved.get("optim", {}), "steps": saved.get("steps", cfg.steps)})
    except ValueError:
        return None
    old, new = learning_rate(before, step), learning_rate(cfg, step)
    if math.isclose(old, new, rel_tol=1e-12):
        return None
    values = [(key, *(_get(c, key) for c in (before, cfg))) for key in _SCHEDULE_KEYS]
    changed = ", ".join(f"{key} {a} -> {b}" for key, a, b in values if a != b)
    return (f"resumed with another learning-rate schedule ({changed}): step {step} trains at lr {new:.3g}, where "
            f"the saved run's schedule had {old:.3g}")


def _get(cfg: Config, key: str):
    """The value of a dotted config key."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg
