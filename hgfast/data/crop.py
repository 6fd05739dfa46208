"""Top-down person crops: one ``cv2.warpAffine`` per sample, using the same matrix as ``hgfast.ops``.

Coordinates are (x, y) pixels with pixel centres at integers, in the image and in the crop alike; a crop of
``size`` (H, W), or S for S × S, covers the box of height ``200 · scale`` and the crop's aspect (width
``200 · scale · W / H``) around ``center``, rotated by ``rotation`` degrees (``hgfast.ops.crop_matrix``).
Keypoints map with the same matrix, so crop and keypoints always agree.
"""
from __future__ import annotations

import math
import numbers

import cv2
import numpy as np
import torch

from ..ops import crop_matrix, flip_keypoints


def crop_size(value, name: str = "input_size", multiple: int = 1) -> tuple[int, int]:
    """A crop size given as S (S × S) or (height, width) → ``(H, W)``; ValueError naming ``name`` unless both are
    positive ints up to ``MAX_CROP_SIDE`` and multiples of ``multiple`` (the model's: 64 for depth 4)."""
    hw = (value, value) if isinstance(value, numbers.Integral) else value
    if isinstance(hw, (list, tuple)) and len(hw) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 < v <= MAX_CROP_SIDE and
            v % multiple == 0 for v in hw):
        return int(hw[0]), int(hw[1])
    what = f"positive multiples of {multiple}" if multiple > 1 else "positive ints"
    raise ValueError(f"{name} must be S or (height, width), {what} up to {MAX_CROP_SIDE}, got {value!r}")


def crop_affine(center, scale: float, rotation: float, size) -> np.ndarray:
    """The (2, 3) float64 matrix from image to crop pixels (``hgfast.ops.crop_matrix`` for one sample)."""
    c = torch.as_tensor(np.asarray(center, np.float64).reshape(1, 2))
    return crop_matrix(c, float(scale), float(rotation), crop_size(size, "crop size"))[0].numpy()


def crop(image: np.ndarray, joints: np.ndarray, center, scale: float, rotation: float = 0.0, size=256,
         flip: bool = False, flip_permutation=None) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``image`` (H, W, C) uint8 around a person and map ``joints`` (K, 2) into the crop of ``size``
    (S or (height, width)).

    With ``flip`` the crop is mirrored and the joints mirrored (x ↦ width − 1 − x) and re-ordered by
    ``flip_permutation`` (default: MPII). Returns ``(crop (height, width, C), joints (K, 2) float32)``.
    """
    height, width = crop_size(size, "crop size")
    if not scale > 0:
        raise ValueError(f"crop scale must be > 0 (box height / 200), got {scale!r}")
    pts = np.asarray(joints, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"crop: joints must be (K, 2) (x, y) pixels, got shape {pts.shape}")
    m = crop_affine(center, scale, rotation, (height, width))
    out = cv2.warpAffine(image, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    pts = pts @ m[:, :2].T + m[:, 2]
    if flip:
        out = cv2.flip(out, 1)
        kw = {} if flip_permutation is None else {"permutation": flip_permutation}
        pts = flip_keypoints(torch.from_numpy(pts), width, **kw).numpy()
    return np.ascontiguousarray(out), pts.astype(np.float32)


MAX_PIXEL = 1e6  # no image is a million pixels across: coordinates beyond it are corrupt, not a person
MAX_CROP_SIDE = 4096  # pixels: hourglass inputs are 256-512; a larger crop is a typo (and gigabytes per image)
MIN_BOX_SIDE = 1.0  # pixels: a box under a pixel has nothing to crop (and 0..1 image fractions are not pixels)
MAX_BOX_MARGIN = 100.0  # crop / box (1.25 usual): beyond it or below its inverse a typo, whose crop scale could
                        # overflow (1e300) or underflow float32


def checked_box(box) -> tuple[float, float, float, float]:
    """``box`` as four floats ``(x, y, w, h)`` (pixels) within ±``MAX_PIXEL`` with w, h ≥ ``MIN_BOX_SIDE``; a
    ValueError naming the box otherwise."""
    try:
        values = tuple(float(v) for v in box) if not isinstance(box, (str, bytes)) else None
    except (TypeError, ValueError):
        values = None
    if values is None or len(values) != 4 or not all(abs(v) <= MAX_PIXEL for v in values) or \
            not (values[2] >= MIN_BOX_SIDE and values[3] >= MIN_BOX_SIDE):
        shown = tuple(box) if isinstance(box, (list, tuple, np.ndarray)) else box
        raise ValueError(f"box must be 4 finite numbers (x, y, w, h) in pixels within ±{MAX_PIXEL:g}, w and h at "
                         f"least {MIN_BOX_SIDE:g}, got {shown!r}")
    return values


def checked_margin(margin, name: str = "margin") -> float:
    """``margin`` (crop / box) as a float from ``1 / MAX_BOX_MARGIN`` to ``MAX_BOX_MARGIN``; a ValueError naming
    ``name`` otherwise."""
    if not (isinstance(margin, numbers.Real) and 1 / MAX_BOX_MARGIN <= margin <= MAX_BOX_MARGIN):
        raise ValueError(f"{name} must be a number from {1 / MAX_BOX_MARGIN:g} to {MAX_BOX_MARGIN:g} (the crop / "
                         f"the box), got {margin!r}")
    return float(margin)


def box_to_center_scale(box, margin: float = 1.25, aspect: float = 1.0) -> tuple[np.ndarray, float]:
    """Person box ``(x, y, w, h)`` in pixels → ``(center (2,), scale)`` for a crop of ``aspect`` = width / height:
    the box widened or heightened to that aspect, times ``margin``, so ``scale = margin · max(h, w / aspect) / 200``
    (square crops: ``margin · max(w, h) / 200``; MPII: box height / 200 with 1.25 margin).

    The box is in edge coordinates (the whole image is ``(0, 0, W, H)``, as COCO boxes); with pixel centres at
    integers its centre is ``(x + w/2 − 0.5, y + h/2 − 0.5)``, e.g. ``((W − 1)/2, (H − 1)/2)`` for the image."""
    x, y, w, h = checked_box(box)
    margin = checked_margin(margin)
    if not 0 < aspect < math.inf:
        raise ValueError(f"aspect (the crop's width / height) must be finite and > 0, got {aspect!r}")
    return np.array([x + w / 2 - 0.5, y + h / 2 - 0.5]), margin * max(h, w / aspect) / 200.0


def box_overlaps(box, size) -> bool:
    """Whether the box ``(x, y, w, h)`` (edge coordinates) covers any of an image of ``size`` (W, H)."""
    x, y, w, h = checked_box(box)
    return x < size[0] and y < size[1] and x + w > 0 and y + h > 0
