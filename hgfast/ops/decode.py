"""argmax_decode: keypoints from heatmaps by argmax, with quarter-pixel or DARK refinement (DESIGN.md §5)."""
import math

import torch

from .. import _ext
from . import _checks
from .dark import dark_refine
from .reference import argmax_peaks_ref

REFINE = ("quarter", "none", "dark")


def argmax_decode(heatmaps, refine="quarter", dark_kernel=11):
    """Decode one keypoint per heatmap.

    Args:
        heatmaps: (B,K,H,W) float32, float16, bfloat16 or float64; need not be contiguous.
        refine: "quarter": peak + 0.25·sign(h[y,x+1] − h[y,x−1]) in x when 0 < x < W−1, and likewise in y
            (ties give 0); "none": the integer peak; "dark": one Newton step on the log of the blurred map
            (Zhang et al. 2020), see `dark_refine`.
        dark_kernel: odd Gaussian blur size for "dark" (DarkPose and mmpose use 11 for targets of σ = 2, 17 for
            σ = 3: ``hgfast.predict.dark_kernel_for(σ)``).

    Returns:
        coords (B,K,2) float32 (x, y) in heatmap pixels and scores (B,K) float32, the value at the peak.
        The peak is the first maximum in row-major order. Raises ValueError when a peak is NaN or ±Inf.
        No +0.5 pixel-centre shift is applied here (see transforms.heatmap_to_image(half_pixel=...)).
        Not differentiable: the outputs never require grad.
    """
    _checks.maps("heatmaps", heatmaps)
    if refine not in REFINE:
        raise ValueError(f"refine must be one of {REFINE}, got {refine!r}")
    hm = heatmaps.detach().contiguous()
    quarter = refine == "quarter"
    op = _ext.op("argmax_decode", hm.device)
    coords, scores = argmax_peaks_ref(hm, quarter) if op is None else op(hm, quarter)
    # One reduction instead of isfinite + all: a finite sum implies all finite (NaN/±Inf make it non-finite);
    # only a non-finite sum (possibly an overflow of finite scores) needs the exact check.
    if not math.isfinite(scores.sum().item()) and not torch.isfinite(scores).all():
        raise ValueError("heatmaps contains NaN or Inf at a peak")
    if refine == "dark":
        coords = dark_refine(hm, coords, dark_kernel)
    return coords, scores
