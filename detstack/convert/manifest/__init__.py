"""Zarr manifests: a run laid out as one array per key, as references into its own files.

``writer`` builds the layout and writes it; ``storage`` decides whether a source dataset
can be referenced chunk by chunk; ``specs`` builds the arrays (referenced keys, copied
small keys, coordinates); ``refs`` reads the chunk tables; ``output`` writes JSON or
Parquet (``records``: the record files, built in worker processes by ``parallel``);
``holes``, ``paths`` and ``sidecar`` keep unallocated chunks, file names and the sidecar
HDF5 of small arrays, which ``copied`` and ``coords`` fill a window of trains at a time
(``convert.heap`` gives freed memory back between windows).
"""

from .specs import ArraySpec
from .storage import UnsupportedKeyError
from .writer import build_layout, to_manifest

__all__ = ["ArraySpec", "UnsupportedKeyError", "build_layout", "to_manifest"]
