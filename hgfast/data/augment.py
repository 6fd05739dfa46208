"""Training augmentation presets, with the distributions of the projects they are named after.

Each preset draws, per sample: a scale factor (the crop box is multiplied by it), a rotation in degrees, a
horizontal flip, per-channel colour gains and a centre shift. ``s`` below is the annotated scale.

- ``newell`` (the paper's Lua trainer, ``pose.lua``): scale ``s · 2^clip(N(0,1)·0.25, ±0.5)``; rotation
  ``clip(N(0,30), ±60)`` with probability 0.4; flip p = 0.5; colour gains U(0.6, 1.4) per channel.
- ``bearpaw`` (bearpaw/pytorch-pose ``mpii.py``): scale ``s · clip(N(1,0.25), 0.75, 1.25)``; rotation
  ``clip(N(0,30), ±60)`` with probability 0.6; flip p = 0.5; colour gains U(0.8, 1.2) per channel.
- ``mmpose`` (mmpose 1.x's ``RandomFlip``, ``RandomHalfBody`` and ``RandomBBoxTransform`` with their defaults, the
  augmentation of its COCO configs; ``T`` a standard normal truncated to ±1): with probability 0.3 a half-body
  crop first (``half_body_box``: the upper body with odds 0.7, else the lower; ``Skeleton.lower_body`` splits the
  joints); scale ``s · (1 + 0.5·T)``; rotation ``80·T`` degrees with probability 0.6; centre shift ``0.16·T`` of
  the box's width and height with probability 0.3; flip p = 0.5; no colour change.
- ``none``: identity (evaluation).

``shift`` is the crop centre's offset in units of the (un-augmented) box's width and height: the record's
``box_size``, else the crop's own (``200·s`` high, of the crop's aspect).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentParams:
    scale: float = 1.0
    rotation: float = 0.0
    flip: bool = False
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shift: tuple[float, float] = (0.0, 0.0)
    half_body: bool = False   # crop the upper (``upper_body``) or lower body where ``half_body_box`` finds one
    upper_body: bool = True


def _newell(rng: np.random.Generator) -> AugmentParams:
    scale = 2.0 ** np.clip(rng.normal() * 0.25, -0.5, 0.5)
    rotation = np.clip(rng.normal(0, 30), -60, 60) if rng.random() < 0.4 else 0.0
    return AugmentParams(float(scale), float(rotation), bool(rng.random() < 0.5),
                         tuple(float(g) for g in rng.uniform(0.6, 1.4, 3)))


def _bearpaw(rng: np.random.Generator) -> AugmentParams:
    scale = np.clip(rng.normal(1, 0.25), 0.75, 1.25)
    rotation = np.clip(rng.normal(0, 30), -60, 60) if rng.random() < 0.6 else 0.0
    return AugmentParams(float(scale), float(rotation), bool(rng.random() < 0.5),
                         tuple(float(g) for g in rng.uniform(0.8, 1.2, 3)))


def _truncated_normal(rng: np.random.Generator, bound: float, size=None) -> np.ndarray:
    """Standard normal draws inside ±``bound`` (rejection: redraw those outside)."""
    x = np.asarray(rng.normal(size=size), np.float64)
    while (outside := np.abs(x) > bound).any():
        x[outside] = rng.normal(size=int(outside.sum()))
    return x


def _mmpose(rng: np.random.Generator) -> AugmentParams:
    half_body, upper_body = bool(rng.random() < 0.3), bool(rng.random() < 0.7)
    scale = 1 + 0.5 * float(_truncated_normal(rng, 1.0))
    rotation = 80 * float(_truncated_normal(rng, 1.0)) if rng.random() < 0.6 else 0.0
    shift = 0.16 * _truncated_normal(rng, 1.0, 2) if rng.random() < 0.3 else np.zeros(2)
    return AugmentParams(scale, rotation, bool(rng.random() < 0.5), shift=(float(shift[0]), float(shift[1])),
                         half_body=half_body, upper_body=upper_body)


def half_body_box(joints, labelled, lower, upper_body: bool, min_total: int = 9, min_upper: int = 2,
                  min_lower: int = 3, padding: float = 1.5) -> tuple[np.ndarray, np.ndarray] | None:
    """mmpose's half-body crop: ``(center (2,), box_size (2,))`` (width, height in pixels) around the labelled
    joints of one half: the upper (``upper_body``) or the lower; the other where one half has fewer labelled
    joints than its minimum; None where fewer than ``min_total`` joints are labelled, both halves are short or
    the joints coincide. ``joints`` (K, 2) pixels, ``labelled``, ``lower`` (K,) flags. The box: the joints' mean
    as centre, ``padding`` × their extent (the crop widens or heightens it to its aspect)."""
    labelled, lower = np.asarray(labelled, bool), np.asarray(lower, bool)
    upper, down = labelled & ~lower, labelled & lower
    upper_ok, lower_ok = upper.sum() >= min_upper, down.sum() >= min_lower
    if labelled.sum() < min_total or not (upper_ok or lower_ok):
        return None
    chosen = upper if not lower_ok else down if not upper_ok else upper if upper_body else down
    points = np.asarray(joints, np.float64)[chosen]
    size = padding * (points.max(0) - points.min(0))
    return (points.mean(0), size) if size.max() > 0 else None


PRESETS = {"newell": _newell, "bearpaw": _bearpaw, "mmpose": _mmpose, "none": lambda rng: AugmentParams()}


def sample(preset: str, rng: np.random.Generator) -> AugmentParams:
    """Draw augmentation parameters from ``preset`` (one of ``PRESETS``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset](rng)


def apply_colour(image: np.ndarray, gains) -> np.ndarray:
    """Multiply each channel of ``image`` (H, W, C) uint8 by ``gains`` and clip to [0, 255]."""
    if all(g == 1.0 for g in gains):
        return image
    return np.clip(image.astype(np.float32) * np.asarray(gains, np.float32), 0, 255).astype(np.uint8)
