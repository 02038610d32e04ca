"""Property-based: over random frame layouts (modules, trains, frame counts, gaps,
sequence-file breaks, chunking, filters), every reader and every view form returns what
a plain h5py reading of the files (INDEX first/count per train) says."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relsuite_driver import _blocks_of_trains, _blocks_of_view, _dask, _stack, same

import detstack
from detstack import synth
from detstack.convert import to_manifest, to_vds, to_zarr
from detstack.convert.manifest import UnsupportedKeyError

SRC = "SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf"


@st.composite
def layouts(draw: st.DrawFn) -> dict[str, object]:
    n_trains = draw(st.integers(1, 5))
    modules = sorted(draw(st.sets(st.integers(0, 15), min_size=1, max_size=3)))
    tids = list(range(10000, 10000 + n_trains))
    missing = {m: draw(st.lists(st.sampled_from(tids), max_size=min(2, n_trains - 1),
                                unique=True))
               for m in modules[1:]}
    layout = draw(st.sampled_from(["chunked", "contiguous", "deflate", "shuffle-deflate"]))
    return dict(kind="AGIPD1M", raw=True, n_trains=n_trains, modules=modules,
                frames_per_train=draw(st.lists(st.integers(0, 4), min_size=n_trains,
                                               max_size=n_trains)),
                missing_trains={m: v for m, v in missing.items() if v},
                trains_per_file=draw(st.sampled_from([None, 1, 2, 3])),
                layout=layout, with_control=False,
                frames_per_chunk=1 if layout == "contiguous" else draw(st.sampled_from([1, 2])))


def h5py_oracle(run: Path) -> dict[tuple[int, int], np.ndarray]:
    """{(module, train ID): frames} straight from INDEX first/count and image/data."""
    out: dict[tuple[int, int], list[np.ndarray]] = {}
    for path in sorted(run.glob("*AGIPD*.h5")):
        mod = int(path.name.split("AGIPD")[1][:2])
        with h5py.File(path, "r") as h5:
            tids = h5["INDEX/trainId"][...]
            first = h5[f"INDEX/{SRC.format(mod)}/image/first"][...]
            count = h5[f"INDEX/{SRC.format(mod)}/image/count"][...]
            data = h5[f"INSTRUMENT/{SRC.format(mod)}/image/data"]
            for tid, a, n in zip(tids[:len(first)], first, count, strict=True):  # padded
                if tid and n:
                    out.setdefault((mod, int(tid)), []).extend(data[int(a):int(a + n)])
    return {k: np.stack(v) for k, v in out.items()}


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_every_reader_and_view_agrees_with_h5py(layout: dict[str, object]) -> None:
    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="detstack-prop-"))
    try:
        run = tmp / "run"
        synth.write_run(run, **layout)
        want = h5py_oracle(run)
        if not want:
            return
        det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
        to_vds(det, tmp / "v.h5")
        try:
            to_manifest(det, run / "m.json")
        except UnsupportedKeyError:     # documented: chunks of several compressed frames
            assert layout["layout"] != "chunked" and layout["frames_per_chunk"] > 1
            manifest = False
        else:
            manifest = True
        to_zarr(det, tmp / "s.zarr", threads=2)
        got = {"get_array": _stack(det), "get_dask_array": _dask(det),
               "trains": _blocks_of_trains(det), "vds": _blocks_of_view(str(tmp / "v.h5")),
               "zarr": _blocks_of_view(str(tmp / "s.zarr"))}
        if manifest:
            got["manifest"] = _blocks_of_view(str(run / "m.json"))
        for name, blocks in got.items():
            assert same(blocks, want), f"{name} differs from h5py for {layout}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
