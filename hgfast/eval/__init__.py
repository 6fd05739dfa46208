"""Evaluation: PCK / PCKh tables and the evaluation loop."""
from .pck import ALL_JOINTS, format_table, pck_correct, pck_table

__all__ = ["pck_correct", "pck_table", "format_table", "ALL_JOINTS"]
