"""Datasets from a ``hgfast.train.config.DataConfig``."""
from __future__ import annotations

from pathlib import Path

from .coco import COCOKeypoints
from .coco_detections import COCODetections
from .mpii import MPII
from .synthetic import SyntheticPoses
from .topdown import TopDownDataset


def build_dataset(data, split: str) -> TopDownDataset:
    """The ``split`` ("train" or "val") dataset of config section ``data``; only "train" is augmented."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    augment = data.augment if split == "train" else "none"
    if data.dataset == "synthetic":
        length = data.train_length if split == "train" else data.val_length
        return SyntheticPoses(split, length, data.image_size, data.input_size, augment, data.seed)
    if data.dataset == "mpii":
        root = Path(data.root) if data.root else None
        given = data.train_annotations if split == "train" else data.val_annotations
        annotations = given or (root / "annot" / f"{'train' if split == 'train' else 'valid'}.h5" if root else "")
        if not annotations:
            raise ValueError(f"MPII {split} annotations: set 'data.{split}_annotations' or 'data.root'")
        image_dir = data.image_dir or (root / "images" if root else "")
        if not image_dir:
            raise ValueError("MPII images: set 'data.image_dir' or 'data.root'")
        return MPII(annotations, image_dir, data.input_size, augment, data.seed, data.one_based, _flip_pairs(data))
    if data.dataset == "coco":
        annotations, image_dir = _coco_files(data, split)
        return COCOKeypoints(annotations, image_dir, data.input_size, augment, data.seed, data.category_id or None,
                             _flip_pairs(data), data.box_margin, data.oks_sigmas or None)
    raise ValueError(f"unknown dataset {data.dataset!r}; choose 'synthetic', 'mpii' or 'coco'")


def build_detections(data, detections, min_score: float = 0.0, skeleton=None) -> COCODetections:
    """Detected people (``COCODetections``) on the validation images of COCO-format config section ``data``;
    ``skeleton``: the model's ``Skeleton``, the joints of an image-info file (COCO's test-dev)."""
    if data.dataset != "coco":
        raise ValueError(f"detected boxes need COCO-format data (data.dataset=coco), got {data.dataset!r}")
    annotations, image_dir = _coco_files(data, "val")
    return COCODetections(annotations, detections, image_dir, data.input_size, data.category_id or None,
                          _flip_pairs(data), data.box_margin, data.oks_sigmas or None, min_score, skeleton)


def _coco_files(data, split: str) -> tuple[Path, Path]:
    """The ``split`` annotation file and image folder: given, or COCO's layout under ``data.root``."""
    root, name = (Path(data.root) if data.root else None), ("train" if split == "train" else "val")
    given = data.train_annotations if split == "train" else data.val_annotations
    annotations = given or (root / "annotations" / f"person_keypoints_{name}2017.json" if root else "")
    if not annotations:
        raise ValueError(f"COCO {split} annotations: set 'data.{split}_annotations' or 'data.root'")
    folder = data.image_dir if split == "train" else data.val_image_dir
    image_dir = folder or (root / f"{name}2017" if root else data.image_dir)
    if not image_dir:
        raise ValueError("COCO images: set 'data.image_dir' or 'data.root'")
    return Path(annotations), Path(image_dir)


def _flip_pairs(data) -> list | None:
    return [tuple(p) for p in data.flip_pairs] or None
