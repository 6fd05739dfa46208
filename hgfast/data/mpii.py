"""MPII Human Pose from the common ``annot/{train,valid}.h5`` files (Newell et al.'s, also used by princeton-vl),
and any keypoint set written in that format (``write_annotations``).

Fields read: ``imgname`` (N, bytes), ``center`` (N, 2), ``scale`` (N,) (box height / 200), ``part``
(N, K, 2) pixel coordinates (K = 16 for MPII), ``visible`` (N, K) (0 or 1) and ``normalize`` (N,): the PCK normaliser
(MPII: 0.6 × head-box diagonal, PCKh; 0 where a sample has none, which PCK leaves out). ``center`` and ``scale`` in
MPII's files are already adjusted (centre moved down by 15·s, scale ×1.25); they are used as they are. A joint is
annotated unless its coordinates are (0, 0). A file with none of the three labels (``part``, ``visible``,
``normalize``; one or two of them is refused) is unlabelled, like a test split: every joint unannotated, no
normaliser (predictions only, ``hgfast.eval.write_mpii_predictions``).

Joints: the file's ``joint_names`` and ``limbs`` attributes where it has them (``write_annotations(names=...)``;
flip pairs and PCK columns come from the names, ``hgfast.data.Skeleton.from_names``), else MPII's skeleton for 16
joints and ``joint_0`` ... with no known flip for other K; ``flip_pairs`` replaces the pairs.

Coordinate base: the files hold MPII's MATLAB coordinates, 1-based (the top-left pixel is (1, 1)). hgfast's
convention is 0-based (pixel column j, row i of the loaded image is at (j, i)), so ``one_based=True`` (default)
subtracts 1 from ``part`` and ``center``, as HRNet and mmpose do; otherwise labels sit one pixel right of and below
the joint, mirrored to the left under flip augmentation, and ``Predictor`` inherits the bias. ``one_based=False``
takes the values as they are (princeton-vl's convention). PCKh is the same either way for a model trained and
evaluated under one convention (a common shift of prediction and ground truth).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np

from .crop import MAX_PIXEL, MIN_BOX_SIDE
from .skeleton import JOINT_NAMES, MPII_SKELETON, NUM_JOINTS, Skeleton
from .topdown import TopDownDataset

FIELDS = {"imgname": (), "center": (2,), "scale": (), "part": ("K", 2), "visible": ("K",), "normalize": ()}
LABELS = ("part", "visible", "normalize")  # all or none: a file without them is unlabelled


def _check_shapes(ann: dict, where: str) -> int:
    """K, after checking every field's shape against ``FIELDS`` (N samples, K from ``part``)."""
    n, part = len(ann["imgname"]), ann["part"]
    k = part.shape[1] if part.ndim == 3 and part.shape[1] > 0 else NUM_JOINTS
    for key, shape in FIELDS.items():
        expected = (n, *(k if d == "K" else d for d in shape))
        if ann[key].shape != expected:
            raise ValueError(f"{where}: field {key!r} has shape {ann[key].shape}, expected {expected}")
    return k


_PIXELS = f"finite, within ±{MAX_PIXEL:g} (pixels)"
RULES = {"center": (_PIXELS, lambda v: np.abs(v) <= MAX_PIXEL), "part": (_PIXELS, lambda v: np.abs(v) <= MAX_PIXEL),
         "scale": (f"finite and > 0: a box {MIN_BOX_SIDE:g} to {MAX_PIXEL:g} pixels high (scale × 200)",
                   lambda v: (v * 200 >= MIN_BOX_SIDE) & (v * 200 <= MAX_PIXEL)),
         "visible": ("0 or 1 (-1, some converters' unknown, reads as 0)", lambda v: np.isin(v, (-1, 0, 1))),
         "normalize": ("finite and >= 0 (the PCK normaliser; 0: none, the sample cannot be validated)",
                       lambda v: np.isfinite(v) & (v >= 0))}


def _check_values(ann: dict, where: str) -> None:
    """Every numeric field's values by ``RULES``; the error names the field and the first bad sample."""
    for key, (rule, ok) in RULES.items():
        values = np.asarray(ann[key], np.float64)
        bad = ~ok(values).all(tuple(range(1, values.ndim)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            name = ann["imgname"][i]
            name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
            raise ValueError(f"{where}: field {key!r} must be {rule}; sample {i} ({name}) has "
                             f"{ann[key][i].tolist()} ({int(bad.sum())} bad sample(s))")


def _read_fields(f, path: Path) -> dict[str, np.ndarray]:
    """The ``FIELDS`` the open h5 file ``f`` has: ``imgname`` (N,) str, the others float64; a ValueError names a
    field that is not a dataset of its kind (names: text, UTF-8; the others: real numbers) or a file without
    samples."""
    import h5py

    ann = {}
    for key in (k for k in FIELDS if k in f):
        try:
            field = f[key]
        except KeyError as exc:  # a dangling link
            raise ValueError(f"MPII annotation file {path}: field {key!r} cannot be read ({exc})") from None
        kinds = "SUO" if key == "imgname" else "iufb"
        if not isinstance(field, h5py.Dataset) or field.dtype.kind not in kinds or field.ndim < 1:
            raise ValueError(f"MPII annotation file {path}: field {key!r} must be an array of "
                             f"{'image names' if key == 'imgname' else 'real numbers'}, got {described_field(field)}")
        values = field[()]
        ann[key] = values if key == "imgname" else values.astype(np.float64)
    if not len(ann["imgname"]):
        raise ValueError(f"MPII annotation file {path} has no samples")
    ann["imgname"] = decode_texts(ann["imgname"], f"MPII annotation file {path}", "imgname of sample")
    return ann


def described_field(field) -> str:
    """An h5 object as an error message shows it: none, a group, or its dtype and shape."""
    import h5py

    if field is None:
        return "none"
    return f"{field.dtype} of shape {field.shape}" if isinstance(field, h5py.Dataset) else "a group"


def decode_texts(values, where: str, what: str) -> np.ndarray:
    """An h5 field's or attribute's values (bytes or str) as an (N,) str array; ValueError naming ``where``,
    ``what`` ("imgname of sample", ...) and the entry for one that is not UTF-8 text."""
    texts = []
    for i, text in enumerate(np.atleast_1d(values)):
        try:
            texts.append(text.decode("utf-8") if isinstance(text, bytes) else text)
        except UnicodeDecodeError:
            raise ValueError(f"{where}: {what} {i} is not UTF-8 text: {text[:60]!r}") from None
        if not isinstance(texts[-1], str):
            raise ValueError(f"{where}: {what} {i} is not text: {text!r}")
    return np.array(texts)


def annotated_joints(part: np.ndarray) -> np.ndarray:
    """(..., K) bool from ``part`` (..., K, 2): a joint is annotated unless its coordinates are (0, 0)."""
    return (np.asarray(part) != 0).any(-1)


def scorable(annotated: np.ndarray, normalize: np.ndarray) -> np.ndarray:
    """(N,) bool: the samples PCK can score, those with an annotated joint (``annotated`` (N, K)) and a
    normaliser > 0 (``normalize`` (N,))."""
    return (np.asarray(annotated) > 0).any(-1) & (np.asarray(normalize) > 0)


def no_ground_truth(ann: dict, path) -> str | None:
    """Why PCK cannot score any sample of annotation file ``path`` (``read_annotations``' ``ann``; a test split,
    say), or None where it can score some."""
    annotated = annotated_joints(ann["part"])
    if scorable(annotated, ann["normalize"]).any():
        return None
    return (f"{path} has no sample PCK can score (an annotated joint and a normaliser > 0: "
            f"{'no annotated joint' if not annotated.any() else 'no normaliser'} in the file)")


RELEASE_FILE = "mpii_human_pose_v1_u12_1.mat"  # MPII's own annotations (``hgfast.data.mpii_release``)


def _peer_json_hint(path: Path) -> str:
    """Where a peer's MPII JSON lies beside a missing h5 file (``data.root`` of HRNet's or bearpaw's layout), or
    MPII's release file in its folder or the one above: how to convert it; else ""."""
    split = path.stem.lower()
    names = [f"{split}.json", f"mpii_{'val' if split == 'valid' else split}.json", "mpii_annotations.json",
             "mpii_annotations.json.gz"]
    found = [path.parent / n for n in names if (path.parent / n).is_file()] if path.parent.is_dir() else []
    if found:
        return (f"; {found[0]} is there: convert it first, hgfast convert-mpii {found[0]} --out {path.parent} "
                f"[--head-boxes gt_valid.mat]")
    release = next((d / RELEASE_FILE for d in (path.parent, path.parent.parent) if (d / RELEASE_FILE).is_file()), None)
    return (f"; MPII's release {release} is there: convert it first, hgfast convert-mpii {release} --out "
            f"{path.parent}" + (" --valid-from <a file of the validation people, e.g. pose-hg-train's valid.h5>"
                                if split == "valid" else "")) if release else ""


def read_annotations(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the fields of an MPII-style ``.h5`` file into numpy arrays, plus ``joint_names`` (K,) and ``limbs``
    (E, 2) where the file has them and ``visible_is_annotated`` (True) where it says so; clear errors for a missing
    or bad file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MPII annotation file not found: {path}{_peer_json_hint(path)}")
    if path.name.lower().endswith((".json", ".json.gz")):
        raise ValueError(f"MPII annotation file {path} is JSON; MPII-format data reads h5 files: convert a peer's "
                         f"(bearpaw's, HRNet's, mmpose's) with hgfast convert-mpii {path} --out {path.parent}")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in FIELDS if k not in f]
            if missing and missing != list(LABELS):  # all labels missing: an unlabelled (test) file
                raise ValueError(f"MPII annotation file {path} lacks field(s) {missing}; "
                                 f"expected {sorted(FIELDS)} (or no labels {list(LABELS)}: a test split)")
            lua = [k for k in ("istrain", "multi") if k in f]
            if lua:
                raise ValueError(f"MPII annotation file {path} has field(s) {lua}: it is pose-hg-train's full "
                                 f"annot.h5, whose center and scale are raw (its Lua loader moves the centre down "
                                 f"by 15·scale and multiplies the scale by 1.25 in code); hgfast reads the adjusted "
                                 f"annot/train.h5 and annot/valid.h5 of the same repository (Tompson's split)")
            ann = _read_fields(f, path)
            attrs = {k: f.attrs[k] for k in ("joint_names", "limbs", "visible_is_annotated") if k in f.attrs}
    except OSError as exc:
        raise ValueError(f"corrupt or unreadable MPII annotation file {path}: {exc}") from exc
    if missing:
        n, k = len(ann["imgname"]), len(np.atleast_1d(attrs.get("joint_names", ()))) or NUM_JOINTS
        ann.update(part=np.zeros((n, k, 2)), visible=np.zeros((n, k)), normalize=np.zeros(n))
    k = _check_shapes(ann, f"MPII annotation file {path}")
    _check_values(ann, f"MPII annotation file {path}")
    if "joint_names" in attrs:
        names = decode_texts(attrs["joint_names"], f"MPII annotation file {path}", "attribute 'joint_names', entry")
        if len(names) != k:
            raise ValueError(f"MPII annotation file {path}: {len(names)} joint_names for {k} joints")
        ann["joint_names"] = names
    if "limbs" in attrs:
        limbs = np.asarray(attrs["limbs"])
        if limbs.size % 2 or not np.issubdtype(limbs.dtype, np.integer):
            raise ValueError(f"MPII annotation file {path}: attribute 'limbs' must be (E, 2) joint numbers, got "
                             f"{limbs.tolist()}")
        ann["limbs"] = limbs.astype(np.int64).reshape(-1, 2)
    if bool(attrs.get("visible_is_annotated", False)):
        ann["visible_is_annotated"] = True
    return ann


def write_annotations(path: str | os.PathLike, imgname, center, scale, part=None, visible=None, normalize=None,
                      names=None, edges=(), index=None, person=None, visible_is_annotated: bool = False) -> None:
    """Write an MPII-style ``.h5`` annotation file (atomically) that ``read_annotations`` / ``MPII`` read: per
    sample ``imgname`` (N,) relative to the image folder, ``center`` (N, 2), ``scale`` (N,) (box height / 200),
    ``part`` (N, K, 2) with (0, 0) for an unannotated joint, ``visible`` (N, K) and ``normalize`` (N,) (the PCK
    normaliser; the three labels all or none: none writes an unlabelled file, a test split); joint ``names`` (K,)
    and limb ``edges`` (0-based pairs), if given, as the file's attributes (needed for K other than MPII's 16 to
    have flip pairs and PCK columns); ``index`` and ``person`` (N,), if given, MPII's 0-based ``annolist`` /
    ``annorect`` numbers (a submission needs them); ``visible_is_annotated``: ``visible`` only says which joints
    are annotated (the source did not tell visible from occluded; stored as an attribute, so that training with
    ``data.loss_weight=visible`` can say so). Coordinates are written as given: MATLAB's 1-based ones for
    ``MPII(one_based=True)``, the default."""
    import h5py

    from ..checkpoint import atomic_path

    labels = {"part": part, "visible": visible, "normalize": normalize}
    given = [k for k, v in labels.items() if v is not None]
    if given and len(given) < len(labels):
        raise ValueError(f"write_annotations: the labels {list(LABELS)} go all or none; got only {given}")
    n = len(imgname)
    if not given:  # unlabelled: K from the names, every joint unannotated (as read_annotations reads such a file)
        k = NUM_JOINTS if names is None or isinstance(names, str) else len(names)
        labels = {"part": np.zeros((n, k, 2)), "visible": np.zeros((n, k)), "normalize": np.zeros(n)}
    ann = {"imgname": np.array([str(s).encode("utf-8") for s in imgname]),
           **{k: np.asarray(v, np.float64) for k, v in (("center", center), ("scale", scale), *labels.items())}}
    k = _check_shapes(ann, "write_annotations")
    if not n:
        raise ValueError("write_annotations: no samples (a file without any is refused on reading)")
    _check_values(ann, "write_annotations")
    numbers = {key: _sample_numbers(v, n, key) for key, v in (("index", index), ("person", person)) if v is not None}
    if names is None and len(edges):
        raise ValueError("write_annotations: edges need names (the file stores the skeleton only with its names)")
    if names is not None:
        if isinstance(names, str) or len(names) != k:
            raise ValueError(f"write_annotations: names must be a sequence of {k} joint names, got {names!r}")
        try:  # distinct names, edges in range: refused now, not on reading
            Skeleton.from_names(names, edges, flip_pairs=())
        except ValueError as exc:
            raise ValueError(f"write_annotations: {exc}") from exc
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key, v in {**ann, **numbers}.items():
            if given or key not in LABELS:
                f[key] = v
        if names is not None:
            f.attrs["joint_names"] = np.array([str(name).encode("utf-8") for name in names])
            f.attrs["limbs"] = edges
        if visible_is_annotated:
            f.attrs["visible_is_annotated"] = True


def _sample_numbers(values, n: int, key: str) -> np.ndarray:
    """``values`` as (n,) int64 whole numbers >= 0 (``index``, ``person``); ValueError naming ``key``."""
    array = np.asarray(values)
    if array.shape != (n,) or array.dtype.kind not in "iuf" or not (np.isfinite(array) & (array >= 0)).all() \
            or not (array == np.round(array)).all():
        raise ValueError(f"write_annotations: {key} must be {n} whole numbers >= 0 (0-based), got "
                         f"{str(array.tolist())[:80]}")
    return array.astype(np.int64)


def h5_skeleton(k: int, names=None, limbs=None, flip_pairs=None) -> Skeleton:
    """The skeleton of an h5 file with K joints, its ``joint_names`` and ``limbs`` (module docstring)."""
    if names is None or tuple(names) == JOINT_NAMES and k == NUM_JOINTS:
        if k == NUM_JOINTS:  # MPII's, with the PCKh columns; given pairs replace its flip
            return MPII_SKELETON if flip_pairs is None else dataclasses.replace(
                MPII_SKELETON, flip_permutation=Skeleton.from_names(JOINT_NAMES, (), flip_pairs).flip_permutation)
        if flip_pairs is None:
            return Skeleton.for_joints(k)
        names = [f"joint_{i}" for i in range(k)]
    return Skeleton.from_names(names, () if limbs is None else limbs, flip_pairs)


def image_folder(kind: str, annotations: Path, image_dir, file_names) -> Path:
    """``image_dir`` as a Path, checked to hold every image of ``file_names`` (relative paths), the images of
    ``kind`` ("MPII", "COCO") annotation file ``annotations``; FileNotFoundError naming some of those missing."""
    if not isinstance(image_dir, (str, os.PathLike)) or not os.fspath(image_dir):
        raise ValueError(f"{kind}: image_dir must be the folder the image names are relative to, got {image_dir!r}")
    folder = Path(image_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{kind} image folder not found: {folder}")
    missing = [f for f in sorted(set(file_names)) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) of {annotations} not found in {folder}, e.g. "
                                f"{[str(f) for f in missing[:3]]}")
    return folder


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (EXIF orientation applied); FileNotFoundError / ValueError name
    the file, also for a truncated file (``cv2.imread`` fills a cut-off JPEG with grey and only prints a warning)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    raw = path.read_bytes()
    if _truncated_jpeg(raw):
        raise ValueError(f"truncated image file (its JPEG data has no end): {path}")
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None
    if image is None:
        raise ValueError(f"corrupt, truncated or unsupported image file: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _truncated_jpeg(raw: bytes) -> bool:
    """Whether ``raw`` is a JPEG whose data ends before its end-of-image marker. Bytes after that marker are
    allowed (a phone's Motion Photo appends a video): where the quick test (the last end marker before the last
    start-of-scan) fails, the file's markers are walked from the start."""
    if raw[:2] != b"\xff\xd8" or raw.rfind(b"\xff\xd9") > raw.rfind(b"\xff\xda"):
        return False
    i, n = 2, len(raw)
    while i + 1 < n:
        if raw[i] != 0xFF:
            return False  # no marker where one must be: not for this test to judge (the decoder does)
        marker = raw[i + 1]
        if marker == 0xD9:  # end of image
            return False
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill byte, RSTn, TEM: no length
            i += 1 if marker == 0xFF else 2
            continue
        i += 2 + int.from_bytes(raw[i + 2:i + 4], "big")
        if marker == 0xDA:  # a scan: entropy-coded data up to the next marker (not a stuffed 00 or an RSTn)
            while (i := raw.find(b"\xff", i)) >= 0 and i + 1 < n and (raw[i + 1] in (0x00, 0xFF) or
                                                                      0xD0 <= raw[i + 1] <= 0xD7):
                i += 1 if raw[i + 1] == 0xFF else 2
            if i < 0:
                return True
    return True


class MPII(TopDownDataset):
    """Top-down MPII samples from ``annotations`` (an ``.h5`` path) and ``image_dir`` (the ``images/`` folder);
    ``one_based``: the file's coordinates are MATLAB's 1-based ones; ``flip_pairs``: joints swapped by a flip,
    replacing the skeleton's (module docstring)."""

    def __init__(self, annotations: str | os.PathLike, image_dir: str | os.PathLike,
                 input_size: int | tuple[int, int] = 256, augment_preset: str = "none", seed: int = 0,
                 one_based: bool = True, flip_pairs=None):
        super().__init__(input_size, augment_preset, seed)
        self.ann = read_annotations(annotations)
        names, limbs = self.ann.pop("joint_names", None), self.ann.pop("limbs", None)
        self.visible_is_annotated = self.ann.pop("visible_is_annotated", False)  # (write_annotations)
        try:
            self.skeleton = h5_skeleton(self.ann["part"].shape[1], names, limbs, flip_pairs)
        except ValueError as exc:
            raise ValueError(f"MPII annotation file {annotations}: {exc}") from exc
        self.origin = 1.0 if one_based else 0.0
        self.annotations = Path(annotations)
        self.image_dir = image_folder("MPII", annotations, image_dir, self.ann["imgname"])

    @property
    def labelled(self) -> np.ndarray:
        """(N,) bool: the samples with an annotated joint."""
        return annotated_joints(self.ann["part"]).any(-1)

    @property
    def scorable(self) -> np.ndarray:
        """(N,) bool: the samples PCK can score (``scorable``)."""
        return scorable(annotated_joints(self.ann["part"]), self.ann["normalize"])

    def no_ground_truth(self) -> str | None:
        """Why PCK cannot score any sample of the file (a test split, say), or None where it can score some."""
        return no_ground_truth(self.ann, self.annotations)

    def __len__(self) -> int:
        return len(self.ann["imgname"])

    def record(self, index: int) -> dict:
        a = {k: v[index] for k, v in self.ann.items()}
        annotated = annotated_joints(a["part"])
        joints = np.where(annotated[:, None], a["part"] - self.origin, 0.0).astype(np.float32)
        return dict(image=read_image(self.image_dir / a["imgname"]), joints=joints,
                    visible=(a["visible"] > 0).astype(np.float32), annotated=annotated.astype(np.float32),
                    center=(a["center"] - self.origin).astype(np.float32), scale=float(a["scale"]),
                    normalize=float(a["normalize"]))
