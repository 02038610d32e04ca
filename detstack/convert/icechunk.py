"""Icechunk repositories of a run: the manifest's layout as Zarr v3, with virtual references.

Icechunk stores Zarr v3 metadata plus, per chunk, a virtual reference (file or
object URL, offset, length) into the original HDF5 files, in a versioned
repository. The arrays, codecs and checks are those of the Zarr manifest
(``detstack.convert.manifest``); only the container differs.

Readers must authorise the places virtual chunks are read from (Icechunk refuses
otherwise)::

    import icechunk, xarray as xr
    repo = icechunk.Repository.open(
        icechunk.local_filesystem_storage("run.icechunk"),
        authorize_virtual_chunk_access=icechunk.containers_credentials(
            {"file:///data/run0001/": None}))   # the prefix shown by the record
    ds = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)

``open_icechunk`` does the same and returns a detstack view.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .atomic import atomic_dir, check_target
from .manifest import ArraySpec, build_layout
from .plan import as_detector


def _codecs(spec: ArraySpec) -> dict[str, Any]:
    """Zarr v3 serializer and compressors equal to the v2 (filters, compressor) chain."""
    from zarr.codecs import BytesCodec
    from zarr.codecs import numcodecs as nc
    chain = [*(spec.filters or []), *([spec.compressor] if spec.compressor else [])]
    make = {"zlib": lambda c: nc.Zlib(level=c["level"]),
            "shuffle": lambda c: nc.Shuffle(elementsize=c["elementsize"]),
            "fletcher32": lambda c: nc.Fletcher32()}
    order = spec.dtype.byteorder
    endian = None if spec.dtype.itemsize == 1 else ("big" if order == ">" else "little")
    return {"serializer": BytesCodec(endian=endian),
            "compressors": [make[c["id"]](c) for c in chain] or None}


def _mtime_stamp(path: Path) -> dt.datetime:
    """The file's modification time, rounded up to the second (what icechunk compares)."""
    return dt.datetime.fromtimestamp(math.ceil(path.stat().st_mtime), dt.UTC)


def _container_prefix(files: list[Path], url_prefix: str | None) -> tuple[str, list[str]]:
    """The URL prefix all chunks share and each source file's URL."""
    common = Path(os.path.commonpath([str(p.parent) for p in files]))
    rel = [p.relative_to(common).as_posix() for p in files]
    prefix = url_prefix.rstrip("/") + "/" if url_prefix else common.as_uri() + "/"
    return prefix, [prefix + r for r in rel]


def to_icechunk(det_or_run: Any, path: str | os.PathLike[str] | Any, *,
                keys: list[str] | None = None, overwrite: bool = False,
                on_unsupported: str = "raise", url_prefix: str | None = None,
                containers: list[Any] | None = None, message: str = "detstack view",
                layout: str = "trains", detector_name: str | None = None,
                **det_kwargs: Any) -> Any:
    """Write an Icechunk repository with virtual references to the run; return it.

    Like a manifest, one reference per chunk points into the run's HDF5 files (no
    copy); keys follow the manifest rules (:func:`to_manifest`). Needs the
    ``icechunk`` extra.

    Parameters
    ----------
    det_or_run : detector or DataCollection
        A detector object (e.g. ``detstack.AGIPD1M(run, raw=True)``, with any
        module/train selection), or a run holding a single detector.
    path : str, path-like or icechunk.Storage
        A local folder (``.icechunk``, created atomically) or an Icechunk storage.
    keys : list of str, optional
        Keys to write (default: every key all modules have).
    overwrite : bool, default False
        Replace an existing local repository; otherwise an existing one is refused.
    on_unsupported : {'raise', 'skip'}, default 'raise'
        Keys that cannot be referenced exactly raise, or are left out with a warning.
    url_prefix : str, optional
        Refer to chunks as ``url_prefix`` + their path below the run folder (e.g.
        ``"s3://bucket/run/"``) instead of ``file://`` URLs; needs ``containers``.
    containers : list of icechunk.VirtualChunkContainer, optional
        How readers reach ``url_prefix`` (default: the local run folder).
    message : str, default 'detstack view'
        The commit message.
    layout : {'trains', 'frames'}, default 'trains'
        The view layout, as in :func:`to_manifest`.
    detector_name : str, optional
        Detector to pick when ``det_or_run`` is a run with several.
    **det_kwargs
        Passed to the detector class when ``det_or_run`` is a run (``modules=``,
        ``min_modules=``, ``raw=``...).

    Returns
    -------
    icechunk.Repository
        The repository, opened with access to its virtual chunks
        (``detstack.open_view(path)`` reads a local one too).

    Raises
    ------
    UnsupportedKeyError
        A key cannot be referenced exactly and ``on_unsupported='raise'``.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        ``url_prefix`` without ``containers``, or chunk locations no container reaches.
    OutputWriteError
        The repository could not be written; nothing is left.
    """
    import icechunk

    det = as_detector(det_or_run, detector_name, **det_kwargs)
    local = not isinstance(path, icechunk.Storage)
    base = Path(path).resolve().parent if local else Path.cwd()
    if local:
        check_target(path, overwrite)
    lay = build_layout(det, keys, on_unsupported, "icechunk", base, layout)
    prefix, urls = _container_prefix(lay.files, url_prefix)
    # icechunk refuses a chunk whose file was modified after this time (local files;
    # objects elsewhere carry their own times, which we do not know here)
    stamps = [None if url_prefix else _mtime_stamp(p) for p in lay.files]
    for entry, url in zip(lay.record["source_files"], urls, strict=True):
        entry["path"] = url.removeprefix("file://")
    # every chunk of every array is written (also all-fill ones): readers may treat an
    # absent chunk as damage
    lay.record["icechunk"] = {"container_prefix": prefix, "skipped": lay.skipped,
                              "every_chunk_stored": True}
    if containers is None:
        if url_prefix is not None:
            raise ValueError("url_prefix needs containers=[icechunk.VirtualChunkContainer(...)]"
                             " saying how to reach it")
        containers = [icechunk.VirtualChunkContainer(
            prefix, icechunk.local_filesystem_store(prefix.removeprefix("file://")))]
    config = icechunk.RepositoryConfig.default()
    for cont in containers:
        config.set_virtual_chunk_container(cont)
    auth = icechunk.containers_credentials({c.url_prefix: None for c in containers})

    def write(storage: Any) -> Any:
        repo = icechunk.Repository.create(storage, config, authorize_virtual_chunk_access=auth)
        session = repo.writable_session("main")
        store = session.store
        root = zarr.open_group(store, mode="w", zarr_format=3, attributes={
            "detstack_record": lay.record, "coordinates": " ".join(lay.coordinates)})
        for spec in lay.specs:
            with warnings.catch_warnings():  # numcodecs.* codecs are zarr-python specific
                warnings.simplefilter("ignore")
                arr = root.create_array(spec.name, shape=spec.shape, chunks=spec.chunks,
                                        dtype=spec.dtype, fill_value=spec.fill,
                                        dimension_names=spec.dims, **_codecs(spec),
                                        config={"write_empty_chunks": True})
            if spec.inline:
                arr[...] = spec.load()
                continue
            assert spec.refs is not None
            for b in spec.refs():   # module by module: bounded memory
                coords = np.stack(np.unravel_index(b.index, spec.grid), axis=1).tolist()
                refs = [icechunk.VirtualChunkSpec(c, urls[u], o, n,
                                                  last_updated_at_checksum=stamps[u])
                        for c, u, o, n in zip(coords, b.url.tolist(), b.offset.tolist(),
                                              b.size.tolist(), strict=True)]
                failed = store.set_virtual_refs(spec.name, refs, validate_containers=True)
                if failed:
                    raise ValueError(f"{spec.name}: {len(failed)} chunk locations match no "
                                     "virtual chunk container")
        session.commit(message)
        return repo

    if not local:
        return write(path)
    with atomic_dir(Path(path), overwrite) as tmp:
        write(icechunk.local_filesystem_storage(str(tmp)))
    return icechunk.Repository.open(icechunk.local_filesystem_storage(str(Path(path))),
                                    authorize_virtual_chunk_access=auth)


def open_icechunk(repo_or_path: Any, storage_options: dict[str, Any] | None = None,
                  check_sources: bool = True, *, branch: str = "main",
                  authorize: dict[str, Any] | None = None) -> Any:
    """A detstack view of an Icechunk repository written by ``to_icechunk`` (a local
    folder or an ``icechunk.Repository``; the signature of ``open_view`` openers).

    ``authorize``: {container URL prefix: credentials or None}; by default the prefix
    the repository's record names, with no credentials (local files).
    ``check_sources``: refuse it when local source files are missing or changed.
    """
    if storage_options:
        raise ValueError("open a remote Icechunk repository yourself and pass the "
                         "icechunk.Repository")
    import icechunk

    from ..errors import FileFormatError
    from ..store.icechunk_reads import checked_arrays
    from ..store.verify import verify_record
    from ..store.view_collection import ViewCollection
    repo = repo_or_path
    where = str(repo_or_path)
    if not isinstance(repo, icechunk.Repository):
        storage = icechunk.local_filesystem_storage(str(Path(repo_or_path).resolve()))
        plain = icechunk.Repository.open(storage)
        group = zarr.open_group(plain.readonly_session(branch).store, mode="r")
        prefix = group.attrs["detstack_record"]["icechunk"]["container_prefix"]
        auth = icechunk.containers_credentials(authorize or {prefix: None})
        repo = icechunk.Repository.open(storage, authorize_virtual_chunk_access=auth)
    session = repo.readonly_session(branch)
    group = zarr.open_group(session.store, mode="r")
    record = dict(group.attrs["detstack_record"])
    if check_sources and record["icechunk"]["container_prefix"].startswith("file://"):
        report = verify_record(where, record)
        if not report.ok:
            raise FileFormatError(where, "its source files are missing or changed ("
                                  + "; ".join((report.missing + report.changed)[:3]) + ")",
                                  "Rebuild it, or pass check_sources=False")
    counts = {g: group[f"count.{g}"][:] for g in record["index_groups"]}
    train_ids = group["train"][:]
    # promised chunks present; missing, moved or changed sources and damaged chunks named
    arrays = checked_arrays(session, group, record, counts, train_ids, where,
                            bool(record["icechunk"].get("every_chunk_stored")))
    return ViewCollection(where, record, arrays, train_ids, counts, keepalive=(repo, group))
