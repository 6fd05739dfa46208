"""OKS AP of a COCO keypoint results file (``hgfast eval --results``, or another model's) against a keypoint file.

A results file is COCO's keypoint results format: a list of ``{"image_id", "category_id", "keypoints": [x1, y1,
v1, ...] (3 × K numbers, image pixels), "score"}``, what COCO's evaluation server and pycocotools read. Every image
of the keypoint file is evaluated (people without a result are misses), COCOeval counting the 20 best-scored results
per image, as for detected people (``hgfast.eval.oks.oks_ap``).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..data.coco_format import is_id, is_number, read_coco_header, read_json
from .oks import default_sigmas, oks_ap


def read_coco_results(path: str | os.PathLike, files: dict, category_id, k: int) -> list[dict]:
    """The entries of results file ``path``, checked against the keypoint file's images ``files`` (``{image id:
    file name}``), its category id and its K joints; an id written as a whole float (397133.0) becomes the
    integer. ValueError names the first entry that does not fit."""
    path = Path(path)
    entries = read_json(path, "COCO results file")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"COCO results file {path} must be a non-empty list of {{image_id, category_id, keypoints, "
                         f"score}} (COCO's keypoint results format)")
    checked = []
    for i, r in enumerate(entries):
        where = f"COCO results file {path}, entry {i}"
        if not (isinstance(r, dict) and isinstance(r.get("keypoints"), list) and is_number(r.get("score"))):
            raise ValueError(f"{where}: need image_id, category_id, keypoints and a score, got {str(r)[:120]}")
        image_id = r.get("image_id")
        if isinstance(image_id, float) and image_id.is_integer():
            image_id = int(image_id)
        for what, value, known in (("image_id", image_id, files), ("category_id", r.get("category_id"),
                                                                    {category_id: None})):
            if not (is_id(value) and value in known):
                text = " (a string for a number, or the reverse)" if str(value) in map(str, known) else ""
                raise ValueError(f"{where}: {what} {value!r} is not one of the keypoint file's{text}")
        if len(r["keypoints"]) != 3 * k or not all(map(is_number, r["keypoints"])):
            raise ValueError(f"{where}: keypoints must be {3 * k} numbers (x, y, v for each of {k} joints), got "
                             f"{str(r['keypoints'])[:120]}")
        checked.append({**r, "image_id": image_id})
    return checked


def score_coco_results(results: str | os.PathLike, annotations: str | os.PathLike, category_id=None,
                       sigmas=None) -> dict:
    """``{"oks": {AP, AP50, ...}, "results": N, "joints": names}`` of results file ``results`` against the people
    of COCO keypoint file ``annotations`` (its keypoint category, ``category_id`` if several); ``sigmas`` (K,):
    the joints' OKS sigmas, default COCO's for COCO's 17 joints. ImportError without pycocotools."""
    _, category, names, _, files, _ = read_coco_header(Path(annotations), category_id)
    used = default_sigmas(names, sigmas)
    if used is None:
        raise ValueError(f"OKS AP needs per-joint sigmas for the joints {names} of {annotations} (COCO's are for its "
                         f"17 joints): give them")
    entries = read_coco_results(results, files, category["id"], len(names))
    return {"oks": oks_ap(annotations, category["id"], entries, used), "results": len(entries),
            "joints": list(names)}
