"""How well ``hgfast video`` keeps a moving person in the crop, and what smoothing does: PCK on synthetic clips.

    python benchmarks/track_synthetic.py runs/quick/best.safetensors [--clips 8] [--frames 60] [--swing 30]
    python benchmarks/track_synthetic.py runs/quick/best.safetensors --swing 30 --seed 1 --smooth-grid

Each clip (25 frames/s): one synthetic validation scene (``hgfast.data.render`` at 384²) seen through a 320 x 240
camera that pans and zooms, so the figure crosses the frame (3 pixels a frame) on a wave while it grows from 0.4
to 0.6 of its rendered size; beyond the scene's edges its border pixels are repeated. With ``--swing DEG`` the
figure's arms and legs swing too (each limb about its shoulder or hip and its lower half about the elbow or knee,
by up to DEG degrees, ``--cycles`` times per clip, at phases of the clip's own); else the pose is still.
Crops compared, each predicted by the checkpoint's ``Predictor``: the true box of every frame (the joints' box,
as a perfect detector would give it), tracking (``predict_video``) from the first frame's true box and from the
whole frame, that first box kept for every frame, and the whole frame; then the first two smoothed by
``hgfast.smoothing`` (One-Euro, the defaults of ``hgfast video --smooth``). Prints PCK at 0.2 / 0.1 of the figure's
height over all frames, the mean error and the acceleration error (how much the predictions' frame-to-frame
acceleration differs from the truth's: jitter), both in % of the figure's height. ``--smooth-grid`` prints those
for a grid of the filter's ``min_cutoff`` and ``beta`` on the true-box predictions instead (tune with another
``--seed`` than the one reported).
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from hgfast.data import render
from hgfast.data.coco_format import keypoint_box
from hgfast.predict import Predictor
from hgfast.smoothing import PeopleSmoother
from hgfast.video import predict_video

FRAME = (320, 240)  # W, H
FPS = 25.0
RENDER = 384  # the rendered scene, seen by a camera that pans and zooms
LIMBS = ((12, 11, 10), (13, 14, 15), (2, 1, 0), (3, 4, 5))  # shoulder or hip, elbow or knee, wrist or ankle


def _turn(points: np.ndarray, about: np.ndarray, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - about) @ rotation.T + about


def swing(joints: np.ndarray, phase: float, amplitude: float, offsets: np.ndarray) -> np.ndarray:
    """``joints`` (16, 2) with each limb of ``LIMBS`` turned about its root by ``amplitude * sin(phase +
    offsets[i, 0])`` degrees and its lower half about the middle joint by ``amplitude * sin(phase + offsets[i, 1])``
    (limb lengths kept)."""
    j = np.array(joints, np.float64)
    for (root, middle, end), (upper, lower) in zip(LIMBS, offsets):
        j[[middle, end]] = _turn(j[[middle, end]], j[root], amplitude * np.sin(phase + upper))
        j[end] = _turn(j[end], j[middle], amplitude * np.sin(phase + lower))
    return j


def clip(index: int, frames: int, seed: int = 0, zoom=(0.4, 0.6), amplitude: float = 0.0,
         cycles: float = 2.0) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Clip ``index``, the camera zooming from ``zoom[0]`` to ``zoom[1]``, the limbs swinging by ``amplitude``
    degrees ``cycles`` times: (frames, joints (N, 16, 2) frame pixels, figure heights (N,))."""
    offsets = np.random.default_rng([seed, index]).uniform(0, 2 * np.pi, (len(LIMBS), 2))
    rec = render(seed, "val", index, RENDER)
    anchor = np.asarray(rec["center"], np.float64)  # of the still pose: the camera does not follow the limbs
    images, joints, heights = [], [], []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        if amplitude:
            rec = render(seed, "val", index, RENDER,
                         pose=lambda j: swing(j, 2 * np.pi * cycles * t, amplitude, offsets))
        scale = zoom[0] + (zoom[1] - zoom[0]) * t
        centre = np.array([70 + 180 * t, 120 + 20 * np.sin(2 * np.pi * t)])  # where the record's centre goes
        m = np.array([[scale, 0, 0], [0, scale, 0]], np.float64)
        m[:, 2] = centre - scale * anchor
        images.append(cv2.warpAffine(rec["image"], m, FRAME, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        joints.append(rec["joints"] @ m[:, :2].T + m[:, 2])
        heights.append(float(rec["normalize"]) * scale)
    return images, np.stack(joints), np.array(heights)


def pck(pred: np.ndarray, joints: np.ndarray, heights: np.ndarray, threshold: float) -> float:
    return float((np.linalg.norm(pred - joints, axis=-1) < threshold * heights[:, None]).mean())


def scores(preds: list[np.ndarray], truths: list[np.ndarray], heights: list[np.ndarray]) -> str:
    """PCK@0.2, PCK@0.1, mean error and acceleration error (% of the height) of clips ``(N, 16, 2)``."""
    pred, truth, height = (np.concatenate(a) for a in (preds, truths, heights))
    error = np.linalg.norm(pred - truth, axis=-1) / height[:, None]
    accel = [np.linalg.norm(np.diff(p - t, 2, axis=0), axis=-1) / h[1:-1, None] for p, t, h in
             zip(preds, truths, heights)]
    return (f"{100 * pck(pred, truth, height, 0.2):6.2f} {100 * pck(pred, truth, height, 0.1):6.2f} "
            f"{100 * error.mean():6.2f} {100 * np.concatenate(accel).mean():6.2f}")


def smoothed(keypoints: np.ndarray, boxes, **settings) -> np.ndarray:
    """One clip's keypoints (N, 16, 2) through ``PeopleSmoother`` (one person) at ``FPS``."""
    smoother = PeopleSmoother(FPS, **settings)
    return np.stack([smoother(i, 0, kp, box) for i, (kp, box) in enumerate(zip(keypoints, boxes))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0, help="of the synthetic scenes and the limbs' phases")
    parser.add_argument("--swing", type=float, default=0.0, metavar="DEG", help="limbs swing by up to DEG degrees")
    parser.add_argument("--cycles", type=float, default=2.0, help="swings per clip")
    parser.add_argument("--smooth-grid", action="store_true", help="the smoothing filter's parameters instead")
    args = parser.parse_args()
    predictor = Predictor(args.checkpoint, device="cpu")
    runs: dict[str, list] = {k: [] for k in ("true box every frame", "tracking from the first box",
                                             "tracking from the whole frame", "first box kept", "whole frame",
                                             "true box, smoothed", "tracking from the first box, smoothed")}
    truth, heights, true_boxes = [], [], []
    for index in range(args.clips):
        frames, joints, height = clip(index, args.frames, args.seed, amplitude=args.swing, cycles=args.cycles)
        boxes = [tuple(keypoint_box(j)) for j in joints]
        truth.append(joints)
        heights.append(height)
        true_boxes.append(boxes)
        runs["true box every frame"].append(predictor(frames, boxes)[0])
        runs["true box, smoothed"].append(smoothed(runs["true box every frame"][-1], boxes))
        if args.smooth_grid:
            continue
        tracked = list(predict_video(predictor, frames, boxes[0]))
        runs["tracking from the first box"].append(np.stack([kp for _, kp, _, _ in tracked]))
        runs["tracking from the first box, smoothed"].append(smoothed(runs["tracking from the first box"][-1],
                                                                      [box for *_, box in tracked]))
        runs["tracking from the whole frame"].append(np.stack([kp for _, kp, _, _ in predict_video(predictor,
                                                                                                  frames)]))
        runs["first box kept"].append(predictor(frames, [boxes[0]] * len(frames))[0])
        runs["whole frame"].append(predictor(frames)[0])
    print(f"{args.clips} clips of {args.frames} frames, {FRAME[0]}x{FRAME[1]} at {FPS:g} fps, input "
          f"{predictor.input_size}, seed {args.seed}, limbs swinging {args.swing:g} deg {args.cycles:g} times; "
          f"PCK@0.2, PCK@0.1, mean error, acceleration error (% of the figure's height)")
    if args.smooth_grid:
        raw = runs["true box every frame"]
        print(f"{'true box, not smoothed':30s} {scores(raw, truth, heights)}")
        for min_cutoff in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
            for beta in (0.0, 0.3, 1.0, 3.0, 10.0):
                preds = [smoothed(kp, boxes, min_cutoff=min_cutoff, beta=beta) for kp, boxes in
                         zip(raw, true_boxes)]
                print(f"{f'min_cutoff {min_cutoff:g} beta {beta:g}':30s} {scores(preds, truth, heights)}")
        return
    for name, preds in runs.items():
        print(f"{name:40s} {scores(preds, truth, heights)}")


if __name__ == "__main__":
    main()
