"""Fake (meta) kernels and autograd of the hgfast._C ops. Imported by hgfast._ext once the C++ schemas are loaded."""
import torch


@torch.library.register_fake("hgfast::gaussian_heatmaps")
def _gaussian_heatmaps_fake(keypoints, visible, sigma, height, width, integer_centre, dtype):
    return keypoints.new_empty((keypoints.shape[0], keypoints.shape[2], height, width), dtype=dtype)


@torch.library.register_fake("hgfast::argmax_decode")
def _argmax_decode_fake(heatmaps, quarter):
    B, K = heatmaps.shape[:2]
    return heatmaps.new_empty((B, K, 2), dtype=torch.float32), heatmaps.new_empty((B, K), dtype=torch.float32)


@torch.library.register_fake("hgfast::heatmap_mse_loss")
def _loss_fake(pred, keypoints, visible, weights, sigma, integer_centre):
    return pred.new_empty((), dtype=weights.dtype)


@torch.library.register_fake("hgfast::heatmap_mse_loss_backward")
def _loss_backward_fake(grad, pred, keypoints, visible, weights, sigma, integer_centre):
    return torch.empty_like(pred)


def _setup_context(ctx, inputs, output):
    pred, keypoints, visible, weights, sigma, integer_centre = inputs
    ctx.save_for_backward(pred, keypoints, visible, weights, sigma)
    ctx.integer_centre = integer_centre


def _backward(ctx, grad):
    """Gradient w.r.t. pred from the C++ backward kernel. Where weights need a gradient too, or a graph of the
    gradient is being built (``torch.autograd.grad(..., create_graph=True)``: double backward), both come from
    differentiable PyTorch on targets drawn by the C++ op, as the reference path gives them:
    dL/dpred = 2 w (pred - target) / (B K H W), dL/dw[b, k] = Σ_{s,i,j} (pred - target)² / (B K H W).
    keypoints and sigma get none."""
    pred, keypoints, visible, weights, sigma = ctx.saved_tensors
    need_pred, need_weights = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
    if not (need_weights or torch.is_grad_enabled()):
        grad_pred = torch.ops.hgfast.heatmap_mse_loss_backward(
            grad, pred, keypoints, visible, weights, sigma, ctx.integer_centre) if need_pred else None
        return grad_pred, None, None, None, None, None
    B, S, K, H, W = pred.shape
    target = torch.ops.hgfast.gaussian_heatmaps(keypoints, visible, sigma, H, W, ctx.integer_centre, weights.dtype)
    diff = pred.to(weights.dtype) - target.unsqueeze(1)
    scale = grad / (B * K * H * W)
    grad_pred = (2 * scale * weights[:, None, :, None, None] * diff).to(pred.dtype) if need_pred else None
    grad_weights = scale * (diff * diff).sum(dim=(1, 3, 4)) if need_weights else None
    return grad_pred, None, None, grad_weights, None, None


torch.library.register_autograd("hgfast::heatmap_mse_loss", _backward, setup_context=_setup_context)
