"""hgfast.ops: Gaussian heatmap targets, argmax decoding, the fused heatmap loss, and the geometry around them.

Each op validates its inputs in Python, then runs the compiled/JIT-built `hgfast._C` kernel for the device when
one is available, else the pure-PyTorch reference (`hgfast.ops.reference`). `python -m hgfast.info` shows which.
"""
from .dark import dark_refine
from .decode import argmax_decode
from .flip import MPII_FLIP_PERMUTATION, flip_heatmaps, flip_keypoints, flip_permutation, flip_test
from .loss import heatmap_mse_loss
from .targets import gaussian_heatmaps, targets_on_map
from .transforms import crop_matrix, heatmap_to_image, image_to_heatmap, invert_affine, transform_points

__all__ = [
    "gaussian_heatmaps", "targets_on_map", "argmax_decode", "heatmap_mse_loss", "dark_refine",
    "crop_matrix", "invert_affine", "transform_points", "image_to_heatmap", "heatmap_to_image",
    "MPII_FLIP_PERMUTATION", "flip_permutation", "flip_heatmaps", "flip_test", "flip_keypoints",
]
