"""``open_view``: recognise a view by its name and hand it to the form that reads it."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from ..errors import FileFormatError
from ..safety import refuse_special
from .view_collection import ViewCollection

Opener = Callable[..., ViewCollection]

# (predicate on the lower-cased path/URL, "module:function") tried in order;
# modules are imported on first use so optional dependencies stay optional.
_OPENERS: list[tuple[Callable[[str], bool], str]] = []


def register_opener(predicate: Callable[[str], bool], target: str) -> None:
    _OPENERS.append((predicate, target))


def open_view(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None,
              **kwargs: Any) -> ViewCollection:
    """Open any detstack view; every detector class accepts the result."""
    name = os.fspath(path)
    if "://" not in name or name.startswith("file://"):
        refuse_special(name.removeprefix("file://"), "view")
    lower = name.lower().rstrip("/")
    for predicate, target in _OPENERS:
        if predicate(lower):
            module, func = target.split(":")
            opener: Opener = getattr(importlib.import_module(module), func)
            return opener(name, storage_options=storage_options, **kwargs)
    raise FileFormatError(name, "is not a recognised detstack view",
                          "Views are .h5/.cxi (HDF5), .json/.parq (manifests) or zarr stores")


def _is_hdf5(name: str) -> bool:
    return name.endswith((".h5", ".hdf5", ".cxi", ".nxs"))


def _is_manifest(name: str) -> bool:
    return name.endswith((".json", ".parq", ".parquet"))


register_opener(lambda name: name.endswith(".icechunk"),
                "detstack.convert.icechunk:open_icechunk")
register_opener(_is_hdf5, "detstack.store.h5view:open_h5_view")
register_opener(_is_manifest, "detstack.store.manifest:open_manifest")
register_opener(lambda name: True, "detstack.store.zarr_store:open_zarr_store")
