"""A zarr chunk that cannot be decoded, found and named.

zarr-python raises whatever a codec raises for a damaged chunk (``ValueError`` from
a checksum, ``zlib.error``, blosc's ``RuntimeError``), naming no chunk. On that
error path the request is narrowed, chunk-aligned axis by axis, to the one chunk
that fails alone, so the typed error can name it, its module slot and train.
"""

from __future__ import annotations

from typing import Any

from ..errors import CorruptChunkError, DetstackError
from .h5_decode import HINT, failing_box, index_box


def _fails(array: Any, box: list[range]) -> bool:
    try:
        array[tuple(slice(r.start, r.stop) for r in box)]
    except DetstackError:
        raise
    except Exception:  # noqa: BLE001 - any codec failure counts
        return True
    return False


def failing_chunk(array: Any, index: Any) -> tuple[int, ...] | None:
    """The first element of the first chunk under ``array[index]`` that fails to read
    alone, or None if every one reads (the failure was not in a chunk)."""
    chunks = tuple(int(c) for c in array.chunks)
    box = failing_box(lambda b: _fails(array, b), index_box(tuple(array.shape), index),
                      len(chunks), chunks)
    return None if box is None else tuple(r.start for r in box)


def error_kind(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def corrupt_store_chunk(array: Any, index: Any, exc: Exception, url: str,
                        sources: dict[str, Any] | None = None) -> Exception:
    """The ``CorruptChunkError`` for a failed read of a zarr store's array (``exc`` if
    no chunk fails alone); ``sources``: the record's modules, to name the slot's source."""
    start = failing_chunk(array, index)
    if start is None:
        return exc
    unit = tuple(int(u) for u in (getattr(array, "shards", None) or array.chunks))
    key = array.metadata.encode_chunk_key(tuple(s // u for s, u in zip(start, unit,
                                                                       strict=True)))
    last = min(start[1] + int(array.chunks[1]), int(array.shape[1])) - 1
    trains = f"{start[1]}" + (f"-{last}" if last > start[1] else "")
    source = (sources or {}).get(str(start[0]), {}).get("source")
    slot = f"module slot {start[0]}" + (f" (source {source})" if source else "")
    return CorruptChunkError(url, f"array {array.path}: the chunk at {start} in stored object "
                             f"{key} ({slot}, train index {trains}) cannot "
                             f"be decoded: {error_kind(exc)}: {exc}",
                             "The store is damaged: convert the run again (overwrite=True); "
                             "if it refers to source files (icechunk), check those")


__all__ = ["HINT", "corrupt_store_chunk", "error_kind",
           "failing_chunk"]
