"""Evaluation: PCK / PCKh tables and the evaluation loop."""
from .coco_score import read_coco_results, score_coco_results
from .evaluate import coco_predictions, evaluate, predict_dataset
from .mpii_results import read_mpii_predictions, score_mpii_predictions, write_mpii_predictions
from .pck import ALL_JOINTS, format_table, pck_correct, pck_table

__all__ = ["evaluate", "coco_predictions", "predict_dataset", "pck_correct", "pck_table", "format_table", "ALL_JOINTS",
           "write_mpii_predictions", "read_mpii_predictions", "score_mpii_predictions", "read_coco_results",
           "score_coco_results"]
