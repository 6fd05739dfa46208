"""People found by a person detector: top-down samples for COCO's detected-box protocol.

The detections file is COCO's object results format, what detectors write (e.g. the
``COCO_val2017_detections_AP_H_56_person.json`` HRNet and mmpose evaluate with): a list of ``{"image_id",
"category_id", "bbox": [x, y, w, h] (edge coordinates), "score"}``. The images and joint names come from the COCO
keypoint file of the same images (``hgfast.data.coco_format``). One sample per detection of the keypoint category (an
entry without ``category_id`` counts as one) with ``score >= min_score`` (HRNet's and mmpose's default 0) and a box
with sides of at least a pixel on an image of the keypoint file (overlapping it, where the file gives its size); the
others are counted in ``skipped``. The crop is ``COCOKeypoints``'s (``margin`` × the box at the input's aspect).
Samples have no ground truth (``joints`` and flags 0): ``hgfast.eval.evaluate`` scores them by OKS AP over every
image of the keypoint file, after OKS-NMS. On an image-info file (COCO's test-dev: images, no annotations;
``hgfast.data.coco_format``) the joints are the model's (``skeleton``) and there is no AP: predictions only, for
COCO's evaluation server.
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np

from .coco import checked_sigmas, coco_skeleton, read_sized_image
from .coco_format import IdMatcher, image_size_array, is_number, read_coco_header, read_json
from .crop import MAX_PIXEL, MIN_BOX_SIDE, box_overlaps, box_to_center_scale, checked_margin
from .mpii import image_folder
from .skeleton import Skeleton
from .topdown import TopDownDataset


def read_detections(path: str | os.PathLike, files: dict, category_id, min_score: float = 0.0,
                    sizes: dict | None = None) -> dict:
    """The usable detections of ``path``: ``image_id`` (N,), ``file_name`` (N,) and ``image_size`` (N, 2) (from
    ``files``, ``{image id: file name}``, and ``sizes``, ``{image id: (width, height)}``; NaN where unknown), ``box``
    (N, 4) (x, y, w, h) and ``score`` (N,), plus ``skipped`` (count by reason). A ValueError names the first entry
    that is not a detection (a box of finite numbers within ±``MAX_PIXEL``)."""
    path = Path(path)
    entries = read_json(path, "detections file")
    if not isinstance(entries, list):
        raise ValueError(f"detections file {path} must be a list of {{image_id, category_id, bbox, score}} "
                         f"(COCO's results format), got {type(entries).__name__}")
    skipped = {"other category": 0, "score below min_score": 0, "box under a pixel": 0,
               "image not in annotations": 0, "box outside image": 0}
    rows, sizes = [], sizes or {}
    image_of, category_of = IdMatcher(files), IdMatcher([category_id])
    for i, d in enumerate(entries):
        ok = isinstance(d, dict) and "image_id" in d and is_number(d.get("score")) and \
            isinstance(d.get("bbox"), list) and len(d["bbox"]) == 4 and all(map(is_number, d["bbox"]))
        box, score = (np.array(d["bbox"], np.float64), float(d["score"])) if ok else (None, None)
        ok = ok and bool((np.abs(box) <= MAX_PIXEL).all())
        if not ok:
            raise ValueError(f"detections file {path}, entry {i}: need image_id, bbox [x, y, w, h] (finite numbers, "
                             f"pixels within ±{MAX_PIXEL:g}) and score, got {str(d)[:120]}")
        where = f"detections file {path}, entry {i}"
        image_id = image_of(d["image_id"], where, "image_id")
        reason = ("other category" if category_of(d.get("category_id", category_id), where, "category_id") is None
                  else "score below min_score" if score < min_score else
                  "box under a pixel" if not (box[2:] >= MIN_BOX_SIDE).all() else
                  "image not in annotations" if image_id is None else
                  "box outside image" if image_id in sizes and not box_overlaps(box, sizes[image_id]) else None)
        if reason:
            skipped[reason] += 1
        else:
            rows.append((image_id, box, score))
    return dict(image_id=np.array([r[0] for r in rows], object),
                file_name=np.array([files[r[0]] for r in rows], object),
                image_size=image_size_array(sizes, [r[0] for r in rows]),
                box=np.array([r[1] for r in rows], np.float64).reshape(-1, 4),
                score=np.array([r[2] for r in rows], np.float64), skipped=skipped)


class COCODetections(TopDownDataset):
    """Top-down samples, one per detected person (module docstring), of the images of COCO keypoint file
    ``annotations`` in ``image_dir``; ``detections``: COCO results JSON; ``category_id``, ``flip_pairs``,
    ``margin`` and ``oks_sigmas`` as for ``COCOKeypoints``; ``skeleton``: the model's ``Skeleton``, the joints of an
    image-info file (module docstring; ignored for a keypoint file, whose joints are its own). Never augmented."""

    def __init__(self, annotations: str | os.PathLike, detections: str | os.PathLike, image_dir: str | os.PathLike,
                 input_size: int | tuple[int, int] = 256, category_id: int | None = None, flip_pairs=None,
                 margin: float = 1.25, oks_sigmas=None, min_score: float = 0.0, skeleton: Skeleton | None = None):
        super().__init__(input_size)
        who = type(self).__name__
        self.margin = checked_margin(margin, f"{who}: margin")
        if not (isinstance(min_score, numbers.Real) and np.isfinite(min_score)):
            raise ValueError(f"{who}: min_score must be a number, got {min_score!r}")
        self.annotations, self.detections, self.min_score = Path(annotations), Path(detections), float(min_score)
        data, category, names, edges, files, sizes = read_coco_header(self.annotations, category_id, skeleton)
        self.category_id, self._ground_truth = category["id"], "annotations" in data
        self.oks_sigmas = checked_sigmas(who, oks_sigmas, len(names))
        self.skeleton = (skeleton if not self._ground_truth and flip_pairs is None
                         else coco_skeleton(self.annotations, names, edges, flip_pairs))
        self.det = read_detections(self.detections, files, self.category_id, self.min_score, sizes)
        self.skipped = self.det.pop("skipped")
        if not len(self.det["score"]):
            raise ValueError(f"detections file {detections} has no usable detection for {annotations} (left out: "
                             f"{self.skipped})")
        self.image_dir = image_folder("COCO", self.annotations, image_dir, self.det["file_name"])

    def __len__(self) -> int:
        return len(self.det["score"])

    def no_ground_truth(self) -> str | None:
        """Why there is no AP to compute (an image-info file), or None."""
        return None if self._ground_truth else (f"{self.annotations} has no annotations (an image-info file, like "
                                                f"COCO's test-dev): predictions only")

    def image_ids(self, index) -> list:
        """The COCO image id of each sample in ``index`` (e.g. ``predict_dataset``'s ``index``)."""
        return list(self.det["image_id"][np.asarray(index, np.int64)])

    def record(self, index: int) -> dict:
        box, k = self.det["box"][index], self.skeleton.num_joints
        center, scale = box_to_center_scale(box, self.margin, self.aspect)
        image = read_sized_image(self.image_dir / self.det["file_name"][index], self.det["image_size"][index])
        return dict(image=image,
                    joints=np.zeros((k, 2), np.float32), visible=np.zeros(k, np.float32),
                    annotated=np.zeros(k, np.float32), center=center.astype(np.float32), scale=scale,
                    normalize=float(box[2:].max()))
