"""MPII's own release, ``mpii_human_pose_v1_u12_1.mat``, converted to the h5 files hgfast reads (``hgfast
convert-mpii``).

The file (MATLAB v5, read by scipy) holds one struct ``RELEASE``: ``annolist`` (one entry per image: ``image.name``
and ``annorect``, its people), ``img_train`` (1: a training image, whose people have joints; 0: a test image, whose
people have only a rough position) and ``single_person`` (per image, the 1-based numbers of the people far enough
from the others for the single-person benchmark). A person (``annorect``) has ``objpos`` (``x``, ``y``) and
``scale`` (box height / 200), and in a training image the head box ``x1``, ``y1``, ``x2``, ``y2`` and
``annopoints.point``: the annotated joints, each ``x``, ``y``, ``id`` (MPII's 0-based joint number) and
``is_visible`` (0 or 1, written as a number, as text, or left empty, which counts as visible).

Written, as pose-hg-train's ``convert_annot.py`` reads the same file: the centre moved down by 15 × scale and the
scale multiplied by 1.25 (people without a position left out), coordinates as given (MATLAB's 1-based),
``normalize`` = 0.6 × the head box's diagonal (the PCKh normaliser of MPII's evaluation; 0 where a person has no
box), ``index`` / ``person`` the 0-based image and person numbers (what a submission needs):

- ``train.h5``: the people of training images with joints; ``valid.h5`` too where ``valid_from`` names the
  validation people (Tompson et al.'s split: pose-hg-train's ``valid.h5`` or bearpaw's JSON by their ``index`` /
  ``person`` numbers, HRNet's / mmpose's ``valid.json`` by image and centre), in that file's order, the rest
  staying in ``train.h5``;
- ``test.h5``: the people of test images, unlabelled (predictions only).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .mpii import RELEASE_FILE, annotated_joints, decode_texts
from .peer_mpii import HEAD_BOX_FACTOR, read_peer_annotations, split_outputs, write_splits
from .skeleton import NUM_JOINTS

SAME_PERSON_PIXELS = 2.0  # a validation file's joint farther than this from the release's: another person
# (pose-hg-train's h5 files hold the release's joints cut to whole pixels, so up to 1 pixel apart)


def matlab_items(value) -> list:
    """The elements of a MATLAB array as scipy reads it (unsqueezed; a struct array's as ``np.void`` records;
    ``[]`` for an empty one)."""
    if value is None:
        return []
    if not isinstance(value, np.ndarray):
        return [value]
    flat = value.ravel()
    return list(flat) if flat.dtype.names else flat.tolist()


def _number(value) -> float | None:
    """A MATLAB scalar (a number, or a number written as text) as a float; None where it is empty."""
    items = matlab_items(value)
    if not items:
        return None
    if len(items) != 1:
        raise ValueError(f"expected one number, got {len(items)}")
    try:
        return float(items[0])
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {items[0]!r}") from None


def matlab_field(struct, name: str):
    """A struct's field (a record's, as scipy reads MATLAB structs); None where it has none."""
    names = getattr(getattr(struct, "dtype", None), "names", None)
    return struct[name] if names and name in names else None


def image_name(image) -> str:
    """An ``annolist`` entry's ``image.name`` ("" where it has none)."""
    names = [n for i in matlab_items(matlab_field(image, "image")) for n in matlab_items(matlab_field(i, "name"))]
    return str(names[0]) if len(names) == 1 else ""


def _joints(annopoints, where: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(part (16, 2), visible (16,))`` of a person's ``annopoints``; None where it has no joints."""
    points = [p for a in matlab_items(annopoints) for p in matlab_items(matlab_field(a, "point"))]
    if not points:
        return None
    part, visible, seen = np.zeros((NUM_JOINTS, 2)), np.zeros(NUM_JOINTS), set()
    for p in points:
        try:
            joint, x, y = (_number(matlab_field(p, k)) for k in ("id", "x", "y"))
            flag = _number(matlab_field(p, "is_visible"))
        except ValueError as exc:
            raise ValueError(f"{where}: a joint's id, x, y or is_visible: {exc}") from None
        if joint is None or not joint.is_integer() or not 0 <= joint < NUM_JOINTS or joint in seen:
            raise ValueError(f"{where}: joint id {joint} (must be 0 to {NUM_JOINTS - 1}, once each)")
        if x is None or y is None or flag not in (None, 0, 1):
            raise ValueError(f"{where}: joint {int(joint)} has x {x}, y {y}, is_visible {flag}")
        seen.add(joint)
        part[int(joint)], visible[int(joint)] = (x, y), 1.0 if flag is None else flag
    return part, visible


def release_person(rect, where: str, train: bool) -> dict | None:
    """One ``annorect`` as h5 fields (module docstring); None for a person without a position, or without joints in
    a training image."""
    objpos = matlab_items(matlab_field(rect, "objpos"))
    try:
        scale = _number(matlab_field(rect, "scale"))
        x, y = (_number(matlab_field(objpos[0], k)) for k in "xy") if len(objpos) == 1 else (None, None)
    except ValueError as exc:
        raise ValueError(f"{where}: objpos / scale: {exc}") from None
    if scale is None or x is None or y is None:
        return None
    person = {"center": np.array([x, y + 15 * scale]), "scale": scale * 1.25}
    if not train:
        return person
    joints = _joints(matlab_field(rect, "annopoints"), where)
    if joints is None:
        return None
    try:
        box = [_number(matlab_field(rect, k)) for k in ("x1", "y1", "x2", "y2")]
    except ValueError as exc:
        raise ValueError(f"{where}: head box: {exc}") from None
    normalize = 0.0 if None in box else HEAD_BOX_FACTOR * float(np.hypot(box[2] - box[0], box[3] - box[1]))
    return {**person, "part": joints[0], "visible": joints[1], "normalize": normalize}


def load_release(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.void]:
    """``(annolist, img_train, release)``: MPII's release file as scipy reads it (``annolist`` the (1, N) struct
    array of images, an N × 1 one made 1 × N, ``img_train`` (N,) 0 / 1, ``release`` the ``RELEASE`` record);
    FileNotFoundError, ImportError (no scipy) or ValueError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MPII release file not found: {path}")
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise ImportError(f"reading {path} (MPII's MATLAB release) needs scipy: pip install 'hgfast[mat]'") from exc
    try:
        data = loadmat(path, variable_names=["RELEASE"])
    except Exception as exc:  # scipy's for a file it cannot read (a v7.3 file among them)
        raise ValueError(f"{path} is not a MATLAB v5 file scipy can read (MPII's release is one): {exc!r}") from exc
    release = matlab_items(data.get("RELEASE"))
    annolist = matlab_field(release[0], "annolist") if len(release) == 1 else None
    if not matlab_items(annolist) or annolist.dtype.names is None:
        raise ValueError(f"{path} has no RELEASE.annolist: not MPII's release ({RELEASE_FILE})")
    flags = np.asarray(matlab_items(matlab_field(release[0], "img_train")), dtype=float)
    if flags.shape != (annolist.size,) or not np.isin(flags, (0, 1)).all():
        raise ValueError(f"{path}: RELEASE.img_train must be 0 or 1 for each of the {annolist.size} images")
    return annolist.reshape(1, -1), flags, release[0]


def read_release(path: str | os.PathLike, single_person: bool = False) -> tuple[dict, dict[str, int]]:
    """``({"train": fields, "test": fields}, left_out)``: the people of MPII's release file by split (module
    docstring), in the file's order: ``imgname``, ``center``, ``scale``, ``index``, ``person`` and, for ``train``,
    ``part``, ``visible``, ``normalize``; ``single_person``: only the people ``RELEASE.single_person`` lists.
    ``left_out`` counts per split the people without a position, or without joints in a training image."""
    annolist, flags, release = load_release(path)
    images = matlab_items(annolist)
    chosen = matlab_items(matlab_field(release, "single_person"))
    if single_person and len(chosen) != len(images):
        raise ValueError(f"{path}: RELEASE.single_person has {len(chosen)} entries for {len(images)} images")
    rows, left_out = {"train": [], "test": []}, {"train": 0, "test": 0}
    for i, image in enumerate(images):
        split = "train" if flags[i] else "test"
        name, rects = image_name(image), matlab_items(matlab_field(image, "annorect"))
        if rects and not name:
            raise ValueError(f"{path}: image {i} (0-based) has people but no image.name")
        keep = {int(n) - 1 for n in matlab_items(chosen[i])} if single_person else range(len(rects))
        for j, rect in enumerate(rects):
            if j not in keep:
                continue
            person = release_person(rect, f"{path}: image {i} ({name}), person {j} (0-based)", split == "train")
            if person is None:
                left_out[split] += 1
            else:
                rows[split].append({"imgname": name, **person, "index": i, "person": j})
    return {s: {k: np.array([r[k] for r in people]) for k in people[0]} for s, people in rows.items() if people}, \
        left_out


def _validation_fields(path: Path) -> dict[str, np.ndarray]:
    """The fields of the validation people a file lists that can tell who they are: ``index`` / ``person``,
    ``imgname`` / ``center`` (adjusted), ``part``, where it has them. An h5 annotation file (pose-hg-train's
    ``valid.h5``, one hgfast wrote), bearpaw's JSON (its validation split) or HRNet's / mmpose's validation JSON."""
    if path.name.lower().endswith((".json", ".json.gz")):
        kind, splits = read_peer_annotations(path)
        if kind == "bearpaw" and "valid" not in splits:
            raise ValueError(f"validation file {path} has no validation people (isValidation 1)")
        return splits["valid"] if kind == "bearpaw" else next(iter(splits.values()))
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"validation file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            fields = {k: np.asarray(f[k]) for k in ("index", "person", "part", "imgname", "center") if k in f}
    except OSError as exc:
        raise ValueError(f"validation file {path} is not an h5 file h5py can read: {exc}") from exc
    if "imgname" in fields:
        fields["imgname"] = decode_texts(fields["imgname"], f"validation file {path}", "imgname of sample")
    return fields


def _validation_rows(train: dict, path: Path, valid_from: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rows, part)``: the rows of ``train`` that ``valid_from`` lists, in its order, by their MPII numbers or,
    where it has none (HRNet's JSON), by image and centre (within ``SAME_PERSON_PIXELS``); its joints, if any."""
    fields = _validation_fields(valid_from)
    if "index" in fields and "person" in fields:
        keys = list(zip(np.ravel(fields["index"]).tolist(), np.ravel(fields["person"]).tolist()))
        row = {key: r for r, key in enumerate(zip(train["index"].tolist(), train["person"].tolist()))}
        found = [row.get(key) for key in keys]
        what = [f"index {i:g}, person {j:g}" for i, j in keys]
    elif "imgname" in fields and "center" in fields:
        by_image = {}
        for r, name in enumerate(train["imgname"].tolist()):
            by_image.setdefault(name, []).append(r)
        centers = np.asarray(fields["center"], np.float64).reshape(-1, 2)
        found = []
        for name, center in zip(fields["imgname"].tolist(), centers):
            rows = by_image.get(name, [])
            gaps = [np.abs(train["center"][r] - center).max() for r in rows]
            found.append(rows[int(np.argmin(gaps))] if rows and min(gaps) <= SAME_PERSON_PIXELS else None)
        what = [f"{name} at {center.tolist()}" for name, center in zip(fields["imgname"].tolist(), centers)]
    else:
        raise ValueError(f"validation file {valid_from} has neither MPII image and person numbers ('index' / "
                         f"'person') nor image names and centres: it cannot say who the validation people are")
    missing = [k for k, r in enumerate(found) if r is None]
    if missing:
        raise ValueError(f"validation file {valid_from}, person {missing[0]}: {what[missing[0]]} is not a person with "
                         f"joints of a training image of {path} ({len(missing)} of {len(found)} not found): not the "
                         f"same release")
    if len(set(found)) != len(found):
        raise ValueError(f"validation file {valid_from} lists a person twice")
    return np.array(found, np.int64), fields.get("part")


def _split_off(train: dict, path: Path, valid_from: Path) -> tuple[dict, dict]:
    """``(train, valid)``: the people ``valid_from`` lists taken out of ``train``, in that file's order, after
    checking that the joints both have agree."""
    rows, part = _validation_rows(train, path, valid_from)
    if part is not None:
        ours, theirs = train["part"][rows], np.asarray(part, np.float64)
        if theirs.shape != ours.shape:
            raise ValueError(f"validation file {valid_from}: 'part' is {theirs.shape}, expected {ours.shape}")
        far = annotated_joints(ours) & annotated_joints(theirs) & \
            (np.abs(ours - theirs).max(-1) > SAME_PERSON_PIXELS)
        if far.any():
            k, joint = np.argwhere(far)[0]
            raise ValueError(f"validation file {valid_from}, person {k}: joint {joint} is at "
                             f"{theirs[k, joint].tolist()}, at {ours[k, joint].tolist()} in {path}: not the same "
                             f"people")
    valid = np.zeros(len(train["index"]), bool)
    valid[rows] = True
    return {k: v[~valid] for k, v in train.items()}, {k: v[rows] for k, v in train.items()}


def convert_release(path: str | os.PathLike, out_dir: str | os.PathLike, valid_from=None,
                    single_person: bool = False, overwrite: bool = False) -> list[dict]:
    """Write MPII's release file as ``out_dir/train.h5``, ``valid.h5`` (with ``valid_from``) and ``test.h5``
    (module docstring); ``single_person``: only the people of MPII's single-person benchmark. Refuses to replace
    an existing file unless ``overwrite``, and, without ``valid_from``, an ``out_dir`` holding a ``valid.h5`` (whose
    people the new ``train.h5`` would hold too); nothing is written unless every split converts. Returns per file
    ``{"path", "split", "people", "joints" (annotated), "scorable", "left_out"}``."""
    path, out_dir = Path(path), Path(out_dir)
    if valid_from is None and (out_dir / "valid.h5").exists():
        raise ValueError(f"{out_dir / 'valid.h5'} exists and no validation file is given: train.h5 would hold its "
                         f"people too (give it as valid_from / --valid-from, moved out of {out_dir}, or remove it)")
    splits, left_out = read_release(path, single_person)
    if "train" not in splits:
        raise ValueError(f"{path}: no person of a training image has a position and joints")
    if valid_from is not None:
        splits["train"], splits["valid"] = _split_off(splits["train"], path, Path(valid_from))
    outputs = split_outputs((path, valid_from), out_dir, splits, overwrite)
    written = [{"path": outputs[split], "split": split, "fields": fields,
                "left_out": left_out.get(split, 0)} for split, fields in splits.items()]
    write_splits(written, out_dir, path)
    return written
