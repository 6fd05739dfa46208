"""DARK sub-pixel refinement (Zhang et al., CVPR 2020), as in mmpose `refine_keypoints_dark`."""
import torch
import torch.nn.functional as F

from . import _checks


def _blur(maps, kernel):
    """Zero-padded separable Gaussian blur of (M,1,H,W) with OpenCV's default σ for an odd `kernel` size."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    t = torch.arange(kernel, dtype=maps.dtype, device=maps.device) - (kernel - 1) / 2
    g = torch.exp(-t * t / (2 * sigma * sigma))
    g = g / g.sum()
    r = kernel // 2
    maps = F.conv2d(maps, g.view(1, 1, 1, kernel), padding=(0, r))
    return F.conv2d(maps, g.view(1, 1, kernel, 1), padding=(r, 0))


def dark_refine(heatmaps, peaks, kernel=11):
    """Refine integer peaks (B,K,2) (float or int) of float heatmaps (B,K,H,W) → float32 (B,K,2).

    Blur each map (kernel × kernel), rescale it to the original maximum, take log(max(h, 1e-10)) and apply one
    Newton step x ← x − H⁻¹∇ with ±1 central differences and ±2-tap second derivatives. Peaks with
    x ∉ [2, W−3] or y ∉ [2, H−3], or a singular Hessian, are returned unchanged.
    """
    if not (isinstance(kernel, int) and not isinstance(kernel, bool) and kernel > 0 and kernel % 2 == 1):
        raise ValueError(f"dark_kernel must be a positive odd int, got {kernel!r}")
    B, K, H, W = _checks.maps("heatmaps", heatmaps).shape
    _checks.tensor("peaks", peaks, (3,), _checks.FLOAT_DTYPES + (torch.int32, torch.int64), last=2)
    _checks.same_device("peaks", peaks, heatmaps)
    if peaks.shape[:2] != (B, K):
        raise ValueError(f"peaks must have shape ({B}, {K}, 2) for heatmaps of shape {(B, K, H, W)}, "
                         f"got {tuple(peaks.shape)}")
    hm = heatmaps.float().reshape(B * K, 1, H, W)
    blurred = _blur(hm, kernel)
    top, btop = hm.amax(dim=(-2, -1), keepdim=True), blurred.amax(dim=(-2, -1), keepdim=True)
    blurred = blurred * torch.where(btop > 0, top / btop, torch.zeros_like(top))
    logh = torch.log(blurred.clamp_min(1e-10)).reshape(B, K, H * W)
    x, y = peaks[..., 0].long(), peaks[..., 1].long()

    def at(dy, dx):
        idx = (y + dy).clamp(0, H - 1) * W + (x + dx).clamp(0, W - 1)
        return torch.gather(logh, -1, idx.unsqueeze(-1)).squeeze(-1)

    c = at(0, 0)
    gx, gy = 0.5 * (at(0, 1) - at(0, -1)), 0.5 * (at(1, 0) - at(-1, 0))
    hxx = 0.25 * (at(0, 2) - 2 * c + at(0, -2))
    hyy = 0.25 * (at(2, 0) - 2 * c + at(-2, 0))
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    ok = (x > 1) & (x < W - 2) & (y > 1) & (y < H - 2) & (det != 0)
    safe = torch.where(ok, det, torch.ones_like(det))
    ox = -(hyy * gx - hxy * gy) / safe
    oy = -(hxx * gy - hxy * gx) / safe
    offset = torch.stack([ox, oy], dim=-1) * ok.unsqueeze(-1)
    return peaks.float() + offset
