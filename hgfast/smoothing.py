"""Temporal smoothing of keypoints across video frames: the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012).

Each joint's position is low-pass filtered with a cutoff frequency that rises with its speed: still joints lose
their frame-to-frame jitter, fast ones follow with little lag. Here the speed is the joint's 2D speed (both axes
get one cutoff, so the filter is the same in any direction) in heights of the box the person was cropped at per
second, so the parameters do not depend on the video's resolution: ``cutoff = min_cutoff + beta * speed`` (Hz).
Time comes from the frame index and the frame rate; a person (an id) missing for some frames is filtered across
the gap with the longer time step, which trusts the new position more (in ``hgfast video --boxes`` an id comes
back only after frames with no box at all: ``BoxIds`` gives a new one otherwise). A joint whose coordinates are
not finite passes through as it is and leaves its filter alone; one never finite before starts where it is first
seen.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

# Chosen on synthetic clips with swinging limbs (benchmarks/track_synthetic.py --smooth-grid, seed 1; README).
MIN_CUTOFF = 4.0  # Hz
BETA = 0.3  # Hz per (box height / s)
D_CUTOFF = 1.0  # Hz, of the speed estimate


def check_settings(min_cutoff, beta, d_cutoff, names=("min_cutoff", "beta", "d_cutoff")) -> tuple[float, ...]:
    """The filter's settings as floats; ValueError naming the setting (as ``names`` calls them) unless
    ``min_cutoff`` and ``d_cutoff`` are finite and > 0 and ``beta`` finite and >= 0."""
    out = []
    for value, name, low in zip((min_cutoff, beta, d_cutoff), names, (">", ">=", ">")):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and \
            (value > 0 if low == ">" else value >= 0)
        if not ok:
            raise ValueError(f"{name} must be a finite number {low} 0, got {value!r}")
        out.append(float(value))
    return tuple(out)


def _alpha(dt: float, cutoff) -> np.ndarray | float:
    """The smoothing factor of a first-order low-pass filter of ``cutoff`` Hz over a step of ``dt`` seconds."""
    with np.errstate(divide="ignore", over="ignore"):  # a huge cutoff: rate infinite, alpha 1 (not NaN)
        rate = 2 * math.pi * cutoff * dt
        return 1 / (1 + 1 / rate)  # = rate / (rate + 1)


class OneEuroFilter:
    """One person's joints over time: ``smoothed = f(keypoints (K, 2), time_s, box_height)`` for increasing
    times; the first call returns its input. ``min_cutoff`` (Hz) smooths still joints (lower: smoother, more lag),
    ``beta`` raises the cutoff with speed (higher: less lag when moving), ``d_cutoff`` (Hz) filters the speed."""

    def __init__(self, min_cutoff: float = MIN_CUTOFF, beta: float = BETA, d_cutoff: float = D_CUTOFF):
        self.min_cutoff, self.beta, self.d_cutoff = check_settings(min_cutoff, beta, d_cutoff)
        self.x = self.dx = self.seen = self.t = None  # per joint (seen: when last finite, NaN: never), last time

    def __call__(self, keypoints, time: float, box_height: float) -> np.ndarray:
        x = np.asarray(keypoints, np.float64)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"keypoints must be (K, 2), got shape {x.shape}")
        time, box_height = float(time), float(box_height)
        if not math.isfinite(time):
            raise ValueError(f"time must be finite, got {time}")
        if not (0 < box_height < math.inf):
            raise ValueError(f"box_height must be a finite number > 0, got {box_height}")
        if self.x is None:
            self.x, self.dx, self.seen = np.full_like(x, np.nan), np.zeros_like(x), np.full(len(x), np.nan)
        elif x.shape != self.x.shape:
            raise ValueError(f"keypoints of shape {x.shape} after {self.x.shape}")
        elif not time > self.t:
            raise ValueError(f"time must increase: {time} after {self.t}")
        finite = np.isfinite(x).all(1)
        new = finite & np.isnan(self.seen)
        self.x[new], self.dx[new] = x[new], 0.0
        go = finite & ~new
        if go.any():  # each joint's step runs from the last time it was finite
            dt = (time - self.seen[go])[:, None]
            self.dx[go] += _alpha(dt, self.d_cutoff) * ((x[go] - self.x[go]) / dt - self.dx[go])
            speed = np.linalg.norm(self.dx[go], axis=1, keepdims=True) / box_height
            with np.errstate(over="ignore"):  # an infinite cutoff: alpha 1
                cutoff = self.min_cutoff + self.beta * speed
            self.x[go] += _alpha(dt, cutoff) * (x[go] - self.x[go])
        self.seen[finite], self.t = time, time
        return np.where(finite[:, None], self.x, x)


class PeopleSmoother:
    """One ``OneEuroFilter`` per person id across a video of ``fps`` frames per second:
    ``smoothed = smoother(frame_index, person_id, keypoints (K, 2), box)`` with the box ``(x, y, w, h)`` the
    person was cropped at (its height is the speed's unit); frame indices increase per id, and ids may skip frames.
    ``settings``: the filters' ``min_cutoff``, ``beta`` and ``d_cutoff``."""

    def __init__(self, fps: float, min_cutoff: float = MIN_CUTOFF, beta: float = BETA, d_cutoff: float = D_CUTOFF):
        if not (isinstance(fps, numbers.Real) and not isinstance(fps, bool) and 0 < fps < math.inf):
            raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
        self.fps = float(fps)
        self.settings = dict(zip(("min_cutoff", "beta", "d_cutoff"), check_settings(min_cutoff, beta, d_cutoff)))
        self.filters: dict = {}

    def __call__(self, frame: int, person, keypoints, box) -> np.ndarray:
        f = self.filters.get(person)
        if f is None:
            f = self.filters[person] = OneEuroFilter(**self.settings)
        return f(keypoints, frame / self.fps, box[3])
