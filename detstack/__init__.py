"""detstack: European XFEL multi-module detector runs as one array."""

from .detectors import (
    AGIPD1M,
    AGIPD500K,
    DSSC1M,
    JUNGFRAU,
    LPD1M,
    LPDSolo,
    StackView,
    identify_multimod_detectors,
    stack_data,
    stack_detector_data,
)
from .errors import (
    DetstackError,
    DuplicateTrainError,
    FileFormatError,
    MultiRunError,
    NoUsableFilesError,
    PropertyNameError,
    SourceNameError,
    TrainIDError,
    TrainIndexError,
)
from .run import DataCollection, H5File, RunDirectory, by_id, by_index
from .store import open_view

__version__ = "0.1.0"

__all__ = [
    "AGIPD1M", "AGIPD500K", "DSSC1M", "JUNGFRAU", "LPD1M", "LPDSolo", "StackView",
    "identify_multimod_detectors", "stack_data", "stack_detector_data",
    "DataCollection", "DetstackError", "DuplicateTrainError", "FileFormatError", "H5File",
    "MultiRunError", "NoUsableFilesError", "PropertyNameError", "RunDirectory",
    "SourceNameError", "TrainIDError", "TrainIndexError", "by_id", "by_index", "open_view",
]
