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

from ..data.mpii import MPII, h5_skeleton, read_annotations
from ..data.skeleton import JOINT_NAMES, PCKH_JOINTS


def check_results_path(path: str | os.PathLike, dataset: MPII) -> None:
    """ValueError where ``dataset`` cannot get a predictions file at ``path``: not an MPII-style dataset, or
    ``path`` is a file other than a predictions file (one with ``preds``), such as an annotation file, which
    would be lost."""
    import h5py

    if not isinstance(dataset, MPII):
        raise ValueError(f"an MPII predictions file needs an MPII-style dataset, got {type(dataset).__name__}")
    path = Path(path)
    if path.is_file():
        ours = h5py.is_hdf5(path)
        if ours:
            with h5py.File(path, "r") as f:
                ours = "preds" in f
        if not ours:
            raise ValueError(f"{path} exists and is not a predictions file (an h5 with 'preds'; an annotation "
                             f"file, say): it is not replaced, write the predictions elsewhere")


def write_mpii_predictions(path: str | os.PathLike, dataset: MPII, preds: dict, **attrs) -> None:
    """Write ``predict_dataset``'s arrays for every sample of ``dataset`` as an h5 file (atomically): ``preds``
    (module docstring), ``scores`` (N, K) the heatmap peaks, the file's ``imgname``, ``center`` and ``scale`` as
    it has them, and its ``index`` and ``person`` (MPII's 0-based ``annolist`` / ``annorect`` numbers, which a
    submission needs) copied as they are where it has them; attributes ``one_based`` (how the file was read), the
    annotation file, ``joint_names`` and ``attrs`` (text, numbers or bools, e.g. the checkpoint)."""
    import h5py

    from ..checkpoint import atomic_path

    check_results_path(path, dataset)
    index = np.asarray(preds["index"], np.int64)
    if np.sort(index).tolist() != list(range(len(dataset))):
        raise ValueError(f"write_mpii_predictions: preds must hold each of the dataset's {len(dataset)} samples "
                         f"once, got {len(index)} rows (a subset, repeated samples or another dataset)")
    order = np.argsort(index)
    ann = dataset.ann
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f, h5py.File(dataset.annotations, "r") as source:
        f["preds"] = np.asarray(preds["pred"], np.float64)[order] + dataset.origin
        f["scores"] = np.asarray(preds["scores"], np.float32)[order]
        f["imgname"] = np.array([name.encode("utf-8") for name in ann["imgname"]])
        f["center"], f["scale"] = ann["center"], ann["scale"]
        for key in ("index", "person"):
            if isinstance(source.get(key), h5py.Dataset):
                source.copy(key, f)
        f.attrs.update(one_based=dataset.origin == 1, annotations=str(dataset.annotations),
                       joint_names=np.array([n.encode("utf-8") for n in dataset.skeleton.names]), **attrs)


def read_mpii_predictions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a predictions file: ``preds`` (N, K, 2) float64, and ``imgname`` (N,) str where it has them;
    FileNotFoundError / ValueError naming the file and what is wrong with it."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"predictions file {path} is not an HDF5 file (MATLAB's .mat files before v7.3 are not: "
                         f"save it with -v7.3, or write its 'preds' to an .h5)")
    with h5py.File(path, "r") as f:
        preds = f.get("preds")
        if not isinstance(preds, h5py.Dataset) or preds.dtype.kind not in "iuf" or preds.ndim != 3 \
                or preds.shape[2] != 2:
            shown = "none" if preds is None else (f"{preds.dtype} of shape {preds.shape}"
                                                   if isinstance(preds, h5py.Dataset) else "a group")
            raise ValueError(f"predictions file {path}: field 'preds' must be (N, K, 2) numbers (x, y per joint), "
                             f"got {shown}")
        out = {"preds": preds[()].astype(np.float64)}
        names = f.get("imgname")
        if isinstance(names, h5py.Dataset) and names.dtype.kind in "SO":
            out["imgname"] = np.array([n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                                       for n in names[()]])
    if not np.isfinite(out["preds"]).all():
        raise ValueError(f"predictions file {path}: 'preds' holds NaN or infinite coordinates")
    return out


def score_mpii_predictions(predictions: str | os.PathLike, annotations: str | os.PathLike,
                           thresholds=(0.5, 0.1), inclusive: bool = False) -> dict:
    """The PCK table (``evaluate``'s: MPII's skeleton → PCKh with the 14-joint means) of a predictions file
    against an MPII-style annotation file, row by row in the coordinates both share (no image is read). The file's
    ``imgname``, where it has one, must match the annotations' row by row (a file of another split or order is
    refused); ``inclusive``: ``<=`` instead of ``<`` (HRNet's test)."""
    from .evaluate import scored_pck_table

    preds, ann = read_mpii_predictions(predictions), read_annotations(annotations)
    n, k = ann["part"].shape[:2]
    if preds["preds"].shape != (n, k, 2):
        raise ValueError(f"predictions file {predictions} has 'preds' of shape {preds['preds'].shape}; "
                         f"{annotations} has {n} samples of {k} joints: ({n}, {k}, 2) expected")
    names = preds.get("imgname")
    if names is not None and len(names) != n:
        raise ValueError(f"predictions file {predictions} has {len(names)} image names for {n} rows")
    differ = [] if names is None else np.flatnonzero(names != ann["imgname"])
    if len(differ):
        i = int(differ[0])
        raise ValueError(f"predictions file {predictions}: row {i} is image {str(names[i])!r}, {annotations} has "
                         f"{str(ann['imgname'][i])!r} there (another split, or rows in another order)")
    skeleton = h5_skeleton(k, ann.get("joint_names"), ann.get("limbs"))
    table = scored_pck_table(preds["preds"], ann["part"], (ann["part"] != 0).any(-1), ann["normalize"],
                             thresholds, skeleton, PCKH_JOINTS if skeleton.names == JOINT_NAMES else None,
                             inclusive)
    table["samples"] = n
    return table
