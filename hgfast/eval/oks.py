"""COCO keypoint AP (object keypoint similarity) of top-down predictions, by pycocotools' ``COCOeval``.

The official evaluation code computes the numbers (``pip install 'hgfast[coco]'``). Predictions are made in the
ground-truth person boxes (the "AP with GT boxes" of HRNet's and mmpose's tables), and only the images that have
a prediction are evaluated. A person's score is the mean of its joint scores above 0.2, as HRNet computes it with
box score 1. OKS needs a per-joint sigma (the joint's annotation spread). COCO's 17 are the default for 17 joints.
Give your own for other skeletons.
"""
from __future__ import annotations

import contextlib
import io
import os

import numpy as np

COCO_OKS_SIGMAS = tuple(s / 10 for s in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87,
                                         .89, .89))
OKS_METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
SCORE_THRESHOLD = 0.2


def person_scores(scores) -> np.ndarray:
    """(N,) person scores from joint ``scores`` (N, K): the mean of the joint scores above 0.2 (0 if none)."""
    scores = np.asarray(scores, np.float64)
    above = scores > SCORE_THRESHOLD
    return np.where(above.any(1), (scores * above).sum(1) / np.maximum(above.sum(1), 1), 0.0)


def oks_ap(annotations: str | os.PathLike, image_ids, category_id, keypoints, scores, sigmas=None) -> dict:
    """``{"AP": ..., "AP50": ..., ...}`` (``OKS_METRICS``, COCOeval's ``stats``) of predictions ``keypoints``
    (N, K, 2) image pixels with joint ``scores`` (N, K) for people in images ``image_ids`` (N,) of the COCO file
    ``annotations``; ``sigmas`` (K,) default COCO's for K = 17. ImportError without pycocotools."""
    try:
        from pycocotools.coco import COCO
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
    person = person_scores(scores)
    results = [{"image_id": image_id, "category_id": category_id, "score": float(person[i]),
                "keypoints": np.concatenate([keypoints[i], scores[i][:, None]], 1).ravel().tolist()}
               for i, image_id in enumerate(image_ids)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        truth = COCO(str(annotations))
        evaluation = COCOeval(truth, truth.loadRes(results), "keypoints")
        evaluation.params.kpt_oks_sigmas = sigmas
        evaluation.params.imgIds = sorted(set(image_ids))
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(v) for name, v in zip(OKS_METRICS, evaluation.stats)}
