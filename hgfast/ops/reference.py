"""Pure-PyTorch references for the hgfast ops (DESIGN.md §5). They define the semantics the kernels match.

Inputs are already validated and normalised by the public wrappers:
keypoints (B,N,K,2) float32, visible (B,N,K) bool, sigma (K,) float32.
Targets are computed in float32 with the same operations as the C++/CUDA kernels, then cast.
"""
import torch


def _axis_profile(coord, sigma, length, integer_centre):
    """exp(-q² / 2), q = (t - c) / σ, on t = 0..length-1 where |t - c| <= 3σ, else 0 (and 0 unless σ > 0), as
    ``profile`` in csrc/hg_math.h. coord (B,N,K) → (B,N,K,length)."""
    if integer_centre:
        coord = torch.floor(coord + 0.5)
    t = torch.arange(length, dtype=torch.float32, device=coord.device)
    d = t - coord.unsqueeze(-1)
    s = sigma.view(1, 1, -1, 1)
    q = d / s
    g = torch.exp(-0.5 * q * q)
    return torch.where((d.abs() <= 3.0 * s) & (s > 0), g, torch.zeros_like(g))


def gaussian_heatmaps_ref(keypoints, visible, sigma, size, integer_centre, dtype):
    """(B,N,K,2), (B,N,K), (K,) → (B,K,H,W) in `dtype`: max over instances of separable Gaussian patches."""
    H, W = size
    gx = _axis_profile(keypoints[..., 0], sigma, W, integer_centre)
    gy = _axis_profile(keypoints[..., 1], sigma, H, integer_centre)
    maps = gy.unsqueeze(-1) * gx.unsqueeze(-2)
    maps = torch.where(visible[..., None, None], maps, torch.zeros_like(maps))
    if maps.shape[1] == 0:  # no instances: nothing drawn
        return maps.new_zeros((maps.shape[0], maps.shape[2], H, W), dtype=dtype)
    return maps.amax(dim=1).to(dtype)


def _sign_diff(a, b):
    """sign(a - b) via comparisons: 0 for ties and for NaN differences (matches the kernels)."""
    return (a > b).to(torch.float32) - (a < b).to(torch.float32)


def argmax_peaks_ref(heatmaps, quarter):
    """(B,K,H,W) → coords (B,K,2) float32, scores (B,K) float32. First row-major maximum (NaN counts as max),
    then ±0.25 towards the larger neighbour per axis for interior peaks when `quarter`."""
    B, K, H, W = heatmaps.shape
    flat = heatmaps.reshape(B, K, H * W)
    idx = torch.argmax(flat, dim=-1)
    scores = torch.gather(flat, -1, idx.unsqueeze(-1)).squeeze(-1).float()
    y, x = idx // W, idx % W
    coords = torch.stack([x, y], dim=-1).float()
    if quarter:
        def at(yy, xx):
            yy, xx = yy.clamp(0, H - 1), xx.clamp(0, W - 1)
            return torch.gather(flat, -1, (yy * W + xx).unsqueeze(-1)).squeeze(-1)  # compared in the map's dtype
        dx = _sign_diff(at(y, x + 1), at(y, x - 1)) * ((x > 0) & (x < W - 1))
        dy = _sign_diff(at(y + 1, x), at(y - 1, x)) * ((y > 0) & (y < H - 1))
        coords = coords + 0.25 * torch.stack([dx, dy], dim=-1)
    return coords, scores


def heatmap_mse_loss_ref(pred, keypoints, visible, weights, sigma, integer_centre):
    """Σ_s mean_{b,k,i,j} w[b,k]·(pred[b,s,k,i,j] − target[b,k,i,j])², target = gaussian_heatmaps_ref(...)."""
    H, W = pred.shape[-2:]
    acc = torch.float64 if pred.dtype == torch.float64 else torch.float32
    target = gaussian_heatmaps_ref(keypoints, visible, sigma, (H, W), integer_centre, acc)
    diff = pred.to(acc) - target.unsqueeze(1)
    per_stack = (weights.to(acc)[:, None, :, None, None] * diff * diff).mean(dim=(0, 2, 3, 4))
    return per_stack.sum()
