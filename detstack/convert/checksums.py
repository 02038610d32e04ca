"""Checksums of the data a zarr store holds, recorded while converting.

Each conversion task sums the uncompressed bytes of every (module slot, train)
block it reads (the train's rows in C order, exactly what ``array[slot, train,
:count]`` returns, or ``array[slot, train]`` for per-train keys) and writes them
in its *done* marker; the finished store keeps them all in one small object,
``.detstack-checksums.json``, which ``detstack verify --full`` compares with what
it reads back. The crc32 comes from ISA-L or zlib-ng when installed (the ``fast``
extra; SIMD, ~50 GB/s) and the standard ``zlib`` otherwise (~4 GB/s, a sixth of the
encoding time of the same bytes); all give the same value.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

ALGORITHM = "crc32"


def _fastest_crc32() -> Callable[[Any], int]:
    try:
        from isal import isal_zlib
        return isal_zlib.crc32
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng
        return zlib_ng.crc32
    except ImportError:
        return zlib.crc32


_crc32 = _fastest_crc32()


def block_checksum(rows: np.ndarray) -> int:
    return _crc32(np.ascontiguousarray(rows).data) & 0xFFFFFFFF


def done_marker(slot: int, sums: Mapping[str, list[tuple[int, int]]]) -> bytes:
    """The done marker of a task: its slot and {key: [[train index, crc], ...]}."""
    return json.dumps({"slot": slot, "checksums": sums}).encode()


def store_document(markers: Iterable[bytes], keys: Iterable[str], n_slots: int,
                   n_trains: int) -> bytes:
    """Gather the tasks' markers into the store's checksum object."""
    sums = {key: np.zeros((n_slots, n_trains), np.uint32) for key in keys}
    for raw in markers:
        if not raw:
            continue
        doc = json.loads(raw)
        for key, pairs in doc.get("checksums", {}).items():
            if key in sums and pairs:
                t, crc = np.asarray(pairs, np.int64).T
                sums[key][int(doc["slot"]), t] = crc
    return json.dumps({
        "algorithm": ALGORITHM, "shape": [n_slots, n_trains],
        "of": "uncompressed bytes of each (module slot, train) block, C order",
        "keys": {k: base64.b64encode(v.astype("<u4").tobytes()).decode()
                 for k, v in sums.items()},
    }).encode()


def read_document(raw: bytes) -> dict[str, np.ndarray]:
    """{key: (n_slots, n_trains) uint32 checksums} from the store's checksum object."""
    doc: dict[str, Any] = json.loads(raw)
    if doc.get("algorithm") != ALGORITHM:
        raise ValueError(f"unknown checksum algorithm {doc.get('algorithm')!r}")
    shape = tuple(doc["shape"])
    return {k: np.frombuffer(base64.b64decode(v), "<u4").reshape(shape)
            for k, v in doc["keys"].items()}
