"""Batched affine maps between image and crop/heatmap coordinates (centre, scale, rotation).

Convention (bearpaw/pytorch-pose `get_transform`, continuous, without its 1-based offsets):
the box of height `pixel_std · scale` and width `pixel_std · scale · W / H` around `center` maps onto an output
of size (H, W) without stretching, rotated by `rotation` degrees about the output centre:
    out = R(−rotation) · H / (pixel_std · scale) · (p − center) + (W/2, H/2),
with R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]]. MPII scale = box height / 200, so pixel_std = 200. For a square
output this is bearpaw's map; for a non-square one the box takes the output's aspect (bearpaw's would stretch it).
"""
import math

import torch

from . import _checks


def _batch(name, value, B, shape, ref):
    """``value`` as a (B, *shape) tensor of ``ref``'s dtype and device (a scalar broadcast); ValueError naming it."""
    if isinstance(value, (str, bytes)) or value is None:
        raise ValueError(f"{name} must be a number or a tensor of numbers, got {value!r}")
    try:
        t = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be a number or a tensor of numbers, got {str(value)[:60]!r} ({exc})") from None
    if t.dim() == 0:
        t = t.expand(B, *shape)
    if tuple(t.shape) != (B, *shape):
        raise ValueError(f"{name} must have shape {(B, *shape)} (or be a scalar), got {tuple(t.shape)}")
    return t


def _finite(c, s, r, k):
    """ValueError unless center and rotation are finite and 0 < scale < inf with the zoom k = H / (pixel_std ·
    scale) and 1 / k finite in c's dtype (else the matrix or its inverse has NaN/Inf). One reduction (log k +
    log 1/k is finite iff 0 < k < inf and 1/k < inf): one host sync on CUDA; skipped while a CUDA graph is captured
    (it cannot sync)."""
    if c.is_cuda and torch.cuda.is_current_stream_capturing():
        return
    if math.isfinite((c.sum() + r.sum() + k.log().sum() + k.reciprocal().log().sum()).item()):
        return
    for name, v, ok in (("center", c, torch.isfinite(c)), ("rotation", r, torch.isfinite(r)),
                        ("scale", s, torch.isfinite(s) & (s > 0))):
        if not ok.all():
            raise ValueError(f"{name} must be finite{' and > 0' if name == 'scale' else ''}, got {v[~ok][0].item()}")
    bad = s[~(torch.isfinite(k) & torch.isfinite(k.reciprocal()) & (k > 0))][0].item()
    raise ValueError(f"scale {bad:.3g} is too small or too large for {c.dtype}: the crop's zoom size / (pixel_std · "
                     f"scale) or its inverse overflows")


def crop_matrix(center, scale, rotation=0.0, size=(64, 64), pixel_std=200.0):
    """(B,2,3) affine from image (x, y) to output (x, y) for center (B,2), scale (B,), rotation (B,) degrees.
    scale (finite, > 0) and rotation may be scalars; ValueError for NaN/Inf inputs or scale <= 0."""
    _checks.tensor("center", center, (2,), last=2)
    c = center if center.dtype in (torch.float32, torch.float64) else center.float()
    B = c.shape[0]
    s = _batch("scale", scale, B, (), c)
    r = _batch("rotation", rotation, B, (), c)
    H, W = _checks.size(size)
    if not (isinstance(pixel_std, (int, float)) and 0 < pixel_std < math.inf):
        raise ValueError(f"pixel_std must be a finite number > 0, got {pixel_std!r}")
    k = H / (pixel_std * s)
    _finite(c, s, r, k)
    theta = -r * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    A = k[:, None, None] * torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    t = torch.tensor([W / 2.0, H / 2.0], dtype=c.dtype, device=c.device) - (A @ c.unsqueeze(-1)).squeeze(-1)
    return torch.cat([A, t.unsqueeze(-1)], dim=-1)


def _affine(matrix, B=None):
    """Check that ``matrix`` is a float tensor of shape (B, 2, 3) (any B when None)."""
    _checks.tensor("matrix", matrix, (3,))
    if matrix.shape[1:] != (2, 3) or B is not None and matrix.shape[0] != B:
        raise ValueError(f"matrix must have shape ({'B' if B is None else B}, 2, 3), got {tuple(matrix.shape)}")
    return matrix


def invert_affine(matrix):
    """Inverse of (B,2,3) affine maps."""
    _affine(matrix)
    A, t = matrix[..., :2], matrix[..., 2:]
    Ai = torch.linalg.inv(A)
    return torch.cat([Ai, -Ai @ t], dim=-1)


def transform_points(points, matrix):
    """Apply (B,2,3) affine maps to points (B,...,2) → (B,...,2)."""
    _checks.tensor("points", points, range(2, 8), last=2)
    _affine(matrix, points.shape[0])
    p = points.reshape(points.shape[0], math.prod(points.shape[1:-1]), 2).to(matrix.dtype)  # -1 fails for B = 0
    out = p @ matrix[:, :, :2].transpose(1, 2) + matrix[:, None, :, 2]
    return out.reshape(points.shape)


def image_to_heatmap(points, center, scale, rotation=0.0, size=(64, 64), pixel_std=200.0):
    """Image (x, y) (B,...,2) → heatmap (x, y), for a heatmap of `size` (H, W)."""
    return transform_points(points, crop_matrix(center, scale, rotation, size, pixel_std))


def heatmap_to_image(coords, center, scale, rotation=0.0, size=(64, 64), pixel_std=200.0,
                     half_pixel=False, truncate=False):
    """Heatmap (x, y) (B,...,2) → image (x, y), inverse of `image_to_heatmap`.

    half_pixel: add 0.5 before mapping back (LUA / princeton-vl / bearpaw convention, consistent with their
        truncating target encoding); leave False for round-to-nearest or unbiased encodings (HRNet, mmpose).
    truncate: truncate results toward zero like the legacy `.int()` / `.astype(int)` (loses sub-pixel accuracy).
    """
    c = coords + 0.5 if half_pixel else coords
    out = transform_points(c, invert_affine(crop_matrix(center, scale, rotation, size, pixel_std)))
    return torch.trunc(out) if truncate else out
