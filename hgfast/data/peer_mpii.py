"""MPII annotations in the peers' JSON formats, converted to the h5 files hgfast reads (``hgfast convert-mpii``).

- bearpaw/pytorch-pose's ``mpii_annotations.json`` (``.json.gz`` too, as anibali's copy): one list of people of
  both splits of Tompson et al. (``isValidation`` 1: the 2958 validation people); ``img_paths``, ``objpos``,
  ``scale_provided``, ``joint_self`` (16 × (x, y, is_visible); (0, 0) unannotated), ``annolist_index`` and
  ``people_index`` (MPII's 1-based numbers; written 0-based as ``index`` and ``person``).
- HRNet's and mmpose's ``train.json`` / ``valid.json`` / ``test.json`` (mmpose: ``mpii_train.json``,
  ``mpii_val.json``, ...): one split each; ``image``, ``center``, ``scale``, ``joints`` (16 × (x, y)) and
  ``joints_vis`` (16; 1: annotated, visible or occluded, which these files do not tell apart, so ``visible`` is
  written as annotated, and the file says so: ``write_annotations(visible_is_annotated=True)``); a test split has
  neither of the last two.

Both hold MPII's raw person position and scale; as their loaders do and as ``annot/*.h5`` hold them, the centre moves
down by 15 × scale and the scale is multiplied by 1.25 (a person without a position, ``-1``, is left out).
Coordinates stay MATLAB's 1-based ones (``MPII(one_based=True)``, the default).

The PCKh normaliser (``normalize``: 0.6 × the head box's diagonal) comes from the head boxes of the evaluation
``.mat`` file the peers score the validation split with (``read_head_boxes``): its rows must be the split's people
in the file's order, which the joints it also holds confirm, and its joints decide which are scored
(``with_head_boxes``). Without it a split is written with ``normalize`` 0: trainable, not scorable.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .coco_format import is_number, read_json
from .mpii import RULES, annotated_joints, scorable, write_annotations
from .skeleton import NUM_JOINTS

HEAD_BOX_FACTOR = 0.6  # PCKh's normaliser: this × the head box's diagonal (SC_BIAS of the MATLAB evaluation)
MATCH_PIXELS = 0.5  # a joint of the head-box file farther than this from the annotation's: not the same person
FORMATS = {"bearpaw": ("img_paths", "objpos", "scale_provided", "joint_self", "isValidation"),
           "hrnet": ("image", "center", "scale")}
HEAD_BOX_KEYS = ("headboxes_src", "pos_gt_src", "jnt_missing")


def _numbers(entry: dict, key: str, shape: tuple, where: str):
    """``entry[key]`` as a float64 array of ``shape`` (a float for ``()``); ValueError naming ``where`` and the key
    otherwise."""
    value = entry.get(key)
    flat = np.asarray(value, dtype=object).ravel() if isinstance(value, list) else [value]
    try:
        array = np.array(value, np.float64)
    except (TypeError, ValueError, OverflowError):  # ragged, not numbers, an integer beyond float's range
        array = np.zeros(0)
    if array.shape != shape or not all(map(is_number, flat)):
        what = "a number" if not shape else f"{' × '.join(map(str, shape))} numbers"
        raise ValueError(f"{where}: {key!r} must be {what}, got {str(value)[:80]}")
    return float(array) if not shape else array


def _flags(values: np.ndarray, key: str, where: str) -> np.ndarray:
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{where}: {key!r} must be 0 or 1 per joint, got {values.tolist()}")
    return values


def _entries(path: Path) -> tuple[list, str]:
    """The file's list of people and its format (``FORMATS``); ValueError where it is neither."""
    entries = read_json(path, "MPII annotation file")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"MPII annotation file {path}: expected a non-empty list of people (bearpaw's "
                         f"mpii_annotations.json, HRNet's or mmpose's train/valid/test.json)")
    for name, keys in FORMATS.items():
        if all(k in entries[0] for k in keys):
            missing = [(i, k) for i, e in enumerate(entries) for k in keys if k not in e]
            if missing:
                raise ValueError(f"MPII annotation file {path}, person {missing[0][0]}: no {missing[0][1]!r} "
                                 f"({len(missing)} missing key(s) in all)")
            return entries, name
    raise ValueError(f"MPII annotation file {path}: person 0 has keys {sorted(entries[0])[:12]}; expected "
                     f"bearpaw's {list(FORMATS['bearpaw'])} or HRNet's/mmpose's {list(FORMATS['hrnet'])} (+ "
                     f"'joints', 'joints_vis')")


def _text(entry: dict, key: str, where: str) -> str:
    if not isinstance(entry[key], str) or not entry[key]:
        raise ValueError(f"{where}: {key!r} must be an image file name, got {entry[key]!r}")
    return entry[key]


def _bearpaw(entry: dict, where: str) -> dict:
    joints = _numbers(entry, "joint_self", (NUM_JOINTS, 3), where)
    split = _numbers(entry, "isValidation", (), where)
    if split not in (0, 1):
        raise ValueError(f"{where}: 'isValidation' must be 0 or 1, got {entry['isValidation']!r}")
    person = {"split": "valid" if split else "train", "imgname": _text(entry, "img_paths", where),
              "center": _numbers(entry, "objpos", (2,), where),
              "scale": _numbers(entry, "scale_provided", (), where), "part": joints[:, :2],
              "visible": np.where(annotated_joints(joints[:, :2]), _flags(joints[:, 2], "joint_self", where), 0.0)}
    for key, name in (("annolist_index", "index"), ("people_index", "person")):
        if key in entry:
            number = _numbers(entry, key, (), where)
            if not (1 <= number < 2**53 and number.is_integer()):  # (MATLAB writes whole numbers as 5.000)
                raise ValueError(f"{where}: {key!r} must be a whole number >= 1 (MPII's 1-based), got {entry[key]!r}")
            person[name] = number - 1
    return person


def _hrnet(entry: dict, where: str, split: str) -> dict:
    person = {"split": split, "imgname": _text(entry, "image", where),
              "center": _numbers(entry, "center", (2,), where), "scale": _numbers(entry, "scale", (), where)}
    if "joints" in entry or "joints_vis" in entry:
        annotated = _flags(_numbers(entry, "joints_vis", (NUM_JOINTS,), where), "joints_vis", where) > 0
        person["part"] = np.where(annotated[:, None], _numbers(entry, "joints", (NUM_JOINTS, 2), where), 0.0)
        person["visible"] = annotated.astype(np.float64)
    return person


def _adjust(person: dict, keys: dict, where: str) -> None:
    """Move a person with a position to the h5 files' centre and scale (module docstring), checking the values
    by ``mpii.RULES`` (``keys``: the file's key of each field, for the message)."""
    person["positioned"] = person["center"][0] != -1  # -1: none given, the loaders leave it unadjusted
    if not person["positioned"]:
        return
    person["center"] = person["center"] + [0.0, 15 * person["scale"]]
    person["scale"] = person["scale"] * 1.25
    for field, key in keys.items():
        rule, ok = RULES[field]
        if field in person and not ok(np.asarray(person[field])).all():
            raise ValueError(f"{where}: {key!r} gives the {field} {str(np.asarray(person[field]).tolist())[:80]} "
                             f"(adjusted as the h5 files hold it), which must be {rule}")


def split_name(path: Path) -> str:
    """The split an HRNet/mmpose file holds, from its name: ``train``, ``valid`` (``val``), ``test``, ``trainval``
    (an ``mpii_`` prefix dropped), else the file's stem."""
    stem = path.name.split(".")[0].lower().removeprefix("mpii_")
    return "valid" if stem == "val" else stem


def read_peer_annotations(path: str | os.PathLike) -> tuple[str, dict[str, dict[str, np.ndarray]]]:
    """``(format, {split: fields})``: the people of a bearpaw or HRNet/mmpose MPII JSON file (module docstring;
    format ``"bearpaw"`` or ``"hrnet"``) by split, in the file's order: ``imgname`` (N,), ``center`` (N, 2) and
    ``scale`` (N,) adjusted, ``part`` (N, 16, 2), ``visible`` (N, 16) (no labels for a test split), ``index`` /
    ``person`` (N,) where the file has them, ``entry`` (N,) each person's number in the file and ``positioned``
    (N,) False for a person without a position (centre -1, left unadjusted: ``convert_peer_annotations`` leaves
    such people out)."""
    path = Path(path)
    entries, kind = _entries(path)
    keys = ({"center": "objpos", "scale": "scale_provided", "part": "joint_self"} if kind == "bearpaw" else
            {"center": "center", "scale": "scale", "part": "joints"})
    people = []
    for i, e in enumerate(entries):
        where = f"MPII annotation file {path}, person {i}"
        person = _bearpaw(e, where) if kind == "bearpaw" else _hrnet(e, where, split_name(path))
        _adjust(person, keys, where)
        people.append({**person, "entry": i})
    given = {"part": "'joints' / 'joints_vis'", "index": "'annolist_index'", "person": "'people_index'"}
    for key, names in given.items():  # labels (a test split has none) and MPII's numbers: in every entry or none
        has = [key in p for p in people]
        if any(has) and not all(has):
            raise ValueError(f"MPII annotation file {path}: person {has.index(not has[0])} "
                             f"{'lacks' if has[0] else 'has'} {names}, person 0 {'has' if has[0] else 'lacks'} them "
                             f"(every person or none)")
    splits = {}
    for p in people:
        splits.setdefault(p.pop("split"), []).append(p)
    return kind, {split: {k: np.array([r[k] for r in rows]) for k in rows[0]} for split, rows in splits.items()}


def read_matlab_arrays(path: Path, keys) -> dict[str, np.ndarray]:
    """``keys`` of a MATLAB file as MATLAB shapes them: v7.3 (HDF5) by h5py, transposed back (HDF5 stores
    MATLAB's column-major arrays with the dimensions reversed); older versions by scipy. ValueError for a file
    neither can read."""
    import h5py

    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                return {k: np.asarray(f[k]).T for k in keys if isinstance(f.get(k), h5py.Dataset)}
    except (OSError, KeyError, ValueError) as exc:  # h5py's errors for a damaged file
        raise ValueError(f"{path} is not an HDF5 (MATLAB v7.3) file h5py can read: {exc}") from exc
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise ImportError(f"reading {path} (a MATLAB file before v7.3) needs scipy: pip install 'hgfast[mat]'") \
            from exc
    try:
        data = loadmat(path, variable_names=list(keys))
    except Exception as exc:  # scipy's for a file it cannot read: MatReadError, ValueError, zlib.error, IndexError, ...
        raise ValueError(f"{path} is not a MATLAB file scipy can read: {exc!r}") from exc
    return {k: data[k] for k in keys if k in data}


def read_head_boxes(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The MPII validation split's head boxes, joints and missing flags from the evaluation ``.mat`` file (HRNet's
    ``gt_valid.mat``, mmpose's ``mpii_gt_val.mat``, bearpaw's ``evaluation/data/detections_our_format.mat``):
    ``boxes`` (N, 2, 2) (top-left, bottom-right corner), ``joints`` (N, K, 2) and ``missing`` (N, K) bool, from the
    file's ``headboxes_src`` (2, 2, N), ``pos_gt_src`` (K, 2, N) and ``jnt_missing`` (K, N) (for one person
    MATLAB drops the last dimension)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"head-box file not found: {path}")
    data = read_matlab_arrays(path, HEAD_BOX_KEYS)
    absent = [k for k in HEAD_BOX_KEYS if k not in data]
    if absent:
        raise ValueError(f"head-box file {path} has no {absent} (expected {list(HEAD_BOX_KEYS)}, as gt_valid.mat)")
    boxes, joints, missing = (np.asarray(data[k]) for k in HEAD_BOX_KEYS)
    if boxes.shape == (2, 2) and joints.ndim == 2:  # one person: (2, 2), (K, 2) and (K, 1)
        boxes, joints, missing = boxes[..., None], joints[..., None], missing.reshape(len(missing), -1)
    n = boxes.shape[-1] if boxes.ndim == 3 else -1
    shapes_ok = boxes.shape[:2] == (2, 2) and joints.ndim == 3 and joints.shape[1:] == (2, n) and \
        missing.shape == (joints.shape[0], n) and n > 0
    if not shapes_ok or any(a.dtype.kind not in "iufb" for a in (boxes, joints, missing)):
        raise ValueError(f"head-box file {path}: headboxes_src {boxes.shape}, pos_gt_src {joints.shape}, jnt_missing "
                         f"{missing.shape}; expected numbers of (2, 2, N), (K, 2, N) and (K, N)")
    boxes, joints = boxes.astype(np.float64).transpose(2, 0, 1), joints.astype(np.float64).transpose(2, 0, 1)
    if not np.isin(missing, (0, 1)).all():
        raise ValueError(f"head-box file {path}: jnt_missing must be 0 or 1")
    missing = missing.T.astype(bool)
    if not (np.isfinite(boxes).all() and np.isfinite(joints[~missing]).all()):
        raise ValueError(f"head-box file {path}: head boxes and the joints not marked missing must be finite")
    return {"boxes": boxes, "joints": joints, "missing": missing}


def with_head_boxes(fields: dict, heads: dict, where: str) -> tuple[dict, dict[str, int]]:
    """``(fields with normalize, counts)``: one split's fields (``read_peer_annotations``) with the PCKh normaliser
    of ``heads`` (``read_head_boxes``), whose people must be the split's in the same order (every joint both
    annotate within ``MATCH_PIXELS``). The joints become those of the head-box file, where the peers' scripts
    score them: joints it marks missing are left unannotated (``counts["dropped"]``), joints only it has are added
    (``counts["added"]``, visible 1), and the others take its coordinates. ValueError naming ``where`` and the first
    mismatch (the person by its ``entry`` number)."""
    part, n = fields["part"], len(fields["imgname"])
    if len(heads["boxes"]) != n or heads["joints"].shape[1] != part.shape[1]:
        raise ValueError(f"{where}: the head-box file has {len(heads['boxes'])} people of "
                         f"{heads['joints'].shape[1]} joints, the split {n} of {part.shape[1]}: not the same split")
    annotated, listed = annotated_joints(part), ~heads["missing"]
    far = annotated & listed & (np.abs(part - heads["joints"]).max(-1) > MATCH_PIXELS)
    if far.any():
        i, j = np.argwhere(far)[0]
        raise ValueError(f"{where}: person {fields['entry'][i]} ({fields['imgname'][i]}), joint {j} is at "
                         f"{part[i, j].tolist()} in the annotations and at {heads['joints'][i, j].tolist()} in the "
                         f"head-box file: not the same people in the same order ({int(far.sum())} joint(s) differ)")
    dropped = annotated & ~listed
    scored = listed & annotated_joints(heads["joints"])
    added = ~annotated & scored
    corners = heads["boxes"]
    return {**fields, "part": np.where(scored[..., None], heads["joints"], 0.0),
            "visible": np.where(dropped, 0.0, np.where(added, 1.0, fields["visible"])),
            "normalize": HEAD_BOX_FACTOR * np.linalg.norm(corners[:, 1] - corners[:, 0], axis=-1)}, \
        {"dropped": int(dropped.sum()), "added": int(added.sum())}


def split_outputs(inputs, out_dir: Path, splits, overwrite: bool) -> dict[str, Path]:
    """``{split: out_dir/<split>.h5}``, after refusing what writing them would break: replacing one of the
    ``inputs`` (paths or None), an existing file unless ``overwrite``, a folder or a file in the way."""
    outputs = {split: out_dir / f"{split}.h5" for split in splits}
    inputs = {Path(p).resolve() for p in inputs if p is not None}
    if any(p.resolve() in inputs for p in outputs.values()):
        raise ValueError(f"an output in {out_dir} would replace an input file ({', '.join(map(str, inputs))})")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output folder {out_dir} is a file")
    odd = [str(p) for p in outputs.values() if p.exists() and not p.is_file()]
    if odd:
        raise IsADirectoryError(f"{', '.join(odd)}: not a file, cannot be replaced by the split's h5 file")
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist(s); give overwrite=True (--overwrite) to replace")
    return outputs


def write_splits(written: list[dict], out_dir: Path, source: Path, visible_is_annotated: bool = False) -> None:
    """Write each ``{"path", "split", "fields", ...}`` of ``written`` (``write_annotations``' fields) into
    ``out_dir``, all or none: every split into a temporary folder there, then each moved in place. ``fields`` is
    replaced by the counts ``people``, ``joints`` (annotated) and ``scorable``; ``visible_is_annotated`` applies to
    the labelled splits; errors name ``source`` and the split."""
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".convert-") as tmp:
            for w in written:
                fields = w.pop("fields")
                try:
                    write_annotations(Path(tmp) / w["path"].name, **fields,
                                      visible_is_annotated=visible_is_annotated and "part" in fields)
                except ValueError as exc:
                    raise ValueError(f"MPII annotation file {source} ({w['split']}): {exc}") from None
                annotated = annotated_joints(fields.get("part", np.zeros((1, 1, 2))))
                w.update(people=len(fields["imgname"]), joints=int(annotated.sum()),
                         scorable=int(scorable(annotated, fields.get("normalize", 0)).sum()))
            for w in written:
                os.replace(Path(tmp) / w["path"].name, w["path"])
    except BaseException:
        if created:
            out_dir.rmdir()  # (empty again: the temporary folder is gone)
        raise


def convert_peer_annotations(path: str | os.PathLike, out_dir: str | os.PathLike, head_boxes=None,
                             overwrite: bool = False) -> list[dict]:
    """Write the splits of a peer's MPII JSON file as ``out_dir/<split>.h5`` (``write_annotations``; bearpaw's file:
    ``train.h5`` and ``valid.h5``), leaving out people without a position; ``head_boxes``: the evaluation ``.mat``
    whose head boxes give the validation split (bearpaw's) or the file's one split (HRNet's/mmpose's) its PCKh
    normaliser. Refuses to replace an existing file unless ``overwrite``; nothing is written unless every split
    converts. Returns per file ``{"path", "split", "people", "joints" (annotated), "scorable", "left_out",
    "dropped", "added"}`` (``with_head_boxes``)."""
    path, out_dir = Path(path), Path(out_dir)
    kind, splits = read_peer_annotations(path)
    target = "valid" if kind == "bearpaw" else next(iter(splits))
    if head_boxes is not None:
        if target not in splits:
            raise ValueError(f"head boxes given for {path}, which has no validation people (isValidation 1)")
        if "part" not in splits[target]:
            raise ValueError(f"head boxes given for {path}, a split without joints (a test split): nothing to score")
        heads = read_head_boxes(head_boxes)
    outputs = split_outputs((path, head_boxes), out_dir, splits, overwrite)
    written = []
    for split, fields in splits.items():
        counts = {"dropped": 0, "added": 0}
        if head_boxes is not None and split == target:  # matched before people are left out: the file's rows
            fields, counts = with_head_boxes(fields, heads, f"{path} ({split}) and head-box file {head_boxes}")
        elif "part" in fields:
            fields = {**fields, "normalize": np.zeros(len(fields["imgname"]))}
        keep = fields["positioned"]
        if not keep.any():
            raise ValueError(f"MPII annotation file {path}: no person of split {split!r} has a position (every "
                             f"centre is -1)")
        fields = {k: v[keep] for k, v in fields.items() if k not in ("entry", "positioned")}
        written.append({"path": outputs[split], "split": split, "fields": fields, **counts,
                        "left_out": int((~keep).sum())})
    write_splits(written, out_dir, path, visible_is_annotated=kind == "hrnet")  # joints_vis: annotated, visible or not
    return written
