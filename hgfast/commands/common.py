"""What the commands share: error reporting, JSON and output checks, argument parsing helpers, the Predictor."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path


def fail(cmd: str, exc: BaseException | str) -> int:
    """Print ``exc`` as one error line (an error raised in a DataLoader worker: its own message, not the worker's
    traceback that PyTorch re-raises it with) and return exit status 2."""
    text = str(exc)
    if "\nOriginal Traceback" in text:  # "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback..."
        last = text.rstrip().splitlines()[-1]
        text = re.sub(r"^[\w.]+: ", "", last) + f" ({text.splitlines()[0].removeprefix('Caught ').rstrip('.')})"
    print(f"hgfast {cmd}: error: {text}", file=sys.stderr)
    return 2


def main_process() -> bool:
    """Not a process of rank > 0 under torchrun (``RANK``)."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def write_json(obj, path: Path) -> None:
    from ..checkpoint import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1))


def check_writable(path: Path | None, flag: str) -> None:
    """ValueError naming ``flag`` where ``path`` cannot become a file: it is a folder, or a part of its folder is a
    file (checked before a long run, not after it)."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder, not a file")
    folder = next((p for p in path.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise ValueError(f"{flag} {path}: {folder} is a file, not a folder")


def resolve_config(args, **top):
    from ..train.config import resolve

    return resolve(args.preset, args.config, args.set or (), **top)


def people_text(n: int) -> str:
    return "1 person" if n == 1 else f"{n} people"


def parse_thresholds(text: str, flag: str = "--thresholds") -> list[float]:
    """``--thresholds 0.5,0.1`` (or another ``flag`` taking such a list): numbers > 0 (finite); ValueError naming
    the flag."""
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 < v < math.inf for v in values):
        raise ValueError(f"{flag} must be comma-separated numbers > 0, e.g. 0.5,0.1; got {text!r}")
    return values


def parse_box(text: str) -> tuple[float, ...]:
    from ..data.crop import checked_box

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


# Library arguments whose errors reach the CLI, by the flag that sets them.
_FLAGS = {"input_size": "--input-size", "batch_size": "--batch-size", "box_margin": "--box-margin",
          "dark_kernel": "--dark-kernel", "device": "--device"}


def as_flag(exc: ValueError) -> ValueError:
    """``exc`` with the library argument its message starts with (``Predictor: box_margin must ...``) written as
    the flag that sets it (``--box-margin must ...``); ``exc`` itself where it names none."""
    message = str(exc).removeprefix("Predictor: ")
    name = next((n for n in _FLAGS if message.startswith(n + " ")), None)
    return exc if name is None else ValueError(_FLAGS[name] + message[len(name):])


def check_outputs(inputs: list, outputs: list[tuple[str, list[Path]]], flag: str | None = "--out") -> None:
    """ValueError where an output file would replace one of ``inputs`` (images, videos, the --boxes file, a
    checkpoint, ...) or another output, or cannot be written (``check_writable``); ``outputs``: ``(what it is
    written for, its files)``; ``flag``: the option naming the files (None: each output's own, its "what")."""
    given = {Path(p).resolve() for p in inputs}
    seen: set[Path] = set()
    for owner, files in outputs:
        for f in files:
            check_writable(Path(f), flag or owner)  # a folder where a file goes, a file where its folder is
        for f in (Path(f).resolve() for f in files):
            if f in given or f in seen:
                raise ValueError(f"the output {f} of {owner} would replace " +
                                 ("an input" if f in given else "another output") +
                                 (" (give --out another folder, or rename)" if flag == "--out" else ""))
            seen.add(f)


def dark_kernel_arg(args) -> int | None:
    """``--dark-kernel`` (None if not given), refused without ``--refine dark``."""
    if args.dark_kernel is not None and args.refine != "dark":
        raise ValueError("--dark-kernel applies to --refine dark")
    return args.dark_kernel


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def build_predictor(args):
    """The ``Predictor`` of ``--checkpoint`` and the ``add_predictor_args`` options."""
    from ..predict import Predictor

    try:
        return Predictor(Path(args.checkpoint), args.input_size, args.device, args.flip, args.batch_size,
                         input_norm=args.input_norm, box_margin=args.box_margin, half_pixel=args.half_pixel,
                         truncate=args.truncate, flip_shift=args.flip_shift, fused=args.fused, amp=args.amp,
                         refine=args.refine, dark_kernel=dark_kernel_arg(args))
    except ValueError as exc:
        raise as_flag(exc) from exc


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config file (keys as in hgfast/train/config.py)")
    p.add_argument("--preset", help="start from a named preset: cpu-small, mpii-hg2, mpii-hg8, coco-hg2")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable), "
                   "e.g. --set optim.lr=1e-3 --set model.nstack=4")


def add_speed_args(p: argparse.ArgumentParser) -> None:
    from ..predict import AMP_DTYPES

    p.add_argument("--fused", action="store_true", help="run the fused Triton model (channels_last) where it runs "
                   "(a CUDA device); elsewhere the reference path, with a warning")
    p.add_argument("--amp", choices=list(AMP_DTYPES), default="none", help="autocast dtype (default none: fp32)")


def add_switch(p: argparse.ArgumentParser, name: str, on: str, off: str) -> None:
    """``--NAME`` / ``--no-NAME``: True / False in ``args.NAME`` (dashes as underscores), None if neither."""
    dest = name.replace("-", "_")
    p.add_argument(f"--{name}", dest=dest, action="store_const", const=True, default=None, help=on)
    p.add_argument(f"--no-{name}", dest=dest, action="store_const", const=False, help=off)


def add_decode_args(p: argparse.ArgumentParser) -> None:
    layout = "(default: the checkpoint's layout: %s for princeton-vl / bearpaw / anibali checkpoints, %s for hgfast's)"
    add_switch(p, "flip-shift", "with --flip: shift the mirrored heatmaps by 3/4 pixel, so flip testing adds no "
                "bias " + layout % ("off", "on"), "with --flip: no shift (the hourglass peers do not shift)")
    add_switch(p, "half-pixel", "add 0.5 heatmap pixel before mapping back, the decoding of the hourglass peers' "
                "checkpoints (see hgfast.predict) " + layout % ("on", "off"), "no half-pixel shift")
    p.add_argument("--truncate", action="store_true", help="integer final coordinates (toward zero), as "
                   "princeton-vl reports them (the Lua code and bearpaw add 1 for MATLAB's 1-based pixels)")
    p.add_argument("--refine", choices=("quarter", "none", "dark"), default="quarter", help="sub-pixel step after "
                   "the heatmap peak: quarter pixel toward the higher neighbour (default), none, or DARK (Zhang et al. "
                   "2020; pairs with hgfast's unbiased targets)")
    p.add_argument("--dark-kernel", type=int, help="with --refine dark: the odd blur size (default: 2 round(3 "
                   "sigma) - 1 for the training targets' sigma, 11 for sigma 2; eval: the config's sigma; predict: "
                   "the checkpoint's, else 11)")


def add_predictor_args(p: argparse.ArgumentParser, out: str = "predictions") -> None:
    """The ``Predictor`` options of ``predict`` and ``video`` (``build_predictor`` reads them)."""
    from ..predict import INPUT_NORMS

    p.add_argument("--input-size", type=parse_input_size, metavar="S|HxW", help="crop size, S or HEIGHTxWIDTH "
                   "(default: the training data's, stored in the checkpoint (or its config.yaml), else 256)")
    p.add_argument("--flip", action="store_true", help="flip test")
    p.add_argument("--input-norm", choices=sorted(INPUT_NORMS), help="the input normalisation the model was "
                   "trained with: none ([0, 1] RGB), bearpaw (minus the MPII mean), anibali (MPII mean/std) "
                   "(default: the training data's, stored in the checkpoint (or its config.yaml), else none)")
    add_decode_args(p)
    p.add_argument("--box-margin", type=float, help="crop / the box at the input's aspect (default: the training "
                   "data's, stored in the checkpoint (or its config.yaml), else 1.25)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    add_speed_args(p)
    p.add_argument("--batch-size", type=int, default=32, help="crops per forward pass (default 32); predict also "
                   "reads this many images at a time")
    p.add_argument("--out", default=out, help=f"output folder (default {out})")


def add_inclusive_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inclusive", action="store_true", help="PCK: a joint counts at distance <= threshold x "
                   "normaliser (MPII's Matlab evaluation's, HRNet's, mmpose 0.x's test) instead of < (bearpaw's, "
                   "mmpose 1.x's)")


def boxes_min_score(args) -> float | None:
    """``--min-score`` (None if not given): refused without ``--boxes`` and unless finite."""
    if args.min_score is None:
        return None
    if args.boxes is None:
        raise ValueError("--min-score applies to the scored boxes of --boxes")
    if not math.isfinite(args.min_score):
        raise ValueError(f"--min-score must be a number, got {args.min_score}")
    return args.min_score
