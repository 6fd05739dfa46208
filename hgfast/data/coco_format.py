"""COCO's keypoint JSON format, read with every field checked and written from arrays.

Format (cocodataset.org/#format-data): ``images`` [{id, file_name, width, height}], ``annotations`` [{id, image_id,
category_id, keypoints [x1, y1, v1, x2, ...], bbox [x, y, w, h], area, num_keypoints, iscrowd}], ``categories``
[{id, keypoints [names], skeleton [[a, b], ...] (1-based joint numbers)}]. Ids are integers or strings.

- Visibility ``v``: 0 not labelled (x, y ignored), 1 labelled but occluded, 2 labelled and visible.
- Coordinates: keypoints are image pixels with pixel centres at integers; ``bbox`` is in edge coordinates (see
  ``box_to_center_scale``); both within ±``MAX_PIXEL``.
- Optional fields are checked where given: ``width`` / ``height`` whole numbers > 0, ``iscrowd`` 0 or 1, ``area`` in
  [0, 1e10] (COCOeval ignores people beyond), ``num_keypoints`` an integer, not 0 for a person with labelled joints
  (COCOeval ignores those).

A file that breaks these is a ValueError naming it and the entry (image or annotation id), never a quietly wrong
dataset or AP. An *image-info* file (COCO's ``image_info_test-dev2017.json``: ``images`` and the detection
``categories``, no ``annotations`` nor keypoints) has no ground truth; detected people on its images take their
joints from the model (``read_coco_header(skeleton=...)``) and are predicted only.
"""
from __future__ import annotations

import collections
import gzip
import json
import math
import numbers
import os
import zlib
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_path
from .crop import MAX_PIXEL, MIN_BOX_SIDE

MAX_AREA = 1e10  # COCOeval's "all" area range ends at 1e5²: a person with a larger area is never counted


def is_id(value) -> bool:
    """A COCO id: an integer (not a bool) or a string."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite real number that is not a bool (nor text), as JSON numbers parse."""
    try:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    except OverflowError:  # an integer beyond float's range
        return False


class IdMatcher:
    """A keypoint file's ids (of images or categories), matched as results and detections files write them: a whole
    float (397133.0, as numpy's ``tolist()`` writes ids) is the integer; an id the file has only as text, or only
    as a number ("1" for 1), is a ValueError, never silently another image or category."""

    def __init__(self, ids, whose: str = "the annotation file's"):
        self.ids, self.texts, self.whose = set(ids), {str(i): i for i in ids}, whose

    def __call__(self, value, where: str, what: str):
        """The id ``value`` stands for, as the file writes it, or None where the file has no such id; ``where``,
        ``what`` ("image_id", ...) name it in the error (a bool equal to an id, true for 1, is one too)."""
        given = value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if is_id(value) and value in self.ids:
            return value
        if isinstance(value, bool) and value in self.ids:
            raise ValueError(f"{where}: {what} {given!r} is a bool, not an id")
        if not isinstance(value, bool) and str(value) in self.texts:
            raise ValueError(f"{where}: {what} {given!r} is not {self.whose} {self.texts[str(value)]!r} (a string "
                             f"and a number)")
        return None


def keypoint_box(xy) -> np.ndarray | None:
    """The box (x, y, w, h), edge coordinates, of keypoints ``xy`` (M, 2) with pixel centres at integers: the
    pixel at x spans edge coordinates x to x + 1, so the box spans min to max + 1 (its centre, by
    ``box_to_center_scale``, is the keypoints' midpoint). None where they are fewer than two distinct points."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if len(xy) == 0 or not (xy.max(0) - xy.min(0)).any():
        return None
    lo, hi = xy.min(0), xy.max(0) + 1
    return np.concatenate([lo, hi - lo])


def box_area(box) -> float:
    """A person's COCO ``area`` (its segmentation's, which OKS scales by) where a file has none: 0.53 × the box's,
    at least 1, as mmpose assumes (a person covers about half of its box)."""
    return max(1.0, 0.53 * float(box[2]) * float(box[3]))


def read_json(path: str | os.PathLike, what: str, unique_keys: bool = False):
    """The parsed JSON of ``path`` (gzip-compressed too, ``.json.gz``); FileNotFoundError / ValueError name it as
    ``what`` (e.g. "boxes file"); ``unique_keys``: an object giving a key twice is a ValueError (the parser keeps
    the last; a boxes file's keys are images or frames, so the other would be lost)."""
    if not os.fspath(path):
        raise ValueError(f"{what}: the path is empty")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    raw = path.read_bytes()
    try:
        return json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw,
                          object_pairs_hook=_unique_keys(path, what) if unique_keys else None)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from exc


def _unique_keys(path: Path, what: str):
    def pairs(items: list) -> dict:
        table = dict(items)
        if len(table) < len(items):
            twice = next(k for k, n in collections.Counter(k for k, _ in items).items() if n > 1)
            raise ValueError(f"{what} {path} gives the key {twice!r} twice")
        return table
    return pairs


def _person_category(data: dict, path: Path, category_id, names) -> dict:
    """An image-info file's category for detected people: ``category_id``'s, else the one named "person"; one that
    lists keypoints must list ``names`` (the model's)."""
    cats = [c for c in data.get("categories") or [] if isinstance(c, dict) and is_id(c.get("id"))]
    if not cats:
        raise ValueError(f"COCO image-info file {path} has no 'categories' with ids: it needs the person category "
                         f"(id and name) that the results are written for")
    found = [c for c in cats if (c["id"] == category_id if category_id is not None else c.get("name") == "person")]
    if len(found) != 1:
        which = f"with id {category_id!r}" if category_id is not None else "named 'person'"
        raise ValueError(f"COCO image-info file {path}: {len(found)} categories {which} (give data.category_id; "
                         f"ids: {[c['id'] for c in cats][:20]})")
    listed = found[0].get("keypoints")
    if listed and list(listed) != list(names):
        raise ValueError(f"COCO image-info file {path}: category {found[0]['id']!r} lists the joints "
                         f"{str(listed)[:200]}, the model predicts {list(names)}")
    return found[0]


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
    cat = cats[0]
    if not is_id(cat.get("id")):
        raise ValueError(f"COCO file {path}: the category with keypoints needs an 'id' (integer or string), got "
                         f"{cat.get('id')!r}")
    if not (isinstance(cat["keypoints"], list) and all(isinstance(n, str) for n in cat["keypoints"])):
        raise ValueError(f"COCO file {path}: the category's 'keypoints' must be a list of joint names, got "
                         f"{str(cat['keypoints'])[:80]}")
    return cat


def _edges(path: Path, category: dict) -> list[tuple[int, int]]:
    """The category's ``skeleton`` as 0-based joint pairs."""
    k, skeleton = len(category["keypoints"]), category.get("skeleton") or []
    if not (isinstance(skeleton, list) and all(isinstance(e, list) and len(e) == 2 and all(
            isinstance(j, int) and not isinstance(j, bool) and 1 <= j <= k for j in e) for e in skeleton)):
        raise ValueError(f"COCO file {path}: 'skeleton' must be pairs of 1-based joint numbers in 1..{k}, got "
                         f"{str(skeleton)[:80]}")
    return [(a - 1, b - 1) for a, b in skeleton]


def _images(path: Path, images: list) -> tuple[dict, dict]:
    """``({image id: file_name}, {image id: (width, height)})`` of ``images`` (the sizes of those that give them)."""
    files, sizes = {}, {}
    for i, im in enumerate(images):
        if not (isinstance(im, dict) and is_id(im.get("id")) and isinstance(im.get("file_name"), str)):
            raise ValueError(f"COCO file {path}: 'images' entry {i} needs an 'id' (integer or string) and a "
                             f"'file_name', got {str(im)[:120]}")
        image_id, size = im["id"], (im.get("width"), im.get("height"))
        if image_id in files:
            raise ValueError(f"COCO file {path}: image id {image_id!r} is in 'images' twice ({files[image_id]!r} "
                             f"and {im['file_name']!r}): its people would be cropped from one of them")
        files[image_id] = im["file_name"]
        if size == (None, None):
            continue
        if not all(is_number(v) and 0 < v <= MAX_PIXEL and float(v).is_integer() for v in size):
            raise ValueError(f"COCO file {path}, image {image_id!r}: 'width' and 'height' must be whole numbers > 0 "
                             f"(pixels; or both left out), got {size}")
        sizes[image_id] = (float(size[0]), float(size[1]))
    return files, sizes


def read_coco_header(path: Path, category_id=None, skeleton=None) -> tuple[dict, dict, list, list, dict, dict]:
    """``(data, category, names, edges, files, sizes)`` of a COCO keypoint file: the parsed JSON, the category with
    keypoints (``category_id``: which, if several), its joint names (K,) and limbs (0-based pairs), ``{image id:
    file_name}`` and ``{image id: (width, height)}`` (images that give their size). ``skeleton`` (the model's)
    admits an image-info file (module docstring): its category is ``category_id``'s or "person", names and limbs
    those of ``skeleton``; ``"annotations" in data`` tells the two kinds apart."""
    data = read_json(path, "COCO annotation file")
    info = skeleton is not None and isinstance(data, dict) and "annotations" not in data
    if isinstance(data, dict) and isinstance(data.get("images"), list) and "annotations" not in data and not info:
        raise ValueError(f"COCO annotation file {path} has no 'annotations': an image-info file (like COCO's "
                         f"test-dev) has no ground truth to train, validate or score against; its detected people "
                         f"are predicted with the joint names a checkpoint stores (hgfast eval --detections "
                         f"--results, with a checkpoint hgfast saved with its skeleton)")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not (info or isinstance(data.get("annotations"), list)):
        raise ValueError(f"COCO annotation file {path} must be an object with 'images', 'annotations' and "
                         f"'categories' lists")
    if info:
        cat = _person_category(data, path, category_id, skeleton.names)
        return (data, cat, list(skeleton.names), [tuple(limb[:2]) for limb in skeleton.limbs],
                *_images(path, data["images"]))
    cat = _category(data, path, category_id)
    return (data, cat, list(cat["keypoints"]), _edges(path, cat), *_images(path, data["images"]))


def _where(path: Path, annotation: dict) -> str:
    return f"COCO file {path}, annotation {annotation.get('id')!r}"


def _numbers(path: Path, people: list, key: str, rows: list, width: int) -> np.ndarray:
    """``rows`` (one per person) as an (N, width) float64 array; a ValueError names the first person whose row is
    not ``width`` numbers."""
    try:
        array = np.array(rows) if rows else np.zeros((0, width))
    except (TypeError, ValueError):  # ragged
        array = np.zeros(0)
    if array.shape != (len(rows), width) or array.dtype.kind not in "iuf" or \
            any(bool in set(map(type, row)) for row in rows):  # (numpy reads true as 1)
        for a, row in zip(people, rows):
            if not (isinstance(row, list) and len(row) == width and all(map(is_number, row))):
                raise ValueError(f"{_where(path, a)}: '{key}' must be a list of {width} numbers, got {str(row)[:80]}")
    return array.astype(np.float64).reshape(-1, width)


def _check_optional(path: Path, a: dict, labelled: int) -> None:
    """``iscrowd``, ``area`` and ``num_keypoints`` of annotation ``a`` (with ``labelled`` joints), where given."""
    crowd, area, count = a.get("iscrowd"), a.get("area"), a.get("num_keypoints")
    if crowd not in (None, 0, 1):  # (True and False compare equal to 1 and 0)
        raise ValueError(f"{_where(path, a)}: 'iscrowd' must be 0 or 1, got {crowd!r}")
    if area is not None and not (is_number(area) and 0 <= area <= MAX_AREA):
        raise ValueError(f"{_where(path, a)}: 'area' must be a number in [0, {MAX_AREA:g}] (OKS scales by it), got "
                         f"{area!r}")
    if count is not None and not (is_number(count) and float(count).is_integer() and count >= 0):  # 2.0 too
        raise ValueError(f"{_where(path, a)}: 'num_keypoints' must be an integer >= 0, got {count!r}")
    if count == 0 and labelled:
        raise ValueError(f"{_where(path, a)}: 'num_keypoints' is 0 but {labelled} joints are labelled (COCOeval "
                         f"would ignore this person)")


def category_annotations(path: Path, data: dict, category: dict) -> dict:
    """The annotations of ``category``, checked: ``annotations`` (N,) the dicts, ``keypoints`` (N, K, 3) float64
    (all 0 for a crowd region without), ``box`` (N, 4) (NaN where there is none) and ``crowd`` (N,) bool; a
    ValueError names the first annotation that breaks the format (module docstring)."""
    k, category_of = len(category["keypoints"]), IdMatcher([category["id"]], "the category's id")
    people = []
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict):
            raise ValueError(f"COCO file {path}: 'annotations' entry {i} is not an object, got {str(a)[:80]}")
        if category_of(a.get("category_id"), _where(path, a), "category_id") is not None:
            people.append(a)
    crowd = np.array([bool(a.get("iscrowd")) for a in people], bool)
    kps = _numbers(path, people, "keypoints", [[0] * 3 * k if c and a.get("keypoints") in (None, []) else
                                               a.get("keypoints") for a, c in zip(people, crowd)], 3 * k)
    kps = kps.reshape(-1, k, 3)
    boxes = _numbers(path, people, "bbox", [[np.nan] * 4 if a.get("bbox") in (None, []) else a["bbox"]
                                            for a in people], 4)
    flags = kps[..., 2]
    for bad, key, what in ((~(np.abs(kps) <= MAX_PIXEL).all((1, 2)), "keypoints", "within ±{:g} (pixels)"),
                           (~np.isin(flags, (0, 1, 2)).all(1), "keypoints", "with visibility flags 0, 1 or 2"),
                           (np.abs(boxes).max(1, initial=0) > MAX_PIXEL, "bbox", "within ±{:g} (pixels)")):
        if bad.any():
            a = people[int(np.flatnonzero(bad)[0])]
            raise ValueError(f"{_where(path, a)}: '{key}' must be numbers {what.format(MAX_PIXEL)}, got "
                             f"{str(a[key])[:80]}")
    for a, labelled in zip(people, (flags > 0).sum(1)):
        _check_optional(path, a, int(labelled))
    return dict(annotations=people, keypoints=kps, box=boxes, crowd=crowd)


def clip_boxes(boxes: np.ndarray, sizes: list) -> np.ndarray:
    """Boxes (N, 4) (x, y, w, h) in edge coordinates clipped to their images (``sizes``: (width, height) or None
    each), as HRNet and mmpose clip ground-truth boxes; a box whose size is None stays (an empty one comes out
    with w or h 0)."""
    out = boxes.copy()
    for i, size in enumerate(sizes):
        if size is None:
            continue
        x, y, w, h = boxes[i]
        x1, y1 = min(max(x, 0.0), size[0]), min(max(y, 0.0), size[1])
        x2, y2 = min(max(x + w, 0.0), size[0]), min(max(y + h, 0.0), size[1])
        out[i] = (x1, y1, x2 - x1, y2 - y1)
    return out


def usable_box(boxes: np.ndarray) -> np.ndarray:
    """(N,) whether each box (N, 4) is given (finite) and has sides of at least ``MIN_BOX_SIDE``."""
    return np.isfinite(boxes).all(1) & (boxes[:, 2:] >= MIN_BOX_SIDE).all(1)


def image_size_array(sizes: dict, image_ids) -> np.ndarray:
    """(N, 2) float64 (width, height) of each of ``image_ids`` from ``sizes`` (``read_coco_header``'s); NaN where
    an image gives none (``read_sized_image`` then checks nothing)."""
    return np.array([sizes.get(i, (np.nan, np.nan)) for i in image_ids], np.float64).reshape(-1, 2)


def read_coco(path: str | os.PathLike, category_id=None) -> dict:
    """Parse a COCO keypoint file: ``names`` (K,), ``edges`` (0-based pairs), ``category_id``, per sample
    ``file_name`` (N,), ``image_size`` (N, 2) (width, height; NaN where the file gives none), ``keypoints``
    (N, K, 3) float64 (x, y, v), ``box`` (N, 4) (x, y, w, h), ``id`` (N,) and ``image_id`` (N,); plus ``skipped``
    (counts by reason). ``category_id``: which category, if the file has several with keypoints.

    Samples: one per non-crowd annotation with a labelled joint. Its box is clipped to its image where the file
    gives the image's size (HRNet's and mmpose's: a person cut by the border is cropped around its visible part);
    without a usable box (none, or under ``MIN_BOX_SIDE``) the box around its labelled joints (``keypoint_box``)
    serves. A person whose box lies outside its image (or keeps less than a pixel of it once clipped) is left
    out."""
    path = Path(path)
    data, cat, names, edges, files, sizes = read_coco_header(path, category_id)
    found = category_annotations(path, data, cat)
    people, kps, boxes = found["annotations"], found["keypoints"], found["box"]
    labelled = kps[..., 2] > 0
    keep = ~found["crowd"] & labelled.any(1)
    skipped = {"crowd": int(found["crowd"].sum()), "no labelled keypoint": int((~found["crowd"] & ~keep).sum()),
               "no box": 0, "box outside image": 0}
    for i in np.flatnonzero(keep & ~usable_box(boxes)):
        box = keypoint_box(kps[i, labelled[i], :2])  # no usable bbox: the labelled joints' box
        if box is None:
            keep[i] = False
            skipped["no box"] += 1
        else:
            boxes[i] = box
    index = np.flatnonzero(keep)
    for i in index:
        image_id = people[i].get("image_id")
        if not is_id(image_id) or image_id not in files:
            raise ValueError(f"{_where(path, people[i])}: image_id {image_id!r} is not in 'images'")
    image_ids = [people[i]["image_id"] for i in index]
    boxes[index] = clip_boxes(boxes[index], [sizes.get(i) for i in image_ids])
    inside = usable_box(boxes[index])
    skipped["box outside image"] = int((~inside).sum())
    index, image_ids = index[inside], [i for i, ok in zip(image_ids, inside) if ok]
    return dict(names=names, edges=edges, category_id=cat["id"], keypoints=kps[index], box=boxes[index],
                file_name=np.array([files[i] for i in image_ids], object),
                image_size=image_size_array(sizes, image_ids),
                id=np.array([people[i].get("id") for i in index], object),
                image_id=np.array(image_ids, object), skipped=skipped)


def write_coco(path: str | os.PathLike, file_names, keypoints, annotated, visible, names, edges=(), boxes=None,
               category: str = "person", image_sizes=None) -> None:
    """Write a COCO keypoint file (atomically) for N samples: ``file_names`` (N,) image paths relative to the
    image folder (repeat one for several people in an image), ``keypoints`` (N, K, 2) pixels, ``annotated`` and
    ``visible`` (N, K) flags (v = 2 visible, 1 annotated only, 0 neither), joint ``names`` (K,), limb ``edges``
    (0-based pairs) and ``boxes`` (N, 4) (x, y, w, h) edge coordinates (default: each sample's keypoints' box,
    ``keypoint_box``; a sample with fewer than two distinct labelled points then gets none and is skipped on
    reading). Coordinates must be finite numbers within ±``MAX_PIXEL`` (those of joints not annotated are not
    written). ``image_sizes`` (N, 2): the (width, height) of each sample's image, written as its ``width`` and
    ``height`` (readers then clip boxes to it and check the image against it); samples of one image must agree."""
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
    sizes = _image_sizes(image_sizes, file_names, n)
    flags = np.where(visible & annotated, 2, np.where(annotated, 1, 0))
    xy = np.where(flags[..., None] > 0, keypoints, 0.0)
    for name, values in [("keypoints", xy)] + ([("boxes", np.asarray(boxes, np.float64))] if boxes is not None else []):
        bad = ~(np.abs(values) <= MAX_PIXEL).all(tuple(range(1, values.ndim)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} of sample {i} must be finite numbers within ±{MAX_PIXEL:g} (pixels), got "
                             f"{values[i].tolist()}")
    ids: dict[str, int] = {}
    annotations = []
    for i in range(n):
        image_id = ids.setdefault(str(file_names[i]), len(ids) + 1)
        box = boxes[i] if boxes is not None else keypoint_box(xy[i, flags[i] > 0])
        box = [0.0, 0.0, 0.0, 0.0] if box is None else [float(v) for v in box]
        annotations.append({"id": i + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                            "num_keypoints": int((flags[i] > 0).sum()), "bbox": box, "area": box_area(box),
                            "keypoints": [v for j in range(k) for v in (float(xy[i, j, 0]), float(xy[i, j, 1]),
                                                                           int(flags[i, j]))]})
    data = {"images": [{"id": i, "file_name": f, **sizes.get(f, {})} for f, i in ids.items()],
            "annotations": annotations,
            "categories": [{"id": 1, "name": category, "keypoints": [str(s) for s in names],
                            "skeleton": [[int(a) + 1, int(b) + 1] for a, b in edges]}]}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, allow_nan=False))


def _image_sizes(image_sizes, file_names, n: int) -> dict:
    """``{file name: {"width": w, "height": h}}`` of ``write_coco``'s ``image_sizes`` (None: {})."""
    if image_sizes is None:
        return {}
    sizes = np.asarray(image_sizes, np.float64)
    if sizes.shape != (n, 2) or not ((sizes > 0) & (sizes <= MAX_PIXEL) & (sizes == np.round(sizes))).all():
        raise ValueError(f"image_sizes must be ({n}, 2) (width, height), whole numbers > 0, got "
                         f"{sizes.tolist()[:3]}")
    out: dict[str, dict] = {}
    for f, (w, h) in zip(file_names, sizes.astype(np.int64).tolist()):
        size = {"width": w, "height": h}
        if out.setdefault(str(f), size) != size:
            raise ValueError(f"image_sizes: samples of image {f} disagree ({out[str(f)]} and {size})")
    return out
