"""Evaluation: PCK / PCKh tables and the evaluation loop."""
from .evaluate import evaluate, predict_dataset
from .pck import ALL_JOINTS, format_table, pck_correct, pck_table

__all__ = ["evaluate", "predict_dataset", "pck_correct", "pck_table", "format_table", "ALL_JOINTS"]
