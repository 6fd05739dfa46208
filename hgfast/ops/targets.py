"""gaussian_heatmaps: Gaussian heatmap targets from keypoints (DESIGN.md §5)."""
import torch

from .. import _ext
from . import _checks
from .reference import gaussian_heatmaps_ref


def gaussian_heatmaps(keypoints, visible=None, size=(64, 64), sigma=1.0, encoding="unbiased", dtype=torch.float32):
    """Render Gaussian heatmap targets.

    Args:
        keypoints: (B,K,2) or (B,N,K,2) float (x, y) in heatmap pixels; pixel (col j, row i) is at (j, i).
            N instances per map are merged by max (multi-person).
        visible: None (all visible) or (B,K) / (B,N,K); a joint with visible == 0 gives no Gaussian.
            Coordinates of invisible joints are ignored (may be NaN); visible non-finite ones raise ValueError.
        size: (H, W) of the maps, or an int for square maps.
        sigma: float or (K,) tensor of per-joint standard deviations in heatmap pixels (finite, >= 1e-3).
        encoding: "unbiased" uses the sub-pixel centre (x, y); "integer" uses floor(x + 0.5), floor(y + 0.5),
            so that argmax_decode(..., refine="none") recovers integer keypoints exactly.
        dtype: output dtype (float32, float64, float16 or bfloat16); values are computed in float32.

    Returns:
        (B,K,H,W): exp(-((j-cx)² + (i-cy)²) / 2σ²) where max(|j-cx|, |i-cy|) <= 3σ, else 0.
    Inputs need not be contiguous. Keypoints far outside the map give all-zero maps. Not differentiable: the
    maps never require grad.
    """
    kp = _checks.keypoints(keypoints)
    vis = _checks.visible(visible, kp)
    H, W = _checks.size(size)
    sig = _checks.sigma(sigma, kp.shape[2], kp.device)
    integer = _checks.encoding(encoding)
    if dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be one of {[str(d) for d in _checks.FLOAT_DTYPES]}, got {dtype}")
    op = _ext.op("gaussian_heatmaps", kp.device)
    if op is None:
        return gaussian_heatmaps_ref(kp, vis, sig, (H, W), integer, dtype)
    return op(kp, vis, sig, H, W, integer, dtype)


def targets_on_map(keypoints, size=(64, 64), sigma=1.0, encoding="unbiased"):
    """(B, K) bool: whether ``gaussian_heatmaps`` (same ``size``, ``sigma``, ``encoding``) draws any pixel of
    each joint of ``keypoints`` (B, K, 2) heatmap pixels, i.e. its 3σ window meets the map (False for NaN). A
    training loss can drop the joints that augmentation pushed off the crop (weight 0), as HRNet, mmpose and
    bearpaw do, instead of training them toward an all-zero map."""
    kp = _checks.tensor("keypoints", keypoints, (3,), last=2).to(torch.float32)
    H, W = _checks.size(size)
    radius = 3.0 * _checks.sigma(sigma, kp.shape[1], kp.device)[:, None]
    centre = torch.floor(kp + 0.5) if _checks.encoding(encoding) else kp
    last = torch.tensor([W - 1, H - 1], dtype=torch.float32, device=kp.device)
    nearest = torch.minimum(torch.floor(centre + 0.5).clamp(min=0), last)  # the map pixel nearest the centre
    return ((nearest - centre).abs() <= radius).all(-1)
