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
    """Add a view form to :func:`open_view` (tried after the ones registered before).

    Parameters
    ----------
    predicate : callable
        ``predicate(lower-cased path or URL) -> bool``: is this name of the form?
    target : str
        ``"module:function"`` of the opener, imported on first use; it is called as
        ``function(path, storage_options=..., **kwargs)`` and returns a ViewCollection.
    """
    _OPENERS.append((predicate, target))


def open_view(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None,
              **kwargs: Any) -> ViewCollection:
    """Open any detstack view as a collection that every detector class accepts.

    The form follows from the name: ``.h5``/``.cxi`` (HDF5 virtual view, CXI or
    archived copy), ``.json``/``.parq`` (zarr manifest), ``.icechunk``, anything
    else a zarr store (folder, ``.zip``, ``s3://...``).

    Parameters
    ----------
    path : str or path-like
        The view's file, folder or URL.
    storage_options : dict, optional
        fsspec options for remote views, e.g. ``{"anon": True}`` or
        ``{"client_kwargs": {"endpoint_url": "http://..."}}``.
    **kwargs
        Options of the form: ``check_sources=False`` (HDF5 views, manifests) opens
        a view whose source files are missing or changed (reads of them fail);
        ``allowed_prefixes=[...]`` (manifests) lets references reach files under
        those folders or URL prefixes beyond the ones the manifest lists.

    Returns
    -------
    ViewCollection
        A ``DataCollection`` over the view: ``detstack.AGIPD1M(open_view(path))``.

    Raises
    ------
    FileFormatError
        Not a detstack view, a missing ``.h5``/manifest file, a view of an
        unreadable schema version, a zarr store
        whose conversion was interrupted (``IncompleteStoreError``), or source
        files missing or changed (the message names them; ``detstack verify``
        lists all).
    FileNotFoundError
        No zarr store at ``path``.
    UnsafeReferenceError
        A manifest or view refers outside the files it declares.
    NotRegularFileError
        ``path`` is a FIFO, device or socket.
    """
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
