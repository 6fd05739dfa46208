"""Keypoints in COCO's JSON format: COCO's own ``person_keypoints_*.json`` and any custom dataset written in it.

Format (cocodataset.org/#format-data): ``images`` [{id, file_name}], ``annotations`` [{id, image_id, category_id,
keypoints [x1, y1, v1, x2, ...], bbox [x, y, w, h], iscrowd}], ``categories`` [{id, keypoints [names], skeleton
[[a, b], ...] (1-based joint numbers)}]. ``write_coco`` writes such a file from arrays.

- Visibility ``v``: 0 not labelled (x, y ignored), 1 labelled but occluded, 2 labelled and visible; hgfast's
  ``annotated`` is ``v > 0`` and ``visible`` is ``v == 2`` (``data.loss_weight`` picks which the loss weighs).
- Coordinates: keypoints are image pixels with pixel centres at integers, used as they are (as HRNet and mmpose);
  ``bbox`` is in edge coordinates (see ``box_to_center_scale``).
- Samples: one per annotation with a labelled keypoint; crowd annotations are left out. The crop, around the box's
  centre, is the box widened or heightened to the input's aspect, times ``margin`` (1.25; square inputs: 1.25 × the
  box's longer side); without a usable ``bbox`` the box around the labelled keypoints serves (``keypoint_box``).
  Boxes are first clipped to their image where its ``images`` entry has ``width`` and ``height`` (as HRNet and
  mmpose do: a person cut by the image border is cropped around its visible part).
  ``COCOKeypoints.skipped`` counts what was left out, by reason.
- PCK normaliser: the box's longer side (mmpose's "bbox" normalisation): PCK@0.2 = within 20 % of the box size.
- The skeleton (flip pairs, limb sides, PCK groups) comes from the category's joint names (``Skeleton.from_names``).
"""
from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_path
from .crop import box_to_center_scale
from .mpii import read_image
from .skeleton import Skeleton
from .topdown import TopDownDataset


def _category(data: dict, path: Path, category_id) -> dict:
    cats = [c for c in data.get("categories") or [] if isinstance(c, dict) and c.get("keypoints")]
    ids = [c.get("id") for c in cats]
    if category_id is not None:
        cats = [c for c in cats if c.get("id") == category_id]
        if not cats:
            raise ValueError(f"COCO file {path}: no category with id {category_id!r} has keypoints (those with "
                             f"keypoints: {ids})")
    if not cats:
        raise ValueError(f"COCO file {path}: no category has 'keypoints' (the joint names)")
    if len(cats) > 1:
        raise ValueError(f"COCO file {path}: {len(cats)} categories have keypoints (ids {ids}); give category_id")
    if "id" not in cats[0]:
        raise ValueError(f"COCO file {path}: the category with keypoints has no 'id'")
    return cats[0]


def keypoint_box(xy) -> np.ndarray | None:
    """The box (x, y, w, h), edge coordinates, of keypoints ``xy`` (M, 2) with pixel centres at integers: the
    pixel at x spans edge coordinates x to x + 1, so the box spans min to max + 1 (its centre, by
    ``box_to_center_scale``, is the keypoints' midpoint). None where they are fewer than two distinct points."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if len(xy) == 0 or not (xy.max(0) - xy.min(0)).any():
        return None
    lo, hi = xy.min(0), xy.max(0) + 1
    return np.concatenate([lo, hi - lo])


def read_json(path: str | os.PathLike, what: str):
    """The parsed JSON of ``path``; FileNotFoundError / ValueError name it as ``what`` (e.g. "boxes file")."""
    if not os.fspath(path):
        raise ValueError(f"{what}: the path is empty")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from exc


def read_coco_header(path: Path, category_id: int | None = None) -> tuple[dict, dict, list, list, dict]:
    """``(data, category, names, edges, files)`` of a COCO keypoint file: the parsed JSON, the category with
    keypoints (``category_id``: which, if several), its joint names (K,) and limbs (0-based pairs), and
    ``{image id: file_name}``."""
    data = read_json(path, "COCO annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise ValueError(f"COCO annotation file {path} must be an object with 'images', 'annotations' and "
                         f"'categories' lists")
    cat = _category(data, path, category_id)
    names, k = [str(n) for n in cat["keypoints"]], len(cat["keypoints"])
    try:
        edges = [(int(a) - 1, int(b) - 1) for a, b in cat.get("skeleton") or []]
        files = {im["id"]: str(im["file_name"]) for im in data["images"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"COCO file {path}: bad 'skeleton' or 'images' entry ({exc!r})") from exc
    if not all(0 <= j < k for e in edges for j in e):
        raise ValueError(f"COCO file {path}: 'skeleton' joints must be 1-based numbers in 1..{k}, got "
                         f"{[[a + 1, b + 1] for a, b in edges]}")
    return data, cat, names, edges, files


def read_coco(path: str | os.PathLike, category_id: int | None = None) -> dict:
    """Parse a COCO keypoint file: ``names`` (K,), ``edges`` (0-based pairs), ``category_id``, per sample
    ``file_name`` (N,), ``keypoints`` (N, K, 3) float64 (x, y, v), ``box`` (N, 4) (x, y, w, h), ``id`` (N,) and
    ``image_id`` (N,); plus ``skipped``.
    ``category_id``: which category, if the file has several with keypoints."""
    path = Path(path)
    data, cat, names, edges, files = read_coco_header(path, category_id)
    k = len(names)
    people, skipped = [], {"crowd": 0, "no labelled keypoint": 0, "no box": 0}
    for a in data["annotations"]:
        if not isinstance(a, dict) or a.get("category_id") != cat["id"]:
            continue
        if a.get("iscrowd"):
            skipped["crowd"] += 1
            continue
        people.append(a)
    # checked and converted for all people at once (COCO train has 150k)
    kps = _numbers(path, people, "keypoints", [a.get("keypoints") for a in people], 3 * k).reshape(-1, k, 3)
    boxes = _numbers(path, people, "bbox", [[np.nan] * 4 if a.get("bbox") in (None, []) else a["bbox"]
                                            for a in people], 4)
    for bad, what in ((~np.isfinite(kps).all((1, 2)), f"'keypoints' must be {3 * k} finite numbers"),
                      (~np.isin(kps[..., 2], (0, 1, 2)).all(1), "visibility flags must be 0, 1 or 2")):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{_where(path, people[i])}: {what}, got {kps[i].ravel().tolist()}")
    labelled = kps[..., 2] > 0
    keep = labelled.any(1)
    skipped["no labelled keypoint"] = int((~keep).sum())
    for i in np.flatnonzero(keep & ~(np.isfinite(boxes).all(1) & (boxes[:, 2:] > 0).all(1))):
        box = keypoint_box(kps[i, labelled[i], :2])  # no usable bbox: the labelled joints' box
        if box is None:
            keep[i] = False
            skipped["no box"] += 1
        else:
            boxes[i] = box
    index = np.flatnonzero(keep)
    for i in index:
        image_id = people[i].get("image_id")
        if not isinstance(image_id, (int, str)) or image_id not in files:
            raise ValueError(f"{_where(path, people[i])}: image_id {image_id!r} is not in 'images'")
    sizes = image_sizes(data)
    boxes[index] = clip_boxes(boxes[index], [sizes.get(people[i]["image_id"]) for i in index])
    return dict(names=names, edges=edges, category_id=cat["id"], keypoints=kps[index], box=boxes[index],
                file_name=np.array([files[people[i]["image_id"]] for i in index], object),
                id=np.array([people[i].get("id") for i in index], object),
                image_id=np.array([people[i]["image_id"] for i in index], object), skipped=skipped)


def _where(path: Path, annotation: dict) -> str:
    return f"COCO file {path}, annotation {annotation.get('id')!r}"


def _numbers(path: Path, people: list, key: str, rows: list, width: int) -> np.ndarray:
    """``rows`` (one per person) as an (N, width) float64 array; a ValueError names the first person whose row is
    not ``width`` numbers."""
    try:
        array = np.array(rows, np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != (len(rows), width):
        for a, row in zip(people, rows):
            try:
                ok = isinstance(row, list) and np.array(row, np.float64).shape == (width,)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"{_where(path, a)}: '{key}' must be a list of {width} numbers, got {str(row)[:80]}")
    return np.array(rows, np.float64).reshape(-1, width)


def box_area(box) -> float:
    """A person's COCO ``area`` (its segmentation's, which OKS scales by) where a file has none: 0.53 × the box's,
    at least 1, as mmpose assumes (a person covers about half of its box)."""
    return max(1.0, 0.53 * float(box[2]) * float(box[3]))


def image_sizes(data: dict) -> dict:
    """``{image id: (width, height)}`` of the file's ``images`` entries that give both (positive numbers)."""
    sizes = {}
    for im in data["images"]:
        w, h = im.get("width"), im.get("height")
        if all(isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < v < np.inf for v in (w, h)):
            sizes[im["id"]] = (float(w), float(h))
    return sizes


def clip_boxes(boxes: np.ndarray, sizes: list) -> np.ndarray:
    """Boxes (N, 4) (x, y, w, h) in edge coordinates clipped to their images (``sizes``: (width, height) or None
    each), as HRNet and mmpose clip ground-truth boxes; a box that would be empty, or whose size is None, stays."""
    out = boxes.copy()
    for i, size in enumerate(sizes):
        if size is None:
            continue
        x, y, w, h = boxes[i]
        x1, y1 = min(max(x, 0.0), size[0]), min(max(y, 0.0), size[1])
        x2, y2 = min(max(x + w, 0.0), size[0]), min(max(y + h, 0.0), size[1])
        if x2 > x1 and y2 > y1:
            out[i] = (x1, y1, x2 - x1, y2 - y1)
    return out


def write_coco(path: str | os.PathLike, file_names, keypoints, annotated, visible, names, edges=(), boxes=None,
               category: str = "person") -> None:
    """Write a COCO keypoint file (atomically) for N samples: ``file_names`` (N,) image paths relative to the
    image folder (repeat one for several people in an image), ``keypoints`` (N, K, 2) pixels, ``annotated`` and
    ``visible`` (N, K) flags (v = 2 visible, 1 annotated only, 0 neither), joint ``names`` (K,), limb ``edges``
    (0-based pairs) and ``boxes`` (N, 4) (x, y, w, h) edge coordinates (default: each sample's keypoints' box,
    ``keypoint_box``; a sample with fewer than two distinct labelled points then gets none and is skipped on
    reading)."""
    keypoints = np.asarray(keypoints, np.float64)
    n, k = keypoints.shape[:2] if keypoints.ndim == 3 else (None, None)
    if keypoints.ndim != 3 or keypoints.shape[2] != 2 or k != len(names):
        raise ValueError(f"keypoints must be (N, {len(names)}, 2) for {len(names)} names, got {keypoints.shape}")
    annotated, visible = (np.asarray(f).astype(bool) for f in (annotated, visible))
    if annotated.shape != (n, k) or visible.shape != (n, k) or len(file_names) != n:
        raise ValueError(f"annotated, visible must be ({n}, {k}) and file_names {n} long, got {annotated.shape}, "
                         f"{visible.shape}, {len(file_names)}")
    if boxes is not None and np.asarray(boxes).shape != (n, 4):
        raise ValueError(f"boxes must be ({n}, 4) (x, y, w, h), got {np.asarray(boxes).shape}")
    flags = np.where(visible & annotated, 2, np.where(annotated, 1, 0))
    ids: dict[str, int] = {}
    annotations = []
    for i in range(n):
        image_id = ids.setdefault(str(file_names[i]), len(ids) + 1)
        xy = np.where(flags[i, :, None] > 0, keypoints[i], 0.0)
        box = boxes[i] if boxes is not None else keypoint_box(xy[flags[i] > 0])
        box = [0.0, 0.0, 0.0, 0.0] if box is None else [float(v) for v in box]
        annotations.append({"id": i + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                            "num_keypoints": int((flags[i] > 0).sum()), "bbox": box, "area": box_area(box),
                            "keypoints": [v for j in range(k) for v in (float(xy[j, 0]), float(xy[j, 1]),
                                                                           int(flags[i, j]))]})
    data = {"images": [{"id": i, "file_name": f} for f, i in ids.items()], "annotations": annotations,
            "categories": [{"id": 1, "name": category, "keypoints": [str(s) for s in names],
                            "skeleton": [[int(a) + 1, int(b) + 1] for a, b in edges]}]}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data))


def checked_margin(who: str, margin) -> float:
    if not (isinstance(margin, numbers.Real) and 0 < margin < math.inf):
        raise ValueError(f"{who}: margin must be a finite number > 0, got {margin!r}")
    return float(margin)


def checked_sigmas(who: str, oks_sigmas, k: int) -> tuple[float, ...] | None:
    """``oks_sigmas`` as a tuple of K floats > 0 (None stays None); a ValueError otherwise."""
    if oks_sigmas is None:
        return None
    if len(oks_sigmas) != k or not all(s > 0 for s in oks_sigmas):
        raise ValueError(f"{who}: oks_sigmas must be {k} numbers > 0 (one per joint), got {list(oks_sigmas)}")
    return tuple(float(s) for s in oks_sigmas)


def coco_skeleton(annotations: Path, names, edges, flip_pairs) -> Skeleton:
    """``Skeleton.from_names``; its errors name the file."""
    try:
        return Skeleton.from_names(names, edges, flip_pairs)
    except ValueError as exc:
        raise ValueError(f"COCO file {annotations}: {exc}") from exc


def image_folder(annotations: Path, image_dir, file_names) -> Path:
    """``image_dir`` as a Path, checked to hold every image of ``file_names`` (FileNotFoundError naming some)."""
    if not str(image_dir):
        raise ValueError("COCO: image_dir is empty (give the folder the file names are relative to)")
    folder = Path(image_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"COCO image folder not found: {folder}")
    missing = [f for f in sorted(set(file_names)) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) of {annotations} not found in {folder}, e.g. "
                                f"{missing[:3]}")
    return folder


class COCOKeypoints(TopDownDataset):
    """Top-down samples from a COCO keypoint file ``annotations`` and its ``image_dir``; ``flip_pairs`` overrides
    the left/right pairs found in the joint names; ``margin``: crop / the box at the input's aspect (module
    docstring); ``oks_sigmas`` (K,): for OKS AP (``hgfast.eval.oks``; default COCO's for 17 joints)."""

    def __init__(self, annotations: str | os.PathLike, image_dir: str | os.PathLike,
                 input_size: int | tuple[int, int] = 256, augment_preset: str = "none", seed: int = 0,
                 category_id: int | None = None, flip_pairs=None, margin: float = 1.25, oks_sigmas=None):
        super().__init__(input_size, augment_preset, seed)
        self.margin = checked_margin(type(self).__name__, margin)
        self.annotations = Path(annotations)
        self.ann = read_coco(annotations, category_id)
        self.category_id = self.ann["category_id"]
        self.oks_sigmas = checked_sigmas(type(self).__name__, oks_sigmas, len(self.ann["names"]))
        self.skipped = self.ann.pop("skipped")
        if not len(self.ann["file_name"]):
            raise ValueError(f"COCO file {annotations} has no usable person (left out: {self.skipped})")
        self.skeleton = coco_skeleton(self.annotations, self.ann["names"], self.ann["edges"], flip_pairs)
        self.image_dir = image_folder(self.annotations, image_dir, self.ann["file_name"])

    def __len__(self) -> int:
        return len(self.ann["file_name"])

    def image_ids(self, index) -> list:
        """The COCO image id of each sample in ``index`` (e.g. ``predict_dataset``'s ``index``)."""
        return list(self.ann["image_id"][np.asarray(index, np.int64)])

    def record(self, index: int) -> dict:
        kp, box = self.ann["keypoints"][index], self.ann["box"][index]
        center, scale = box_to_center_scale(box, self.margin, self.aspect)
        annotated = kp[:, 2] > 0
        return dict(image=read_image(self.image_dir / self.ann["file_name"][index]),
                    joints=np.where(annotated[:, None], kp[:, :2], 0.0).astype(np.float32),
                    visible=(kp[:, 2] == 2).astype(np.float32), annotated=annotated.astype(np.float32),
                    center=center.astype(np.float32), scale=scale, normalize=float(box[2:].max()),
                    box_size=self.margin * box[2:])
