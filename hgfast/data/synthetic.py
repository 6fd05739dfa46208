"""Procedurally drawn human figures with the 16 MPII joints: a pose dataset that needs no files.

Each sample is a deterministic function of ``(seed, split, index)``: a textured, noisy background with distractor
shapes (sometimes a second, smaller figure), and one figure with randomised limb proportions, joint angles,
foreshortening, thickness, clothing colours, position, size and rotation. The figure faces the camera, so its
right side is on the image's left when upright (the MPII convention). Limbs are drawn back to front; a joint
covered by another part or by an occluder, or outside the image, gets ``visible = 0`` (it stays annotated).

Annotations follow the MPII ``.h5`` conventions: ``center`` and ``scale`` (person box height / 200, with the
1.25 margin and some jitter, like MPII's rough person boxes) and ``normalize``, here the figure's standing
height in pixels (PCK on synthetic data is normalised by the figure's size).
"""
from __future__ import annotations

import cv2
import numpy as np

from .skeleton import NUM_JOINTS
from .topdown import TopDownDataset

SPLITS = {"train": 0, "val": 1}

# Segment lengths as fractions of the standing height (head top to ankle is about 1).
_LENGTHS = dict(torso=0.31, neck=0.05, head=0.12, hip=0.07, shoulder=0.10,
                thigh=0.24, shin=0.23, upper_arm=0.16, forearm=0.14)
# Part ids in the occlusion map; 0 is background / distractors.
_PARTS = ("torso", "head", "r_thigh", "r_shin", "l_thigh", "l_shin", "r_upper_arm", "r_forearm",
          "l_upper_arm", "l_forearm")
_PID = {name: i + 1 for i, name in enumerate(_PARTS)}
# The parts a joint lies on: it is visible when the frontmost part at its pixel is one of them.
_OWNERS = {0: ("r_shin",), 1: ("r_thigh", "r_shin"), 2: ("r_thigh", "torso"), 3: ("l_thigh", "torso"),
           4: ("l_thigh", "l_shin"), 5: ("l_shin",), 6: ("torso", "r_thigh", "l_thigh"),
           7: ("torso", "head", "r_upper_arm", "l_upper_arm"), 8: ("head", "torso"), 9: ("head",),
           10: ("r_forearm",), 11: ("r_upper_arm", "r_forearm"), 12: ("r_upper_arm", "torso"),
           13: ("l_upper_arm", "torso"), 14: ("l_upper_arm", "l_forearm"), 15: ("l_forearm",)}
_OWNER_IDS = [np.array([_PID[p] for p in _OWNERS[j]]) for j in range(NUM_JOINTS)]


def _unit(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([np.cos(a), np.sin(a)])


def _pose(rng: np.random.Generator, height: float, centre: np.ndarray, rotation: float) -> np.ndarray:
    """Joint positions (16, 2) in pixels for a figure of standing ``height`` around ``centre``."""
    L = {k: v * height * rng.uniform(0.85, 1.15) for k, v in _LENGTHS.items()}
    for limb in ("thigh", "shin", "upper_arm", "forearm", "torso"):
        if rng.random() < 0.3:  # foreshortening: the segment points towards or away from the camera
            L[limb] *= rng.uniform(0.5, 1.0)
    down = 90.0 + rotation  # image y points down; angle 90 deg = straight down
    up = down + 180.0 + rng.normal(0, 15)
    j = np.zeros((NUM_JOINTS, 2))
    j[6] = 0.0
    j[7] = j[6] + L["torso"] * _unit(up)
    head_dir = up + rng.normal(0, 15)
    j[8] = j[7] + L["neck"] * _unit(head_dir)
    j[9] = j[8] + L["head"] * _unit(head_dir)
    across = _unit(up + 90)  # towards the figure's left (image right when upright)
    for side, hip, knee, ankle, sho, elb, wri in ((-1, 2, 1, 0, 12, 11, 10), (1, 3, 4, 5, 13, 14, 15)):
        j[hip] = j[6] + side * L["hip"] * across
        j[sho] = j[7] + side * L["shoulder"] * across - 0.03 * height * _unit(up)
        thigh = (up + 180 - side * (rng.normal(8, 12) if rng.random() < 0.5 else rng.uniform(-30, 100)))
        shin = thigh + side * rng.choice([-1, 1], p=[0.8, 0.2]) * abs(rng.normal(0, 35))
        j[knee] = j[hip] + L["thigh"] * _unit(thigh)
        j[ankle] = j[knee] + L["shin"] * _unit(shin)
        arm = up + 180 - side * rng.uniform(-35, 190)
        fore = arm + side * rng.uniform(-150, 150)
        j[elb] = j[sho] + L["upper_arm"] * _unit(arm)
        j[wri] = j[elb] + L["forearm"] * _unit(fore)
    return j - (j.max(0) + j.min(0)) / 2 + centre


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _draw_figure(img: np.ndarray, ids: np.ndarray | None, j: np.ndarray, height: float,
                 rng: np.random.Generator) -> None:
    """Draw a figure into ``img`` back to front; write part ids into ``ids`` (if given) for visibility."""
    shirt, trousers, skin = _colour(rng), _colour(rng), _colour(rng)
    sleeve = shirt if rng.random() < 0.5 else skin
    t = max(2, int(round(height * rng.uniform(0.045, 0.085))))
    p = lambda k: tuple(int(round(v)) for v in j[k] * 16)  # noqa: E731  (4 fractional bits for cv2)

    def limb(name, a, b, colour, thickness):
        cv2.line(img, p(a), p(b), colour, thickness, cv2.LINE_AA, shift=4)
        if ids is not None:
            cv2.line(ids, p(a), p(b), _PID[name], thickness, cv2.LINE_8, shift=4)

    def torso():
        quad = np.array([p(12), p(13), p(3), p(2)], np.int32)
        cv2.fillConvexPoly(img, quad, shirt, cv2.LINE_AA, shift=4)
        limb("torso", 6, 7, shirt, int(t * 1.6))
        if ids is not None:
            cv2.fillConvexPoly(ids, quad, _PID["torso"], cv2.LINE_8, shift=4)

    def head():
        limb("head", 7, 8, skin, t)
        centre = (j[8] + j[9]) / 2
        axes = (max(1.0, np.linalg.norm(j[9] - j[8]) * 0.42), max(1.0, np.linalg.norm(j[9] - j[8]) * 0.55))
        angle = np.degrees(np.arctan2(*(j[9] - j[8])[::-1]))
        c, a = tuple(int(round(v * 16)) for v in centre), tuple(int(round(v * 16)) for v in axes)
        cv2.ellipse(img, c, a, angle + 90, 0, 360, skin, -1, cv2.LINE_AA, shift=4)
        if ids is not None:
            cv2.ellipse(ids, c, a, angle + 90, 0, 360, _PID["head"], -1, cv2.LINE_8, shift=4)

    def leg(s):
        hip, knee, ankle = (2, 1, 0) if s == "r" else (3, 4, 5)
        limb(f"{s}_thigh", hip, knee, trousers, int(t * 1.3))
        limb(f"{s}_shin", knee, ankle, trousers, t)

    def arm(s):
        sho, elb, wri = (12, 11, 10) if s == "r" else (13, 14, 15)
        limb(f"{s}_upper_arm", sho, elb, sleeve, t)
        limb(f"{s}_forearm", elb, wri, skin, max(2, int(t * 0.85)))

    back, front = ("r", "l") if rng.random() < 0.5 else ("l", "r")
    steps = [lambda: leg(back), lambda: arm(back), torso, head, lambda: leg(front), lambda: arm(front)]
    if rng.random() < 0.3:  # the front arm goes behind the torso
        steps.insert(2, steps.pop())
    for step in steps:
        step()


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    grid = rng.integers(0, 256, (int(rng.integers(2, 9)),) * 2 + (3,)).astype(np.float32)
    img = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    stripes = rng.random() < 0.3
    if stripes:
        freq, phase = rng.uniform(0.05, 0.4), rng.uniform(0, 6.3)
        img += 40 * np.sin(np.arange(size) * freq + phase)[None, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _distractors(img: np.ndarray, ids: np.ndarray | None, rng: np.random.Generator, count: int,
                 height: float) -> None:
    size = img.shape[0]
    for _ in range(count):
        colour, kind = _colour(rng), rng.integers(3)
        a, b = (tuple(int(v) for v in rng.integers(-size // 4, size * 5 // 4, 2)) for _ in range(2))
        t = int(max(1, height * rng.uniform(0.03, 0.1)))
        if kind == 0:  # limb-like sticks
            cv2.line(img, a, b, colour, t, cv2.LINE_AA)
            if ids is not None:
                cv2.line(ids, a, b, 0, t)
        elif kind == 1:
            fill = -1 if rng.random() < 0.5 else t
            cv2.rectangle(img, a, b, colour, fill)
            if ids is not None:
                cv2.rectangle(ids, a, b, 0, fill)
        else:
            r = int(height * rng.uniform(0.05, 0.25))
            cv2.circle(img, a, r, colour, -1, cv2.LINE_AA)
            if ids is not None:
                cv2.circle(ids, a, r, 0, -1)


def render(seed: int, split: str, index: int, size: int = 128, pose=None) -> dict:
    """Render sample ``index`` of ``split`` ("train" / "val") for ``seed``. ``pose``: a function of the figure's
    joints (16, 2) returning the joints to draw instead (the rest of the scene, colours and noise included, stays
    the same: frames of a moving figure, e.g. ``benchmarks/track_synthetic.py``).

    Returns a dict of numpy arrays: ``image`` (size, size, 3) uint8 RGB, ``joints`` (16, 2) float32 pixel
    coordinates (x, y; pixel centres at integers), ``visible`` (16,) float32 in {0, 1}, ``center`` (2,),
    ``scale`` () and ``normalize`` () float32.
    """
    if split not in SPLITS:
        raise ValueError(f"synthetic split must be one of {sorted(SPLITS)}, got {split!r}")
    rng = np.random.default_rng([seed, SPLITS[split], index])
    img = _background(rng, size)
    height = size * rng.uniform(0.4, 0.8)
    _distractors(img, None, rng, int(rng.integers(2, 7)), height)
    if rng.random() < 0.25:  # a second, smaller person in the background
        other_h = height * rng.uniform(0.4, 0.8)
        other = _pose(rng, other_h, rng.uniform(0, size, 2), rng.normal(0, 20))
        _draw_figure(img, None, other, other_h, rng)
    centre = rng.uniform(0.3, 0.7, 2) * size
    rotation = rng.uniform(-45, 45) if rng.random() < 0.85 else rng.uniform(-180, 180)
    joints = _pose(rng, height, centre, rotation)
    if pose is not None:
        joints = np.asarray(pose(joints), np.float64).reshape(NUM_JOINTS, 2)
    ids = np.zeros((size, size), np.uint8)
    _draw_figure(img, ids, joints, height, rng)
    if rng.random() < 0.3:
        _distractors(img, ids, rng, 1, height)
    img = img.astype(np.float32)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 1.0))
    img += rng.normal(0, rng.uniform(0, 18), img.shape).astype(np.float32)
    image = np.clip(img, 0, 255).astype(np.uint8)

    pix = np.round(joints).astype(int)
    inside = ((pix >= 0) & (pix < size)).all(1)
    front = ids[np.clip(pix[:, 1], 0, size - 1), np.clip(pix[:, 0], 0, size - 1)]
    visible = inside & np.array([front[k] in _OWNER_IDS[k] for k in range(NUM_JOINTS)])
    box_centre = (joints.max(0) + joints.min(0)) / 2 + rng.normal(0, 0.06 * height, 2)
    return dict(image=image, joints=joints.astype(np.float32), visible=visible.astype(np.float32),
                center=box_centre.astype(np.float32),
                scale=np.float32(height * 1.25 / 200 * rng.uniform(0.85, 1.2)), normalize=np.float32(height))


class SyntheticPoses(TopDownDataset):
    """``length`` rendered figures of ``split`` ("train" / "val"), drawn at ``image_size`` and cropped to
    ``input_size``; every joint is annotated. Deterministic from ``seed``; the splits never share a sample."""

    def __init__(self, split: str = "train", length: int = 10000, image_size: int = 128,
                 input_size: int | tuple[int, int] = 64, augment_preset: str = "none", seed: int = 0):
        super().__init__(input_size, augment_preset, seed)
        if split not in SPLITS:
            raise ValueError(f"synthetic split must be one of {sorted(SPLITS)}, got {split!r}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"synthetic length must be a positive int, got {length!r}")
        self.split, self.length, self.image_size = split, length, image_size

    def __len__(self) -> int:
        return self.length

    def record(self, index: int) -> dict:
        rec = render(self.seed, self.split, index, self.image_size)
        rec["annotated"] = np.ones(NUM_JOINTS, np.float32)
        return rec
