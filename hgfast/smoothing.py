"""Temporal smoothing of keypoints across video frames: the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012).

Each joint's position is low-pass filtered with a cutoff frequency that rises with its speed: still joints lose
their frame-to-frame jitter, fast ones follow with little lag. Here the speed is the joint's 2D speed (both axes
get one cutoff, so the filter is the same in any direction) in person-box heights per second, so the parameters
do not depend on the video's resolution or the person's distance: ``cutoff = min_cutoff + beta * speed`` (Hz).
Time comes from the frame index and the frame rate, so a person missing for some frames is filtered across the
gap with the longer time step (the filter then trusts the new position more).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

# Measured on synthetic clips with moving limbs (benchmarks/track_synthetic.py --smooth-grid, seed 1; README).
MIN_CUTOFF = 4.0  # Hz
BETA = 0.3  # Hz per (box height / s)
D_CUTOFF = 1.0  # Hz, of the speed estimate


def _positive(value, name: str) -> float:
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < value < math.inf):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _alpha(dt: float, cutoff) -> np.ndarray | float:
    """The smoothing factor of a first-order low-pass filter of ``cutoff`` Hz over a step of ``dt`` seconds."""
    rate = 2 * math.pi * cutoff * dt
    return rate / (rate + 1)


class OneEuroFilter:
    """One person's joints over time: ``smoothed = f(keypoints (K, 2), time_s, box_height)`` for increasing
    times; the first call returns its input. ``min_cutoff`` (Hz) smooths still joints (lower: smoother, more lag),
    ``beta`` raises the cutoff with speed (higher: less lag when moving), ``d_cutoff`` (Hz) filters the speed."""

    def __init__(self, min_cutoff: float = MIN_CUTOFF, beta: float = BETA, d_cutoff: float = D_CUTOFF):
        self.min_cutoff = _positive(min_cutoff, "min_cutoff")
        if not (isinstance(beta, numbers.Real) and not isinstance(beta, bool) and 0 <= beta < math.inf):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        self.beta = float(beta)
        self.d_cutoff = _positive(d_cutoff, "d_cutoff")
        self.x = self.dx = self.t = None

    def __call__(self, keypoints, time: float, box_height: float) -> np.ndarray:
        x = np.asarray(keypoints, np.float64)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"keypoints must be (K, 2), got shape {x.shape}")
        box_height = _positive(box_height, "box_height")
        if self.x is None:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), float(time)
            return x.copy()
        if x.shape != self.x.shape:
            raise ValueError(f"keypoints of shape {x.shape} after {self.x.shape}")
        dt = float(time) - self.t
        if not dt > 0:
            raise ValueError(f"time must increase: {time} after {self.t}")
        self.dx += _alpha(dt, self.d_cutoff) * ((x - self.x) / dt - self.dx)
        speed = np.linalg.norm(self.dx, axis=1, keepdims=True) / box_height
        self.x += _alpha(dt, self.min_cutoff + self.beta * speed) * (x - self.x)
        self.t = float(time)
        return self.x.copy()


class PeopleSmoother:
    """One ``OneEuroFilter`` per person id across a video of ``fps`` frames per second:
    ``smoothed = smoother(frame_index, person_id, keypoints (K, 2), box)`` with the person's box ``(x, y, w, h)``
    (its height is the speed's unit); frame indices increase per id, and ids may skip frames."""

    def __init__(self, fps: float, min_cutoff: float = MIN_CUTOFF, beta: float = BETA, d_cutoff: float = D_CUTOFF):
        self.fps = _positive(fps, "fps")
        OneEuroFilter(min_cutoff, beta, d_cutoff)  # the arguments' checks, before the first frame
        self.settings = {"min_cutoff": min_cutoff, "beta": beta, "d_cutoff": d_cutoff}
        self.filters: dict = {}

    def __call__(self, frame: int, person, keypoints, box) -> np.ndarray:
        f = self.filters.get(person)
        if f is None:
            f = self.filters[person] = OneEuroFilter(**self.settings)
        return f(keypoints, frame / self.fps, box[3])
