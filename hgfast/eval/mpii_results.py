"""MPII-style predictions files: the ``preds`` h5 that MPII evaluation and submission scripts read.

One row per sample of the annotation file, in its order: ``preds`` (N, K, 2) float64 image pixels in the file's
own coordinates, those of its ``part`` (MPII's: MATLAB's 1-based ones, read with ``one_based=True``). That is what
anibali/eval-mpii-pose's ``evalMPII.m`` scores and its ``prepareTestResults.m`` turns into the benchmark's
submission file (with the test split's ``index`` and ``person``); MATLAB's ``h5read`` shows the array as 2 × K × N,
which those scripts accept. ``score_mpii_predictions`` scores such a file, hgfast's or another model's
(eval-mpii-pose's reference predictions have this form), against an annotation file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.mpii import (MPII, annotated_joints, decode_texts, described_field, h5_skeleton, no_ground_truth,
                         read_annotations)
from ..data.skeleton import JOINT_NAMES


def check_results_path(path: str | os.PathLike, dataset: MPII) -> None:
    """ValueError where ``dataset`` cannot get a predictions file at ``path``: not an MPII-style dataset, or
    ``path`` is a file other than a predictions file (one with ``preds``), such as an annotation file, which
    would be lost; ImportError for a ``.mat`` without scipy (before an evaluation, not after it)."""
    if not isinstance(dataset, MPII):
        raise ValueError(f"an MPII predictions file needs an MPII-style dataset, got {type(dataset).__name__}")
    path = Path(path)
    if _matlab(path):
        _savemat()
    if path.is_file() and not _has_preds(path):
        raise ValueError(f"{path} exists and is not a predictions file (an h5 or .mat with 'preds'; an annotation "
                         f"file, say): it is not replaced, write the predictions elsewhere")


def _has_preds(path: Path) -> bool:
    """Whether the file at ``path`` holds ``preds`` (HDF5, or MATLAB before v7.3)."""
    import h5py

    from ..data.peer_mpii import read_matlab_arrays

    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                return "preds" in f
        return "preds" in read_matlab_arrays(path, ("preds",))
    except (OSError, ValueError, ImportError):  # corrupt, neither format, or no scipy to tell
        return False


def _matlab(path: Path) -> bool:
    return path.suffix.lower() == ".mat"


def _savemat():
    try:
        from scipy.io import savemat
    except ImportError as exc:
        raise ImportError("a .mat predictions file needs scipy: pip install 'hgfast[mat]' (or write an .h5)") from exc
    return savemat


def write_mpii_predictions(path: str | os.PathLike, dataset: MPII, preds: dict, **attrs) -> None:
    """Write ``predict_dataset``'s arrays for every sample of ``dataset`` as an h5 file (atomically): ``preds``
    (module docstring), ``scores`` (N, K) the heatmap peaks, the file's ``imgname``, ``center`` and ``scale`` as
    it has them, and its ``index`` and ``person`` (MPII's 0-based ``annolist`` / ``annorect`` numbers, which a
    submission needs) copied as they are where it has them; attributes ``one_based`` (how the file was read), the
    annotation file, ``joint_names`` and ``attrs`` (text, numbers or bools, e.g. the checkpoint). A ``.mat`` path
    gets a MATLAB v5 file (scipy) of ``preds`` (N, K, 2) and ``scores`` only, as HRNet's ``pred.mat`` and bearpaw's
    ``preds_valid.mat``, which their evaluation scripts read."""
    import h5py

    from ..checkpoint import atomic_path

    check_results_path(path, dataset)
    index = np.asarray(preds["index"], np.int64)
    if np.sort(index).tolist() != list(range(len(dataset))):
        raise ValueError(f"write_mpii_predictions: preds must hold each of the dataset's {len(dataset)} samples "
                         f"once, got {len(index)} rows (a subset, repeated samples or another dataset)")
    order = np.argsort(index)
    values = np.asarray(preds["pred"], np.float64)[order] + dataset.origin
    scores = np.asarray(preds["scores"], np.float32)[order]
    if _matlab(Path(path)):
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            _savemat()(f, {"preds": values, "scores": scores})
        return
    ann = dataset.ann
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f, h5py.File(dataset.annotations, "r") as source:
        f["preds"], f["scores"] = values, scores
        f["imgname"] = np.array([name.encode("utf-8") for name in ann["imgname"]])
        f["center"], f["scale"] = ann["center"], ann["scale"]
        for key in ("index", "person"):
            if isinstance(source.get(key), h5py.Dataset):
                source.copy(key, f)
        f.attrs.update(one_based=dataset.origin == 1, annotations=str(dataset.annotations),
                       joint_names=np.array([n.encode("utf-8") for n in dataset.skeleton.names]), **attrs)


def read_mpii_predictions(path: str | os.PathLike) -> dict:
    """The arrays of a predictions file: ``preds`` (N, K, 2) float64, and where it has them ``imgname`` (N,) str,
    ``center`` (N, 2), ``scale`` (N,) and ``joint_names`` (its attribute). A (2, K, N) ``preds`` (a MATLAB n × K × 2
    array saved with -v7.3; always so in a file with MATLAB's 7.3 header) is transposed, as eval-mpii-pose does,
    and a (2, N) ``center`` beside it; NaN or
    infinite coordinates are kept (PCK counts them as misses, as its ``evalMPII.m`` does). FileNotFoundError /
    ValueError name the file and the problem. A MATLAB file before v7.3 (not HDF5) is read by scipy: its
    ``preds`` (N, K, 2), as HRNet and bearpaw save them."""
    import h5py

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"predictions file {path} is a folder")
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    where = f"predictions file {path}"
    if not h5py.is_hdf5(path):
        if path.suffix.lower() in (".h5", ".hdf5"):
            raise ValueError(f"{where} is not an HDF5 file (corrupt, or another format named .h5)")
        return _matlab_predictions(path, where)
    with open(path, "rb") as f:
        matlab = f.read(10) == b"MATLAB 7.3"  # MATLAB's -v7.3 header: its arrays are stored transposed
    try:
        with h5py.File(path, "r") as f:
            preds = f.get("preds")
            if not isinstance(preds, h5py.Dataset) or preds.dtype.kind not in "iuf" or preds.ndim != 3 \
                    or 2 not in (preds.shape[0], preds.shape[2]):
                raise ValueError(f"{where}: field 'preds' must be (N, K, 2) (or (2, K, N)) numbers, x and y per "
                                 f"joint, got {described_field(preds)}")
            values = preds[()].astype(np.float64)
            matlab = matlab or values.shape[2] != 2  # (2, K, N): a MATLAB file's n x K x 2, its centres 2 x n
            out = {"preds": values.transpose(2, 1, 0) if matlab else values}
            for key, kinds, ndim in (("imgname", "SO", 1), ("center", "iuf", 2), ("scale", "iuf", 1)):
                field = f.get(key)
                if field is None:
                    continue
                if not isinstance(field, h5py.Dataset) or field.dtype.kind not in kinds or field.ndim != ndim:
                    kind = "image names" if key == "imgname" else "numbers"
                    raise ValueError(f"{where}: field {key!r} must be {ndim}-D {kind}, got {described_field(field)}")
                out[key] = (decode_texts(field[()], where, "imgname of sample") if key == "imgname"
                            else field[()].astype(np.float64))
                if key == "center" and matlab and out[key].shape[0] == 2:
                    out[key] = out[key].T
            if "joint_names" in f.attrs:
                out["joint_names"] = decode_texts(f.attrs["joint_names"], where, "attribute 'joint_names', entry")
    except OSError as exc:
        raise ValueError(f"corrupt or unreadable {where}: {exc}") from exc
    return out


def _matlab_predictions(path: Path, where: str) -> dict:
    """``preds`` (N, K, 2) of a MATLAB file before v7.3 (HRNet's ``pred.mat``, bearpaw's ``preds_valid.mat``)."""
    from ..data.peer_mpii import read_matlab_arrays

    try:
        preds = read_matlab_arrays(path, ("preds",)).get("preds")
    except ValueError as exc:
        raise ValueError(f"{where} is neither an HDF5 file nor a MATLAB file ({exc})") from None
    if preds is None or preds.dtype.kind not in "iuf" or preds.ndim != 3 or preds.shape[2] != 2:
        got = "none" if preds is None else f"{preds.dtype} of shape {preds.shape}"
        raise ValueError(f"{where}: variable 'preds' must be (N, K, 2) numbers, x and y per joint, got {got}")
    return {"preds": preds.astype(np.float64)}


def matched_predictions(predictions: str | os.PathLike, annotations: str | os.PathLike):
    """``(preds (N, K, 2), annotations' fields, skeleton)`` of a predictions file whose rows are checked against an
    MPII-style annotation file: what the predictions file says about them must match (a file of another split,
    order or skeleton is refused): its ``imgname``, ``center`` and ``scale`` (which tell two people of one image
    apart) and ``joint_names``, where it has them."""
    preds, ann = read_mpii_predictions(predictions), read_annotations(annotations)
    n, k = ann["part"].shape[:2]
    if preds["preds"].shape != (n, k, 2):
        raise ValueError(f"predictions file {predictions} has 'preds' of shape {preds['preds'].shape}; "
                         f"{annotations} has {n} samples of {k} joints: ({n}, {k}, 2) expected")
    skeleton = h5_skeleton(k, ann.get("joint_names"), ann.get("limbs"))
    if "joint_names" in preds and tuple(preds["joint_names"]) != skeleton.names:
        raise ValueError(f"predictions file {predictions} has joints {preds['joint_names'].tolist()}, "
                         f"{annotations} {list(skeleton.names)}")
    for key, same in (("imgname", np.equal), ("center", np.isclose), ("scale", np.isclose)):
        if key not in preds:
            continue
        if preds[key].shape != ann[key].shape:
            raise ValueError(f"predictions file {predictions} has {key!r} of shape {preds[key].shape}, "
                             f"{annotations} {ann[key].shape}")
        differ = np.flatnonzero(~same(preds[key], ann[key]).reshape(n, -1).all(1))
        if len(differ):
            i = int(differ[0])
            raise ValueError(f"predictions file {predictions}: row {i} has {key} {preds[key][i].tolist()!r}, "
                             f"{annotations} {ann[key][i].tolist()!r} (another split, or rows in another order)")
    return preds["preds"], ann, skeleton


def score_mpii_predictions(predictions: str | os.PathLike, annotations: str | os.PathLike,
                           thresholds=(0.5, 0.1), inclusive: bool = False) -> dict:
    """The PCK table (``evaluate``'s: MPII's skeleton → PCKh with the 14-joint means) of a predictions file
    against an MPII-style annotation file, row by row in the coordinates both share (no image is read; rows
    checked by ``matched_predictions``); ``inclusive``: ``<=`` instead of ``<`` (HRNet's and MPII's Matlab test).
    ValueError too where no sample has ground truth. MPII's skeleton also gets ``auc`` (``pck_auc``, 0 to 0.5)."""
    from .evaluate import scored_pck_table

    preds, ann, skeleton = matched_predictions(predictions, annotations)
    why = no_ground_truth(ann, annotations)
    if why:
        raise ValueError(f"nothing to score: {why}")
    mpii = skeleton.names == JOINT_NAMES  # means over PCKh's 14 joints (pck_table's default), and the AUC
    table = scored_pck_table(preds, ann["part"], annotated_joints(ann["part"]), ann["normalize"],
                             thresholds, skeleton=skeleton, inclusive=inclusive, auc_upper=0.5 if mpii else None)
    table["samples"] = len(preds)
    return table
