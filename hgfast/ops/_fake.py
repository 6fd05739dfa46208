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
    """Gradient w.r.t. pred only (the C++ backward kernel); keypoints, weights and sigma get none."""
    pred, keypoints, visible, weights, sigma = ctx.saved_tensors
    grad_pred = None
    if ctx.needs_input_grad[0]:
        grad_pred = torch.ops.hgfast.heatmap_mse_loss_backward(
            grad, pred, keypoints, visible, weights, sigma, ctx.integer_centre)
    return grad_pred, None, None, None, None, None


torch.library.register_autograd("hgfast::heatmap_mse_loss", _backward, setup_context=_setup_context)
