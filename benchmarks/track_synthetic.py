"""How well ``hgfast video``'s tracking keeps a moving person in the crop: PCK on synthetic clips.

    python benchmarks/track_synthetic.py runs/quick/best.safetensors [--clips 8] [--frames 60]

Each clip: one synthetic validation scene (``hgfast.data.render`` at 384², a still pose) seen through a 320 x 240
camera that pans and zooms, so the figure crosses the frame (3 pixels a frame) on a wave while it grows from 0.4
to 0.6 of its rendered size; beyond the scene's edges its border pixels are repeated.
Crops compared, each predicted by the checkpoint's ``Predictor``: the true box of every frame (the joints' box,
as a perfect detector would give it), tracking (``predict_video``) from the first frame's true box and from the
whole frame, that first box kept for every frame, and the whole frame. Prints PCK at 0.2 / 0.1 of the figure's
height over all frames.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from hgfast.data import render
from hgfast.data.coco import keypoint_box
from hgfast.predict import Predictor
from hgfast.video import predict_video

FRAME = (320, 240)  # W, H
RENDER = 384  # the rendered scene, seen by a camera that pans and zooms


def clip(index: int, frames: int, seed: int = 0, zoom=(0.4, 0.6)) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Clip ``index``, the camera zooming from ``zoom[0]`` to ``zoom[1]``: (frames, joints (N, 16, 2) frame pixels,
    figure heights (N,))."""
    rec = render(seed, "val", index, RENDER)
    images, joints, heights = [], [], []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        scale = zoom[0] + (zoom[1] - zoom[0]) * t
        centre = np.array([70 + 180 * t, 120 + 20 * np.sin(2 * np.pi * t)])  # where the record's centre goes
        m = np.array([[scale, 0, 0], [0, scale, 0]], np.float64)
        m[:, 2] = centre - scale * np.asarray(rec["center"], np.float64)
        images.append(cv2.warpAffine(rec["image"], m, FRAME, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        joints.append(rec["joints"] @ m[:, :2].T + m[:, 2])
        heights.append(float(rec["normalize"]) * scale)
    return images, np.stack(joints), np.array(heights)


def pck(pred: np.ndarray, joints: np.ndarray, heights: np.ndarray, threshold: float) -> float:
    return float((np.linalg.norm(pred - joints, axis=-1) < threshold * heights[:, None]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    predictor = Predictor(args.checkpoint, device="cpu")
    runs: dict[str, list] = {k: [] for k in ("true box every frame", "tracking from the first box",
                                             "tracking from the whole frame", "first box kept", "whole frame")}
    truth, heights = [], []
    for index in range(args.clips):
        frames, joints, height = clip(index, args.frames)
        boxes = [tuple(keypoint_box(j)) for j in joints]
        runs["true box every frame"].append(predictor(frames, boxes)[0])
        runs["tracking from the first box"].append(np.stack([kp for _, kp, _, _ in predict_video(
            predictor, frames, boxes[0])]))
        runs["tracking from the whole frame"].append(np.stack([kp for _, kp, _, _ in predict_video(predictor,
                                                                                                  frames)]))
        runs["first box kept"].append(predictor(frames, [boxes[0]] * len(frames))[0])
        runs["whole frame"].append(predictor(frames)[0])
        truth.append(joints)
        heights.append(height)
    truth, heights = np.concatenate(truth), np.concatenate(heights)
    print(f"{args.clips} clips of {args.frames} frames, {FRAME[0]}x{FRAME[1]}, input {predictor.input_size}; "
          f"PCK@0.2 / @0.1 of the figure's height")
    for name, preds in runs.items():
        pred = np.concatenate(preds)
        print(f"{name:30s} {100 * pck(pred, truth, heights, 0.2):6.2f} {100 * pck(pred, truth, heights, 0.1):6.2f}")


if __name__ == "__main__":
    main()
