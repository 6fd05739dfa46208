"""Inference on images: person crops → heatmaps → keypoints in image pixels.

``predict_crops`` is the one place where a batch of crops becomes image-space keypoints (used by training
validation, ``hgfast eval`` and ``Predictor``): the model runs on ``crop / 255`` (then normalised as
``input_norm`` names, below), the last stack's heatmaps are
decoded with ``hgfast.ops.argmax_decode`` (quarter-pixel refinement) and mapped back with
``hgfast.ops.heatmap_to_image`` for the crop's centre, scale and rotation.

Flip test averages the heatmaps of the crop and of its mirror (``hgfast.ops.flip_test``; ``flip_permutation``
is the joint order after a horizontal flip, MPII's by default). Heatmap coordinates are crop coordinates / 4 (as
the training targets), so the mirrored crop of width S (crop x ↦ S − 1 − x) puts a joint at heatmap x
``W − 1/4 − x``, not ``W − 1 − x``; ``flip_shift=True`` (hgfast's models' default) shifts the mirrored heatmaps
right by the exact ``1 − W/S`` = 3/4 pixel (linear interpolation), so flip testing adds no bias.

``input_norm``: what the model was trained on. ``"none"``: RGB in [0, 1] (hgfast, princeton-vl, the paper's
code); ``"bearpaw"``: minus the MPII RGB mean; ``"anibali"``: minus the MPII mean, over the MPII std. A checkpoint
from bearpaw/pytorch-pose or anibali/pytorch-stacked-hourglass loads with the same layout but needs its own.

Decoding conventions (``hgfast.ops.heatmap_to_image``): hgfast's targets put a joint at crop x / 4 exactly, so its
models decode with neither option. The hourglass peers (the Lua code, princeton-vl, bearpaw, anibali) encoded
targets at truncated coordinates and decode with ``half_pixel=True`` (+0.5 heatmap pixel: 2 pixels of a 256²
crop); princeton-vl also truncates the final coordinates toward zero (``truncate=True``). Evaluate their
checkpoints with ``half_pixel=True`` and, with flip testing, ``flip_shift=False`` (they do not shift the mirrored
heatmaps): ``Predictor`` and ``evaluate`` do so by default for a model loaded from such a checkpoint
(``decoding_conventions``).
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .data.coco_format import is_number, read_json
from .data.crop import (MAX_CROP_SIDE, MAX_PIXEL, MIN_BOX_SIDE, box_overlaps, box_to_center_scale, checked_box,
                         checked_margin, crop, crop_size)
from .device import resolve_device
from .ops import MPII_FLIP_PERMUTATION, argmax_decode, flip_test, heatmap_to_image
from .ops.decode import REFINE
from .ops.flip import checked_flip_permutation

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtype by name


MPII_RGB_MEAN = (0.4404, 0.4440, 0.4327)
MPII_RGB_STD = (0.2458, 0.2410, 0.2468)
INPUT_NORMS = {"none": (None, None), "bearpaw": (MPII_RGB_MEAN, None), "anibali": (MPII_RGB_MEAN, MPII_RGB_STD)}


def check_input_norm(input_norm: str) -> str:
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {sorted(INPUT_NORMS)}, got {input_norm!r}")
    return input_norm


def decoding_conventions(model: nn.Module, half_pixel: bool | None = None, flip_shift: bool | None = None,
                         input_norm: str | None = None) -> tuple[bool, bool, str]:
    """``(half_pixel, flip_shift, input_norm)``: each as given, else that of the checkpoint layout ``model`` was
    loaded from (``model.checkpoint_layout``, set by ``StackedHourglass.from_checkpoint``; "hgfast" without one):
    hgfast ``(False, True, "none")``, princeton-vl ``(True, False, "none")``, bearpaw/anibali ``(True, False)`` and
    a ValueError without ``input_norm`` (their checkpoints share one layout but not their input normalisation)."""
    from .models.convert import LAYOUT_DECODING

    layout = getattr(model, "checkpoint_layout", "hgfast")
    conventions = LAYOUT_DECODING.get(layout, LAYOUT_DECODING["hgfast"])
    if input_norm is None and conventions["input_norm"] is None:
        raise ValueError(f"input_norm: a {layout}-layout checkpoint (bearpaw/pytorch-pose or anibali/pytorch-stacked-"
                         f"hourglass) does not say how its inputs were normalised: give input_norm 'bearpaw' (minus "
                         f"the MPII mean) or 'anibali' (MPII mean/std) (hgfast predict/video --input-norm, hgfast "
                         f"eval --set data.input_norm=...)")
    return (conventions["half_pixel"] if half_pixel is None else bool(half_pixel),
            conventions["flip_shift"] if flip_shift is None else bool(flip_shift),
            check_input_norm(conventions["input_norm"] if input_norm is None else input_norm))


def to_input(images: Tensor, device: torch.device, channels_last: bool = False, input_norm: str = "none") -> Tensor:
    """uint8 crops (B, 3, H, W) RGB → float32 model input on ``device``: ``/ 255``, then ``input_norm``."""
    mean, std = INPUT_NORMS[check_input_norm(input_norm)]
    x = images.to(device, non_blocking=True).float().div_(255.0)
    if mean is not None:
        x.sub_(x.new_tensor(mean).view(3, 1, 1))
    if std is not None:
        x.div_(x.new_tensor(std).view(3, 1, 1))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict_crops(model: nn.Module, images: Tensor, center: Tensor, scale: Tensor, rotation: Tensor | None = None,
                  flip: bool = False, flip_shift: bool = True, channels_last: bool = False,
                  autocast_dtype: torch.dtype | None = None,
                  flip_permutation: Sequence[int] = MPII_FLIP_PERMUTATION,
                  input_norm: str = "none", half_pixel: bool = False, truncate: bool = False,
                  refine: str = "quarter", dark_kernel: int = 11) -> tuple[Tensor, Tensor]:
    """Keypoints (B, K, 2) in image pixels and scores (B, K) for uint8 crops ``images`` (B, 3, H, W) cut with
    ``center`` (B, 2), ``scale`` (B,) (box height / 200) and ``rotation`` (B,) degrees (default 0).
    ``half_pixel``, ``truncate``: the legacy decoding conventions of ``heatmap_to_image`` (module docstring);
    ``refine``, ``dark_kernel``: the sub-pixel step of ``argmax_decode`` ("quarter", "none" or "dark")."""
    device = next(model.parameters()).device
    x = to_input(images, device, channels_last, input_norm)
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        heatmaps = model(x)[:, -1].float()
        if flip:
            shift = 1 - heatmaps.shape[-1] / x.shape[-1] if flip_shift else 0.0
            heatmaps = flip_test(heatmaps, model(x.flip(-1))[:, -1].float(), flip_permutation, shift=shift)
    coords, scores = argmax_decode(heatmaps, refine, dark_kernel)
    rotation = torch.zeros_like(scale) if rotation is None else rotation
    f64 = dict(dtype=torch.float64, device=coords.device)
    kp = heatmap_to_image(coords.double(), center.to(**f64), scale.to(**f64), rotation.to(**f64),
                          size=tuple(heatmaps.shape[-2:]), half_pixel=half_pixel, truncate=truncate)
    return kp.float().cpu(), scores.cpu()


# the training data's settings a checkpoint carries, with their checks
INFERENCE_KEYS = {"input_size": crop_size, "input_norm": str, "box_margin": float, "sigma": float}


def checkpoint_settings(path: str | os.PathLike) -> dict:
    """The training data's ``INFERENCE_KEYS`` for an hgfast checkpoint: stored with its weights (``model.save(...,
    inference=)``, as ``hgfast train`` writes them), else, for a ``.safetensors`` file, the ``data`` section of a
    ``config.yaml`` beside it (runs written before they were stored), else ``{}`` (peer checkpoints). A value of
    the wrong type, a sigma not finite and > 0, or a box margin out of ``checked_margin``'s range, is a ValueError
    naming the file."""
    from .checkpoint import read_metadata

    path = Path(path)
    stored, source = read_metadata(path).get("inference"), path
    if not stored and path.suffix == ".safetensors" and (path.parent / "config.yaml").is_file():
        from .train.config import load_yaml

        source = path.parent / "config.yaml"
        stored = load_yaml(source).get("data", {})
    return checked_settings(stored, source) if stored else {}


def checked_settings(stored, source) -> dict:
    """The ``INFERENCE_KEYS`` of the mapping ``stored``, converted and checked (a ValueError naming ``source``)."""
    if not isinstance(stored, dict):
        raise ValueError(f"{source}: the training data settings must be a mapping, got {stored!r}")
    try:
        settings = {k: kind(stored[k]) for k, kind in INFERENCE_KEYS.items() if k in stored}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: bad training data setting ({exc})") from exc
    if "sigma" in settings and not (math.isfinite(settings["sigma"]) and settings["sigma"] > 0):
        raise ValueError(f"{source}: training data setting 'sigma' must be finite and > 0, got {settings['sigma']!r}")
    if "box_margin" in settings:
        checked_margin(settings["box_margin"], f"{source}: training data setting 'box_margin'")
    return settings


MAX_BATCH_SIZE = 2 ** 16  # crops at a time: more is a typo (that many 256² crops are 50 GB of model input)
MAX_DARK_KERNEL = MAX_CROP_SIDE // 4 - 1  # odd, one under the heatmap side of the largest crop


def check_batch_size(batch_size, name: str = "batch_size") -> int:
    """``batch_size`` as an int from 1 to ``MAX_BATCH_SIZE``; a ValueError naming ``name`` otherwise."""
    if not (isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool) and
            1 <= batch_size <= MAX_BATCH_SIZE):
        raise ValueError(f"{name} must be >= 1 and at most {MAX_BATCH_SIZE} (an int), got {batch_size!r}")
    return int(batch_size)


def check_refine(refine: str, dark_kernel: int) -> tuple[str, int]:
    """``(refine, dark_kernel)`` checked before any work: a ValueError names the bad one."""
    if refine not in REFINE:
        raise ValueError(f"refine must be one of {REFINE}, got {refine!r}")
    if not (isinstance(dark_kernel, numbers.Integral) and not isinstance(dark_kernel, bool) and
            0 < dark_kernel <= MAX_DARK_KERNEL and dark_kernel % 2):
        raise ValueError(f"dark_kernel must be a positive odd int up to {MAX_DARK_KERNEL}, got {dark_kernel!r}")
    return refine, int(dark_kernel)


def dark_kernel_for(sigma: float) -> int:
    """The DARK blur size for targets of std ``sigma`` heatmap pixels: the odd ``2·round(3σ) − 1``, at least 3
    and at most ``MAX_DARK_KERNEL`` (11 for σ = 2 and 17 for σ = 3, as DarkPose and mmpose configure it)."""
    return min(MAX_DARK_KERNEL, max(3, 2 * round(3 * float(sigma)) - 1))


def fast_inference(model: nn.Module, fused: bool) -> nn.Module:
    """``model`` itself, with ``fused=True`` set and channels_last weights where ``fused`` (a model without a fused
    path is refused by name)."""
    if not fused:
        return model
    if not hasattr(model, "fused"):
        raise ValueError(f"fused=True needs a hgfast StackedHourglass, got {type(model).__name__}")
    model.fused = True
    return model.to(memory_format=torch.channels_last)


def _as_image(image) -> np.ndarray:
    from .data.mpii import read_image

    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"images must be (H, W, 3) uint8 RGB arrays or file paths, got {image.dtype} "
                         f"array of shape {image.shape}")
    return image


class Predictor:
    """Single-person keypoints for images, each with an optional person box.

    ``Predictor(model_or_checkpoint, input_size=None, device="auto", flip=False, batch_size=32,
    flip_permutation=None, input_norm=None, skeleton=None, box_margin=None, half_pixel=None,
    truncate=False, flip_shift=None, fused=False, amp="none", refine="quarter", dark_kernel=None)``.
    ``input_size`` (S for S × S, or (height, width); ``self.input_size`` is the pair), ``input_norm``,
    ``box_margin`` and the DARK kernel (``dark_kernel_for`` its targets' σ), where not given, are the training
    data's that a checkpoint carries (``checkpoint_settings``), else 256, ``decoding_conventions``, 1.25 and 11;
    ``half_pixel`` and ``flip_shift``, where not given, those of the model's checkpoint layout
    (``decoding_conventions``: on and off for peer checkpoints, off and on for hgfast's).
    ``skeleton`` (joint names, flip permutation, limbs): given, else the one training stored in the checkpoint,
    else ``Skeleton.for_joints(K)`` (MPII's for 16 joints); ``flip_permutation`` overrides its flip permutation
    (needed to flip-test a model of unknown skeleton); ``input_norm``, ``half_pixel``, ``truncate``,
    ``flip_shift``: module docstring; ``refine``, ``dark_kernel``: ``predict_crops``; ``box_margin``: the training
    data's crop / the box at the input's aspect; ``fused``: run the model's Triton path
    (``StackedHourglass(fused=True)``, channels_last; where it cannot run, the reference path, with a warning);
    ``amp``: "none", "bf16" or "fp16" autocast. A model given as a module is used as it is: moved to the device,
    put in eval mode and, with ``fused``, set to fused and channels_last.

    Call it with a list of images ((H, W, 3) uint8 RGB arrays or file paths) and optional boxes ``(x, y, w, h)``
    in pixels (edge coordinates as COCO boxes, see ``box_to_center_scale``; ``None``: the whole image,
    ``(0, 0, W, H)``). Returns ``(keypoints (N, K, 2) float32 image pixels, scores (N, K))``. The crop, centred
    on the box, is the box widened or heightened to the input's aspect, times ``box_margin`` (square inputs:
    ``box_margin · max(w, h)`` wide), so the person should fill the box.
    """

    def __init__(self, model: nn.Module | str | os.PathLike, input_size: int | tuple[int, int] | None = None,
                 device: str = "auto", flip: bool = False, batch_size: int = 32,
                 flip_permutation: Sequence[int] | None = None, input_norm: str | None = None, skeleton=None,
                 box_margin: float | None = None, half_pixel: bool | None = None, truncate: bool = False,
                 flip_shift: bool | None = None, fused: bool = False, amp: str = "none", refine: str = "quarter",
                 dark_kernel: int | None = None):
        from .data.skeleton import Skeleton
        from .models import StackedHourglass

        trained = {}
        if isinstance(model, (str, os.PathLike)):
            trained = checkpoint_settings(model)
            model = StackedHourglass.from_checkpoint(Path(model))
            skeleton = skeleton or Skeleton.from_model(model)
        stored_size = input_size is None and "input_size" in trained
        input_size = trained.get("input_size", 256) if input_size is None else input_size
        input_norm = trained.get("input_norm") if input_norm is None else input_norm
        box_margin = trained.get("box_margin", 1.25) if box_margin is None else box_margin
        if dark_kernel is None:
            dark_kernel = dark_kernel_for(trained["sigma"]) if "sigma" in trained else 11
        if not isinstance(model, nn.Module):
            raise TypeError(f"Predictor: model must be an nn.Module or a checkpoint path, got {type(model).__name__}")
        size_name = "Predictor: the checkpoint's stored input_size" if stored_size else "Predictor: input_size"
        input_size = crop_size(input_size, size_name, getattr(model, "input_multiple", 1))
        batch_size = check_batch_size(batch_size, "Predictor: batch_size")
        box_margin = checked_margin(box_margin, "Predictor: box_margin")
        njoints = getattr(model, "njoints", None)
        self.skeleton = skeleton or Skeleton.for_joints(njoints or 16)
        if njoints is not None and self.skeleton.num_joints != njoints:
            raise ValueError(f"Predictor: skeleton has {self.skeleton.num_joints} joints, the model {njoints}")
        self.flip_permutation = (self.skeleton.flip_permutation if flip_permutation is None
                                 else tuple(flip_permutation))
        if flip and self.flip_permutation is None:
            raise ValueError(f"Predictor: flip=True with a {self.skeleton.num_joints}-joint model of unknown skeleton "
                             f"needs flip_permutation (the joint order after a horizontal flip) or skeleton; "
                             f"hgfast predict/video flip-test only checkpoints that store their skeleton (as "
                             f"hgfast train writes them, or 16-joint ones, taken as MPII's): leave out --flip")
        if flip_permutation is not None:
            checked_flip_permutation(self.flip_permutation, self.skeleton.num_joints,
                                     name="Predictor: flip_permutation")
        self.half_pixel, self.flip_shift, self.input_norm = decoding_conventions(model, half_pixel, flip_shift,
                                                                                 input_norm)
        if amp not in AMP_DTYPES:
            raise ValueError(f"Predictor: amp must be one of {sorted(AMP_DTYPES)}, got {amp!r}")
        self.autocast_dtype, self.channels_last = AMP_DTYPES[amp], bool(fused)
        self.device = resolve_device(device)
        self.model = fast_inference(model, fused).to(self.device).eval()
        self.input_size, self.flip, self.batch_size, self.box_margin = input_size, flip, batch_size, box_margin
        self.truncate = bool(truncate)
        self.refine, self.dark_kernel = check_refine(refine, dark_kernel)

    def __call__(self, images: Sequence, boxes: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(images, (str, os.PathLike, np.ndarray)):
            raise TypeError(f"Predictor: images must be a list of images or paths, got one "
                            f"{type(images).__name__} (wrap it: predictor([image]))")
        images = [_as_image(im) for im in images]
        if boxes is None:
            boxes = [None] * len(images)
        if len(boxes) != len(images):
            raise ValueError(f"Predictor: got {len(images)} images but {len(boxes)} boxes")
        crops, centers, scales = [], [], []
        for i, (im, box) in enumerate(zip(images, boxes)):
            try:
                c, s = box_to_center_scale((0, 0, im.shape[1], im.shape[0]) if box is None else box,
                                           self.box_margin, self.input_size[1] / self.input_size[0])
            except ValueError as exc:
                raise ValueError(f"Predictor: box {i}: {exc}") from None
            if box is not None and not box_overlaps(box, im.shape[1::-1]):
                raise ValueError(f"Predictor: box {i} {tuple(box)} lies outside its {im.shape[1]}x{im.shape[0]} "
                                 f"image")
            crops.append(crop(im, np.zeros((0, 2)), c, s, 0.0, self.input_size)[0])
            centers.append(c)
            scales.append(s)
        kps, scores = [], []
        for i in range(0, len(crops), self.batch_size):
            batch = torch.from_numpy(np.stack(crops[i:i + self.batch_size])).permute(0, 3, 1, 2)
            kp, sc = predict_crops(self.model, batch, torch.as_tensor(np.stack(centers[i:i + self.batch_size])),
                                   torch.as_tensor(scales[i:i + self.batch_size]), flip=self.flip,
                                   flip_shift=self.flip_shift, channels_last=self.channels_last,
                                   autocast_dtype=self.autocast_dtype, flip_permutation=self.flip_permutation,
                                   input_norm=self.input_norm, half_pixel=self.half_pixel, truncate=self.truncate,
                                   refine=self.refine, dark_kernel=self.dark_kernel)
            kps.append(kp.numpy())
            scores.append(sc.numpy())
        if not kps:
            k = self.skeleton.num_joints
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32)
        return np.concatenate(kps), np.concatenate(scores)


def read_boxes_file(path: str | os.PathLike, images: Sequence[str], min_score: float | None = None) -> list[list]:
    """The people boxes of each of ``images`` from a JSON file: an object mapping an image to a list of boxes, each
    ``[x, y, w, h]``, ``[x, y, w, h, score]`` or ``{"bbox": [x, y, w, h], "score": s}`` (a detector's output;
    ``score`` optional), in pixels, edge coordinates. An image's key is its path (compared after normalisation, or
    as absolute paths) or, where no other image has the same name, its file name. Boxes scored below ``min_score``
    are left out. Returns, per image, a list of ``(box, score or None)`` (empty: no person). An image without an
    entry, or a box that is not ``checked_box``'s, is a ValueError naming it."""
    import collections

    table = read_json(path, "boxes file", unique_keys=True)
    path = Path(path)
    if not isinstance(table, dict):
        raise ValueError(f"boxes file {path} must map images to lists of boxes, got {type(table).__name__}")
    keys = {}
    for key in table:
        for form in {os.path.normpath(key), os.path.abspath(key)}:
            if keys.setdefault(form, key) != key:
                raise ValueError(f"boxes file {path}: keys {keys[form]!r} and {key!r} name the same image")
    names = collections.Counter(Path(image).name for image in images)
    people = []
    for image in images:
        name = Path(image).name
        by_path = keys.get(os.path.normpath(image)) or keys.get(os.path.abspath(image))
        by_name = name if names[name] == 1 and name in table else None
        if by_path and by_name and by_path != by_name:
            raise ValueError(f"boxes file {path}: keys {by_path!r} and {by_name!r} both name {image}")
        key = by_path or by_name
        if key is None:
            raise ValueError(f"boxes file {path} has no entry for {image} (keys: image paths, or file names where "
                             f"no two images share one)")
        people.append(box_entries(table[key], f"boxes file {path}, {key!r}", min_score))
    return people


def box_entries(entries, where: str, min_score: float | None = None) -> list[tuple]:
    """``[(box, score or None), ...]`` of one list of a boxes file (``read_boxes_file``, ``hgfast.video``), boxes
    scored below ``min_score`` left out (unscored ones stay); a ValueError naming ``where`` otherwise."""
    if not isinstance(entries, list):
        raise ValueError(f"{where}: must be a list of boxes, got {str(entries)[:80]}")
    found = [_box_entry(entry, where) for entry in entries]
    return [(box, score) for box, score in found if min_score is None or score is None or score >= min_score]


def _box_entry(entry, where: str) -> tuple[tuple[float, ...], float | None]:
    """``(box, score or None)`` of one entry of ``box_entries``; a ValueError naming ``where`` otherwise."""
    box, score = ((entry.get("bbox"), entry.get("score")) if isinstance(entry, dict) else
                  (entry[:4], entry[4] if len(entry) == 5 else None) if isinstance(entry, list) and
                  len(entry) in (4, 5) else (None, None))
    if isinstance(box, list) and all(map(is_number, box)) and (score is None or is_number(score)):
        with contextlib.suppress(ValueError):
            return checked_box(box), None if score is None else float(score)
    raise ValueError(f"{where}: a box must be [x, y, w, h] or [x, y, w, h, score] or {{\"bbox\": [x, y, w, h], "
                     f"\"score\": s}} (pixels within ±{MAX_PIXEL:g}, w and h at least {MIN_BOX_SIDE:g}), got "
                     f"{str(entry)[:80]}")
