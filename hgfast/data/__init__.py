"""Pose data: the built-in synthetic figures, MPII, COCO-format keypoints, top-down crops and augmentation."""
from .build import build_dataset, build_detections
from .coco import COCOKeypoints
from .coco_format import read_coco, write_coco
from .coco_detections import COCODetections, read_detections
from .crop import box_to_center_scale, crop, crop_affine, crop_size
from .mpii import MPII, read_annotations, read_image, write_annotations
from .skeleton import JOINT_NAMES, LIMBS, MPII_SKELETON, NUM_JOINTS, PCKH_GROUPS, PCKH_JOINTS, Skeleton
from .synthetic import SyntheticPoses, render
from .topdown import TopDownDataset

__all__ = ["build_dataset", "build_detections", "SyntheticPoses", "MPII", "COCOKeypoints", "COCODetections",
           "TopDownDataset", "Skeleton", "MPII_SKELETON", "render", "crop", "crop_affine", "crop_size",
           "box_to_center_scale", "read_annotations", "write_annotations", "read_coco", "write_coco",
           "read_detections", "read_image",
           "JOINT_NAMES", "LIMBS", "NUM_JOINTS", "PCKH_GROUPS", "PCKH_JOINTS"]
