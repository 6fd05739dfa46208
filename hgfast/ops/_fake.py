"""Fake (meta) kernels and autograd of the hgfast._C ops. Imported by hgfast._ext once the C++ schemas are loaded."""
import torch

from .reference import heatmap_mse_loss_ref


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
    autograd through the pure-PyTorch reference (``heatmap_mse_loss_ref``), as on the reference path. keypoints
    and sigma get none."""
    pred, keypoints, visible, weights, sigma = ctx.saved_tensors
    need_pred, need_weights = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
    create_graph = torch.is_grad_enabled()
    if not (need_weights or create_graph):
        grad_pred = torch.ops.hgfast.heatmap_mse_loss_backward(
            grad, pred, keypoints, visible, weights, sigma, ctx.integer_centre) if need_pred else None
        return grad_pred, None, None, None, None, None
    inputs = [t for t, needed in ((pred, need_pred), (weights, need_weights)) if needed]
    with torch.enable_grad():
        loss = heatmap_mse_loss_ref(pred, keypoints, visible, weights, sigma, ctx.integer_centre)
        grads = iter(torch.autograd.grad(loss, inputs, grad, create_graph=create_graph))
    return (next(grads) if need_pred else None), None, None, (next(grads) if need_weights else None), None, None


torch.library.register_autograd("hgfast::heatmap_mse_loss", _backward, setup_context=_setup_context)
