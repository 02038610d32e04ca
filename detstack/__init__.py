"""detstack: European XFEL multi-module detector runs as one array."""

from .errors import (
    DetstackError,
    DuplicateTrainError,
    FileFormatError,
    MultiRunError,
    NoUsableFilesError,
    PropertyNameError,
    SourceNameError,
    TrainIDError,
)
from .run import DataCollection, H5File, RunDirectory, by_id, by_index

__version__ = "0.1.0"

__all__ = [
    "DataCollection", "DetstackError", "DuplicateTrainError", "FileFormatError", "H5File",
    "MultiRunError", "NoUsableFilesError", "PropertyNameError", "RunDirectory",
    "SourceNameError", "TrainIDError", "by_id", "by_index",
]
