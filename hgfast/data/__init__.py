"""Pose data: the built-in synthetic figures, MPII, top-down crops and augmentation presets."""
from .build import build_dataset
from .crop import box_to_center_scale, crop, crop_affine
from .mpii import MPII, read_annotations, read_image
from .skeleton import JOINT_NAMES, LIMBS, NUM_JOINTS, PCKH_GROUPS, PCKH_JOINTS
from .synthetic import SyntheticPoses, render
from .topdown import TopDownDataset

__all__ = ["build_dataset", "SyntheticPoses", "MPII", "TopDownDataset", "render", "crop", "crop_affine",
           "box_to_center_scale",
           "read_annotations", "read_image", "JOINT_NAMES", "LIMBS", "NUM_JOINTS", "PCKH_GROUPS", "PCKH_JOINTS"]
