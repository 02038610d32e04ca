"""Blosc compression of inner chunks: python-blosc's build when installed, else numcodecs'.

Both wrap the same C library, but numcodecs' wheels bit-shuffle with SSE2 only while
python-blosc's (``pip install 'detstack[fast]'``) picks AVX2 at run time: 5-8 % less CPU
per raw AGIPD inner chunk (blosc zstd-1 + bit shuffle, ``benchmarks/bench_paths.py``).
A store must not depend on which package is installed, so python-blosc is used for a
codec only once it gave the same bytes as numcodecs on a sample (checked once per
process, codec and type size); otherwise, or without it, numcodecs encodes.

python-blosc keeps its settings process-wide: the first use here sets it to release
the GIL, to use one internal thread (the conversion runs one task per core) and to the
block size of that codec; a codec with another block size is encoded by numcodecs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numcodecs
import numpy as np

_lock = threading.Lock()
_blocksize: list[int] = []          # the block size python-blosc was set to, once set
_same: dict[tuple[str, int, int, int, int], bool] = {}   # sample check per codec + type size


def blosc_encoder(cname: str, clevel: int, shuffle: int, blocksize: int = 0,
                  typesize: int | None = None) -> Callable[[np.ndarray], Any]:
    """``encode(contiguous array) -> bytes`` of the blosc codec with these settings."""
    codec = numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=shuffle, blocksize=blocksize,
                            typesize=typesize)
    fast = _python_blosc(blocksize)
    if fast is None:
        return codec.encode

    compress = _compress(fast)

    def encode(data: np.ndarray) -> Any:
        size = typesize or data.itemsize
        if not (data.flags.c_contiguous and data.nbytes % size == 0
                and _matches(compress, cname, clevel, shuffle, blocksize, size)):
            return codec.encode(data)
        return compress(data.__array_interface__["data"][0], data.nbytes, size, clevel,
                        shuffle, cname)
    return encode


def _python_blosc(blocksize: int) -> Any:
    """The python-blosc module set up for our use, or None (absent, or set to another
    block size by an earlier codec)."""
    try:
        import blosc
    except ImportError:
        return None
    with _lock:
        if not _blocksize:
            blosc.set_releasegil(True)
            blosc.set_nthreads(1)
            blosc.set_blocksize(blocksize)
            _blocksize.append(blocksize)
    return blosc if _blocksize[0] == blocksize else None


def _compress(fast: Any) -> Callable[[int, int, int, int, int, str], bytes]:
    """``compress(address, nbytes, typesize, clevel, shuffle, cname)``: the extension's
    own call where it is there (the package's wrapper checks its arguments on every call,
    parsing version strings: ~3 % of a conversion's time, holding the GIL; ``_matches``
    tries the same call once on a sample)."""
    ext = getattr(getattr(fast, "blosc_extension", None), "compress_ptr", None)
    if ext is not None:
        return ext
    return lambda address, nbytes, size, clevel, shuffle, cname: fast.compress_ptr(
        address, nbytes // size, size, clevel, shuffle, cname)


def _matches(compress: Callable[..., bytes], cname: str, clevel: int, shuffle: int,
             blocksize: int, size: int) -> bool:
    """Whether python-blosc encodes a sample exactly as numcodecs does (cached)."""
    key = (cname, clevel, shuffle, blocksize, size)
    same = _same.get(key)
    if same is None:
        rng = np.random.default_rng(0)
        n = (max(2 * blocksize, 1 << 18) // (64 * size) + 1) * 64 * size
        base = np.repeat(rng.integers(0, 256, n // 64, dtype=np.uint8), 64)
        sample = base ^ (rng.integers(0, 4, n, dtype=np.uint8) << 1)   # compressible bytes
        ref = numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=shuffle,
                              blocksize=blocksize, typesize=size).encode(sample)
        got = compress(sample.ctypes.data, n, size, clevel, shuffle, cname)
        same = _same[key] = bytes(ref) == got
    return same
