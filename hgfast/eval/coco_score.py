"""OKS AP of a COCO keypoint results file (``hgfast eval --results``, or another model's) against a keypoint file.

A results file is COCO's keypoint results format: a list of ``{"image_id", "category_id", "keypoints": [x1, y1,
v1, ...] (3 × K numbers, image pixels), "score"}``, what COCO's evaluation server and pycocotools read. Every image
of the keypoint file is evaluated (people without a result are misses), COCOeval counting the 20 best-scored results
per image, as for detected people (``hgfast.eval.oks.oks_ap``, which also fills in the ground truth's missing
``bbox`` and ``area``). Only those four fields of a result are passed on, so pycocotools always reads them as
keypoint results and takes each one's area from its keypoints (its ``loadRes`` would take a ``bbox`` field's area,
or read the entries as boxes or segments, by what the first one carries).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..data.coco_format import IdMatcher, is_id, is_number, read_coco_header, read_json
from .oks import default_sigmas, oks_ap


def read_coco_results(path: str | os.PathLike, files: dict, category_ids, category_id, k: int) -> tuple[list, int]:
    """``(entries, other)``: the entries of results file ``path`` for category ``category_id`` (K joints), checked
    against the keypoint file's images ``files`` (``{image id: file name}``) and categories ``category_ids``, as
    ``image_id``, ``category_id``, ``keypoints`` and ``score`` only (module docstring); ``other``: entries of the
    file's other categories, left out. ValueError names the first entry that does not fit."""
    path = Path(path)
    entries = read_json(path, "COCO results file")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"COCO results file {path} must be a non-empty list of {{image_id, category_id, keypoints, "
                         f"score}} (COCO's keypoint results format)")
    image_of, category_of = IdMatcher(files), IdMatcher(category_ids)
    checked, other = [], 0
    for i, r in enumerate(entries):
        where = f"COCO results file {path}, entry {i}"
        if not (isinstance(r, dict) and isinstance(r.get("keypoints"), list) and is_number(r.get("score"))
                and "image_id" in r and "category_id" in r):
            raise ValueError(f"{where}: need image_id, category_id, keypoints and a score, got {str(r)[:120]}")
        image_id = image_of(r["image_id"], where, "image_id")
        category = category_of(r["category_id"], where, "category_id")
        if image_id is None or category is None:
            what, value = ("image_id", r["image_id"]) if image_id is None else ("category_id", r["category_id"])
            raise ValueError(f"{where}: {what} {value!r} is not one of the keypoint file's")
        if category != category_id:
            other += 1
            continue
        if len(r["keypoints"]) != 3 * k or not all(map(is_number, r["keypoints"])):
            raise ValueError(f"{where}: keypoints must be {3 * k} numbers (x, y, v for each of {k} joints), got "
                             f"{str(r['keypoints'])[:120]}")
        checked.append({"image_id": image_id, "category_id": category, "keypoints": r["keypoints"],
                        "score": r["score"]})
    if not checked:
        raise ValueError(f"COCO results file {path} has no entry of category {category_id!r} ({other} of others)")
    return checked, other


def score_coco_results(results: str | os.PathLike, annotations: str | os.PathLike, category_id=None,
                       sigmas=None) -> dict:
    """``{"oks": {AP, AP50, ...}, "results": N, "other_categories": M, "joints": names}`` of results file
    ``results`` against the people of COCO keypoint file ``annotations`` (its keypoint category, ``category_id``
    if several); ``sigmas`` (K,): the joints' OKS sigmas, default COCO's for COCO's 17 joints. ImportError
    without pycocotools."""
    header = read_coco_header(Path(annotations), category_id)
    data, category, names, _, files, _ = header
    used = default_sigmas(names, sigmas)
    if used is None or len(used) != len(names):
        raise ValueError(f"OKS AP needs {len(names)} per-joint sigmas (hgfast score --oks-sigmas) for the joints "
                         f"{names} of {annotations}"
                         + (" (COCO's are for its 17 joints)" if used is None else f", got {len(used)}"))
    ids = [c["id"] for c in data.get("categories") or [] if isinstance(c, dict) and is_id(c.get("id"))]
    entries, other = read_coco_results(results, files, ids, category["id"], len(names))
    return {"oks": oks_ap(annotations, category["id"], entries, used, header=header), "results": len(entries),
            "other_categories": other, "joints": list(names)}
