"""``hgfast video``: keypoints on every frame of videos, drawn into a copy."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import smoothing
from .common import (IMAGE_SUFFIXES, add_predictor_args, boxes_min_score, build_predictor, check_outputs, fail,
                     parse_box, write_json)

def _cmd_video(args) -> int:
    from ..data.crop import box_overlaps
    from ..predict import check_batch_size
    from ..smoothing import PeopleSmoother
    from ..video import VideoFrames, predict_video, predict_video_boxes, read_frame_boxes

    out = Path(args.out)
    try:
        threshold = 0.2 if args.track_threshold is None else args.track_threshold
        if not 0 <= threshold <= 1:
            raise ValueError(f"--track-threshold must be in [0, 1], got {threshold}")
        check_batch_size(args.batch_size, "--batch-size")
        images = [path for path in args.videos if Path(path).suffix.lower() in IMAGE_SUFFIXES]
        if images:
            raise ValueError(f"videos: {images[0]} is an image, not a video (OpenCV would read it as one frame, "
                             f"and a truncated one as grey): hgfast predict takes images")
        if args.no_track and args.track_threshold is not None:
            raise ValueError("--track-threshold sets how the crop follows the person: not with --no-track")
        min_score = boxes_min_score(args)
        smoother_settings = _smoother_settings(args)
        if args.boxes is not None:
            given = [flag for flag, on in (("--box", args.box), ("--no-track", args.no_track),
                                           ("--track-threshold", args.track_threshold is not None),
                                           ("several videos", len(args.videos) > 1)) if on]
            if given:
                raise ValueError(f"--boxes gives one video's people frame by frame, without tracking: not with "
                                 f"{' or '.join(given)}")
        outputs = [(out / f"{Path(p).stem}_pose.mp4", out / f"{Path(p).stem}.json") for p in args.videos]
        check_outputs([*args.videos, *([args.boxes] if args.boxes else [])], list(zip(args.videos, outputs)))
        frame_boxes = None if args.boxes is None else read_frame_boxes(args.boxes, min_score)
        videos = [VideoFrames(path) for path in args.videos]
        for path, video in zip(args.videos, videos):
            if args.box and not box_overlaps(args.box, video.size):
                raise ValueError(f"--box {args.box} lies outside the {video.size[0]}x{video.size[1]} frames of {path}")
            outside = [(frame, box) for frame, found in (frame_boxes or {}).items() for box, _ in found
                       if not box_overlaps(box, video.size)]
            if outside:
                raise ValueError(f"--boxes {args.boxes}, frame {outside[0][0]}: the box {outside[0][1]} lies "
                                 f"outside the {video.size[0]}x{video.size[1]} frames of {path}")
        if frame_boxes is not None and not any(frame_boxes.values()):
            print(f"hgfast video: warning: --boxes {args.boxes} leaves no one in any frame", file=sys.stderr)
        predictor = build_predictor(args)
        for path, video, (drawn, written) in zip(args.videos, videos, outputs):
            if frame_boxes is not None:
                people = predict_video_boxes(predictor, video, frame_boxes)
            else:
                people = ((frame, [(kp, sc, box, None)]) for frame, kp, sc, box in predict_video(
                    predictor, video, args.box, not args.no_track, threshold, args.batch_size))
            try:
                smoother = None if smoother_settings is None else PeopleSmoother(video.fps, **smoother_settings)
                frames = _video_frames(video, drawn, people, predictor.skeleton.limbs, frame_boxes is not None,
                                       smoother)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
            write_json({"video": str(path), "fps": video.fps, "size": list(video.size),
                         "joints": list(predictor.skeleton.names),
                         "smoothing": None if smoother is None else smoother.settings, "frames": frames}, written)
            if 0 < video.count != len(frames):
                print(f"hgfast video: warning: {path} decoded {len(frames)} of the {video.count} frames its "
                      f"container lists (truncated?)", file=sys.stderr)
            if frame_boxes and max(frame_boxes) >= len(frames):
                print(f"hgfast video: warning: --boxes has frames up to {max(frame_boxes)}, {path} has "
                      f"{len(frames)}", file=sys.stderr)
            print(f"wrote {drawn} and {written} ({len(frames)} frames)")
    except (ValueError, OSError) as exc:
        return fail("video", exc)
    return 0


def _smoother_settings(args) -> dict | None:
    """``PeopleSmoother``'s settings from ``--smooth``, ``--smooth-min-cutoff`` and ``--smooth-beta`` (checked);
    None without ``--smooth``."""
    flags = {"--smooth-min-cutoff": args.smooth_min_cutoff, "--smooth-beta": args.smooth_beta}
    if not args.smooth:
        given = [flag for flag, value in flags.items() if value is not None]
        if given:
            raise ValueError(f"{' and '.join(given)} without --smooth")
        return None
    settings = {"min_cutoff": smoothing.MIN_CUTOFF if args.smooth_min_cutoff is None else args.smooth_min_cutoff,
                "beta": smoothing.BETA if args.smooth_beta is None else args.smooth_beta}
    smoothing.check_settings(*settings.values(), smoothing.D_CUTOFF, names=(*flags, "d_cutoff"))
    return settings


def _video_frames(video, drawn: Path, people, limbs, detected: bool, smoother=None) -> list[dict]:
    """Write the frames of ``people`` (``(frame, [(keypoints, scores, box, box_score or None), ...])`` per frame)
    with their skeletons into ``drawn``; their per-frame JSON records, each person with an ``id`` (``detected``:
    ``BoxIds`` across frames; else the one tracked person's, 0); ``smoother``: a ``PeopleSmoother`` the keypoints
    of each id go through first."""
    import numpy as np

    from ..video import BoxIds, video_writer
    from ..visualize import draw_skeleton

    frames, ids = [], BoxIds() if detected else lambda boxes: list(range(len(boxes)))
    with video_writer(drawn, video.fps, video.size) as write:
        for index, (frame, found) in enumerate(people):
            people_ids = ids([box for _, _, box, _ in found])
            if smoother is not None:
                found = [(smoother(index, person, kp, box), sc, box, score)
                         for person, (kp, sc, box, score) in zip(people_ids, found, strict=True)]
            for kp, _, _, _ in found:
                frame = draw_skeleton(frame, kp, limbs=limbs)
            write(frame)
            frames.append({"frame": index, "people": [
                {"id": person, "box": [round(float(v), 2) for v in box],
                 **({} if score is None else {"box_score": score}),
                 "keypoints": np.round(np.asarray(kp, np.float64), 2).tolist(),  # float64: no float32 digits
                 "scores": np.round(np.asarray(sc, np.float64), 4).tolist()}
                for person, (kp, sc, box, score) in zip(people_ids, found, strict=True)]})
    return frames


def add_parsers(sub) -> None:
    p = sub.add_parser("video", help="keypoints on every frame of videos, drawn into a copy: one person followed, "
                       "or a detector's people per frame (--boxes)")
    p.add_argument("videos", nargs="+", help="video files (what OpenCV reads: .mp4, .avi, ...)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--box", type=parse_box, metavar="X,Y,W,H", help="the person's box in the first frame "
                   "(default: the whole frame)")
    p.add_argument("--no-track", action="store_true", help="crop every frame at --box (or the whole frame), "
                   "--batch-size frames at a time, instead of following the joints found in the frame before")
    p.add_argument("--boxes", metavar="JSON", help="a detector's people boxes frame by frame (one video): a JSON "
                   "object mapping frame indices (\"0\", \"1\", ..., no leading zeros) to boxes as for predict "
                   "--boxes; every person is predicted in their box, no tracking; a frame without an entry has no "
                   "one")
    p.add_argument("--min-score", type=float, help="with --boxes: leave out boxes scored below this (boxes without "
                   "a score stay)")
    p.add_argument("--track-threshold", type=float, help="joints scored at least this centre the "
                   "next frame's box (of the first box's size; without --box, the first joints found set it) "
                   "(default 0.2)")
    p.add_argument("--smooth", action="store_true", help="smooth each person's joints over time (One-Euro "
                   "filter, hgfast.smoothing: less jitter, a little lag; the tracking uses the joints unsmoothed)")
    p.add_argument("--smooth-min-cutoff", type=float, metavar="HZ", help="with --smooth: the cutoff frequency "
                   f"for still joints (lower: smoother, more lag; default {smoothing.MIN_CUTOFF:g})")
    p.add_argument("--smooth-beta", type=float, help="with --smooth: how fast the cutoff rises with a joint's "
                   f"speed in box heights per second (higher: less lag; default {smoothing.BETA:g})")
    add_predictor_args(p, out="videos")
    p.set_defaults(func=_cmd_video)
