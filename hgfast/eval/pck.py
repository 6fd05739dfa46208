"""PCK / PCKh: the fraction of joints predicted within ``threshold × normaliser`` of the ground truth.

MPII (Tompson et al. validation convention): the normaliser is the h5 ``normalize`` field, 0.6 × head-box
diagonal; a joint counts if it is annotated; the test is strict (``d / n < t``, as bearpaw and mmpose; HRNet
uses ``<=``, see ``inclusive``); the mean is over 14 joints (pelvis and thorax excluded), reported both
*weighted* (pooled over joints: correct / annotated, as HRNet and mmpose) and *unweighted* (the mean of the 14
per-joint values, as bearpaw's ``eval_PCKh.py``). Thresholds are exact (PCKh@0.1 is 0.10, not HRNet's 0.11).
A group (e.g. "elbow") is the unweighted mean of its two joints' values.

Synthetic figures use the same code with the figure's standing height as the normaliser and all 16 joints.
"""
from __future__ import annotations

import numpy as np

from ..data.skeleton import JOINT_NAMES, PCKH_GROUPS, PCKH_JOINTS

ALL_JOINTS = tuple(range(len(JOINT_NAMES)))


def pck_correct(pred, gt, normalize, threshold: float, inclusive: bool = False) -> np.ndarray:
    """(N, K) bool: ``‖pred − gt‖ / normalize < threshold`` (``<=`` if inclusive); pred, gt (N, K, 2),
    normalize (N,) > 0."""
    pred, gt, normalize = (np.asarray(a, np.float64) for a in (pred, gt, normalize))
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be (N, K, 2), got {pred.shape} and {gt.shape}")
    if normalize.shape != pred.shape[:1]:
        raise ValueError(f"normalize must have shape ({pred.shape[0]},), got {normalize.shape}")
    if not (normalize > 0).all():
        raise ValueError("normalize must be > 0 for every sample")
    d = np.linalg.norm(pred - gt, axis=-1) / normalize[:, None]
    return d <= threshold if inclusive else d < threshold


def pck_table(pred, gt, mask, normalize, thresholds=(0.5, 0.1), mean_joints=PCKH_JOINTS,
              inclusive: bool = False) -> dict:
    """PCK per joint, per group and mean for each threshold.

    pred, gt (N, 16, 2) image pixels; mask (N, 16) annotated joints; normalize (N,). Returns a JSON-ready
    dict: ``count`` per joint, and under ``pck["<t>"]``: ``per_joint``, ``per_group``, ``mean_weighted`` and
    ``mean_unweighted`` over ``mean_joints`` (joints with no annotation are left out of the means).
    """
    mask = np.asarray(mask) > 0
    count = mask.sum(0)
    result = {"count": {JOINT_NAMES[k]: int(count[k]) for k in range(len(JOINT_NAMES))},
              "mean_joints": [JOINT_NAMES[k] for k in mean_joints], "inclusive": inclusive, "pck": {}}
    used = [k for k in mean_joints if count[k] > 0]
    for t in thresholds:
        correct = (pck_correct(pred, gt, normalize, t, inclusive) & mask).sum(0)
        per_joint = np.where(count > 0, correct / np.maximum(count, 1), np.nan)
        result["pck"][f"{t:g}"] = {
            "per_joint": {JOINT_NAMES[k]: _num(per_joint[k]) for k in range(len(JOINT_NAMES))},
            "per_group": {g: _num(np.nanmean(per_joint[list(js)]) if count[list(js)].any() else np.nan)
                          for g, js in PCKH_GROUPS.items()},
            "mean_weighted": _num(correct[used].sum() / count[used].sum() if used else np.nan),
            "mean_unweighted": _num(per_joint[used].mean() if used else np.nan),
        }
    return result


def _num(x) -> float | None:
    return None if np.isnan(x) else float(x)


def format_table(result: dict) -> str:
    """A text table: one row per threshold, groups as columns, then both means."""
    groups = list(PCKH_GROUPS)
    head = ["PCK@"] + [g.capitalize()[:5] for g in groups] + ["Mean(w)", "Mean(u)"]
    rows = [head]
    for t, r in result["pck"].items():
        vals = [r["per_group"][g] for g in groups] + [r["mean_weighted"], r["mean_unweighted"]]
        rows.append([t] + ["-" if v is None else f"{100 * v:.2f}" for v in vals])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)
