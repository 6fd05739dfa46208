"""Triton kernels and their launchers (installed as ``hgfast.kernels``).

All launchers take NHWC-contiguous activations (``x.permute(0, 2, 3, 1)`` of a channels_last tensor) in fp32,
fp16 or bf16 and fp32 per-channel vectors; they accumulate and reduce in fp32. See ``common`` for conventions.
Importing this package needs triton.
"""
from .bn_stats import bn_backward_coeffs, bn_train_coeffs, channel_stats, finalize_stats
from .channel_affine import bn_backward_apply, bn_relu
from .conv import conv2d_fwd
from .conv_dgrad import conv2d_dgrad
from .conv_wgrad import conv2d_wgrad
from .maxpool import maxpool2x2, maxpool2x2_backward
from .residual_eval import fits as residual_eval_fits, residual_eval  # noqa: F401 (residual_eval_fits: not a launcher)
from .upsample_add import upsample_add, upsample_add_backward

__all__ = ["conv2d_fwd", "conv2d_dgrad", "conv2d_wgrad", "residual_eval", "upsample_add", "upsample_add_backward",
           "maxpool2x2", "maxpool2x2_backward", "channel_stats", "finalize_stats", "bn_train_coeffs",
           "bn_backward_coeffs", "bn_relu", "bn_backward_apply"]
