"""Compressed Zarr v3 stores: a run copied into sharded, checksummed arrays.

``writer`` drives a conversion (threads or dask.distributed, resumable); ``layout`` picks
shard and inner chunk shapes; ``meta`` writes the zarr metadata and codec chains;
``tasks`` and ``encode`` read, transpose and encode one shard; ``buffers`` reuses each
thread's memory; ``target`` is the store being written (local folder or fsspec URL);
``lossy`` holds the opt-in lossy modes and their error bounds.
"""

from .writer import to_zarr

__all__ = ["to_zarr"]
