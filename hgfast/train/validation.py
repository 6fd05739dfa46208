"""Validation during training: PCK (COCO data: and OKS AP) on the validation split, prediction pictures, and the
checks that a validation split and metric can work before training starts."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from torch import nn
from torch.utils.data import Subset

from ..checkpoint import atomic_path
from ..data.mpii import MPII
from ..eval.evaluate import evaluate, predict_dataset
from ..predict import AMP_DTYPES
from ..visualize import save_predictions_picture
from .config import Config

log = logging.getLogger("hgfast.train")


def predict_kwargs(cfg: Config) -> dict:
    return dict(flip=cfg.val_flip, channels_last=cfg.channels_last, autocast_dtype=AMP_DTYPES[cfg.amp],
                input_norm=cfg.data.input_norm)


def validate(model: nn.Module, cfg: Config, dataset, step: int, workdir: Path, picture: bool) -> dict:
    """Evaluate on ``dataset``; log the table, write ``val/step_XXXXXXX.json`` and, if ``picture``,
    ``vis/step_XXXXXXX.jpg``; return the table (``hgfast.eval.evaluate``)."""
    from ..eval.pck import format_table

    table, preds = evaluate(model, dataset, cfg.thresholds(), batch_size=max(cfg.batch_size, 32),
                            **predict_kwargs(cfg))
    log.info("step %d validation (%d samples, flip=%s):\n%s", step, table["samples"], cfg.val_flip,
             format_table(table))
    with atomic_path(workdir / "val" / f"step_{step:07d}.json") as tmp:
        Path(tmp).write_text(json.dumps(table, indent=1))
    if picture:
        save_predictions_picture(dataset, preds, workdir / "vis" / f"step_{step:07d}.jpg")
    return table


def check_val_metric(cfg: Config, val_set) -> None:
    """``val_metric: ap`` needs what OKS AP needs (pycocotools, the skeleton's sigmas): refused before training."""
    if cfg.val_metric != "ap":
        return
    import importlib.util

    from ..eval.oks import default_sigmas

    if importlib.util.find_spec("pycocotools") is None:
        raise ValueError("config key 'val_metric' = 'ap' needs pycocotools: pip install 'hgfast[coco]'")
    if default_sigmas(val_set.skeleton.names, val_set.oks_sigmas) is None:
        raise ValueError("config key 'val_metric' = 'ap' needs per-joint OKS sigmas for a skeleton other than "
                         "COCO's 17 joints (config key data.oks_sigmas)")


def check_labels(train_set, val_set) -> None:
    """MPII-style files without labels (a test split) cannot train or validate: refused before training."""
    if isinstance(train_set, MPII) and not train_set.labelled.any():
        raise ValueError(f"the training annotations {train_set.annotations} have no annotated joint (an unlabelled "
                         f"file, like MPII's test split): nothing to train on")
    why = val_set.no_ground_truth() if isinstance(val_set, MPII) else None
    if why:
        raise ValueError(f"validation: {why}; validate on a labelled file (data.val_annotations), and predict this "
                         f"one with hgfast eval --results preds.h5")


def draw_predictions(model: nn.Module, cfg: Config, dataset, step: int, workdir: Path) -> None:
    """``vis/step_XXXXXXX.jpg`` on a step without validation: the model runs on the 16 pictured images only."""
    subset = Subset(dataset, range(min(16, len(dataset))))
    subset.flip_permutation = dataset.flip_permutation
    preds = predict_dataset(model, subset, batch_size=16, **predict_kwargs(cfg))
    save_predictions_picture(dataset, preds, workdir / "vis" / f"step_{step:07d}.jpg")
