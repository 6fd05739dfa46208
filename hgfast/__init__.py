"""hgfast: fast Stacked Hourglass pose estimation for PyTorch."""
from .models import Hourglass, Merge, Residual, StackedHourglass, StackHead, Stem
from .ops import argmax_decode, gaussian_heatmaps, heatmap_mse_loss  # noqa: F401  (see hgfast.ops)

__version__ = "0.1.0"
__all__ = ["StackedHourglass", "Residual", "Hourglass", "Stem", "StackHead", "Merge", "__version__"]
