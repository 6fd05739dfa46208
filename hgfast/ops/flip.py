"""Flip-test helpers: mirror heatmaps/keypoints horizontally and swap left/right joints."""
import torch

from . import _checks

# MPII joint order: 0 r-ankle .. 5 l-ankle, 6 pelvis, 7 thorax, 8 upper-neck, 9 head-top, 10 r-wrist .. 15 l-wrist.
MPII_FLIP_PERMUTATION = (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)


def flip_permutation(pairs, num_joints):
    """Permutation (tuple of length num_joints) swapping each (left, right) pair in `pairs`."""
    perm = list(range(num_joints))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _perm(permutation, K, device):
    p = torch.as_tensor(permutation, dtype=torch.long, device=device)
    if p.dim() != 1 or p.shape[0] != K or not torch.equal(p.sort().values, torch.arange(K, device=device)):
        raise ValueError(f"permutation must be a permutation of range({K}), got {permutation!r}")
    return p


def flip_heatmaps(heatmaps, permutation=MPII_FLIP_PERMUTATION, shift=False):
    """Heatmaps (...,K,H,W) of a mirrored image → heatmaps of the original: mirror the W axis, permute joints.

    shift: move the result one pixel right (`out[..., 1:] = out[..., :-1]`, HRNet SHIFT_HEATMAP), for targets
    encoded with integer centres; not needed with unbiased encoding.
    """
    _checks.tensor("heatmaps", heatmaps, range(3, 8))
    out = heatmaps.flip(-1).index_select(-3, _perm(permutation, heatmaps.shape[-3], heatmaps.device))
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], dim=-1)
    return out


def flip_test(heatmaps, heatmaps_flipped, permutation=MPII_FLIP_PERMUTATION, shift=False):
    """Flip-test average: (heatmaps + flip_heatmaps(heatmaps_flipped)) / 2, shapes (...,K,H,W)."""
    _checks.tensor("heatmaps_flipped", heatmaps_flipped, range(3, 8))
    if heatmaps.shape != heatmaps_flipped.shape:
        raise ValueError(f"heatmaps_flipped must have shape {tuple(heatmaps.shape)}, "
                         f"got {tuple(heatmaps_flipped.shape)}")
    return 0.5 * (heatmaps + flip_heatmaps(heatmaps_flipped, permutation, shift))


def flip_keypoints(keypoints, width, permutation=MPII_FLIP_PERMUTATION):
    """Keypoints (...,K,2) in pixel coordinates of an image of `width` → mirrored: x ↦ width − 1 − x, joints
    permuted."""
    _checks.tensor("keypoints", keypoints, range(2, 8), last=2)
    out = keypoints.index_select(-2, _perm(permutation, keypoints.shape[-2], keypoints.device)).clone()
    out[..., 0] = (width - 1) - out[..., 0]
    return out
