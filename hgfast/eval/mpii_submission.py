"""MPII's test-set submission file (``pred_keypoints_mpii.mat``) from predictions of the test split
(``hgfast mpii-submission``).

MPII scores test-set predictions on its server from a MATLAB file whose variable ``pred`` is the release's
``annolist`` of the test images (``img_train`` 0, in the release's order) with each predicted person's
``annorect(p).annopoints.point`` filled in: 16 points of ``x``, ``y`` and ``id`` (MPII's 0-based joint number),
in the image's (MATLAB's 1-based) pixels, as eval-mpii-pose's ``prepareTestResults.m`` writes it. The predictions
are those ``hgfast eval --results`` wrote for ``annot/test.h5`` (its rows, whose ``index`` / ``person`` name the
people).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.mpii_release import SAME_PERSON_PIXELS, image_name, load_release, matlab_items, release_person
from ..data.skeleton import JOINT_NAMES
from .mpii_results import matched_predictions

EMPTY = np.zeros((0, 0))
THORAX = JOINT_NAMES.index("thorax")
MIN_CORRELATION = 0.5  # thorax predictions vs the people's positions: below it, rows are likely out of order


def _points(joints: np.ndarray) -> np.ndarray:
    """A person's ``annopoints``: a 1 × 1 struct whose ``point`` is the 1 × K struct array of x, y, id."""
    point = np.empty((1, len(joints)), dtype=[("x", object), ("y", object), ("id", object)])
    for j, (x, y) in enumerate(joints):
        point[0, j] = (float(x), float(y), float(j))
    annopoints = np.empty((1, 1), dtype=[("point", object)])
    annopoints[0, 0]["point"] = point
    return annopoints


def _with_points(rects: np.ndarray, people: dict[int, np.ndarray]) -> np.ndarray:
    """An image's ``annorect`` struct array (1 × n or n × 1) with ``annopoints`` (empty for the people not in
    ``people``)."""
    names = [n for n in rects.dtype.names if n != "annopoints"]
    out = np.empty(rects.shape, dtype=[(n, object) for n in names] + [("annopoints", object)])
    for n in names:
        out[n] = rects[n]
    for p, index in enumerate(np.ndindex(rects.shape)):
        out[index]["annopoints"] = _points(people[p]) if p in people else EMPTY
    return out


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two (N,) arrays; NaN where either does not vary."""
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else float("nan")


def _numbers(annotations: Path, n: int) -> np.ndarray:
    """(n, 2) ``index`` / ``person`` of an annotation file's samples."""
    import h5py

    with h5py.File(annotations, "r") as f:
        if not all(isinstance(f.get(k), h5py.Dataset) and f[k].shape == (n,) for k in ("index", "person")):
            raise ValueError(f"{annotations} has no 'index' / 'person' of its {n} samples (MPII's image and person "
                             f"numbers, which the submission needs: the test.h5 of pose-hg-train or convert-mpii)")
        numbers = np.stack([f["index"][()], f["person"][()]], 1)
    if numbers.dtype.kind not in "iuf" or not (numbers == np.round(numbers)).all() or (numbers < 0).any():
        raise ValueError(f"{annotations}: 'index' / 'person' must be whole numbers >= 0")
    return numbers.astype(np.int64)


def write_mpii_submission(predictions: str | os.PathLike, annotations: str | os.PathLike,
                          release: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write MPII's submission file ``out`` (module docstring; atomically, MATLAB v5 by scipy) from
    ``predictions`` (``hgfast eval --results``' file, or any with ``preds`` (N, 16, 2) in ``annotations``' row
    order, checked as ``hgfast score`` checks it), ``annotations`` (the test split's h5 file, with ``index`` /
    ``person``) and MPII's ``release`` file. Every row must be a different person of a test image, whose image name
    and centre x the release confirms (numbers of another release, or 1-based, are refused), with finite
    coordinates; ``out`` must be none of the inputs. Returns ``{"people", "images", "correlation"}``: the x and y
    correlations of the thorax predictions with the people's positions (below ``MIN_CORRELATION``: rows likely in
    another order)."""
    from ..checkpoint import atomic_path

    if Path(out).resolve() in {Path(p).resolve() for p in (predictions, annotations, release)}:
        raise ValueError(f"the submission file {out} would replace an input: write it elsewhere")
    preds, ann, skeleton = matched_predictions(predictions, annotations)
    if skeleton.names != JOINT_NAMES:
        raise ValueError(f"{annotations} has joints {list(skeleton.names)}: a submission needs MPII's 16")
    numbers = _numbers(Path(annotations), len(preds))
    bad = np.flatnonzero(~np.isfinite(preds).all((1, 2)))
    if len(bad):
        raise ValueError(f"predictions file {predictions}: row {bad[0]} has non-finite coordinates ({len(bad)} rows)")
    annolist, flags, _ = load_release(release)  # (scipy: checked there)
    from scipy.io import savemat

    people: dict[int, dict[int, np.ndarray]] = {}
    centres = []
    for row, (i, p) in enumerate(numbers.tolist()):
        rects = matlab_items(annolist["annorect"][0, i]) if i < annolist.size else []
        if i >= annolist.size or flags[i] or p >= len(rects):
            what = "not an image of" if i >= annolist.size else "a training image of" if flags[i] else \
                f"an image of {len(rects)} people in"
            raise ValueError(f"{annotations}, row {row}: index {i}, person {p} is {what} {release} (the test split's "
                             f"h5 file of this release is needed)")
        if p in people.setdefault(i, {}):
            raise ValueError(f"{annotations}, row {row}: index {i}, person {p} again")
        name, x = image_name(annolist[0, i]), ann["center"][row][0]
        if name != ann["imgname"][row]:
            raise ValueError(f"{annotations}, row {row}: index {i} is {name} in {release}, {ann['imgname'][row]} in "
                             f"{annotations} (MPII's 0-based numbers of this release are needed)")
        person = release_person(rects[p], f"{release}: image {i} ({name}), person {p} (0-based)", False)
        if person is None or abs(person["center"][0] - x) > SAME_PERSON_PIXELS:
            at = "has no position" if person is None else f"is at x {person['center'][0]:g}"
            raise ValueError(f"{annotations}, row {row}: person {p} of {name} {at} in {release}, at x {x:g} in "
                             f"{annotations} (MPII's 0-based numbers of this release are needed)")
        people[i][p] = preds[row]
        centres.append(ann["center"][row])
    out_list = annolist.copy()
    for i, predicted in people.items():
        out_list["annorect"][0, i] = _with_points(annolist["annorect"][0, i], predicted)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        savemat(f, {"pred": out_list[:, flags == 0]}, do_compression=True)
    thorax, centres = preds[:, THORAX], np.array(centres)
    return {"people": len(preds), "images": len(people),
            "correlation": [_correlation(thorax[:, a], centres[:, a]) for a in (0, 1)]}
