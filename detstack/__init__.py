"""detstack: European XFEL multi-module detector runs as one array.

Names are imported on first use (``detstack.AGIPD1M`` imports the detector classes),
so ``import detstack`` stays fast and loads no dask, xarray, pandas, zarr or fsspec.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    DetstackError,
    DuplicateTrainError,
    EmptySelectionError,
    FileFormatError,
    MissingDependencyError,
    MultiRunError,
    NoUsableFilesError,
    PropertyNameError,
    SourceNameError,
    TrainIDError,
    TrainIndexError,
)

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first access)
_LAZY = {
    **dict.fromkeys(["AGIPD1M", "AGIPD500K", "DSSC1M", "JUNGFRAU", "LPD1M", "LPDSolo",
                     "StackView", "identify_multimod_detectors", "stack_data",
                     "stack_detector_data"], "detstack.detectors"),
    **dict.fromkeys(["DataCollection", "H5File", "RunDirectory", "by_id", "by_index"],
                    "detstack.run"),
    "open_view": "detstack.store",
    "convert": "detstack.convert",
    "synth": "detstack.synth",
}

__all__ = [
    "AGIPD1M", "AGIPD500K", "DSSC1M", "DataCollection", "DetstackError", "DuplicateTrainError",
    "EmptySelectionError", "FileFormatError", "H5File", "JUNGFRAU", "LPD1M", "LPDSolo",
    "MissingDependencyError", "MultiRunError", "NoUsableFilesError", "PropertyNameError",
    "RunDirectory", "SourceNameError", "StackView", "TrainIDError", "TrainIndexError", "by_id",
    "by_index", "convert", "identify_multimod_detectors", "open_view", "stack_data",
    "stack_detector_data", "synth",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'detstack' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module.rsplit(".", 1)[-1] == name else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:
    from . import convert, synth
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
    from .run import DataCollection, H5File, RunDirectory, by_id, by_index
    from .store import open_view
