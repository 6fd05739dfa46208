"""MPII Human Pose from the common ``annot/{train,valid}.h5`` files (Newell et al.'s, also used by princeton-vl).

Fields read: ``imgname`` (N, bytes), ``center`` (N, 2), ``scale`` (N,) (box height / 200), ``part``
(N, 16, 2) pixel coordinates, ``visible`` (N, 16) and ``normalize`` (N,) = 0.6 × head-box diagonal, the PCKh
normaliser. ``center`` and ``scale`` in these files are already adjusted (centre moved down by 15·s, scale
×1.25); they are used as they are. A joint is annotated unless its coordinates are (0, 0).

Coordinate base: the files hold MPII's MATLAB coordinates, 1-based (the top-left pixel is (1, 1)). hgfast's
convention is 0-based (pixel column j, row i of the loaded image is at (j, i)), so ``one_based=True`` (default)
subtracts 1 from ``part`` and ``center``, as HRNet and mmpose do; otherwise labels sit one pixel right of and below
the joint, mirrored to the left under flip augmentation, and ``Predictor`` inherits the bias. ``one_based=False``
takes the values as they are (princeton-vl's convention). PCKh is the same either way for a model trained and
evaluated under one convention (a common shift of prediction and ground truth).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .skeleton import NUM_JOINTS
from .topdown import TopDownDataset

FIELDS = {"imgname": (), "center": (2,), "scale": (), "part": (NUM_JOINTS, 2), "visible": (NUM_JOINTS,),
          "normalize": ()}


def read_annotations(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the MPII fields of an ``.h5`` file into numpy arrays; clear errors for a missing or bad file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MPII annotation file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in FIELDS if k not in f]
            if missing:
                raise ValueError(f"MPII annotation file {path} lacks field(s) {missing}; "
                                 f"expected {sorted(FIELDS)}")
            ann = {k: f[k][()] for k in FIELDS}
    except OSError as exc:
        raise ValueError(f"corrupt or unreadable MPII annotation file {path}: {exc}") from exc
    n = len(ann["imgname"])
    for k, shape in FIELDS.items():
        if ann[k].shape != (n, *shape):
            raise ValueError(f"MPII annotation file {path}: field {k!r} has shape {ann[k].shape}, "
                             f"expected {(n, *shape)}")
    ann["imgname"] = np.array([s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in ann["imgname"]])
    return ann


def write_annotations(path: str | os.PathLike, imgname, center, scale, part, visible, normalize) -> None:
    """Write an MPII-style ``.h5`` annotation file (atomically) that ``read_annotations`` / ``MPII`` read: per
    sample ``imgname`` (N,) relative to the image folder, ``center`` (N, 2), ``scale`` (N,) (box height / 200),
    ``part`` (N, 16, 2) with (0, 0) for an unannotated joint, ``visible`` (N, 16) and ``normalize`` (N,) (the PCK
    normaliser). Coordinates are written as given: MATLAB's 1-based ones for ``MPII(one_based=True)``, the
    default."""
    import h5py

    from ..checkpoint import atomic_path

    ann = {"imgname": np.array([str(s).encode("utf-8") for s in imgname]),
           **{k: np.asarray(v, np.float64) for k, v in (("center", center), ("scale", scale), ("part", part),
                                                        ("visible", visible), ("normalize", normalize))}}
    n = len(ann["imgname"])
    for k, shape in FIELDS.items():
        if ann[k].shape != (n, *shape):
            raise ValueError(f"write_annotations: {k} must have shape {(n, *shape)}, got {ann[k].shape}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for k, v in ann.items():
            f[k] = v


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; FileNotFoundError / ValueError name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"corrupt or unsupported image file: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class MPII(TopDownDataset):
    """Top-down MPII samples from ``annotations`` (an ``.h5`` path) and ``image_dir`` (the ``images/`` folder);
    ``one_based``: the file's coordinates are MATLAB's 1-based ones (module docstring)."""

    def __init__(self, annotations: str | os.PathLike, image_dir: str | os.PathLike, input_size: int = 256,
                 augment_preset: str = "none", seed: int = 0, one_based: bool = True):
        super().__init__(input_size, augment_preset, seed)
        self.ann = read_annotations(annotations)
        self.origin = 1.0 if one_based else 0.0
        if not str(image_dir):
            raise ValueError("MPII: image_dir is empty (give the images/ folder)")
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"MPII image folder not found: {self.image_dir}")

    def __len__(self) -> int:
        return len(self.ann["imgname"])

    def record(self, index: int) -> dict:
        a = {k: v[index] for k, v in self.ann.items()}
        annotated = (a["part"] != 0).any(-1)
        joints = np.where(annotated[:, None], a["part"] - self.origin, 0.0).astype(np.float32)
        return dict(image=read_image(self.image_dir / a["imgname"]), joints=joints,
                    visible=(a["visible"] > 0).astype(np.float32), annotated=annotated.astype(np.float32),
                    center=(a["center"] - self.origin).astype(np.float32), scale=float(a["scale"]),
                    normalize=float(a["normalize"]))
