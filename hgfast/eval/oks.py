"""COCO keypoint AP (object keypoint similarity) of top-down predictions, by pycocotools' ``COCOeval``.

The official evaluation code computes the numbers (``pip install 'hgfast[coco]'``). Two protocols, as in HRNet's
and mmpose's tables (``hgfast.eval.evaluate.coco_predictions`` makes the results of either):

- ground-truth boxes (``COCOKeypoints``): one prediction per annotated person, scored by the mean of its joint
  scores above 0.2 (HRNet's with box score 1);
- detected boxes (``COCODetections``): one prediction per detection, scored by that mean times the box score.

Either way OKS-NMS per image follows (``oks_nms``, 0.9, with the crops' areas as scales), and every image of the
annotation file is evaluated: people without a prediction (no box, or one the dataset could not crop) are misses.

OKS needs a per-joint sigma (the joint's annotation spread): COCO's for COCO's 17 joints, your own for other
skeletons.
"""
from __future__ import annotations

import collections
import contextlib
import io
import numbers
import os
import warnings
from pathlib import Path

import numpy as np

from ..data.coco_format import box_area, category_annotations, keypoint_box, read_coco_header

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


def coco_results(image_ids, category_id, keypoints, scores, box_scores=None) -> list[dict]:
    """COCO's keypoint results format (what COCOeval and the COCO servers read): one entry per person with
    ``image_id``, ``category_id``, ``keypoints`` [x1, y1, s1, ...] (image pixels ``keypoints`` (N, K, 2), joint
    ``scores`` (N, K)) and ``score``: ``person_scores``, times the detector's ``box_scores`` (N,) where given (as
    HRNet and mmpose rescore detected people)."""
    keypoints, scores = np.asarray(keypoints, np.float64), np.asarray(scores, np.float64)
    n = len(image_ids)
    if scores.ndim != 2 or keypoints.shape != (*scores.shape, 2) or len(scores) != n:
        raise ValueError(f"coco_results: keypoints must be (N, K, 2) and image_ids (N,) for scores (N, K), got "
                         f"{keypoints.shape}, {n} and {scores.shape}")
    person = person_scores(scores)
    if box_scores is not None:
        box_scores = np.asarray(box_scores, np.float64)
        if box_scores.shape != (n,):
            raise ValueError(f"coco_results: box_scores must be ({n},), got {box_scores.shape}")
        person = person * box_scores
    return [{"image_id": image_id, "category_id": category_id, "score": float(person[i]),
             "keypoints": np.concatenate([keypoints[i], scores[i][:, None]], 1).ravel().tolist()}
            for i, image_id in enumerate(image_ids)]


def default_sigmas(names, sigmas=None) -> tuple[float, ...] | None:
    """``sigmas`` if given, else COCO's where ``names`` are COCO's 17 joints, else None."""
    if sigmas is not None:
        return tuple(float(s) for s in sigmas)
    return COCO_OKS_SIGMAS if tuple(names) == COCO_KEYPOINT_NAMES else None


def check_nms_threshold(threshold, name: str = "nms_threshold") -> float:
    """``threshold`` as a float in (0, 1] (1: no suppression); a ValueError naming ``name`` otherwise."""
    if not (isinstance(threshold, numbers.Real) and 0 < threshold <= 1):
        raise ValueError(f"{name} must be in (0, 1] (1: no OKS-NMS), got {threshold!r}")
    return float(threshold)


def oks_nms(image_ids, keypoints, score, areas, sigmas, threshold: float = 0.9) -> np.ndarray:
    """Indices (ascending) of the people kept by greedy OKS non-maximum suppression within each image: the
    best-scored person stays, every other one whose OKS with it exceeds ``threshold`` goes, and so on (HRNet's
    and mmpose's ``oks_nms``, threshold 0.9; 1 keeps everyone). ``keypoints`` (N, K, 2), person ``score`` (N,),
    ``areas`` (N,) (the people's scale², HRNet's and mmpose's: their crops' areas; a pair's OKS takes the mean),
    ``sigmas`` (K,)."""
    threshold = check_nms_threshold(threshold, "oks_nms: threshold")
    keypoints, score = np.asarray(keypoints, np.float64), np.asarray(score, np.float64)
    areas, variances = np.asarray(areas, np.float64), (2 * np.asarray(sigmas, np.float64)) ** 2
    groups: dict = collections.defaultdict(list)
    for i, image_id in enumerate(image_ids):
        groups[image_id].append(i)
    kept = []
    for members in groups.values():
        order = np.asarray(members)[np.argsort(-score[members], kind="stable")]
        while len(order):
            best, rest = order[0], order[1:]
            kept.append(best)
            d2 = ((keypoints[rest] - keypoints[best]) ** 2).sum(-1)  # (R, K)
            scale = (areas[rest] + areas[best])[:, None] / 2 + np.spacing(1)
            similarity = np.exp(-d2 / variances / scale / 2).mean(1)
            order = rest[similarity <= threshold]
    return np.sort(np.asarray(kept, np.int64))


def ground_truth(annotations: str | os.PathLike, category_id, header: tuple | None = None):
    """pycocotools ``COCO`` of the file's annotations of ``category_id`` with what COCOeval needs and the format
    leaves optional filled in: ``iscrowd`` 0, ``keypoints`` all unlabelled (crowd regions), ``num_keypoints`` the
    labelled joints, ``bbox`` the labelled joints' box (``keypoint_box``) and ``area`` 0.53 × the box's
    (``box_area``, as mmpose: OKS scales by the area of the person, about half its box); annotation ids renumbered
    1..n. ``header``: the file's ``read_coco_header`` where the caller read it already (not read again)."""
    from pycocotools.coco import COCO

    path = Path(annotations)
    data, category, *_ = header or read_coco_header(path, category_id)
    found = category_annotations(path, data, category)
    people = []
    for a, kp, box in zip(found["annotations"], found["keypoints"], found["box"]):
        if not np.isfinite(box).all():
            box = keypoint_box(kp[kp[:, 2] > 0, :2])
        box = [0.0] * 4 if box is None else [float(v) for v in box]
        people.append({**a, "id": len(people) + 1, "iscrowd": int(a.get("iscrowd") or 0), "bbox": box,
                       "keypoints": kp.ravel().tolist(),
                       "num_keypoints": int((kp[:, 2] > 0).sum() if a.get("num_keypoints") is None else
                                            a["num_keypoints"]),
                       "area": float(a["area"]) if a.get("area") is not None else box_area(box)})
    truth = COCO()
    truth.dataset = {"images": data["images"], "annotations": people, "categories": [category]}
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
    return truth


def oks_ap(annotations: str | os.PathLike, category_id, results: list[dict], sigmas=None,
           image_ids=None, one_per_person: bool = False, header: tuple | None = None) -> dict:
    """``{"AP": ..., "AP50": ..., ...}`` (``OKS_METRICS``, COCOeval's ``stats``; -1 where no ground truth counts)
    of ``results`` (``coco_results``; K joints each) against the people of category ``category_id`` in the COCO
    file ``annotations``, over ``image_ids`` (default: every image of the file, so people without a result count
    as misses); ``sigmas`` (K,), default COCO's (for COCO's 17 joints). COCOeval counts the 20 best-scored results
    per image (``one_per_person``: the results are one per annotated person, the ground-truth-box protocol; a
    warning then says where an image has more); ``header``: as for ``ground_truth``. ImportError without
    pycocotools."""
    try:
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise ImportError("OKS AP needs pycocotools: pip install 'hgfast[coco]'") from exc
    if not results:
        raise ValueError("oks_ap: no results to evaluate")
    k = len(results[0]["keypoints"]) // 3
    if any(len(r["keypoints"]) != 3 * k for r in results):
        raise ValueError(f"oks_ap: every result needs the same number of keypoint values (3 × K = {3 * k})")
    values = np.array([[*r["keypoints"], r["score"]] for r in results], np.float64)
    if not np.isfinite(values).all():  # COCOeval counts a NaN OKS as a match
        i = int(np.flatnonzero(~np.isfinite(values).all(1))[0])
        raise ValueError(f"oks_ap: result {i} (image {results[i]['image_id']!r}) has keypoints or a score that are "
                         f"not finite")
    if sigmas is None and k != len(COCO_OKS_SIGMAS):
        raise ValueError(f"oks_ap: COCO's OKS sigmas are for 17 joints; give sigmas for {k}")
    sigmas = np.asarray(COCO_OKS_SIGMAS if sigmas is None else sigmas, np.float64)
    if sigmas.shape != (k,) or not (sigmas > 0).all():
        raise ValueError(f"oks_ap: sigmas must be {k} numbers > 0, got {sigmas.tolist()}")
    crowded = [i for i, c in collections.Counter(r["image_id"] for r in results).items() if c > MAX_PEOPLE]
    if crowded and one_per_person:  # (detections: extra boxes, as usual)
        warnings.warn(f"COCOeval counts at most {MAX_PEOPLE} people per image: in {len(crowded)} image(s) with more "
                      f"(e.g. {crowded[0]!r}) the lowest-scored ones count as misses", stacklevel=2)
    truth = ground_truth(annotations, category_id, header)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        evaluation = COCOeval(truth, truth.loadRes(results), "keypoints")
        evaluation.params.kpt_oks_sigmas = sigmas
        if image_ids is not None:
            evaluation.params.imgIds = list(dict.fromkeys(image_ids))
        evaluation.params.catIds = [category_id]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(v) for name, v in zip(OKS_METRICS, evaluation.stats)}
