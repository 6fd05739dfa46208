"""Flip-test helpers: mirror heatmaps/keypoints horizontally and swap left/right joints."""
import math
import numbers

import torch

from . import _checks

# MPII joint order: 0 r-ankle .. 5 l-ankle, 6 pelvis, 7 thorax, 8 upper-neck, 9 head-top, 10 r-wrist .. 15 l-wrist.
MPII_FLIP_PERMUTATION = (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)


def flip_permutation(pairs, num_joints):
    """Permutation (tuple of length num_joints) swapping each (left, right) pair in `pairs`: two different joint
    indices in range(num_joints), each joint in one pair at most (else a ValueError naming the pair)."""
    if not (_checks._integer(num_joints) and num_joints >= 0):
        raise ValueError(f"num_joints must be an int >= 0, got {num_joints!r}")
    perm, paired = list(range(num_joints)), set()
    for pair in pairs:
        try:
            a, b = pair
        except (TypeError, ValueError):
            a = b = None
        if not all(isinstance(j, numbers.Integral) and 0 <= j < num_joints for j in (a, b)) or a == b or \
                {a, b} & paired:
            raise ValueError(f"flip pairs must be pairs of two different joints in range({num_joints}), each joint "
                             f"in one pair at most; got {pair!r}")
        a, b = int(a), int(b)
        perm[a], perm[b] = b, a
        paired.update((a, b))
    return tuple(perm)


def checked_flip_permutation(permutation, K, device="cpu", name: str = "permutation") -> torch.Tensor:
    """``permutation`` as a long tensor on ``device``: integers that swap pairs of range(K) (an involution), else a
    ValueError naming it as ``name``."""
    try:
        p = torch.as_tensor(permutation, device="cpu")  # checked on the host: no device sync
    except (TypeError, ValueError, RuntimeError):
        p = None
    ints = p is not None and (p.numel() == 0 or not (p.is_floating_point() or p.is_complex() or p.dtype == torch.bool))
    p = p.long() if ints else None  # 1.5 would be truncated to 1
    identity = torch.arange(K)
    if p is None or p.dim() != 1 or p.shape[0] != K or not torch.equal(p.sort().values, identity) or \
            not torch.equal(p[p], identity):
        raise ValueError(f"{name} must swap pairs of range({K}) (a left/right flip's joint order, an "
                         f"involution), got {permutation!r}")
    return p.to(device)


def flip_heatmaps(heatmaps, permutation=MPII_FLIP_PERMUTATION, shift=False):
    """Heatmaps (...,K,H,W) of a mirrored image → heatmaps of the original: mirror the W axis, permute joints.

    shift: move the result right by this many heatmap pixels (True: 1, HRNet's SHIFT_HEATMAP; a float is applied
    by linear interpolation along x, edge values repeated). With heatmap x = crop x · W/S (crop width S), the
    mirrored crop puts a joint at W − W/S − x, i.e. at x − (1 − W/S) after ``flip(-1)``: shift ``1 − W/S`` (0.75
    for stride 4) is exact; 1 is right for targets centred at integer crop pixels / stride.
    """
    _checks.tensor("heatmaps", heatmaps, range(3, 8))
    shift = _checks.shift(shift)
    order = checked_flip_permutation(permutation, heatmaps.shape[-3], heatmaps.device)
    out = heatmaps.flip(-1).index_select(-3, order)
    if shift:
        whole = math.floor(shift)
        x = torch.arange(out.shape[-1], device=out.device) - whole
        left = out.index_select(-1, (x - 1).clamp(0, out.shape[-1] - 1))
        out = torch.lerp(out.index_select(-1, x.clamp(0, out.shape[-1] - 1)), left, float(shift) - whole)
    return out


def flip_test(heatmaps, heatmaps_flipped, permutation=MPII_FLIP_PERMUTATION, shift=False):
    """Flip-test average: (heatmaps + flip_heatmaps(heatmaps_flipped)) / 2, shapes (...,K,H,W)."""
    _checks.tensor("heatmaps", heatmaps, range(3, 8))
    _checks.tensor("heatmaps_flipped", heatmaps_flipped, range(3, 8))
    if heatmaps.shape != heatmaps_flipped.shape:
        raise ValueError(f"heatmaps_flipped must have shape {tuple(heatmaps.shape)}, "
                         f"got {tuple(heatmaps_flipped.shape)}")
    return 0.5 * (heatmaps + flip_heatmaps(heatmaps_flipped, permutation, shift))


def flip_keypoints(keypoints, width, permutation=MPII_FLIP_PERMUTATION):
    """Keypoints (...,K,2) in pixel coordinates of an image of `width` (a finite number) → mirrored:
    x ↦ width − 1 − x, joints permuted."""
    _checks.tensor("keypoints", keypoints, range(2, 8), last=2)
    if not (isinstance(width, numbers.Real) and not isinstance(width, bool) and math.isfinite(width)):
        raise ValueError(f"width must be a finite number (the image's width in pixels), got {width!r}")
    order = checked_flip_permutation(permutation, keypoints.shape[-2], keypoints.device)
    out = keypoints.index_select(-2, order).clone()
    out[..., 0] = (width - 1) - out[..., 0]
    return out
