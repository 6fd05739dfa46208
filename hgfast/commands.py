"""``hgfast train / eval / score / convert-mpii / predict / video / export``: argument parsing and the glue
to the library.

Errors the user can fix (missing files, bad config keys, bad boxes) end with ``hgfast <cmd>: error: ...`` and
exit status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path


def _fail(cmd: str, exc: BaseException | str) -> int:
    """Print ``exc`` as one error line (an error raised in a DataLoader worker: its own message, not the worker's
    traceback that PyTorch re-raises it with) and return exit status 2."""
    text = str(exc)
    if "\nOriginal Traceback" in text:  # "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback..."
        last = text.rstrip().splitlines()[-1]
        text = re.sub(r"^[\w.]+: ", "", last) + f" ({text.splitlines()[0].removeprefix('Caught ').rstrip('.')})"
    print(f"hgfast {cmd}: error: {text}", file=sys.stderr)
    return 2


def _main_process() -> bool:
    """Not a process of rank > 0 under torchrun (``RANK``)."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _write_json(obj, path: Path) -> None:
    from .checkpoint import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1))


def _check_writable(path: Path | None, flag: str) -> None:
    """ValueError naming ``flag`` where ``path`` cannot become a file: it is a folder, or a part of its folder is a
    file (checked before a long run, not after it)."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder, not a file")
    folder = next((p for p in path.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise ValueError(f"{flag} {path}: {folder} is a file, not a folder")


def _config(args, **top):
    from .train.config import resolve

    return resolve(args.preset, args.config, args.set or (), **top)


def _saved_config(resume: Path) -> Path | dict:
    """A resumed run's config: ``config.yaml`` beside its state (file or work dir), else the state's own."""
    from .train.state import load_state, state_path

    saved = state_path(resume).parent / "config.yaml"
    return saved if saved.is_file() else load_state(resume).get("config") or {}


def _cmd_train(args) -> int:
    from .train.config import Config, parse_set
    from .train.loop import train
    from .train.state import STATE_FILE, state_path

    try:  # --resume DIR|FILE: that run's folder is the work dir (unless --workdir), its config the base config
        resume = state_path(args.resume) if args.resume not in (None, "auto") else None
        top = {"model": {"fused": True} if args.fused else {}}
        workdir = args.workdir or parse_set(args.set or []).get("workdir")  # --set workdir= is --workdir
        if workdir or resume:
            top["workdir"] = str(workdir or resume.parent)
        if args.resume and args.config is None and args.preset is None:
            run = resume or Path(top.get("workdir", Config().workdir))
            args.config = _saved_config(run)
        cfg = _config(args, **top)
    except (ValueError, FileNotFoundError) as exc:
        return _fail("train", exc)
    state = Path(cfg.workdir) / STATE_FILE
    before = state.stat().st_mtime_ns if state.exists() else None
    try:
        summary = train(cfg, resume=(resume or Path(cfg.workdir)) if args.resume else None,
                        overwrite=args.overwrite)
    except KeyboardInterrupt:
        if not _main_process():  # under torchrun the main process reports, once
            return 130
        if state.exists() and state.stat().st_mtime_ns != before:
            print(f"hgfast train: interrupted; state written to {state}; continue with hgfast train --workdir "
                  f"{cfg.workdir} --resume", file=sys.stderr)
        else:
            print(f"hgfast train: interrupted before a state was written"
                  f"{f' ({state} is unchanged)' if before is not None else ''}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, ArithmeticError) as exc:
        return _fail("train", exc)
    if _main_process():  # once for a torchrun run
        print(json.dumps(summary))
    return 0


def _detection_args(args, dataset: str) -> tuple[float, float]:
    """``--min-score`` and ``--nms-threshold`` (defaults 0 and 0.9): the first refused without ``--detections``,
    the second without COCO-format data (OKS-NMS thins people in either kind of box); ``--detections`` needs
    COCO-format data and takes no PCK ``--thresholds`` or ``--inclusive``."""
    from .eval.oks import check_nms_threshold

    if args.min_score is not None and not args.detections:
        raise ValueError("--min-score applies to detected boxes: give --detections")
    if args.nms_threshold is not None and dataset != "coco":
        raise ValueError(f"--nms-threshold applies to COCO's OKS AP: it needs COCO-format data (data.dataset=coco), "
                         f"got data.dataset={dataset!r}")
    if args.detections and dataset != "coco":
        raise ValueError(f"--detections needs COCO-format data (data.dataset=coco), got data.dataset={dataset!r}")
    if args.detections and (args.thresholds or args.inclusive):
        raise ValueError(f"{'--thresholds are' if args.thresholds else '--inclusive is'} for PCK: detected boxes "
                         f"have no ground truth each, only OKS AP")
    min_score = 0.0 if args.min_score is None else args.min_score
    if not math.isfinite(min_score):
        raise ValueError(f"--min-score must be a number, got {min_score}")
    return min_score, check_nms_threshold(0.9 if args.nms_threshold is None else args.nms_threshold,
                                          "--nms-threshold")


def _dark_kernel(args) -> int | None:
    """``--dark-kernel`` (None if not given), refused without ``--refine dark``."""
    if args.dark_kernel is not None and args.refine != "dark":
        raise ValueError("--dark-kernel applies to --refine dark")
    return args.dark_kernel


# Config keys that make eval --workdir evaluate other data than the run's own (results then go to eval_<file>.json).
OTHER_DATA_KEYS = {"data.root", "data.val_annotations", "data.image_dir", "data.val_image_dir", "data.dataset"}


def _given_keys(overrides) -> set[str]:
    """The config keys ``--set KEY=VALUE`` names."""
    return {item.partition("=")[0].strip() for item in overrides or ()}


def _check_trained_settings(cfg, checkpoint: Path, overrides) -> None:
    """ValueError where the config's input size, input norm or box margin differs from the training data's that
    ``checkpoint`` carries (``checkpoint_settings``) and ``--set`` does not say so on purpose: the crops would not
    be the ones the model learnt from."""
    from .data.crop import crop_size
    from .predict import checkpoint_settings

    given = _given_keys(overrides)
    same = {"input_size": lambda a, b: crop_size(a) == crop_size(b)}
    for key, trained in checkpoint_settings(checkpoint).items():
        if key == "sigma" or f"data.{key}" in given:
            continue
        value = getattr(cfg.data, key)
        if not same.get(key, lambda a, b: a == b)(value, trained):
            def shown(v):  # as --set takes it
                return f"[{','.join(map(str, v))}]" if isinstance(v, (list, tuple)) else str(v)
            raise ValueError(f"{checkpoint} was trained with data.{key} = {shown(trained)}, the config has "
                             f"{shown(value)}: pass --set data.{key}={shown(trained)} (or another value on purpose)")


def _cmd_eval(args) -> int:
    import cv2
    import torch

    from .checkpoint import checkpoint_file
    from .data.build import build_dataset, build_detections
    from .data.coco_detections import COCODetections
    from .data.mpii import MPII
    from .device import resolve_device
    from .eval import coco_predictions, evaluate, format_table, write_mpii_predictions
    from .eval.evaluate import check_nms_sigmas
    from .eval.mpii_results import check_results_path
    from .models import StackedHourglass
    from .predict import AMP_DTYPES, check_refine, dark_kernel_for, decoding_conventions, fast_inference
    from .visualize import save_predictions_picture

    workdir = Path(args.workdir) if args.workdir else None
    checkpoint = Path(args.checkpoint) if args.checkpoint else (workdir / "best.safetensors" if workdir else None)
    config = args.config or (workdir / "config.yaml" if workdir else None)
    results = Path(args.results) if args.results else None
    try:
        if checkpoint is None:
            raise ValueError("give --checkpoint (or --workdir holding best.safetensors)")
        if workdir is not None and workdir.exists() and not workdir.is_dir():
            raise ValueError(f"--workdir {workdir} is a file: give the run's folder ({workdir.parent}), or the "
                             f"weights as --checkpoint")
        checkpoint_file(checkpoint)  # missing, or a folder: named before anything else
        if args.threads < 0:
            raise ValueError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        thresholds = _thresholds(args.thresholds) if args.thresholds else None
        if config is None and args.preset is None:
            config = checkpoint.parent / "config.yaml"  # the training run's config beside its weights
            if not config.is_file():
                raise ValueError(f"no config for {checkpoint} (no config.yaml beside it): give a config file, "
                                 f"--preset or --workdir")
        if args.picture and not cv2.haveImageWriter(args.picture):  # before the evaluation, not after it
            raise ValueError(f"--picture {args.picture}: not an image format OpenCV writes (use .jpg or .png)")
        cfg = _config(argparse.Namespace(preset=args.preset, config=config, set=args.set))
        _check_trained_settings(cfg, checkpoint, args.set)
        if args.results and cfg.data.dataset not in ("coco", "mpii"):
            raise ValueError("--results writes COCO's keypoint results format or an MPII predictions h5: it needs "
                             "COCO-format or MPII-format data (data.dataset=coco or mpii)")
        if results and cfg.data.dataset == "mpii" and results.suffix.lower() not in (".h5", ".hdf5", ".mat"):
            raise ValueError(f"--results {args.results}: MPII-format data gets an h5 file of predictions (name it "
                             f"*.h5), or a MATLAB one (*.mat)")
        if results and cfg.data.dataset == "coco" and results.suffix.lower() != ".json":
            raise ValueError(f"--results {args.results}: COCO-format data gets a JSON file of COCO's keypoint "
                             f"results (name it *.json)")
        min_score, nms_threshold = _detection_args(args, cfg.data.dataset)
        given_kernel = _dark_kernel(args)
        dark_kernel = check_refine(args.refine, dark_kernel_for(cfg.data.sigma) if given_kernel is None
                                   else given_kernel)[1]
        if args.threads:
            torch.set_num_threads(args.threads)
        model = fast_inference(StackedHourglass.from_checkpoint(checkpoint), args.fused).to(resolve_device(args.device))
        said_norm = cfg.data.input_norm != "none" or "data.input_norm" in _given_keys(args.set)
        half_pixel, flip_shift, input_norm = decoding_conventions(model, args.half_pixel, args.flip_shift,
                                                                  cfg.data.input_norm if said_norm else None)
        dataset = (build_detections(cfg.data, args.detections, min_score, _model_skeleton(model, checkpoint))
                   if args.detections else build_dataset(cfg.data, "val"))
        annotations = getattr(dataset, "annotations", None)
        # a work dir keeps the results of both protocols, and of other data than its own, apart from its eval.json
        other_data = annotations is not None and _given_keys(args.set) & OTHER_DATA_KEYS
        suffix = ("_detections" if args.detections else "") + (f"_{annotations.stem}" if other_data else "")
        picture = Path(args.picture) if args.picture else (workdir / f"eval{suffix}.jpg" if workdir else None)
        out = Path(args.json) if args.json else (workdir / f"eval{suffix}.json" if workdir else None)
        inputs = [checkpoint, *([config] if config else []), *([annotations] if annotations else []),
                  *([args.detections] if args.detections else [])]
        _check_outputs(inputs, [(flag, [path]) for flag, path in (("--json", out), ("--picture", picture),
                                                                  ("--results", results)) if path], flag=None)
        image_dir = getattr(dataset, "image_dir", None)
        if picture and picture.exists() and image_dir and picture.resolve().is_relative_to(image_dir.resolve()):
            raise ValueError(f"--picture {picture} would replace a file in the dataset's image folder {image_dir}")
        if isinstance(dataset, MPII) and results:
            check_results_path(results, dataset)
        why = dataset.no_ground_truth() if isinstance(dataset, (MPII, COCODetections)) else None
        if why and not results:
            raise ValueError(f"{why}; give --results {'preds.h5' if isinstance(dataset, MPII) else 'r.json'} to "
                             f"write the predictions")
        if results and args.detections:
            check_nms_sigmas(dataset, nms_threshold)  # before predicting every box, not after
        thresholds = thresholds or cfg.thresholds()
        table, preds = evaluate(model, dataset, thresholds, nms_threshold, args.inclusive,
                                batch_size=args.batch_size, workers=cfg.data.workers, flip=args.flip,
                                flip_shift=flip_shift, channels_last=args.fused, autocast_dtype=AMP_DTYPES[args.amp],
                                input_norm=input_norm, half_pixel=half_pixel, truncate=args.truncate,
                                refine=args.refine, dark_kernel=dark_kernel)
        coco_results = coco_predictions(dataset, preds, nms_threshold) if results and cfg.data.dataset == "coco" \
            else None
    except ValueError as exc:
        return _fail("eval", _as_flag(exc))
    except (FileNotFoundError, ImportError) as exc:
        return _fail("eval", exc)
    normalisers = {"mpii": "0.6 x head-box diagonal (h5 normalize)", "coco": "longer side of the person box",
                   "synthetic": "figure standing height"}
    table.update(checkpoint=str(checkpoint), checkpoint_layout=model.checkpoint_layout, dataset=cfg.data.dataset,
                 input_norm=input_norm, half_pixel=half_pixel, truncate=args.truncate, flip_shift=flip_shift,
                 refine=args.refine, amp=args.amp,
                 fused_active=bool(getattr(model, "fused_active", False)))
    if "pck" in table:
        table["normaliser"] = normalisers[cfg.data.dataset]
    if args.refine == "dark":
        table["dark_kernel"] = dark_kernel
    boxes = (f" in the detected boxes of {args.detections} (score >= {min_score:g}; left out: {dataset.skipped}; "
             f"OKS-NMS {nms_threshold:g})" if args.detections else "")
    if annotations is not None:
        table["annotations"] = str(annotations)
    split = Path(annotations).name if annotations is not None else "val"
    print(f"{cfg.data.dataset} {split}, {table['samples']} samples{boxes}, flip test {args.flip}, checkpoint "
          f"{checkpoint}")
    if model.checkpoint_layout != "hgfast":
        print(f"a {model.checkpoint_layout}-layout checkpoint: decoded as its peers do, half pixel {half_pixel}, flip "
              f"shift {flip_shift}, input norm {input_norm} (--[no-]half-pixel, --[no-]flip-shift to change)")
    print(format_table(table))
    try:
        if out:
            _write_json(table, out)
            print(f"wrote {out}")
        if coco_results is not None:
            _write_json(coco_results, results)
            print(f"wrote {results} ({_people(len(coco_results))})")
        elif results:
            write_mpii_predictions(results, dataset, preds, checkpoint=str(checkpoint), flip_test=args.flip)
            print(f"wrote {results} ({len(dataset)} samples, in the coordinates of {dataset.annotations.name})")
        if picture:
            save_predictions_picture(dataset, preds, picture)
            print(f"wrote {picture}")
    except OSError as exc:
        return _fail("eval", exc)
    return 0


def _model_skeleton(model, checkpoint: Path):
    """The skeleton stored with ``model``'s checkpoint, or None; a ValueError names the checkpoint."""
    from .data.skeleton import Skeleton

    try:
        return Skeleton.from_model(model)
    except ValueError as exc:
        raise ValueError(f"checkpoint {checkpoint}: its stored skeleton: {exc}") from exc


def _cmd_score(args) -> int:
    from .eval import format_table, score_mpii_predictions
    from .eval.coco_score import score_coco_results

    out = Path(args.json) if args.json else None
    coco = Path(args.predictions).suffix.lower() == ".json"
    try:
        _check_outputs([args.predictions, args.annotations], [("--json", [out])] if out else [], flag=None)
        given = [flag for flag, value in (("--thresholds", args.thresholds), ("--inclusive", args.inclusive or None),
                                          ("--oks-sigmas", args.oks_sigmas), ("--category-id", args.category_id))
                 if value is not None]
        wrong = [f for f in given if (f in ("--oks-sigmas", "--category-id")) != coco]
        if wrong:
            raise ValueError(f"{wrong[0]} applies to {'MPII predictions (.h5)' if coco else 'COCO results (.json)'}"
                             f", not to {args.predictions}")
        if coco:
            sigmas = _thresholds(args.oks_sigmas, "--oks-sigmas") if args.oks_sigmas else None
            table = score_coco_results(args.predictions, args.annotations, args.category_id, sigmas)
        else:
            thresholds = _thresholds(args.thresholds) if args.thresholds else (0.5, 0.1)
            table = score_mpii_predictions(args.predictions, args.annotations, thresholds, args.inclusive)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        return _fail("score", exc)
    table.update(predictions=str(args.predictions), annotations=str(args.annotations))
    print(f"{args.predictions} against {args.annotations}, " + (
        f"{_people(table['results'])} (OKS AP over every image; results of other categories left out: "
        f"{table['other_categories']})" if coco else
        f"{table['samples']} samples ({'<=' if args.inclusive else '<'} threshold x normalize)"))
    print(format_table(table))
    if out:
        try:
            _write_json(table, out)
        except OSError as exc:
            return _fail("score", exc)
        print(f"wrote {out}")
    return 0


def _cmd_convert_mpii(args) -> int:
    from .data.peer_mpii import convert_peer_annotations

    try:
        written = convert_peer_annotations(args.annotations, args.out, args.head_boxes, args.overwrite)
    except (ValueError, OSError, ImportError) as exc:
        return _fail("convert-mpii", exc)
    for w in written:
        notes = [f"{w['scorable']} scorable" + (f" (PCKh normaliser from {args.head_boxes})" if w["scorable"] else
                                                 " (no head boxes: trainable, not scorable)")] if w["joints"] else \
            ["no labels (a test split: predictions only)"]
        notes += [f"{w['left_out']} without a position left out"] if w["left_out"] else []
        notes += [f"{w['dropped']} joints the head-box file marks missing left unannotated"] if w["dropped"] else []
        notes += [f"{w['added']} joints only the head-box file has taken from it"] if w["added"] else []
        print(f"wrote {w['path']}: {_people(w['people'])}, {w['joints']} annotated joints; {'; '.join(notes)}")
    return 0


def _people(n: int) -> str:
    return "1 person" if n == 1 else f"{n} people"


def _thresholds(text: str, flag: str = "--thresholds") -> list[float]:
    """``--thresholds 0.5,0.1`` (or another ``flag`` taking such a list): numbers > 0 (finite); ValueError naming
    the flag."""
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 < v < math.inf for v in values):
        raise ValueError(f"{flag} must be comma-separated numbers > 0, e.g. 0.5,0.1; got {text!r}")
    return values


def _parse_box(text: str) -> tuple[float, ...]:
    from .data.crop import checked_box

    try:
        return checked_box(text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--box x,y,w,h: {exc}") from None


def parse_input_size(text: str):
    """``--input-size`` / ``--input``: ``S`` (S × S) or ``HxW`` → S or (H, W) (checked against the model later)."""
    try:
        sides = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        sides = ()
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"expected S or HEIGHTxWIDTH in pixels (e.g. 256 or 256x192), got {text!r}")
    return sides[0] if len(sides) == 1 else sides


def _input_size(args, checkpoint: Path):
    """``--input-size``, else the training data's (``checkpoint_settings``), else 256."""
    from .predict import checkpoint_settings

    return args.input_size or checkpoint_settings(checkpoint).get("input_size", 256)


# Library arguments whose errors reach the CLI, by the flag that sets them.
_FLAGS = {"input_size": "--input-size", "batch_size": "--batch-size", "box_margin": "--box-margin",
          "dark_kernel": "--dark-kernel", "device": "--device"}


def _as_flag(exc: ValueError) -> ValueError:
    """``exc`` with the library argument its message starts with (``Predictor: box_margin must ...``) written as
    the flag that sets it (``--box-margin must ...``); ``exc`` itself where it names none."""
    message = str(exc).removeprefix("Predictor: ")
    name = next((n for n in _FLAGS if message.startswith(n + " ")), None)
    return exc if name is None else ValueError(_FLAGS[name] + message[len(name):])


def _predictor(args):
    """The ``Predictor`` of ``--checkpoint`` and the ``_add_predictor_args`` options."""
    from .predict import Predictor

    try:
        return Predictor(Path(args.checkpoint), args.input_size, args.device, args.flip, args.batch_size,
                         input_norm=args.input_norm, box_margin=args.box_margin, half_pixel=args.half_pixel,
                         truncate=args.truncate, flip_shift=args.flip_shift, fused=args.fused, amp=args.amp,
                         refine=args.refine, dark_kernel=_dark_kernel(args))
    except ValueError as exc:
        raise _as_flag(exc) from exc


def _cmd_video(args) -> int:
    from .data.crop import box_overlaps
    from .smoothing import PeopleSmoother
    from .video import VideoFrames, predict_video, predict_video_boxes, read_frame_boxes

    out = Path(args.out)
    try:
        threshold = 0.2 if args.track_threshold is None else args.track_threshold
        if not 0 <= threshold <= 1:
            raise ValueError(f"--track-threshold must be in [0, 1], got {threshold}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        images = [path for path in args.videos if Path(path).suffix.lower() in IMAGE_SUFFIXES]
        if images:
            raise ValueError(f"videos: {images[0]} is an image, not a video (OpenCV would read it as one frame, "
                             f"and a truncated one as grey): hgfast predict takes images")
        if args.no_track and args.track_threshold is not None:
            raise ValueError("--track-threshold sets how the crop follows the person: not with --no-track")
        min_score = _boxes_min_score(args)
        smoother_settings = _smoother_settings(args)
        if args.boxes is not None:
            given = [flag for flag, on in (("--box", args.box), ("--no-track", args.no_track),
                                           ("--track-threshold", args.track_threshold is not None),
                                           ("several videos", len(args.videos) > 1)) if on]
            if given:
                raise ValueError(f"--boxes gives one video's people frame by frame, without tracking: not with "
                                 f"{' or '.join(given)}")
        outputs = [(out / f"{Path(p).stem}_pose.mp4", out / f"{Path(p).stem}.json") for p in args.videos]
        _check_outputs([*args.videos, *([args.boxes] if args.boxes else [])], list(zip(args.videos, outputs)))
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
        predictor = _predictor(args)
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
            _write_json({"video": str(path), "fps": video.fps, "size": list(video.size),
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
        return _fail("video", exc)
    return 0


def _check_outputs(inputs: list, outputs: list[tuple[str, list[Path]]], flag: str | None = "--out") -> None:
    """ValueError where an output file would replace one of ``inputs`` (images, videos, the --boxes file, a
    checkpoint, ...) or another output, or cannot be written (``_check_writable``); ``outputs``: ``(what it is
    written for, its files)``; ``flag``: the option naming the files (None: each output's own, its "what")."""
    given = {Path(p).resolve() for p in inputs}
    seen: set[Path] = set()
    for owner, files in outputs:
        for f in files:
            _check_writable(Path(f), flag or owner)  # a folder where a file goes, a file where its folder is
        for f in (Path(f).resolve() for f in files):
            if f in given or f in seen:
                raise ValueError(f"the output {f} of {owner} would replace " +
                                 ("an input" if f in given else "another output") +
                                 (" (give --out another folder, or rename)" if flag == "--out" else ""))
            seen.add(f)


def _smoother_settings(args) -> dict | None:
    """``PeopleSmoother``'s settings from ``--smooth``, ``--smooth-min-cutoff`` and ``--smooth-beta`` (checked);
    None without ``--smooth``."""
    from . import smoothing

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

    from .video import BoxIds, video_writer
    from .visualize import draw_skeleton

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


def _cmd_predict(args) -> int:
    import cv2

    from .data.crop import box_overlaps
    from .data.mpii import read_image
    from .visualize import draw_skeleton, save_image

    try:
        args.images = _image_paths(args.images)
        people = _people_boxes(args)
        for path in args.images:  # every file, before any work: its existence and a decoder for its header
            if not Path(path).is_file():
                raise FileNotFoundError(f"image not found: {path}")
            if not cv2.haveImageReader(str(path)):
                raise ValueError(f"not an image file OpenCV reads: {path}")
        out, taken = Path(args.out), set()
        pictures = [out / _picture_name(Path(path).stem, taken) for path in args.images]
        _check_outputs([*args.images, *([args.boxes] if args.boxes else [])],
                       [*zip(args.images, [[p] for p in pictures]), ("all images", [out / "predictions.json"])])
        predictor = _predictor(args)
    except (ValueError, FileNotFoundError) as exc:
        return _fail("predict", exc)
    results, written, joints = [], 0, predictor.skeleton.names
    try:
        for start in range(0, len(args.images), args.batch_size):  # a batch of images in memory at a time
            paths, found_in = args.images[start:start + args.batch_size], people[start:start + args.batch_size]
            images = [read_image(p) for p in paths]
            flat = [(i, box) for i, found in enumerate(found_in) for box, _ in found]
            for i, box in flat:
                size = images[i].shape[1::-1]
                if box is not None and not box_overlaps(box, size):
                    raise ValueError(f"{'--boxes' if args.boxes else '--box'}: the box {list(box)} lies outside "
                                     f"the {size[0]}x{size[1]} image {paths[i]}")
            keypoints, scores = predictor([images[i] for i, _ in flat], [box for _, box in flat])
            out.mkdir(parents=True, exist_ok=True)
            person = 0
            for path, image, found, picture in zip(paths, images, found_in, pictures[start:start + len(paths)]):
                for box, box_score in found:  # every person of the image on one picture
                    kp, sc = keypoints[person], scores[person]
                    person += 1
                    image = draw_skeleton(image, kp, limbs=predictor.skeleton.limbs)
                    results.append({"image": str(path), "box": box, "picture": str(picture),
                                    **({} if box_score is None else {"box_score": box_score}),
                                    "keypoints": {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in
                                                  zip(joints, kp)},
                                    "scores": {n: round(float(s), 4) for n, s in zip(joints, sc)}})
                save_image(image, picture)
                written += 1
    except (ValueError, OSError) as exc:  # a later image that fails to decode, a picture that cannot be written
        done = f"{written} of {len(args.images)} pictures written, predictions.json not" if written else \
            "nothing written"
        return _fail("predict", f"{exc} ({done})")
    _write_json(results, out / "predictions.json")
    print(f"wrote {out / 'predictions.json'} ({_people(len(results))}) and {written} picture(s) in {out}")
    return 0


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".tar", ".ckpt")  # what --onnx must not overwrite


def _image_paths(given: list[str]) -> list[str]:
    """``given`` with each folder replaced by its image files (``IMAGE_SUFFIXES``, any case; not its subfolders),
    sorted by name; ValueError for a folder without any."""
    out = []
    for path in given:
        if not Path(path).is_dir():
            out.append(path)
            continue
        found = sorted(str(f) for f in Path(path).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not found:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder {path}")
        out.extend(found)
    return out


def _picture_name(stem: str, taken: set) -> str:
    """``<stem>_pose.jpg``, or ``<stem>_pose_2.jpg``, ... where ``taken`` has it (a/x.jpg and b/x.jpg); added to
    ``taken``."""
    name, n = f"{stem}_pose.jpg", 1
    while name in taken:
        n += 1
        name = f"{stem}_pose_{n}.jpg"
    taken.add(name)
    return name


def _boxes_min_score(args) -> float | None:
    """``--min-score`` (None if not given): refused without ``--boxes`` and unless finite."""
    if args.min_score is None:
        return None
    if args.boxes is None:
        raise ValueError("--min-score applies to the scored boxes of --boxes")
    if not math.isfinite(args.min_score):
        raise ValueError(f"--min-score must be a number, got {args.min_score}")
    return args.min_score


def _people_boxes(args) -> list[list[tuple]]:
    """Per image of ``args.images``, its people as ``(box or None (the whole image), detector score or None)``:
    from ``--boxes`` (a JSON file), else ``--box`` (once for all images or once per image), else the whole image."""
    from .predict import read_boxes_file

    min_score = _boxes_min_score(args)
    if args.boxes is not None:
        if args.box:
            raise ValueError("give --box or --boxes, not both")
        return read_boxes_file(args.boxes, args.images, min_score)
    boxes = args.box or [None]
    if len(boxes) not in (1, len(args.images)):
        raise ValueError(f"give one --box for all images or one per image ({len(args.images)}), got {len(boxes)}")
    return [[(box, None)] for box in (boxes * len(args.images) if len(boxes) == 1 else boxes)]


def _cmd_export(args) -> int:
    from .export import export_onnx
    from .models import StackedHourglass

    try:
        checkpoint, onnx = Path(args.checkpoint), Path(args.onnx)
        _check_writable(onnx, "--onnx")
        if onnx.resolve() == checkpoint.resolve() or onnx.suffix.lower() in CHECKPOINT_SUFFIXES:
            raise ValueError(f"--onnx {onnx} would replace " + ("the --checkpoint it exports" if onnx.resolve() ==
                             checkpoint.resolve() else f"a checkpoint ({onnx.suffix} file)") +
                             ": give a .onnx path")
        model = StackedHourglass.from_checkpoint(checkpoint)
        diff = export_onnx(model, args.onnx, _input_size(args, checkpoint), args.opset, check=not args.no_check,
                           last_stack=args.last_stack)
    except (ValueError, OSError, ImportError) as exc:
        return _fail("export", _as_flag(exc) if isinstance(exc, ValueError) else exc)
    check = "" if diff is None else f"; onnxruntime max |diff| vs PyTorch = {diff:.3g}"
    print(f"wrote {args.onnx}{check}")
    return 0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config file (keys as in hgfast/train/config.py)")
    p.add_argument("--preset", help="start from a named preset: cpu-small, mpii-hg2, mpii-hg8, coco-hg2")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable), "
                   "e.g. --set optim.lr=1e-3 --set model.nstack=4")


def _add_speed_args(p: argparse.ArgumentParser) -> None:
    from .predict import AMP_DTYPES

    p.add_argument("--fused", action="store_true", help="run the fused Triton model (channels_last) where it runs "
                   "(a CUDA device); elsewhere the reference path, with a warning")
    p.add_argument("--amp", choices=list(AMP_DTYPES), default="none", help="autocast dtype (default none: fp32)")


def _add_switch(p: argparse.ArgumentParser, name: str, on: str, off: str) -> None:
    """``--NAME`` / ``--no-NAME``: True / False in ``args.NAME`` (dashes as underscores), None if neither."""
    dest = name.replace("-", "_")
    p.add_argument(f"--{name}", dest=dest, action="store_const", const=True, default=None, help=on)
    p.add_argument(f"--no-{name}", dest=dest, action="store_const", const=False, help=off)


def _add_decode_args(p: argparse.ArgumentParser) -> None:
    layout = "(default: the checkpoint's layout: %s for princeton-vl / bearpaw / anibali checkpoints, %s for hgfast's)"
    _add_switch(p, "flip-shift", "with --flip: shift the mirrored heatmaps by 3/4 pixel, so flip testing adds no "
                "bias " + layout % ("off", "on"), "with --flip: no shift (the hourglass peers do not shift)")
    _add_switch(p, "half-pixel", "add 0.5 heatmap pixel before mapping back, the decoding of the hourglass peers' "
                "checkpoints (see hgfast.predict) " + layout % ("on", "off"), "no half-pixel shift")
    p.add_argument("--truncate", action="store_true", help="integer final coordinates (toward zero), as "
                   "princeton-vl reports them (the Lua code and bearpaw add 1 for MATLAB's 1-based pixels)")
    p.add_argument("--refine", choices=("quarter", "none", "dark"), default="quarter", help="sub-pixel step after "
                   "the heatmap peak: quarter pixel toward the higher neighbour (default), none, or DARK (Zhang et al. "
                   "2020; pairs with hgfast's unbiased targets)")
    p.add_argument("--dark-kernel", type=int, help="with --refine dark: the odd blur size (default: 2 round(3 "
                   "sigma) - 1 for the training targets' sigma, 11 for sigma 2; eval: the config's sigma; predict: "
                   "the checkpoint's, else 11)")


def _add_predictor_args(p: argparse.ArgumentParser, out: str = "predictions") -> None:
    """The ``Predictor`` options of ``predict`` and ``video`` (``_predictor`` reads them)."""
    from .predict import INPUT_NORMS

    p.add_argument("--input-size", type=parse_input_size, metavar="S|HxW", help="crop size, S or HEIGHTxWIDTH "
                   "(default: the training data's, stored in the checkpoint (or its config.yaml), else 256)")
    p.add_argument("--flip", action="store_true", help="flip test")
    p.add_argument("--input-norm", choices=sorted(INPUT_NORMS), help="the input normalisation the model was "
                   "trained with: none ([0, 1] RGB), bearpaw (minus the MPII mean), anibali (MPII mean/std) "
                   "(default: the training data's, stored in the checkpoint (or its config.yaml), else none)")
    _add_decode_args(p)
    p.add_argument("--box-margin", type=float, help="crop / the box at the input's aspect (default: the training "
                   "data's, stored in the checkpoint (or its config.yaml), else 1.25)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    _add_speed_args(p)
    p.add_argument("--batch-size", type=int, default=32, help="crops per forward pass (default 32); predict also "
                   "reads this many images at a time")
    p.add_argument("--out", default=out, help=f"output folder (default {out})")


def _add_inclusive_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inclusive", action="store_true", help="PCK: a joint counts at distance <= threshold x "
                   "normaliser (HRNet's test) instead of < (bearpaw's, mmpose's)")


def register(sub) -> None:
    """Add the train / eval / score / predict / video / export subcommands to the ``hgfast`` parser's subparsers."""
    from . import smoothing

    p = sub.add_parser("train", help="train a model (synthetic figures by default)")
    _add_config_args(p)
    p.add_argument("--workdir", help="output folder (config key 'workdir')")
    p.add_argument("--resume", nargs="?", const="auto", help="continue from <workdir>/last.state.pt, or the "
                   "given work dir / state file (its folder is then the work dir unless --workdir); without a config "
                   "or preset, the run's config.yaml (else the state's config) is used; the model section, "
                   "optim.name, amp and data.input_size must not change")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a work dir that holds an earlier run "
                   "(its checkpoints, config, log, metrics, val/ and vis/ step files and eval results are removed "
                   "first; nothing else); without it such a work dir is refused")
    p.add_argument("--fused", action="store_true", help="use the fused Triton model where it runs")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="PCK / PCKh (COCO data: and OKS AP) of a checkpoint on the validation split "
                       "(table + JSON)")
    _add_config_args(p)
    p.add_argument("--workdir", help="a training work dir: its config.yaml and best.safetensors; writes "
                   "eval.json and eval.jpg there (with --detections: eval_detections.json, .jpg)")
    p.add_argument("--checkpoint", help="weights (.safetensors or a peer .pth); without a config, --preset or "
                   "--workdir, the config.yaml beside it is used")
    p.add_argument("--flip", action="store_true", help="flip test (average with the mirrored crop)")
    _add_decode_args(p)
    p.add_argument("--thresholds", help="comma-separated, e.g. 0.5,0.1 (default: the config's)")
    _add_inclusive_arg(p)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    _add_speed_args(p)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--results", help="write the predictions here: COCO-format data in COCO's keypoint results "
                   "format (JSON); MPII-format data as an h5 'preds' file (N, K, 2) in the annotation file's "
                   "coordinates, for MPII's evaluation and submission scripts (also for an unlabelled test split: "
                   "--set data.val_annotations=annot/test.h5), or named *.mat as a MATLAB file, HRNet's pred.mat "
                   "and bearpaw's preds_valid.mat")
    p.add_argument("--picture", help="write predictions on 16 validation images here (.jpg/.png)")
    p.add_argument("--detections", metavar="JSON", help="COCO-format data: predict in these detected person boxes "
                   "(COCO results format: image_id, category_id, bbox, score) instead of the ground-truth ones, "
                   "and report OKS AP over all validation images (COCO's detected-box protocol); on an image-info "
                   "file (COCO's test-dev, no annotations) predictions only, with --results")
    p.add_argument("--min-score", type=float, help="with --detections: leave out boxes scored below "
                   "this (default 0, as HRNet and mmpose)")
    p.add_argument("--nms-threshold", type=float, help="COCO-format data: OKS-NMS per image drops a person "
                   "whose OKS with a better-scored one exceeds this, in detected or ground-truth boxes, as HRNet "
                   "and mmpose (default 0.9; 1: no NMS)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("score", help="PCK / PCKh of an MPII-style predictions file, or OKS AP of a COCO results "
                       "file (hgfast eval --results, or another model's) against an annotation file: no model, no "
                       "images")
    p.add_argument("predictions", help="an h5 file with 'preds' (N, K, 2) in the annotation file's coordinates and "
                   "row order (and 'imgname', checked row by row, where it has one; a MATLAB .mat with 'preds' too, "
                   "as HRNet's pred.mat and bearpaw's preds_valid.mat), or a .json COCO keypoint results file "
                   "(image_id, category_id, keypoints, score)")
    p.add_argument("--annotations", required=True, help="the MPII-style h5 annotation file (e.g. annot/valid.h5) "
                   "or COCO keypoint file (e.g. person_keypoints_val2017.json)")
    p.add_argument("--thresholds", help="MPII: PCK thresholds, comma-separated (default 0.5,0.1)")
    _add_inclusive_arg(p)
    p.add_argument("--oks-sigmas", help="COCO: the joints' OKS sigmas, comma-separated (default COCO's, for its 17 "
                   "joints)")
    p.add_argument("--category-id", type=int, help="COCO: the keypoint category scored, where the file has "
                   "several (an integer id; results of the others are left out)")
    p.add_argument("--json", help="write the table here")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("convert-mpii", help="MPII annotations in bearpaw's, HRNet's or mmpose's JSON format to "
                       "the h5 files hgfast trains and scores on (train.h5, valid.h5, ...)")
    p.add_argument("annotations", help="bearpaw's mpii_annotations.json (.json.gz too: both splits), or HRNet's / "
                   "mmpose's train.json, valid.json, test.json (mpii_val.json, ...: one split each)")
    p.add_argument("--head-boxes", help="the evaluation .mat with the validation split's head boxes (HRNet's "
                   "gt_valid.mat, mmpose's mpii_gt_val.mat, bearpaw's detections_our_format.mat): the PCKh "
                   "normaliser of the validation split (a file before MATLAB v7.3 needs scipy: pip install "
                   "'hgfast[mat]')")
    p.add_argument("--out", required=True, help="folder for the h5 files (e.g. /data/mpii/annot)")
    p.add_argument("--overwrite", action="store_true", help="replace h5 files already there")
    p.set_defaults(func=_cmd_convert_mpii)

    p = sub.add_parser("predict", help="keypoints for images: JSON and pictures with the skeleton drawn")
    p.add_argument("images", nargs="+", help="image files, or folders of them (their .jpg, .png, ... files, "
                   "sorted by name, not their subfolders)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--box", type=_parse_box, action="append", metavar="X,Y,W,H",
                   help="person box in pixels (the whole image is 0,0,W,H): once for all images or once per image "
                   "(default: the whole image)")
    p.add_argument("--boxes", metavar="JSON", help="several people per image: a JSON object mapping each image "
                   "(path as given, or file name) to its boxes, [x, y, w, h], [x, y, w, h, score] or {\"bbox\": "
                   "[x, y, w, h], \"score\": s} (a detector's output); all of an image's people go on its picture "
                   "(an image with no box: no entry in predictions.json, the picture as it is)")
    p.add_argument("--min-score", type=float, help="with --boxes: leave out boxes scored below this")
    _add_predictor_args(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("video", help="keypoints on every frame of videos, drawn into a copy: one person followed, "
                       "or a detector's people per frame (--boxes)")
    p.add_argument("videos", nargs="+", help="video files (what OpenCV reads: .mp4, .avi, ...)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--box", type=_parse_box, metavar="X,Y,W,H", help="the person's box in the first frame "
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
    _add_predictor_args(p, out="videos")
    p.set_defaults(func=_cmd_video)

    p = sub.add_parser("export", help="export the (unfused) model to ONNX")
    p.add_argument("--onnx", required=True, metavar="PATH", help="output .onnx file")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input-size", type=parse_input_size, metavar="S|HxW", help="input size, S or HEIGHTxWIDTH "
                   "(default: the training data's, stored in the checkpoint (or its config.yaml), else 256)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--last-stack", action="store_true", help="output the last stack's heatmaps (B, K, H/4, W/4) "
                   "alone, the prediction inference decodes (default: every stack's, (B, nstack, K, H/4, W/4))")
    p.set_defaults(func=_cmd_export)
