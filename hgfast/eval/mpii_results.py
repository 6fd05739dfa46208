"""MPII-style predictions files: the ``preds`` h5 that MPII evaluation and submission scripts read.

One row per sample of the annotation file, in its order: ``preds`` (N, K, 2) float64 image pixels in the file's
coordinate base (MATLAB's 1-based for ``MPII(one_based=True)``, the same as its ``part`` and as MPII's own
annotations), which is what anibali/eval-mpii-pose's ``evalMPII.m`` scores and its ``prepareTestResults.m`` turns
into the benchmark's submission file (with the test split's ``index`` and ``person``). MATLAB's ``h5read`` shows
the array as 2 × K × N, which those scripts accept.
"""
from __future__ import annotations

import os

import numpy as np

from ..data.mpii import IDS, MPII


def write_mpii_predictions(path: str | os.PathLike, dataset: MPII, preds: dict, **attrs) -> None:
    """Write ``predict_dataset``'s arrays for every sample of ``dataset`` as an h5 file (atomically): ``preds``
    (module docstring), ``scores`` (N, K) the heatmap peaks, the file's ``imgname``, ``center`` and ``scale`` as
    it has them, its ``index`` and ``person`` where it has them; attributes ``coordinate_base`` (1.0 or 0.0), the
    annotation file, ``joint_names`` and ``attrs`` (text, numbers or bools, e.g. the checkpoint)."""
    import h5py

    from ..checkpoint import atomic_path

    if not isinstance(dataset, MPII):
        raise ValueError(f"write_mpii_predictions: dataset must be an MPII-style dataset, got {type(dataset).__name__}")
    index = np.asarray(preds["index"], np.int64)
    if np.sort(index).tolist() != list(range(len(dataset))):
        raise ValueError(f"write_mpii_predictions: preds must hold every sample of the dataset once ({len(dataset)}), "
                         f"got {len(index)} rows (a subset or a different dataset)")
    order = np.argsort(index)
    ann = dataset.ann
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f["preds"] = np.asarray(preds["pred"], np.float64)[order] + dataset.origin
        f["scores"] = np.asarray(preds["scores"], np.float32)[order]
        f["imgname"] = np.array([name.encode("utf-8") for name in ann["imgname"]])
        f["center"], f["scale"] = ann["center"], ann["scale"]
        for key in IDS:
            if key in ann:
                f[key] = ann[key]
        f.attrs.update(coordinate_base=dataset.origin, annotations=str(dataset.annotations),
                       joint_names=np.array([n.encode("utf-8") for n in dataset.skeleton.names]), **attrs)
