"""Evaluate a model on a top-down dataset: predictions in image pixels, then a PCK / PCKh table."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.coco import COCOKeypoints
from ..data.coco_detections import COCODetections
from ..data.mpii import MPII, scorable
from ..data.skeleton import JOINT_NAMES, PCKH_JOINTS
from ..ops import MPII_FLIP_PERMUTATION
from ..predict import check_batch_size, check_refine, decoding_conventions, predict_crops
from .oks import check_nms_threshold, coco_results, default_sigmas, oks_ap, oks_nms, person_scores
from .pck import pck_auc, pck_table


def predict_dataset(model: nn.Module, dataset, batch_size: int = 32, workers: int = 0, flip: bool = False,
                    flip_shift: bool | None = None, channels_last: bool = False,
                    autocast_dtype: torch.dtype | None = None, input_norm: str | None = None,
                    half_pixel: bool | None = None, truncate: bool = False, refine: str = "quarter",
                    dark_kernel: int = 11) -> dict[str, np.ndarray]:
    """Run ``model`` (in eval mode, restored after) over ``dataset``; numpy arrays ``pred`` (N, K, 2) and
    ``scores`` (N, K), with the ground truth ``joints``, ``annotated``, ``visible``, ``normalize`` and ``index``.
    Flip testing uses the dataset's ``flip_permutation``; ``refine``, ``dark_kernel``: ``predict_crops``;
    ``half_pixel``, ``truncate``: decoding conventions of peer checkpoints (``hgfast.predict``); ``half_pixel``,
    ``flip_shift``, ``input_norm`` not given: those of the model's checkpoint layout (``decoding_conventions``).
    The dataset must not augment (predictions are mapped back through the un-augmented crop) and must not be
    empty; ``workers`` loader processes, at most one per batch (none for a single batch)."""
    check_refine(refine, dark_kernel)
    half_pixel, flip_shift, input_norm = decoding_conventions(model, half_pixel, flip_shift, input_norm)
    if getattr(dataset, "augment_preset", "none") != "none":
        raise ValueError(f"predict_dataset: dataset must not be augmented (augment_preset "
                         f"{dataset.augment_preset!r}): build it with augment_preset='none'")
    if len(dataset) == 0:
        raise ValueError("predict_dataset: dataset is empty")
    check_batch_size(batch_size, "predict_dataset: batch_size")
    if workers < 0:
        raise ValueError(f"predict_dataset: workers must be >= 0, got {workers}")
    permutation = getattr(dataset, "flip_permutation", MPII_FLIP_PERMUTATION)
    if flip and permutation is None:
        raise ValueError("predict_dataset: flip=True, but the dataset's skeleton has no flip permutation")
    skeleton = getattr(dataset, "skeleton", None)
    if skeleton is not None and getattr(model, "njoints", skeleton.num_joints) != skeleton.num_joints:
        raise ValueError(f"predict_dataset: the model predicts {model.njoints} joints, the dataset's skeleton has "
                         f"{skeleton.num_joints} ({', '.join(skeleton.names)}); a dataset of another skeleton sets "
                         f"its 'skeleton' (hgfast.data.Skeleton)")
    was_training = model.training
    model.eval()
    out: dict[str, list] = {k: [] for k in ("pred", "scores", "joints", "annotated", "visible", "normalize",
                                            "index")}
    batches = -(-len(dataset) // batch_size)
    # no more workers than batches, none for one batch: starting a worker costs more than it saves on a small set
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=min(workers, batches)
                        if batches > 1 else 0)
    try:
        for b in loader:
            kp, sc = predict_crops(model, b["image"], b["center"], b["scale"], b["rotation"], flip, flip_shift,
                                   channels_last, autocast_dtype, permutation, input_norm, half_pixel, truncate,
                                   refine, dark_kernel)
            for key, value in (("pred", kp), ("scores", sc)) + tuple((k, b[k]) for k in list(out)[2:]):
                out[key].append(value.numpy())
    finally:
        model.train(was_training)
    return {k: np.concatenate(v) for k, v in out.items()}


def evaluate(model: nn.Module, dataset, thresholds=(0.5, 0.1), nms_threshold: float = 0.9, inclusive: bool = False,
             **kwargs) -> tuple[dict, dict[str, np.ndarray]]:
    """``(table, predictions)``: ``pck_table`` over the dataset with its ``skeleton`` (MPII: PCKh, 14-joint
    Tompson mean; other data and skeletons: all joints), and the arrays of ``predict_dataset`` (``kwargs``).
    ``inclusive``: a joint within ``<=`` the threshold counts (MPII's Matlab evaluation's, HRNet's and mmpose
    0.x's test; default ``<``, bearpaw's and mmpose 1.x's).
    MPII's skeleton also gets ``auc`` (``pck_auc`` to ``auc_upper`` 0.5).
    Samples without ground truth (no annotated joint, or ``normalize`` 0) are left out of the table and counted in
    ``table["unscored"]`` (``scored_pck_table``); with none left the table has no ``pck`` (predictions only).
    COCO-format data also gets ``table["oks"]``: COCOeval's AP of ``coco_predictions`` (OKS-NMS at
    ``nms_threshold``; ``hgfast.eval.oks``), or ``{"skipped": why}``; detected people (``COCODetections``) get only
    that (no ground truth per sample) and ``table["detections"]``."""
    preds = predict_dataset(model, dataset, **kwargs)
    if isinstance(dataset, COCODetections):
        table = {"detections": {"file": str(dataset.detections), "min_score": dataset.min_score,
                                "used": len(dataset), "skipped": dataset.skipped, "nms_threshold": nms_threshold}}
    else:
        skeleton = getattr(dataset, "skeleton", None)
        mpii = isinstance(dataset, MPII) and skeleton.names == JOINT_NAMES  # whatever its flip pairs
        table = scored_pck_table(preds["pred"], preds["joints"], preds["annotated"], preds["normalize"], thresholds,
                                 skeleton=skeleton, inclusive=inclusive, auc_upper=0.5 if mpii else None,
                                 mean_joints=PCKH_JOINTS if mpii else tuple(range(preds["pred"].shape[1])))
    table["flip_test"] = bool(kwargs.get("flip", False))
    table["samples"] = int(len(preds["pred"]))
    if isinstance(dataset, (COCOKeypoints, COCODetections)):
        table["oks"] = _coco_ap(dataset, preds, nms_threshold)
    return table, preds


def scored_pck_table(pred, joints, annotated, normalize, thresholds, *, skeleton=None, mean_joints=None,
                     inclusive: bool = False, auc_upper: float | None = None) -> dict:
    """``pck_table`` (its arguments) of the samples with ground truth (``hgfast.data.mpii.scorable``): those without
    an annotated joint or whose ``normalize`` is 0 (MPII-style files: no head box; a test split) are left out and
    counted in ``unscored``; with none left, only that count. ``auc_upper``: also ``auc``, ``pck_auc`` of the
    curve from 0 to it over the table's mean joints (MPII: 0.5)."""
    scored = scorable(annotated, normalize)
    arrays = [np.asarray(a)[scored] for a in (pred, joints, annotated, normalize)]
    table = pck_table(*arrays, thresholds, mean_joints, inclusive, skeleton) if scored.any() else {}
    if table and auc_upper is not None:
        names = list(table["count"])
        means = [names.index(n) for n in table["mean_joints"]]
        table.update(auc=pck_auc(arrays[0], arrays[1], arrays[2], arrays[3], means, inclusive, auc_upper),
                     auc_upper=auc_upper)
    if not scored.all():
        table["unscored"] = int((~scored).sum())
    return table


def coco_predictions(dataset, preds: dict, nms_threshold: float = 0.9) -> list[dict]:
    """``predict_dataset``'s predictions on COCO-format data in COCO's keypoint results format (``coco_results``),
    one per person, as HRNet's and mmpose's evaluations make them in either kind of box: each person scored by the
    mean of its joint scores above 0.2 (times the box score for ``COCODetections``), then thinned by OKS-NMS per
    image at ``nms_threshold`` in (0, 1] (``oks_nms``, each person's scale its crop's area; 1 keeps all). NMS needs
    the skeleton's OKS sigmas: without them, detected people raise ValueError and ground-truth boxes are kept
    (nothing to compare them by)."""
    check_nms_threshold(nms_threshold)
    index = np.asarray(preds["index"], np.int64)
    image_ids, keypoints, scores, box_scores = dataset.image_ids(index), preds["pred"], preds["scores"], None
    detected = isinstance(dataset, COCODetections)
    if detected:
        box_scores = dataset.det["score"][index]
    sigmas = check_nms_sigmas(dataset, nms_threshold)
    if nms_threshold < 1 and sigmas is not None:
        w, h = (dataset.det if detected else dataset.ann)["box"][index, 2:].T
        crop_height = dataset.margin * np.maximum(h, w / dataset.aspect)
        crop_areas = crop_height ** 2 * dataset.aspect  # HRNet's 200² s_w s_h
        person = person_scores(scores) * (1.0 if box_scores is None else box_scores)
        keep = oks_nms(image_ids, keypoints, person, crop_areas, sigmas, nms_threshold)
        image_ids, keypoints, scores = [image_ids[i] for i in keep], keypoints[keep], scores[keep]
        box_scores = None if box_scores is None else box_scores[keep]
    return coco_results(image_ids, dataset.category_id, keypoints, scores, box_scores)


def check_nms_sigmas(dataset, nms_threshold: float):
    """The OKS sigmas of ``dataset``'s skeleton (None where unknown); ValueError where OKS-NMS of detected people
    needs them (``nms_threshold`` < 1), so that a long run is refused before it starts."""
    sigmas = default_sigmas(dataset.skeleton.names, dataset.oks_sigmas)
    if nms_threshold < 1 and isinstance(dataset, COCODetections) and sigmas is None:
        raise ValueError(f"OKS-NMS of detected people needs per-joint OKS sigmas for the skeleton "
                         f"{dataset.skeleton.names} (config key data.oks_sigmas), or nms_threshold 1 (none)")
    return sigmas


def _coco_ap(dataset, preds: dict, nms_threshold: float) -> dict:
    """COCOeval's AP of the predictions, or ``{"skipped": why}``: no ground truth (an image-info file), no
    pycocotools, no sigmas for this skeleton, or COCOeval failed (warned: a metric must not end a training run)."""
    why = dataset.no_ground_truth() if isinstance(dataset, COCODetections) else None
    if why:
        return {"skipped": why}
    sigmas = default_sigmas(dataset.skeleton.names, dataset.oks_sigmas)
    if sigmas is None:
        return {"skipped": "OKS AP needs per-joint sigmas for a skeleton other than COCO's 17 joints (config key "
                           "data.oks_sigmas)"}
    try:
        return oks_ap(dataset.annotations, dataset.category_id, coco_predictions(dataset, preds, nms_threshold),
                      sigmas, one_per_person=not isinstance(dataset, COCODetections))  # over every image
    except ImportError as exc:
        return {"skipped": str(exc)}
    except Exception as exc:  # pycocotools raises KeyError, TypeError, ... on files it dislikes
        warnings.warn(f"OKS AP skipped: COCOeval failed on {dataset.annotations}: {exc!r}", stacklevel=2)
        return {"skipped": f"COCOeval failed: {exc!r}"}
