"""Decode HDF5 deflate and shuffle+deflate chunks ourselves, outside HDF5's lock.

HDF5 decompresses chunks one at a time under its global lock; EuXFEL's corrected
data is deflate-compressed, so reads would use one core. The raw chunk bytes are
plain zlib streams (after a byte shuffle when the shuffle filter is on), which any
inflate library decodes while releasing the GIL. The fastest installed one is used:
ISA-L (``isal``), then zlib-ng (``zlib-ng``), then the standard ``zlib``; the ``fast``
extra installs ISA-L and ``zlib-into`` (whose unshuffle is ~30x numpy's).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

DEFLATE = h5py.h5z.FILTER_DEFLATE
SHUFFLE = h5py.h5z.FILTER_SHUFFLE

# filter pipelines (write order) decoded here; anything else is left to HDF5
DECODABLE = {(DEFLATE,), (SHUFFLE, DEFLATE), (SHUFFLE,), ()}


class ChunkDecodeError(ValueError):
    """Internal: a chunk failed to decode (the reader turns it into a typed error)."""


def _inflaters() -> list[tuple[str, Callable[..., bytes], type[Exception]]]:
    found = []
    try:
        from isal import isal_zlib
        found.append(("isal", isal_zlib.decompress, isal_zlib.error))
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng
        found.append(("zlib-ng", zlib_ng.decompress, zlib_ng.error))
    except ImportError:
        pass
    found.append(("zlib", zlib.decompress, zlib.error))
    return found


INFLATERS = _inflaters()
INFLATE_NAME, _inflate, _inflate_error = INFLATERS[0]


def _numpy_unshuffle(src: Any, out: np.ndarray, itemsize: int) -> None:
    """HDF5 shuffle undone: byte j of element i is at ``src[j * n + i]``."""
    n = out.nbytes // itemsize
    planes = np.frombuffer(src, np.uint8, count=n * itemsize).reshape(itemsize, n)
    dest = out.reshape(-1).view(np.uint8).reshape(n, itemsize)
    for j in range(itemsize):          # column copies: ~3x a transposed copy
        dest[:, j] = planes[j]


try:
    from zlib_into import unshuffle as _zi_unshuffle

    def _unshuffle(src: Any, out: np.ndarray, itemsize: int) -> None:
        _zi_unshuffle(np.frombuffer(src, np.uint8), out.reshape(-1).view(np.uint8), itemsize)
    UNSHUFFLE_NAME = "zlib-into"
except ImportError:
    _unshuffle = _numpy_unshuffle
    UNSHUFFLE_NAME = "numpy"


class ChunkDecoder:
    """Decodes whole chunks of one dataset's filter pipeline into C-contiguous arrays."""

    def __init__(self, filters: tuple[int, ...], chunk_nbytes: int, itemsize: int,
                 inflate: Callable[..., bytes] | None = None) -> None:
        if filters not in DECODABLE:
            raise ValueError(f"filters {filters} are not decoded here")
        self.filters = filters
        self.nbytes = chunk_nbytes
        self.itemsize = itemsize
        self.inflate = inflate or _inflate

    def decode(self, raw: bytes, mask: int, out: np.ndarray) -> None:
        """Decode stored chunk bytes ``raw`` into ``out`` (C-contiguous, chunk-sized)."""
        data: Any = raw
        deflate_at = self.filters.index(DEFLATE) if DEFLATE in self.filters else None
        if deflate_at is not None and not mask & (1 << deflate_at):
            try:
                data = self.inflate(raw, bufsize=self.nbytes)
            except (zlib.error, _inflate_error, MemoryError) as exc:
                raise ChunkDecodeError(f"its deflate stream is damaged ({exc})") from None
        if len(data) != self.nbytes:
            raise ChunkDecodeError(f"it decodes to {len(data)} bytes instead of {self.nbytes}")
        shuffle_at = self.filters.index(SHUFFLE) if SHUFFLE in self.filters else None
        if shuffle_at is not None and not mask & (1 << shuffle_at) and self.itemsize > 1:
            _unshuffle(data, out, self.itemsize)
        else:
            out.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)
