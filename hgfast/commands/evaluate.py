"""``hgfast eval``: a checkpoint on a validation split (ground-truth or detected boxes), tables, pictures and
results files."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from .common import (add_config_args, add_decode_args, add_inclusive_arg, add_speed_args, as_flag, check_outputs,
                     dark_kernel_arg, fail, parse_thresholds, people_text, resolve_config, write_json)

def _detection_args(args, dataset: str) -> tuple[float, float]:
    """``--min-score`` and ``--nms-threshold`` (defaults 0 and 0.9): the first refused without ``--detections``,
    the second without COCO-format data (OKS-NMS thins people in either kind of box); ``--detections`` needs
    COCO-format data and takes no PCK ``--thresholds`` or ``--inclusive``."""
    from ..eval.oks import check_nms_threshold

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


# Config keys that make eval --workdir evaluate other data than the run's own (results then go to eval_<file>.json).
OTHER_DATA_KEYS = {"data.root", "data.val_annotations", "data.image_dir", "data.val_image_dir", "data.dataset"}


def _given_keys(overrides) -> set[str]:
    """The config keys ``--set KEY=VALUE`` names."""
    return {item.partition("=")[0].strip() for item in overrides or ()}


def _check_trained_settings(cfg, checkpoint: Path, overrides) -> None:
    """ValueError where the config's input size, input norm or box margin differs from the training data's that
    ``checkpoint`` carries (``checkpoint_settings``) and ``--set`` does not say so on purpose: the crops would not
    be the ones the model learnt from."""
    from ..data.crop import crop_size
    from ..predict import checkpoint_settings

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


def _model_skeleton(model, checkpoint: Path):
    """The skeleton stored with ``model``'s checkpoint, or None; a ValueError names the checkpoint."""
    from ..data.skeleton import Skeleton

    try:
        return Skeleton.from_model(model)
    except ValueError as exc:
        raise ValueError(f"checkpoint {checkpoint}: its stored skeleton: {exc}") from exc


def _cmd_eval(args) -> int:
    import cv2
    import torch

    from ..checkpoint import checkpoint_file
    from ..data.build import build_dataset, build_detections
    from ..data.coco_detections import COCODetections
    from ..data.mpii import MPII
    from ..device import resolve_device
    from ..eval import coco_predictions, evaluate, format_table, write_mpii_predictions
    from ..eval.evaluate import check_nms_sigmas
    from ..eval.mpii_results import check_results_path
    from ..models import StackedHourglass
    from ..predict import (AMP_DTYPES, check_batch_size, check_refine, dark_kernel_for, decoding_conventions,
                           fast_inference)
    from ..train.config import MAX_THREADS
    from ..visualize import save_predictions_picture

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
        if not 0 <= args.threads <= MAX_THREADS:
            raise ValueError(f"--threads must be >= 0 (0: torch's default) and at most {MAX_THREADS}, got "
                             f"{args.threads}")
        check_batch_size(args.batch_size, "--batch-size")
        thresholds = parse_thresholds(args.thresholds) if args.thresholds else None
        if config is None and args.preset is None:
            config = checkpoint.parent / "config.yaml"  # the training run's config beside its weights
            if not config.is_file():
                raise ValueError(f"no config for {checkpoint} (no config.yaml beside it): give a config file, "
                                 f"--preset or --workdir")
        if args.picture and not cv2.haveImageWriter(args.picture):  # before the evaluation, not after it
            raise ValueError(f"--picture {args.picture}: not an image format OpenCV writes (use .jpg or .png)")
        cfg = resolve_config(argparse.Namespace(preset=args.preset, config=config, set=args.set))
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
        given_kernel = dark_kernel_arg(args)
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
        check_outputs(inputs, [(flag, [path]) for flag, path in (("--json", out), ("--picture", picture),
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
        return fail("eval", as_flag(exc))
    except (FileNotFoundError, ImportError) as exc:
        return fail("eval", exc)
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
            write_json(table, out)
            print(f"wrote {out}")
        if coco_results is not None:
            write_json(coco_results, results)
            print(f"wrote {results} ({people_text(len(coco_results))})")
        elif results:
            write_mpii_predictions(results, dataset, preds, checkpoint=str(checkpoint), flip_test=args.flip)
            print(f"wrote {results} ({len(dataset)} samples, in the coordinates of {dataset.annotations.name})")
        if picture:
            save_predictions_picture(dataset, preds, picture)
            print(f"wrote {picture}")
    except OSError as exc:
        return fail("eval", exc)
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("eval", help="PCK / PCKh (COCO data: and OKS AP) of a checkpoint on the validation split "
                       "(table + JSON)")
    add_config_args(p)
    p.add_argument("--workdir", help="a training work dir: its config.yaml and best.safetensors; writes "
                   "eval.json and eval.jpg there (with --detections: eval_detections.json, .jpg)")
    p.add_argument("--checkpoint", help="weights (.safetensors or a peer .pth); without a config, --preset or "
                   "--workdir, the config.yaml beside it is used")
    p.add_argument("--flip", action="store_true", help="flip test (average with the mirrored crop)")
    add_decode_args(p)
    p.add_argument("--thresholds", help="comma-separated, e.g. 0.5,0.1 (default: the config's)")
    add_inclusive_arg(p)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    add_speed_args(p)
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
