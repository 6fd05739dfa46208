"""Drawing skeletons on images (OpenCV) and saving picture grids."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .checkpoint import atomic_path
from .data.crop import MAX_PIXEL
from .data.skeleton import Skeleton

SIDE_COLOURS = {"r": (255, 80, 40), "l": (40, 120, 255), "c": (60, 220, 60)}  # RGB: right red, left blue


def draw_skeleton(image: np.ndarray, keypoints, scores=None, threshold: float = 0.0, colours=SIDE_COLOURS,
                  radius: int | None = None, limbs=None) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 RGB with limbs and joints of ``keypoints`` (K, 2) pixels drawn;
    joints with ``scores <= threshold`` (if given), not finite or beyond ±``MAX_PIXEL``, and the limbs touching them
    are skipped. ``limbs``: (a, b, side) triples, side a key of ``colours``; default MPII's for 16 joints, none
    (joints only) for other skeletons (``Skeleton.for_joints``)."""
    out = np.ascontiguousarray(image).copy()
    kp = np.asarray(keypoints, np.float64)
    ok = (np.abs(kp) <= MAX_PIXEL).all(1)  # NaN, or so far off the picture that OpenCV's integers overflow: not drawn
    if scores is not None:
        ok &= np.asarray(scores) > threshold
    r = radius or max(1, round(max(out.shape[:2]) / 150))
    pt = lambda k: tuple(int(round(v * 16)) for v in kp[k])  # noqa: E731  (4 fractional bits)
    if limbs is None:
        limbs = Skeleton.for_joints(len(kp)).limbs
    limbs = [(a, b, side) for a, b, side in limbs if a < len(kp) and b < len(kp) and ok[a] and ok[b]]
    for a, b, _ in limbs:  # a dark outline keeps the skeleton visible on any background
        cv2.line(out, pt(a), pt(b), (0, 0, 0), r + 2, cv2.LINE_AA, shift=4)
    for a, b, side in limbs:
        cv2.line(out, pt(a), pt(b), colours[side], r, cv2.LINE_AA, shift=4)
    for k in np.flatnonzero(ok):
        cv2.circle(out, pt(k), r + 1, (0, 0, 0), -1, cv2.LINE_AA, shift=4)
        cv2.circle(out, pt(k), r, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    return out


def prediction_grid(images: list[np.ndarray], keypoints, scores=None, threshold: float = 0.0, columns: int = 4,
                    tile: int = 256, limbs=None) -> np.ndarray:
    """One picture of RGB ``images``, each resized to fit a ``tile``-pixel square (aspect kept) with its
    ``keypoints[i]`` (K, 2) (pixels of the original image) drawn on it (``limbs`` as ``draw_skeleton``'s)."""
    if not len(images):
        raise ValueError("prediction_grid needs at least one image")
    tiles = []
    for i, im in enumerate(images):
        f = tile / max(im.shape[:2])
        small = cv2.resize(im, (max(1, round(im.shape[1] * f)), max(1, round(im.shape[0] * f))),
                           interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        small = draw_skeleton(small, (np.asarray(keypoints[i]) + 0.5) * f - 0.5,
                              None if scores is None else scores[i], threshold, limbs=limbs)
        canvas = np.zeros((tile, tile, 3), np.uint8)
        canvas[:small.shape[0], :small.shape[1]] = small
        tiles.append(canvas)
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    return np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])


def save_predictions_picture(dataset, preds: dict, path: str | os.PathLike, n: int = 16) -> None:
    """Save the first ``n`` images of ``preds`` (``predict_dataset`` arrays) with their predictions, as a grid
    (limbs of the dataset's ``skeleton``)."""
    n = min(n, len(preds["pred"]))
    images = [dataset.record(int(i))["image"] for i in preds["index"][:n]]
    skeleton = getattr(dataset, "skeleton", None)
    save_image(prediction_grid(images, preds["pred"][:n], limbs=skeleton and skeleton.limbs), path)


def save_image(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write an RGB image (format from the suffix: .jpg, .png, ...) atomically."""
    path = Path(path)
    try:
        ok, data = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot encode an image as {path.suffix!r} for {path}")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data.tobytes())
