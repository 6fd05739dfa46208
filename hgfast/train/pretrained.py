"""``model.init``: a fresh run starts from a checkpoint's weights (fine-tuning).

Any layout ``StackedHourglass.from_checkpoint`` reads (hgfast ``.safetensors``, bearpaw / anibali / princeton-vl
checkpoints). The architecture (``model.nstack``, ``nfeat``, ``depth``, ``stem_channels``) must be the config's;
the joints may differ: the joint-specific convs (each head's ``heatmap``, each merge's ``heatmap`` input) are taken
where their shapes fit (the same number of joints, assumed in the same order) and start fresh otherwise; BN
running statistics come along. The optimiser and the schedule start anew; a resumed run takes its own state
instead (the file is not read again).
"""
from __future__ import annotations

import os
import re
import warnings
from typing import Mapping

from torch import Tensor

from ..models import StackedHourglass
from ..models.stacked_hourglass import load_into

_JOINT_MODULES = re.compile(r"^((?:heads|merges)\.\d+\.heatmap)\.")
_ARCHITECTURE = ("nstack", "nfeat", "depth", "stem_channels", "in_channels")


def read_pretrained(path: str | os.PathLike, model_config, input_norm: str = "none") -> dict[str, Tensor]:
    """The checkpoint's tensors in hgfast's layout, checked against ``model_config`` (a ``ModelConfig``, or
    anything with its fields; ``in_channels`` 3 if absent); FileNotFoundError / ValueError naming ``model.init``.
    A bearpaw-layout checkpoint (bearpaw's or anibali's, trained on normalised inputs) with ``input_norm`` "none"
    (the training data's ``data.input_norm``) is warned about: nothing in the file says which it was."""
    from ..checkpoint import load_state_dict
    from ..models.convert import detect_layout, infer_config, strip_wrappers, to_hgfast_layout

    try:
        raw = load_state_dict(path, weights_only=True)[0]
        if detect_layout(strip_wrappers(raw)) == "bearpaw" and input_norm == "none":
            warnings.warn(f"model.init {path} is a bearpaw-layout checkpoint (bearpaw/pytorch-pose or anibali), "
                          f"trained on normalised inputs, but data.input_norm is none (RGB in [0, 1]): set "
                          f"data.input_norm=bearpaw or anibali to fine-tune on the inputs it knows",
                          UserWarning, stacklevel=2)
        state = to_hgfast_layout(raw)
        theirs = infer_config(state)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"model.init: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"model.init {path}: {exc}") from exc
    ours = {**{k: getattr(model_config, k) for k in _ARCHITECTURE if k != "in_channels"},
            "in_channels": getattr(model_config, "in_channels", 3)}
    differ = [k for k in _ARCHITECTURE if theirs[k] != ours[k]]
    if differ:
        fixes = " ".join(f"--set model.{k}={theirs[k]}" for k in differ if k != "in_channels")
        raise ValueError(f"model.init {path} does not fit the config's model: " +
                         "; ".join(f"{k} {theirs[k]} (the config: {ours[k]})" for k in differ) +
                         (f"; give {fixes}" if fixes else ""))
    return state


def apply_pretrained(model: StackedHourglass, state: Mapping[str, Tensor]) -> list[str]:
    """Copy ``state`` (from ``read_pretrained``) into ``model``; return the joint-specific modules left as
    initialised (their shapes differ: another number of joints). ValueError for any other missing or mis-shaped
    tensor."""
    own = model.state_dict()
    fresh = sorted({m.group(1) for k, v in own.items() if (m := _JOINT_MODULES.match(k))
                    and (k not in state or tuple(state[k].shape) != tuple(v.shape))})
    kept = {k: v for k, v in state.items() if not any(k.startswith(f"{m}.") for m in fresh)}
    missing = sorted(k for k in set(own) - set(state) if not k.endswith(".num_batches_tracked")
                     and not any(k.startswith(f"{m}.") for m in fresh))
    if missing:
        raise ValueError(f"model.init: the checkpoint lacks {', '.join(missing[:10])}")
    load_into(model, kept, strict=False)
    return fresh
