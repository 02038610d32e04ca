"""Rows: where the memory of long runs goes, measured (the opened run by structure, and
what HDF5 holds per mapping of a virtual dataset being written)."""

from __future__ import annotations

from .common import quiet
from .registry import Context, current_rss_mb, measurement

H5_MAPPINGS = 2000    # a key mapped per (module, sequence file) at 30,000 AGIPD-1M trains


@measurement("mem_structures", "detstack RunDirectory + AGIPD1M(run): memory by structure "
             "(tracemalloc, bytes per (module, train))")
def _mem_structures(ctx: Context) -> str | None:
    import gc
    import tracemalloc

    import numpy as np

    import detstack
    quiet()
    tracemalloc.start()
    ctx.start()
    det = detstack.AGIPD1M(detstack.RunDirectory(ctx.run))
    fmap = det.frame_map
    pairs = fmap.n_modules * len(fmap.train_ids)
    runfiles = [f for f in fmap.files if hasattr(f, "_index_cache")]
    arrays = {}     # train IDs: views of one array per file, or of the cache's one array
    for f in runfiles:
        a = f.train_ids if f.train_ids.base is None else f.train_ids.base
        arrays[id(a)] = a.nbytes
    tids = sum(arrays.values())
    valid = sum(f.validity.nbytes for f in runfiles)
    index = sum(_index_bytes(f) for f in runfiles)
    per = {"frame map (counts, file, first)": sum(a.nbytes for a in
                                                   (fmap.counts, fmap.file, fmap.first)),
           "files' train IDs": tids, "files' validity": valid, "files' index arrays": index}
    parts = ", ".join(f"{k} {v / pairs:.1f}" for k, v in per.items())
    dtypes = "/".join(str(np.dtype(a.dtype)) for a in (fmap.counts, fmap.file, fmap.first))
    n_files = len(runfiles)
    held = tracemalloc.get_traced_memory()[0]
    del det, fmap, runfiles, f
    gc.collect()
    traced = held - tracemalloc.get_traced_memory()[0]   # what run and detector hold
    return (f"{parts}; all the run and detector hold (Python objects included) "
            f"{traced / pairs:.1f}; "
            f"{pairs:,} pairs, {n_files} files, dtypes {dtypes}")


def _index_bytes(f: object) -> int:
    """Bytes of a file's cached index arrays (each array once; any SourceIndex form)."""
    seen: dict[int, int] = {}
    for i in getattr(f, "_index_cache", {}).values():
        if callable(getattr(i, "nbytes", None)):
            seen[id(i)] = i.nbytes()
        else:
            seen |= {id(a): a.nbytes for a in (i.first, i.count)}
    return sum(seen.values())


@measurement("h5_mapping", f"HDF5: memory per mapping of a virtual dataset being created "
             f"({H5_MAPPINGS:,} mappings, as to_vds builds them)")
def _h5_mapping(ctx: Context) -> str | None:
    import ctypes

    import h5py
    import numpy as np

    from detstack.convert.vds import LIBVER, small_metadata_cache
    out = []
    for kind in ("hyperslab", "whole-source"):
        path = ctx.scratch / "mappings.h5"
        with h5py.File(path, "w", libver=LIBVER) as f:
            small_metadata_cache(f)
            ctx.start()
            r0 = current_rss_mb()
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_fill_value(np.asarray(0, np.float32))
            vshape = (16, H5_MAPPINGS * 250, 512, 128)
            vspace = h5py.h5s.create_simple(vshape)
            sspace = h5py.h5s.create_simple((250 if kind == "whole-source" else 16000, 512, 128))
            for i in range(H5_MAPPINGS):
                vspace.select_hyperslab((i % 16, i * 250, 0, 0), (1, 250, 512, 128))
                if kind == "whole-source":
                    sspace.select_all()
                else:
                    sspace.select_hyperslab((0, 0, 0), (250, 512, 128))
                dcpl.set_virtual(vspace, f"f{i}.h5".encode(), b"INSTRUMENT/x/image/data", sspace)
            r1 = current_rss_mb()
            tid = h5py.h5t.py_create(np.dtype(np.float32), logical=True)
            h5py.h5d.create(f.id, b"d", tid, h5py.h5s.create_simple(vshape), dcpl=dcpl).close()
            r2 = current_rss_mb()
            del dcpl
        r3 = current_rss_mb()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        r4 = current_rss_mb()
        path.unlink()
        k = 1024 / H5_MAPPINGS
        out.append(f"{kind} source selections: {(r1 - r0) * k:.1f} KB in the property list, "
                   f"{(r2 - r0) * k:.1f} KB after H5Dcreate, {(r3 - r0) * k:.1f} KB after "
                   f"closing (freed but kept by malloc), {(r4 - r0) * k:.1f} KB after "
                   "malloc_trim")
    return f"HDF5 {h5py.version.hdf5_version}: " + "; ".join(out)
