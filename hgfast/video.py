"""Keypoints on every frame of a video: read, predict (following the person from frame to frame), write.

Single person per video. The first frame is cropped at the given box (default: the whole frame); with tracking
each next frame is cropped at the box of the joints the model found confidently (score >= ``threshold``) in the
frame before, as a COCO record without a box is (``hgfast.data.coco.keypoint_box``; the predictor adds its
``box_margin``), so the crop follows the person as they move. Where fewer than two distinct joints pass, the box
stays as it was. Boxes are in edge coordinates (``box_to_center_scale``), clipped to the frame.
"""
from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from .data.coco import keypoint_box


class VideoFrames:
    """The frames of a video file as (H, W, 3) uint8 RGB arrays: ``fps``, ``size`` (W, H) and ``count`` (as the
    container says; may be 0 where unknown). FileNotFoundError / ValueError name the file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        capture = cv2.VideoCapture(str(self.path))
        try:
            ok, first = capture.read() if capture.isOpened() else (False, None)
            if not ok:
                raise ValueError(f"cannot read a frame of {self.path}: not a video, or a codec OpenCV lacks")
            self.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
            self.count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
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
    """``with video_writer("out.mp4", fps, (W, H)) as write: write(rgb_frame)``. MPEG-4 (``mp4v``) for .mp4,
    Motion-JPEG for .avi; the file appears only when the block ends without an error (written beside it first)."""
    path = Path(path)
    codecs = {".mp4": "mp4v", ".avi": "MJPG"}
    if path.suffix.lower() not in codecs:
        raise ValueError(f"video output {path}: use .mp4 or .avi")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*codecs[path.suffix.lower()]), fps, size)
    try:
        if not writer.isOpened():
            raise ValueError(f"OpenCV cannot write {path.suffix} video here (no encoder for it)")

        def write(frame: np.ndarray) -> None:
            if (frame.shape[1], frame.shape[0]) != tuple(size):
                raise ValueError(f"frame of {frame.shape[1]}x{frame.shape[0]} for a {size[0]}x{size[1]} video")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

        yield write
        writer.release()
        os.replace(partial, path)
    finally:
        writer.release()
        partial.unlink(missing_ok=True)


def next_box(keypoints: np.ndarray, scores: np.ndarray, threshold: float, frame_size: tuple[int, int]):
    """The box ``(x, y, w, h)`` of the joints (K, 2) scored >= ``threshold``, clipped to the frame (W, H); None
    where fewer than two distinct joints pass or the box lies outside the frame."""
    box = keypoint_box(np.asarray(keypoints)[np.asarray(scores) >= threshold])
    if box is None:
        return None
    lo = np.maximum(box[:2], 0.0)
    hi = np.minimum(box[:2] + box[2:], np.asarray(frame_size, np.float64))
    return tuple(float(v) for v in np.concatenate([lo, hi - lo])) if (hi > lo).all() else None


def predict_video(predictor: Callable, frames: Iterable[np.ndarray], box=None, track: bool = True,
                  threshold: float = 0.2, batch_size: int = 32) -> Iterator[tuple]:
    """Yield ``(frame, keypoints (K, 2) frame pixels, scores (K,), box)`` per frame of ``frames`` ((H, W, 3) uint8
    RGB); ``predictor(images, boxes)`` is a
    ``hgfast.predict.Predictor`` (or anything returning its ``(keypoints, scores)``). ``box``: the first frame's
    (default: the whole frame); ``track``: follow the person (module docstring), one frame at a time; without it
    every frame uses ``box`` and frames go to the predictor ``batch_size`` at a time."""
    if not (isinstance(threshold, (int, float)) and np.isfinite(threshold)):
        raise ValueError(f"threshold must be a number, got {threshold!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    box = None if box is None else tuple(float(v) for v in box)
    if track:
        for frame in frames:
            used = box or _whole(frame)
            (keypoints,), (scores,) = predictor([frame], [used])
            yield frame, keypoints, scores, used
            box = next_box(keypoints, scores, threshold, (frame.shape[1], frame.shape[0])) or used
        return
    frames = iter(frames)
    while chunk := list(itertools.islice(frames, batch_size)):
        boxes = [box or _whole(f) for f in chunk]
        yield from zip(chunk, *predictor(chunk, boxes), boxes)


def _whole(frame: np.ndarray) -> tuple[float, float, float, float]:
    return 0.0, 0.0, float(frame.shape[1]), float(frame.shape[0])
