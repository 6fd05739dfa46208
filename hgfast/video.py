"""Keypoints on every frame of a video: read, predict (per detected person, or following one), write.

People from a detector's boxes frame by frame (``read_frame_boxes``, ``predict_video_boxes``; ``BoxIds`` numbers
them across frames by overlap), or one person followed without a detector (``predict_video``): the first frame
is cropped at the given box (default: the whole frame); with tracking, each next frame at a box of the first
box's size centred on the box of the joints the model found in the frame before (scored >= ``threshold``;
``next_box``). The size stays fixed because joint
boxes from one frame are noisy and a model's joints lean toward its crop's centre: letting them set the size
shrank the crop frame after frame (``benchmarks/track_synthetic.py``). Without a first box, frames are cropped
whole until a frame's joints pass; their box, 1.2 times as large (joints lie inside a person's box), sets the
size. Where fewer than a third of the joints (at least two) pass, they coincide or their centre lies outside the
frame, the box stays where it was. A person who moves out of the crop between two frames or is hidden for long
is not found again, one who comes much nearer or goes much farther is cropped at the first size, and a second
person can take the box over. Boxes are ``(x, y, w, h)`` in edge coordinates (``hgfast.data.box_to_center_scale``);
a box may reach past the frame's edge (the crop is black there).
"""
from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from .checkpoint import atomic_path
from .data.coco_format import keypoint_box
from .predict import check_batch_size

CODECS = {".mp4": "mp4v", ".avi": "MJPG"}  # MPEG-4 part 2 (players, not browsers) and Motion-JPEG


class VideoFrames:
    """The frames of a video file as (H, W, 3) uint8 RGB arrays: ``fps`` (25 where the file has none usable),
    ``size`` (W, H) and ``count`` (the container's frame count; 0 where unknown, and a truncated file decodes
    fewer). FileNotFoundError / ValueError name the file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        capture = cv2.VideoCapture(str(self.path))
        try:
            ok, first = capture.read() if capture.isOpened() else (False, None)
            if not ok:
                raise ValueError(f"cannot read a frame of {self.path}: empty, not a video, or a codec OpenCV lacks")
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps = fps if math.isfinite(fps) and 0 < fps < 1000 else 25.0
            self.count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        finally:
            capture.release()
        self.size = (first.shape[1], first.shape[0])

    def __iter__(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


@contextlib.contextmanager
def video_writer(path: str | os.PathLike, fps: float, size: tuple[int, int]) -> Iterator[Callable]:
    """``with video_writer("out.mp4", fps, (W, H)) as write: write(rgb_frame)``: ``CODECS[suffix]``; the file
    appears only when the block ends without an error (``atomic_path``). Odd sides are padded by a black row or
    column (the encoders need even ones)."""
    path = Path(path)
    codec = CODECS.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"video output {path}: use {' or '.join(CODECS)}")
    width, height = size
    even = (width + width % 2, height + height % 2)
    with atomic_path(path, keep_suffix=True) as tmp:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*codec), fps, even)
        try:
            if not writer.isOpened():
                raise ValueError(f"OpenCV cannot write {path} (no {codec} encoder here)")

            def write(frame: np.ndarray) -> None:
                if (frame.shape[1], frame.shape[0]) != (width, height):
                    raise ValueError(f"frame of {frame.shape[1]}x{frame.shape[0]} for a {width}x{height} video")
                frame = np.pad(frame, ((0, even[1] - height), (0, even[0] - width), (0, 0)))
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

            yield write
        finally:
            writer.release()


def confident_box(keypoints: np.ndarray, scores: np.ndarray, threshold: float):
    """The box (x, y, w, h) of the joints (K, 2) scored >= ``threshold``; None where fewer than ``max(2, K / 3)``
    pass or they coincide."""
    confident = np.asarray(scores) >= threshold
    if confident.sum() < max(2, len(confident) / 3):
        return None
    return keypoint_box(np.asarray(keypoints, np.float64)[confident])


def next_box(keypoints: np.ndarray, scores: np.ndarray, threshold: float, frame_size: tuple[int, int], size):
    """The next frame's box: ``size`` (w, h) centred on ``confident_box``; None where that is None or its centre
    lies outside the frame of ``frame_size`` (W, H)."""
    box = confident_box(keypoints, scores, threshold)
    if box is None:
        return None
    centre = box[:2] + box[2:] / 2
    if not ((centre >= 0) & (centre <= np.asarray(frame_size, np.float64))).all():
        return None
    w, h = (float(v) for v in size)
    return float(centre[0]) - w / 2, float(centre[1]) - h / 2, w, h


def predict_video(predictor: Callable, frames: Iterable[np.ndarray], box=None, track: bool = True,
                  threshold: float = 0.2, batch_size: int = 32, padding: float = 1.2) -> Iterator[tuple]:
    """Yield ``(frame, keypoints (K, 2) frame pixels, scores (K,), box)`` per frame of ``frames`` ((H, W, 3) uint8
    RGB); ``predictor(images, boxes)`` is a ``hgfast.predict.Predictor`` (or anything returning its
    ``(keypoints, scores)``). ``box``: the first frame's (default: the whole frame); ``track``: follow the person
    (module docstring) with joints scored >= ``threshold`` in [0, 1], one frame at a time (``padding``: the first
    frame's joints' box to the size of the next boxes, without ``box``); without it every frame uses ``box`` and
    frames go to the predictor ``batch_size`` at a time."""
    if not (isinstance(threshold, numbers.Real) and 0 <= threshold <= 1):
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    check_batch_size(batch_size)
    if not (isinstance(padding, numbers.Real) and 0 < padding < math.inf):
        raise ValueError(f"padding must be a finite number > 0, got {padding!r}")
    box = None if box is None else tuple(float(v) for v in box)
    if track:
        size = None if box is None else box[2:]
        for frame in frames:
            used = box or _whole(frame)
            (keypoints,), (scores,) = predictor([frame], [used])
            yield frame, keypoints, scores, used
            if size is None:  # no first box: the first joints found set the size; the whole frame until then
                found = confident_box(keypoints, scores, threshold)
                size = None if found is None else tuple(found[2:] * padding)
            if size is not None:
                box = next_box(keypoints, scores, threshold, (frame.shape[1], frame.shape[0]), size) or used
        return
    frames = iter(frames)
    while chunk := list(itertools.islice(frames, batch_size)):
        boxes = [box or _whole(f) for f in chunk]
        yield from zip(chunk, *predictor(chunk, boxes), boxes, strict=True)


def read_frame_boxes(path: str | os.PathLike, min_score: float | None = None) -> dict[int, list[tuple]]:
    """A detector's people boxes per frame from a JSON object mapping frame indices (0-based, ``"0"``, ``"1"``, ...,
    no leading zeros) to lists of boxes in ``read_boxes_file``'s forms (``[x, y, w, h]``, ``[x, y, w, h, score]``,
    ``{"bbox": ..., "score": ...}``); a frame without an entry has no one. Boxes scored below ``min_score`` are
    left out (unscored ones stay). ``{frame: [(box, score or None), ...]}``; ValueError naming the file and the
    entry otherwise."""
    from .data.coco_format import read_json
    from .predict import box_entries

    table = read_json(path, "boxes file", unique_keys=True)
    path = Path(path)
    if not isinstance(table, dict):
        raise ValueError(f"boxes file {path} must map frame indices to lists of boxes, got {type(table).__name__}")
    out = {}
    for key, entries in table.items():
        if not re.fullmatch(r"0|[1-9][0-9]{0,17}", key):
            raise ValueError(f"boxes file {path}, {key[:40]!r}: keys must be frame indices written 0, 1, ... (no "
                             f"leading zeros)")
        out[int(key)] = box_entries(entries, f"boxes file {path}, frame {key}", min_score)
    return out


def predict_video_boxes(predictor: Callable, frames: Iterable[np.ndarray], frame_boxes: dict) -> Iterator[tuple]:
    """Yield ``(frame, people)`` per frame, ``people`` a list of ``(keypoints (K, 2), scores (K,), box, box_score)``
    for the boxes ``frame_boxes`` (``read_frame_boxes``) gives that frame (none: an empty list)."""
    for index, frame in enumerate(frames):
        found = frame_boxes.get(index, [])
        if not found:
            yield frame, []
            continue
        keypoints, scores = predictor([frame] * len(found), [box for box, _ in found])
        yield frame, [(kp, sc, box, score) for kp, sc, (box, score) in zip(keypoints, scores, found, strict=True)]


def box_iou(a, b) -> float:
    """Intersection over union of boxes ``(x, y, w, h)``; 0 where the union is empty or not finite."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if 0 < union < math.inf else 0.0


class BoxIds:
    """Person ids across frames for a detector's boxes: each frame's boxes take the ids of the last frame's boxes
    they overlap best (greedily, highest IoU first, at least ``min_iou``; ties to the earlier box); the others get
    new ids (0, 1, ...). ``ids = tracker(boxes)`` per frame, in the order of ``boxes``. Boxes match against the
    last frame that had any: a frame without boxes forgets no one, but a person missed in a frame where others
    were found gets a new id when they come back."""

    def __init__(self, min_iou: float = 0.3):
        if not (isinstance(min_iou, numbers.Real) and not isinstance(min_iou, bool) and 0 < min_iou <= 1):
            raise ValueError(f"min_iou must be a number in (0, 1], got {min_iou!r}")
        self.min_iou, self.last, self.next_id = float(min_iou), [], 0

    def __call__(self, boxes) -> list[int]:
        if len(boxes) == 0:
            return []
        pairs = [(iou, i, j) for i, box in enumerate(boxes) for j, (_, old) in enumerate(self.last)
                 if (iou := box_iou(box, old)) >= self.min_iou]
        ids: list[int | None] = [None] * len(boxes)
        taken = set()
        for _, i, j in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):  # ties: the earlier box, the older id
            if ids[i] is None and j not in taken:
                ids[i] = self.last[j][0]
                taken.add(j)
        for i in range(len(boxes)):
            if ids[i] is None:
                ids[i], self.next_id = self.next_id, self.next_id + 1
        self.last = list(zip(ids, boxes))
        return ids


def _whole(frame: np.ndarray) -> tuple[float, float, float, float]:
    return 0.0, 0.0, float(frame.shape[1]), float(frame.shape[0])
