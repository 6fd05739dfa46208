"""NumPy versions of the target and decode semantics (single instance, quarter offset): for torch-free data
workers, as an independent oracle in tests and as benchmark baselines. Same float32 arithmetic as the kernels."""
import numpy as np


def _centres(keypoints, integer_centre):
    kp = np.asarray(keypoints, dtype=np.float32)
    return np.floor(kp + np.float32(0.5)) if integer_centre else kp


def gaussian_heatmaps_dense(keypoints, visible, size, sigma, integer_centre=False):
    """(B,K,2), (B,K) → (B,K,H,W) float32, evaluating exp over every pixel (the direct vectorisation)."""
    kp = _centres(keypoints, integer_centre)
    H, W = size
    s = np.broadcast_to(np.asarray(sigma, np.float32), kp.shape[1:2])[:, None, None]
    dx = np.arange(W, dtype=np.float32) - kp[..., 0, None, None]
    dy = np.arange(H, dtype=np.float32)[:, None] - kp[..., 1, None, None]
    inside = (np.abs(dx) <= 3 * s) & (np.abs(dy) <= 3 * s) & (np.asarray(visible) != 0)[..., None, None]
    return np.where(inside, np.exp(-(dx * dx + dy * dy) / (2 * s * s)), np.float32(0)).astype(np.float32)


def gaussian_heatmaps_separable(keypoints, visible, size, sigma, integer_centre=False):
    """Same values as `gaussian_heatmaps_dense` as an outer product of per-axis profiles (fewer exps)."""
    kp = _centres(keypoints, integer_centre)
    H, W = size
    s = np.broadcast_to(np.asarray(sigma, np.float32), kp.shape[1:2])[:, None]

    def profile(c, n):
        d = np.arange(n, dtype=np.float32) - c[..., None]
        return np.where(np.abs(d) <= 3 * s, np.exp(-(d * d) / (2 * s * s)), np.float32(0))

    gx = profile(kp[..., 0], W) * (np.asarray(visible) != 0)[..., None]
    return (profile(kp[..., 1], H)[..., :, None] * gx[..., None, :]).astype(np.float32)


def argmax_decode_vectorised(heatmaps):
    """(B,K,H,W) → coords (B,K,2) float32 with the quarter offset, scores (B,K)."""
    hm = np.asarray(heatmaps)
    B, K, H, W = hm.shape
    flat = hm.reshape(B, K, H * W)
    idx = flat.argmax(-1)
    y, x = np.divmod(idx, W)

    def at(yy, xx):
        return np.take_along_axis(flat, (np.clip(yy, 0, H - 1) * W + np.clip(xx, 0, W - 1))[..., None], -1)[..., 0]

    dx = np.sign(at(y, x + 1) - at(y, x - 1)) * ((x > 0) & (x < W - 1))
    dy = np.sign(at(y + 1, x) - at(y - 1, x)) * ((y > 0) & (y < H - 1))
    coords = np.stack([x + 0.25 * dx, y + 0.25 * dy], -1).astype(np.float32)
    return coords, at(y, x).astype(np.float32)


def argmax_decode_loop(heatmaps):
    """Per-joint Python loop as in the peer projects (bearpaw `final_preds`, LUA `getPreds`): same result."""
    hm = np.asarray(heatmaps)
    B, K, H, W = hm.shape
    coords, scores = np.zeros((B, K, 2), np.float32), np.zeros((B, K), np.float32)
    for b in range(B):
        for k in range(K):
            m = hm[b, k]
            y, x = divmod(int(m.argmax()), W)
            px, py = float(x), float(y)
            if 0 < x < W - 1:
                px += 0.25 * np.sign(m[y, x + 1] - m[y, x - 1])
            if 0 < y < H - 1:
                py += 0.25 * np.sign(m[y + 1, x] - m[y - 1, x])
            coords[b, k] = px, py
            scores[b, k] = m[y, x]
    return coords, scores
