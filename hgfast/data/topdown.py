"""The top-down dataset base: a person record → augmented crop, keypoints and meta, ready for a DataLoader.

Targets are *not* made here: workers return keypoints and the training step renders heatmaps on the device
(``hgfast.ops.gaussian_heatmaps`` / ``heatmap_mse_loss``).

Indexing: item ``key`` is sample ``key % len(ds)`` in epoch ``key // len(ds)``. The augmentation is drawn from
``numpy.random.default_rng([seed, epoch, index])``, so a sample depends on neither worker nor process, and a
resumed run sees exactly the same data (``hgfast.train.distributed.EpochSampler`` yields such keys).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.data import Dataset

from . import augment
from .crop import crop, crop_size
from .skeleton import MPII_SKELETON, Skeleton


class TopDownDataset(Dataset):
    """Subclasses implement ``__len__`` and ``record(index)`` returning a dict with ``image`` (H, W, 3) uint8
    RGB, ``joints`` (K, 2) image pixels, ``visible`` (K,), ``annotated`` (K,), ``center`` (2,), ``scale``
    (crop height / 200), ``normalize`` (the PCK normaliser in image pixels) and optionally ``box_size`` (2,), the
    person box's width and height with the margin (the augmentation's shift is relative to it; the crop is that
    box widened or heightened to the crop's aspect). ``input_size`` is ``(height, width)`` (given as S for S × S
    or as the pair). ``skeleton`` (MPII's unless a
    subclass sets another) names the joints; its ``flip_permutation`` (joint order after a horizontal flip) is the
    one used for keypoints and their flags alike."""

    skeleton: Skeleton = MPII_SKELETON

    @property
    def flip_permutation(self) -> tuple[int, ...] | None:
        """The skeleton's; assigning one replaces the skeleton's (same joints)."""
        return self.skeleton.flip_permutation

    @flip_permutation.setter
    def flip_permutation(self, permutation) -> None:
        self.skeleton = dataclasses.replace(self.skeleton, flip_permutation=permutation)

    def __init__(self, input_size=256, augment_preset: str = "none", seed: int = 0):
        if augment_preset not in augment.PRESETS:
            raise ValueError(f"unknown augmentation preset {augment_preset!r}; "
                             f"choose one of {sorted(augment.PRESETS)}")
        self.input_size, self.augment_preset, self.seed = crop_size(input_size), augment_preset, seed

    @property
    def aspect(self) -> float:
        """The crop's width / height."""
        return self.input_size[1] / self.input_size[0]

    def record(self, index: int) -> dict:
        raise NotImplementedError

    def __getitem__(self, key: int) -> dict:
        """Returns tensors: ``image`` (3, H, W) uint8 (``input_size``); ``keypoints`` (K, 2) float32 crop pixels;
        ``visible``, ``annotated`` (K,) in the order of ``keypoints``; meta ``center`` (2,) and ``scale`` (as
        augmented), ``rotation``, ``flipped`` (bool: the crop is mirrored and ``keypoints``, ``visible``,
        ``annotated`` are in ``flip_permutation`` order), ``normalize``, ``joints`` (K, 2) (image pixels,
        un-augmented, the record's order) and ``index``."""
        n = len(self)
        index, epoch = int(key) % n, int(key) // n
        rec = self.record(index)
        aug = augment.sample(self.augment_preset, np.random.default_rng([self.seed, epoch, index]))
        if aug.flip and self.flip_permutation is None:
            raise ValueError(f"{type(self).__name__}: augmentation {self.augment_preset!r} flips images, but the "
                             f"skeleton has no flip permutation (give flip pairs, or augment without flips)")
        center, base, box = np.asarray(rec["center"], np.float64), float(rec["scale"]), rec.get("box_size")
        box = 200 * base * np.array([self.aspect, 1.0]) if box is None else np.asarray(box, np.float64)
        lower = self.skeleton.lower_body if aug.half_body else ()
        half = augment.half_body_box(rec["joints"], np.asarray(rec["annotated"]) > 0, lower, aug.upper_body) \
            if any(lower) else None  # a skeleton without lower-body names has no halves
        if half is not None:  # the crop of the dataset's aspect around the half body
            (center, box), base = half, max(float(half[1][1]), float(half[1][0]) / self.aspect) / 200
        scale = base * aug.scale
        center = center + np.asarray(aug.shift) * box
        image, keypoints = crop(rec["image"], rec["joints"], center, scale, aug.rotation,
                                self.input_size, flip=aug.flip, flip_permutation=self.flip_permutation)
        image = augment.apply_colour(image, aug.colour)
        visible, annotated = (np.asarray(rec[k], np.float32) for k in ("visible", "annotated"))
        if aug.flip:  # the flags follow their joints, as crop re-ordered the keypoints
            perm = list(self.flip_permutation)
            visible, annotated = visible[perm], annotated[perm]
        return dict(image=torch.from_numpy(image).permute(2, 0, 1).contiguous(),
                    keypoints=torch.from_numpy(keypoints), visible=torch.from_numpy(visible),
                    annotated=torch.from_numpy(annotated),
                    center=torch.as_tensor(center, dtype=torch.float32),
                    scale=torch.tensor(scale, dtype=torch.float32),
                    rotation=torch.tensor(aug.rotation, dtype=torch.float32), flipped=torch.tensor(bool(aug.flip)),
                    normalize=torch.tensor(float(rec["normalize"]), dtype=torch.float32),
                    joints=torch.as_tensor(rec["joints"], dtype=torch.float32), index=torch.tensor(index))
