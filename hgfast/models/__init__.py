"""Model definitions: the reference Stacked Hourglass and its building blocks."""
from .head import Merge, StackHead
from .hourglass import Hourglass
from .residual import Residual
from .stacked_hourglass import StackedHourglass
from .stem import Stem

__all__ = ["StackedHourglass", "Residual", "Hourglass", "Stem", "StackHead", "Merge"]
