"""Multi-module detector classes: the reader API scientists use every day."""

from .identify import identify_multimod_detectors
from .jungfrau import JUNGFRAU
from .stacking import StackView, stack_data, stack_detector_data
from .xtdf import AGIPD1M, AGIPD500K, DSSC1M, LPD1M, LPDSolo

__all__ = ["AGIPD1M", "AGIPD500K", "DSSC1M", "JUNGFRAU", "LPD1M", "LPDSolo", "StackView",
           "identify_multimod_detectors", "stack_data", "stack_detector_data"]
