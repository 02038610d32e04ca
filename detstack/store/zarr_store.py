"""Open a zarr store written by ``detstack.convert.to_zarr`` (local folder, .zip, s3://...).

The store is plain Zarr v3: one array per key plus coordinate arrays, and the
view record as the root group's ``detstack_record`` attribute. The root
``zarr.json`` is written last, so its presence means the conversion finished;
a store holding ``.detstack-progress/`` but no root is an interrupted
conversion, refused here with a message saying how to finish it.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec

from ..errors import FileFormatError
from ..safety import refuse_special
from .view_collection import ViewCollection
from .zarr_presence import checked_arrays
from .zarr_shards import ShardedArray

RECORD_ATTR = "detstack_record"
PROGRESS_DIR = ".detstack-progress"   # ledger of an unfinished conversion
PLAN_FILE = f"{PROGRESS_DIR}/plan.json"
REMOVING = f"{PROGRESS_DIR}/removing"  # an object store being deleted (its root goes next)
STAGING_SUFFIX = ".staging"           # a .zip store is built in a folder beside it first


class IncompleteStoreError(FileFormatError):
    """A zarr store whose conversion was interrupted before it finished."""


def is_zip(url: str) -> bool:
    return url.lower().rstrip("/").endswith(".zip")


def local_path(url: str) -> str | None:
    """The local path of ``url``, or None if it is on another filesystem."""
    protocol, path = fsspec.core.split_protocol(url)
    if protocol not in (None, "file", "local"):
        return None
    return os.path.abspath(os.path.expanduser(path))


def count_name(group: str) -> str:
    """Coordinate array holding the rows per (module slot, train) of an index group."""
    return f"count.{group}"


def _zarr_store(url: str, storage_options: dict[str, Any] | None, zip_path: str | None) -> Any:
    import zarr.storage
    if zip_path is not None:
        return zarr.storage.ZipStore(zip_path, mode="r")
    local = local_path(url)
    if local is not None:
        return zarr.storage.LocalStore(local, read_only=True)
    return zarr.storage.FsspecStore.from_url(url, storage_options=storage_options or {},
                                             read_only=True)


def _not_a_view(url: str, storage_options: dict[str, Any] | None) -> Exception:
    """The error for a URL without a root group: interrupted conversion, or nothing there."""
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    root = root.rstrip("/")
    if is_zip(url):
        root += STAGING_SUFFIX
    if fs.exists(f"{root}/{PROGRESS_DIR}"):     # a ledger (being) written, or a removal
        return IncompleteStoreError(
            url, "is an incomplete zarr store: its conversion was interrupted before it finished",
            "Re-run the same conversion with resume=True (detstack convert ... --resume) to "
            "finish it, or with overwrite=True (--overwrite) to start again")
    local = local_path(url)
    if local is not None:
        from ..convert.locks import live_owner

        parent, name = os.path.split(local.rstrip("/"))
        owner = live_owner(os.path.join(parent, f".{name}.lock"))
        if owner is not None:
            return IncompleteStoreError(
                url, f"is being written by a conversion now (pid {owner.get('pid', '?')} on "
                f"host {owner.get('host', '?')})", "Wait for it to finish and open it again")
    if not fs.exists(root if not is_zip(url) else root[:-len(STAGING_SUFFIX)]):
        return FileNotFoundError(f"{url}: no such zarr store")
    return FileFormatError(url, "is not a zarr store (no root zarr.json)",
                           "Open the folder detstack.convert.to_zarr wrote")


def _being_removed(url: str, storage_options: dict[str, Any] | None) -> bool:
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return bool(fs.exists(f"{root.rstrip('/')}/{REMOVING}"))


def open_zarr_store(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None,
                    check_sources: bool = True, allowed_prefixes: Any = None,
                    **kwargs: Any) -> ViewCollection:
    """Open a detstack zarr store as a collection every detector class accepts.

    ``check_sources`` is accepted for the common opener signature; a store holds a
    copy of the data, so it never needs its source files.
    """
    import zarr
    import zarr.errors

    if kwargs:
        raise TypeError(f"open_zarr_store() got unexpected arguments {sorted(kwargs)}")
    url = os.fspath(path)
    zip_path = local_path(url) if is_zip(url) else None
    if is_zip(url) and zip_path is None:
        raise FileFormatError(url, "zip stores must be local files")
    if zip_path is not None and not os.path.isfile(zip_path):
        raise _not_a_view(url, storage_options)
    folder = local_path(url) if zip_path is None else None
    if folder is not None:
        refuse_special(os.path.join(folder, "zarr.json"), "zarr store metadata")
    store = _zarr_store(url, storage_options, zip_path)
    missing = (FileNotFoundError, zarr.errors.NodeNotFoundError, zarr.errors.GroupNotFoundError,
               zarr.errors.NodeTypeValidationError)
    try:
        group = zarr.open_group(store, mode="r")
    except missing as exc:
        reason = _not_a_view(url, storage_options)
        if isinstance(reason, IncompleteStoreError):
            raise reason from exc
        try:    # a writer may have finished (root written, ledger and lock gone) meanwhile
            group = zarr.open_group(store, mode="r")
        except missing:
            raise reason from exc
    record = group.attrs.get(RECORD_ATTR)
    if not isinstance(record, dict) or (zip_path is None and local_path(url) is None
                                        and _being_removed(url, storage_options)):
        reason = _not_a_view(url, storage_options)
        if isinstance(reason, IncompleteStoreError):
            raise reason
        raise FileFormatError(url, "is a zarr store but not a detstack view (no "
                              f"'{RECORD_ATTR}' attribute on its root group)")
    # check the record before reading arrays it names
    from .view_collection import check_record
    check_record(record, url)
    names = list(record["keys"]) + ["train"] + [count_name(g) for g in record["index_groups"]]
    if folder is not None:
        for name in names:
            refuse_special(os.path.join(folder, name, "zarr.json"), "zarr array metadata")
    try:
        arrays = {key: ShardedArray.wrap(group[key], folder) for key in record["keys"]}
        train_ids = group["train"][...]
        counts = {g: group[count_name(g)][...] for g in record["index_groups"]}
    except KeyError as exc:
        raise FileFormatError(url, f"is missing array {exc}", "The store is damaged; convert "
                              "the run again with overwrite=True") from exc
    # shards read by our own decoder check their presence themselves (zarr_shards)
    arrays.update(checked_arrays({k: a for k, a in arrays.items()
                                  if not isinstance(a, ShardedArray)}, record, counts, url,
                                 folder))
    return ViewCollection(url, record, arrays, train_ids, counts, keepalive=store)
