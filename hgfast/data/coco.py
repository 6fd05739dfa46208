"""Top-down samples of a COCO keypoint file: COCO's own ``person_keypoints_*.json`` and any custom dataset in its
format (``hgfast.data.coco_format`` reads and writes the file, every field checked).

- Flags: hgfast's ``annotated`` is ``v > 0`` and ``visible`` is ``v == 2`` (``data.loss_weight`` picks which the loss
  weighs); keypoints are used as they are (pixel centres at integers, as HRNet and mmpose).
- Samples: one per non-crowd annotation with a labelled keypoint (``read_coco``). The crop, around the box's centre,
  is the box widened or heightened to the input's aspect, times ``margin`` (1.25; square inputs: 1.25 × the box's
  longer side); without a usable ``bbox`` the box around the labelled keypoints serves (``keypoint_box``). Boxes are
  first clipped to their image where its ``images`` entry has ``width`` and ``height`` (as HRNet and mmpose: a person
  cut by the image border is cropped around its visible part); an image whose pixels are not that size is a
  ValueError when read. ``COCOKeypoints.skipped`` counts what was left out, by reason.
- PCK normaliser: the box's longer side (mmpose's "bbox" normalisation): PCK@0.2 = within 20 % of the box size.
- The skeleton (flip pairs, limb sides, PCK groups) comes from the category's joint names (``Skeleton.from_names``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .coco_format import read_coco
from .crop import box_to_center_scale, checked_margin
from .mpii import image_folder, read_image
from .skeleton import Skeleton
from .topdown import TopDownDataset


def read_sized_image(path: Path, size) -> np.ndarray:
    """``read_image(path)``, checked to be ``size`` (width, height; NaN: not known) as its COCO file says (boxes
    were clipped to it)."""
    image = read_image(path)
    if np.isfinite(size).all() and tuple(image.shape[1::-1]) != tuple(size):
        raise ValueError(f"image {path} is {image.shape[1]}x{image.shape[0]} pixels (EXIF orientation applied), "
                         f"but its COCO file says {size[0]:g}x{size[1]:g} (width x height): the boxes and keypoints "
                         f"may be of another version of it, or of it unrotated (fix the file's width and height)")
    return image


def checked_sigmas(who: str, oks_sigmas, k: int) -> tuple[float, ...] | None:
    """``oks_sigmas`` as a tuple of K floats > 0 (None stays None); a ValueError otherwise."""
    if oks_sigmas is None:
        return None
    if len(oks_sigmas) != k or not all(s > 0 for s in oks_sigmas):
        raise ValueError(f"{who}: oks_sigmas must be {k} numbers > 0 (one per joint), got {list(oks_sigmas)}")
    return tuple(float(s) for s in oks_sigmas)


def coco_skeleton(annotations: Path, names, edges, flip_pairs) -> Skeleton:
    """``Skeleton.from_names``; its errors name the file."""
    try:
        return Skeleton.from_names(names, edges, flip_pairs)
    except ValueError as exc:
        raise ValueError(f"COCO file {annotations}: {exc}") from exc


class COCOKeypoints(TopDownDataset):
    """Top-down samples from a COCO keypoint file ``annotations`` and its ``image_dir``; ``flip_pairs`` overrides
    the left/right pairs found in the joint names; ``margin``: crop / the box at the input's aspect (module
    docstring); ``oks_sigmas`` (K,): for OKS AP (``hgfast.eval.oks``; default COCO's for 17 joints)."""

    def __init__(self, annotations: str | os.PathLike, image_dir: str | os.PathLike,
                 input_size: int | tuple[int, int] = 256, augment_preset: str = "none", seed: int = 0,
                 category_id: int | None = None, flip_pairs=None, margin: float = 1.25, oks_sigmas=None):
        super().__init__(input_size, augment_preset, seed)
        self.margin = checked_margin(margin, f"{type(self).__name__}: margin")
        self.annotations = Path(annotations)
        self.ann = read_coco(annotations, category_id)
        self.category_id = self.ann["category_id"]
        self.oks_sigmas = checked_sigmas(type(self).__name__, oks_sigmas, len(self.ann["names"]))
        self.skipped = self.ann.pop("skipped")
        if not len(self.ann["file_name"]):
            raise ValueError(f"COCO file {annotations} has no usable person (left out: {self.skipped})")
        self.skeleton = coco_skeleton(self.annotations, self.ann["names"], self.ann["edges"], flip_pairs)
        self.image_dir = image_folder("COCO", self.annotations, image_dir, self.ann["file_name"])

    def __len__(self) -> int:
        return len(self.ann["file_name"])

    def image_ids(self, index) -> list:
        """The COCO image id of each sample in ``index`` (e.g. ``predict_dataset``'s ``index``)."""
        return list(self.ann["image_id"][np.asarray(index, np.int64)])

    def record(self, index: int) -> dict:
        kp, box = self.ann["keypoints"][index], self.ann["box"][index]
        center, scale = box_to_center_scale(box, self.margin, self.aspect)
        annotated = kp[:, 2] > 0
        image = read_sized_image(self.image_dir / self.ann["file_name"][index], self.ann["image_size"][index])
        return dict(image=image,
                    joints=np.where(annotated[:, None], kp[:, :2], 0.0).astype(np.float32),
                    visible=(kp[:, 2] == 2).astype(np.float32), annotated=annotated.astype(np.float32),
                    center=center.astype(np.float32), scale=scale, normalize=float(box[2:].max()),
                    box_size=self.margin * box[2:])
