"""PCK / PCKh: the fraction of joints predicted within ``threshold × normaliser`` of the ground truth.

MPII (Tompson et al. validation convention): the normaliser is the h5 ``normalize`` field, 0.6 × head-box diagonal;
a joint counts if it is annotated; the test is strict (``d / n < t``, as bearpaw and mmpose 1.x; MPII's Matlab
``evalMPII.m``, HRNet and mmpose 0.x use ``<=``, see ``inclusive``); the mean is over 14 joints (pelvis and thorax
excluded), reported both *weighted* (pooled over joints: correct / annotated, as HRNet and mmpose) and *unweighted*
(the mean of the 14 per-joint values, as bearpaw's ``eval_PCKh.py``), plus ``mean_all``: pooled over every joint
(princeton-vl's ``mpii_eval``, whose 16-joint figures are not comparable with the 14-joint means). Thresholds are
exact (PCKh@0.1 is 0.10, not HRNet's 0.11). A group (e.g. "elbow") is the unweighted mean of its two joints' values.
These are the PyTorch peers' conventions, not a re-implementation of the MPII benchmark's own Matlab evaluation (its
test-set numbers come from the benchmark's server): ``evalMPII.m``'s "Total" and AUC over the same 14 joints are
``mean_weighted`` and ``pck_auc`` with ``inclusive``, but its "Head" column is the mean of the upper neck and head
top (both in ``per_joint``), not the head top alone.

Synthetic figures use the same code with the figure's standing height as the normaliser and all 16 joints;
COCO-format data the box's longer side, all joints, and the groups of its skeleton (``left_knee`` + ``right_knee``
→ "knee").
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..data.skeleton import MPII_SKELETON, PCKH_JOINTS, Skeleton

ALL_JOINTS = tuple(range(MPII_SKELETON.num_joints))


def _is_threshold(value) -> bool:
    """A PCK threshold: a finite real number > 0 (a fraction of the normaliser)."""
    return isinstance(value, numbers.Real) and 0 < value < math.inf


def pck_correct(pred, gt, normalize, threshold: float, inclusive: bool = False) -> np.ndarray:
    """(N, K) bool: ``‖pred − gt‖ / normalize < threshold`` (``<=`` if inclusive); pred, gt (N, K, 2),
    normalize (N,) > 0."""
    if not _is_threshold(threshold):
        raise ValueError(f"threshold must be a finite number > 0 (a fraction of the normaliser), got {threshold!r}")
    d = normalised_distances(pred, gt, normalize)
    return d <= threshold if inclusive else d < threshold


def normalised_distances(pred, gt, normalize) -> np.ndarray:
    """(N, K): ``‖pred − gt‖ / normalize`` (NaN or infinite predictions: NaN or inf, never within a threshold);
    pred, gt (N, K, 2), normalize (N,) > 0."""
    pred, gt, normalize = (np.asarray(a, np.float64) for a in (pred, gt, normalize))
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be (N, K, 2), got {pred.shape} and {gt.shape}")
    if normalize.shape != pred.shape[:1]:
        raise ValueError(f"normalize must have shape ({pred.shape[0]},), got {normalize.shape}")
    if not (normalize > 0).all():
        raise ValueError("normalize must be > 0 for every sample")
    with np.errstate(invalid="ignore"):  # inf - inf
        return np.linalg.norm(pred - gt, axis=-1) / normalize[:, None]


def pck_auc(pred, gt, mask, normalize, mean_joints, inclusive: bool = False, upper: float = 0.5,
            step: float = 0.01) -> float | None:
    """The area under the PCK curve of thresholds 0, ``step``, ..., ``upper``, the thresholds scaled to [0, 1]
    (trapezoids; the kind of figure MPII's Matlab scripts print as "AUC", over PCKh 0 to 0.5): in [0, 1], the
    curve being the pooled PCK over ``mean_joints`` (correct / annotated, ``mask`` (N, K)); None where none is
    annotated."""
    d = normalised_distances(pred, gt, normalize)[:, list(mean_joints)]
    mask = np.asarray(mask)[:, list(mean_joints)] > 0
    if not mask.any():
        return None
    thresholds = np.linspace(0.0, upper, int(round(upper / step)) + 1)
    curve = np.array([((d <= t if inclusive else d < t) & mask).sum() for t in thresholds]) / mask.sum()
    return float(((curve[1:] + curve[:-1]) / 2 * np.diff(thresholds / upper)).sum())


def pck_table(pred, gt, mask, normalize, thresholds=(0.5, 0.1), mean_joints=None, inclusive: bool = False,
              skeleton: Skeleton | None = None) -> dict:
    """PCK per joint, per group and mean for each threshold.

    pred, gt (N, K, 2) image pixels; mask (N, K) annotated joints; normalize (N,); ``skeleton``: joint names and
    groups (default ``Skeleton.for_joints(K)``: MPII's for 16 joints); ``mean_joints``: default the 14 PCKh joints
    for MPII's skeleton, all joints otherwise. Returns a JSON-ready dict: ``count`` per joint, and under
    ``pck["<t>"]``: ``per_joint``, ``per_group``, ``mean_weighted`` and ``mean_unweighted`` over ``mean_joints``
    (joints with no annotation are left out of the means) and ``mean_all``: correct / annotated over all joints.
    """
    thresholds = tuple(thresholds)
    if not thresholds or not all(map(_is_threshold, thresholds)):
        raise ValueError(f"thresholds must be one or more finite numbers > 0, got {thresholds!r}")
    mask = np.asarray(mask) > 0
    if mask.ndim != 2 or mask.shape != np.shape(pred)[:2]:
        raise ValueError(f"mask must be (N, K) like pred (N, K, 2) {np.shape(pred)}, got {mask.shape}")
    k = mask.shape[1]
    skeleton = skeleton or Skeleton.for_joints(k)
    if skeleton.num_joints != k:
        raise ValueError(f"skeleton has {skeleton.num_joints} joints, the predictions {k}")
    if mean_joints is None:
        mean_joints = PCKH_JOINTS if skeleton.names == MPII_SKELETON.names else tuple(range(k))
    names, groups = skeleton.names, skeleton.groups
    count = mask.sum(0)
    result = {"count": {names[j]: int(count[j]) for j in range(k)},
              "mean_joints": [names[j] for j in mean_joints], "inclusive": inclusive, "pck": {}}
    used = [j for j in mean_joints if count[j] > 0]
    for t in thresholds:
        correct = (pck_correct(pred, gt, normalize, t, inclusive) & mask).sum(0)
        per_joint = np.where(count > 0, correct / np.maximum(count, 1), np.nan)
        result["pck"][f"{t:g}"] = {
            "per_joint": {names[j]: _num(per_joint[j]) for j in range(k)},
            "per_group": {g: _num(np.nanmean(per_joint[list(js)]) if count[list(js)].any() else np.nan)
                          for g, js in groups.items()},
            "mean_weighted": _num(correct[used].sum() / count[used].sum() if used else np.nan),
            "mean_unweighted": _num(per_joint[used].mean() if used else np.nan),
            "mean_all": _num(correct.sum() / count.sum() if count.any() else np.nan),
        }
    return result


def _num(x) -> float | None:
    return None if np.isnan(x) else float(x)


def format_table(result: dict) -> str:
    """A text table: one row per threshold, groups as columns, then both means (and the mean over all joints where
    it differs: MPII's 14-joint means) and the samples left out; then the AUC and OKS AP lines, if any (detected
    people: that line only)."""
    text = _pck_rows(result["pck"]) if "pck" in result else ""
    if result.get("unscored"):
        text += (f"\n(left out: {result['unscored']} sample(s) without ground truth: no annotated joint or no "
                 f"normaliser)" if text else f"PCK: none of the {result['unscored']} samples has ground truth (an "
                 f"annotated joint and a normaliser)")
    if result.get("auc") is not None:
        text += f"\nAUC (PCK 0 to {result['auc_upper']:g}, Mean(w) joints) {100 * result['auc']:.2f}"
    oks = result.get("oks") or {}
    if "AP" in oks:
        text += "\nOKS " + "  ".join(f"{m} {100 * oks[m]:.2f}" if oks[m] >= 0 else f"{m} -"
                                      for m in ("AP", "AP50", "AP75", "APm", "APl", "AR"))
    elif "skipped" in oks:
        text += f"\nOKS AP skipped: {oks['skipped']}"
    return text.lstrip("\n")


def _pck_rows(pck: dict) -> str:
    groups = list(next(iter(pck.values()))["per_group"]) if pck else []
    labels = [g.capitalize()[:5] for g in groups]
    if len(set(labels)) < len(labels):  # "front_paw", "front_knee": the full names
        labels = [g.capitalize() for g in groups]
    subset = any(r.get("mean_all") != r["mean_weighted"] for r in pck.values())  # MPII: 14 of 16 joints
    head = ["PCK@"] + labels + ["Mean(w)", "Mean(u)"] + (["All(w)"] if subset else [])
    rows = [head]
    for t, r in pck.items():
        vals = [r["per_group"][g] for g in groups] + [r["mean_weighted"], r["mean_unweighted"]] + \
            ([r.get("mean_all")] if subset else [])
        rows.append([t] + ["-" if v is None else f"{100 * v:.2f}" for v in vals])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)
