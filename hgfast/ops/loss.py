"""heatmap_mse_loss: MSE of all hourglass stacks against Gaussian targets computed on the fly."""
import torch

from .. import _ext
from . import _checks
from .reference import heatmap_mse_loss_ref


def heatmap_mse_loss(pred, keypoints, weights=None, visible=None, sigma=1.0, encoding="unbiased",
                     check_keypoints=True):
    """Intermediate-supervision loss without materialising targets.

    loss = Σ_s mean_{b,k,i,j} weights[b,k] · (pred[b,s,k,i,j] − target[b,k,i,j])²,
    target = gaussian_heatmaps(keypoints, visible, (H, W), sigma, encoding) (DESIGN.md §5).
    So each stack contributes an ordinary mean-squared error (over B,K,H,W) and stacks are summed.

    Args:
        pred: (B,S,K,H,W) float32/float64/float16/bfloat16 predictions of all S stacks.
        keypoints: (B,K,2) or (B,N,K,2) (x, y) in heatmap pixels.
        weights: None (all 1) or (B,K) per-joint loss weights, e.g. the visibility flag (occluded joints
            get no loss, as bearpaw's JointsMSELoss) or the "annotated" flag (train on occluded joints too).
        visible: None (all drawn) or (B,K) / (B,N,K): which joints get a Gaussian in the target.
        sigma, encoding: as gaussian_heatmaps.
        check_keypoints: reject NaN/Inf coordinates of visible joints (and a bad value in a sigma tensor). The
            check waits for the device (one host sync per call on CUDA), which stalls a training step and cannot be
            captured in a CUDA graph or a full torch.compile graph; pass False when the keypoints were checked
            already (e.g. on the CPU batch). Unchecked, a visible joint with a NaN/Inf coordinate gets an all-zero
            target (as if invisible) and still counts with its weight: no NaN loss.

    Returns:
        0-dim tensor, float64 if pred is float64 else float32; differentiable w.r.t. pred and weights (twice too:
        ``create_graph=True`` works).
    Raises ValueError for an empty pred (any of B, S, K, H, W == 0). NaN/Inf in pred or weights propagate to the
    loss (as F.mse_loss).
    """
    _checks.tensor("pred", pred, (5,))
    kp = _checks.keypoints(keypoints)
    _checks.same_device("keypoints", kp, pred)
    B, S, K, H, W = pred.shape
    if pred.numel() == 0:
        raise ValueError(f"pred must be non-empty (B, S, K, H, W > 0), got shape {tuple(pred.shape)}")
    if kp.shape[0] != B or kp.shape[2] != K:
        raise ValueError(f"keypoints must have shape ({B}, {K}, 2) or ({B}, N, {K}, 2) for pred of shape "
                         f"{tuple(pred.shape)}, got {tuple(keypoints.shape)}")
    vis = _checks.visible(visible, kp, check_finite=check_keypoints)
    sig = _checks.sigma(sigma, K, pred.device, check_values=check_keypoints)
    integer = _checks.encoding(encoding)
    acc = torch.float64 if pred.dtype == torch.float64 else torch.float32
    if weights is None:
        w = torch.ones((B, K), dtype=acc, device=pred.device)
    else:
        _checks.tensor("weights", weights, (2,), dtypes=None)
        if weights.is_complex():
            raise TypeError(f"weights must be real, got dtype {weights.dtype}")
        _checks.same_device("weights", weights, pred)
        if tuple(weights.shape) != (B, K):
            raise ValueError(f"weights must have shape ({B}, {K}), got {tuple(weights.shape)}")
        w = weights.to(acc).contiguous()
    op = _ext.op("heatmap_mse_loss", pred.device)
    if op is None:
        return heatmap_mse_loss_ref(pred, kp, vis, w, sig, integer)
    return op(pred.contiguous(), kp, vis, w, sig, integer)
