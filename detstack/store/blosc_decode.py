"""Decode blosc chunks with the fastest installed library: python-blosc2, else numcodecs.

A Zarr v3 ``blosc`` chunk is a C-Blosc1 frame; C-Blosc2 reads that format too, and its
build decodes our raw AGIPD inner chunks (zstd-1 + bit shuffle) ~1.3x as fast as
numcodecs' C-Blosc1 (``benchmarks/bench_paths.py``, ``zframe``). python-blosc2 (the
``fast`` extra) releases the GIL only when asked, process-wide, and only through a
decompression context of its own (``decompress2``): its plain ``decompress`` goes
through the library's global context and serializes the reading threads. The package
takes ~0.2 s to import, so it is imported on the first chunk, not with detstack.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numcodecs
import numpy as np

Decoder = Callable[[Any, np.ndarray], None]


def _numcodecs_decoder() -> Decoder:
    codec = numcodecs.Blosc()

    def decode(src: Any, out: np.ndarray) -> None:
        codec.decode(src, out=out)
    return decode


def _blosc2_decoder() -> Decoder | None:
    try:
        import blosc2
    except ImportError:
        return None
    if not hasattr(blosc2, "set_releasegil") or not hasattr(blosc2, "decompress2"):
        return None
    blosc2.set_releasegil(True)

    def decode(src: Any, out: np.ndarray) -> None:
        blosc2.decompress2(src, dst=out, nthreads=1)
    return decode


@lru_cache(maxsize=1)
def _raw() -> tuple[str, Decoder]:
    fast = _blosc2_decoder()
    return ("blosc2", fast) if fast else ("numcodecs", _numcodecs_decoder())


def decoder_name() -> str:
    """The library that decodes blosc chunks here."""
    return _raw()[0]


def decode_blosc(src: Any, out: np.ndarray | None = None) -> np.ndarray:
    """``src`` (a blosc frame) decoded into ``out`` (uint8, exactly the decoded size) or a
    new array; a frame whose header states another size, or that fails to decode,
    raises ``ValueError``."""
    view = memoryview(src).cast("B")
    if len(view) < 16:
        raise ValueError("shorter than a blosc header")
    stated = struct.unpack_from("<I", view, 4)[0]
    if out is None:
        out = np.empty(stated, np.uint8)
    elif stated != out.nbytes:
        raise ValueError(f"its blosc header states {stated} decoded bytes, not {out.nbytes}")
    try:
        _raw()[1](view, out)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    return out
