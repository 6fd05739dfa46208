"""COCO keypoint AP (object keypoint similarity) of top-down predictions, by pycocotools' ``COCOeval``.

The official evaluation code computes the numbers (``pip install 'hgfast[coco]'``). Predictions are made in the
ground-truth person boxes (the "AP with GT boxes" of HRNet's and mmpose's tables), and only the images that have
a prediction are evaluated (so people left out of the dataset for want of a box count as misses). A person's
score is the mean of its joint scores above 0.2, as HRNet computes it with box score 1. OKS needs a per-joint sigma
(the joint's annotation spread): COCO's for COCO's 17 joints, your own for other skeletons.
"""
from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..data.coco import keypoint_box

COCO_OKS_SIGMAS = tuple(s / 10 for s in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87,
                                         .89, .89))
COCO_KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                       "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                       "right_knee", "left_ankle", "right_ankle")
MAX_PEOPLE = 20  # COCOeval's maxDets for keypoints (its summary is fixed to it)
OKS_METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
SCORE_THRESHOLD = 0.2


def person_scores(scores) -> np.ndarray:
    """(N,) person scores from joint ``scores`` (N, K): the mean of the joint scores above 0.2 (0 if none)."""
    scores = np.asarray(scores, np.float64)
    above = scores > SCORE_THRESHOLD
    return np.where(above.any(1), (scores * above).sum(1) / np.maximum(above.sum(1), 1), 0.0)


def coco_results(image_ids, category_id, keypoints, scores) -> list[dict]:
    """COCO's keypoint results format (what COCOeval and the COCO servers read): one entry per person with
    ``image_id``, ``category_id``, ``keypoints`` [x1, y1, s1, ...] (image pixels, joint scores) and ``score``
    (``person_scores``)."""
    keypoints, scores = np.asarray(keypoints, np.float64), np.asarray(scores, np.float64)
    person = person_scores(scores)
    return [{"image_id": image_id, "category_id": category_id, "score": float(person[i]),
             "keypoints": np.concatenate([keypoints[i], scores[i][:, None]], 1).ravel().tolist()}
            for i, image_id in enumerate(image_ids)]


def ground_truth(annotations: str | os.PathLike, category_id):
    """pycocotools ``COCO`` of the file's annotations of ``category_id`` with what COCOeval needs and the format
    leaves optional filled in: ``iscrowd`` 0, ``num_keypoints`` the labelled joints, ``bbox`` the labelled joints'
    box (``keypoint_box``) and ``area`` the box's (w·h); annotation ids renumbered 1..n."""
    from pycocotools.coco import COCO

    data = json.loads(Path(annotations).read_bytes())
    people = []
    for a in data["annotations"]:
        if not isinstance(a, dict) or a.get("category_id") != category_id:
            continue
        kp = np.asarray(a.get("keypoints", ()), np.float64).reshape(-1, 3)
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4):
            box = keypoint_box(kp[kp[:, 2] > 0, :2])
            box = [0.0] * 4 if box is None else box
        box = [float(v) for v in box]
        people.append({**a, "id": len(people) + 1, "iscrowd": int(a.get("iscrowd") or 0), "bbox": box,
                       "num_keypoints": int(a.get("num_keypoints", (kp[:, 2] > 0).sum())),
                       "area": float(a.get("area", box[2] * box[3]))})
    truth = COCO()
    truth.dataset = {"images": data["images"], "annotations": people,
                     "categories": [c for c in data["categories"] if c.get("id") == category_id]}
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
    return truth


def oks_ap(annotations: str | os.PathLike, image_ids, category_id, keypoints, scores, sigmas=None) -> dict:
    """``{"AP": ..., "AP50": ..., ...}`` (``OKS_METRICS``, COCOeval's ``stats``; -1 where no ground truth counts)
    of predictions ``keypoints`` (N, K, 2) image pixels with joint ``scores`` (N, K) for people of category
    ``category_id`` in images ``image_ids`` (N,) of the COCO file ``annotations``; ``sigmas`` (K,), default COCO's
    (for COCO's 17 joints). COCOeval counts at most 20 people per image (a warning says when an image has more).
    ImportError without pycocotools."""
    try:
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise ImportError("OKS AP needs pycocotools: pip install 'hgfast[coco]'") from exc
    keypoints, scores = np.asarray(keypoints, np.float64), np.asarray(scores, np.float64)
    n, k = scores.shape
    if keypoints.shape != (n, k, 2) or len(image_ids) != n or n == 0:
        raise ValueError(f"oks_ap: keypoints must be (N, K, 2) and image_ids (N,) for scores (N, K) with N > 0, got "
                         f"{keypoints.shape}, {len(image_ids)} and {scores.shape}")
    if sigmas is None and k != len(COCO_OKS_SIGMAS):
        raise ValueError(f"oks_ap: COCO's OKS sigmas are for 17 joints; give sigmas for {k}")
    sigmas = np.asarray(COCO_OKS_SIGMAS if sigmas is None else sigmas, np.float64)
    if sigmas.shape != (k,) or not (sigmas > 0).all():
        raise ValueError(f"oks_ap: sigmas must be {k} numbers > 0, got {sigmas.tolist()}")
    crowded = [i for i, c in collections.Counter(image_ids).items() if c > MAX_PEOPLE]
    if crowded:
        warnings.warn(f"COCOeval counts at most {MAX_PEOPLE} people per image: in {len(crowded)} image(s) with more "
                      f"(e.g. {crowded[0]!r}) the lowest-scored ones count as misses", stacklevel=2)
    results = coco_results(image_ids, category_id, keypoints, scores)
    truth = ground_truth(annotations, category_id)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        evaluation = COCOeval(truth, truth.loadRes(results), "keypoints")
        evaluation.params.kpt_oks_sigmas = sigmas
        evaluation.params.imgIds = list(dict.fromkeys(image_ids))
        evaluation.params.catIds = [category_id]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(v) for name, v in zip(OKS_METRICS, evaluation.stats)}
