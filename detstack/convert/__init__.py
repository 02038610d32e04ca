"""Writers: HDF5 virtual view, CXI, frames file, zarr manifest, zarr store.

Each form lives in its own module and is imported on first use, so optional
dependencies (s3fs, distributed, parquet) are only needed by the forms using them.
"""

from __future__ import annotations

import importlib
from typing import Any

_WRITERS = {
    "to_vds": "vds",
    "to_cxi": "cxi",
    "write_frames": "frames_file",
    "materialize": "archive",
    "to_manifest": "manifest",
    "to_icechunk": "icechunk",
    "to_zarr": "zarr",
}

__all__ = sorted(_WRITERS)


def __getattr__(name: str) -> Any:
    if name in _WRITERS:
        module = importlib.import_module(f"{__name__}.{_WRITERS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WRITERS))
