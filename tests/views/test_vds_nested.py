"""Views of long runs nest their mappings in blocks (``convert/vds/nested.py``): every
dataset reads exactly as with the mappings in the dataset itself, and none holds more
than ``NEST_MAPPINGS`` mappings.

Long runs are what needs nesting (2,000 mappings per key at 30,000 trains); here the
threshold is lowered to 3 on short runs with many sequence files, so that mappings cross
the cuts, modules miss trains and frame counts vary.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr

import detstack
from detstack import synth
from detstack.convert import to_cxi, to_vds
from detstack.convert.vds import nested
from detstack.store import open_view

LIMIT = 3
RUNS: dict[str, dict[str, Any]] = {
    "agipd-corr": dict(kind="AGIPD1M", raw=False, n_trains=9,
                       frames_per_train=[2, 0, 3, 1, 2, 2, 3, 1, 2], modules=[0, 3, 9],
                       missing_trains={3: [10002, 10005]}, trains_per_file=2),
    "agipd-raw": dict(kind="AGIPD1M", raw=True, n_trains=7, frames_per_train=2,
                      modules=[1, 4], missing_trains={4: [10003]}, trains_per_file=2),
    "jungfrau": dict(kind="JUNGFRAU", raw=True, n_trains=7, n_modules=2, n_cells=2,
                     modules=[1, 2], trains_per_file=2),
}


def make(folder: Path, name: str) -> Any:
    kw = dict(RUNS[name])
    synth.write_run(folder, **kw, with_control=False, overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(detstack, kw["kind"])(detstack.RunDirectory(folder),
                                            **({} if kw["kind"] == "JUNGFRAU"
                                               else {"raw": kw["raw"]}))


def datasets(path: Path) -> dict[str, h5py.Dataset]:
    """{path: dataset} of every dataset outside the nested blocks."""
    out: dict[str, Any] = {}
    f = h5py.File(path, "r")
    f.visititems(lambda name, obj: out.setdefault(name, obj)
                 if isinstance(obj, h5py.Dataset) and not name.startswith("_blocks/")
                 else None)
    return out


def assert_same_file(nested_path: Path, direct_path: Path) -> None:
    ours, ref = datasets(nested_path), datasets(direct_path)
    assert set(ours) == set(ref)
    for name, r in ref.items():
        o = ours[name]
        assert (o.shape, o.dtype, o.is_virtual) == (r.shape, r.dtype, r.is_virtual), name
        assert dict(o.attrs).keys() == dict(r.attrs).keys(), name
        if o.dtype.kind == "O":
            assert list(o[()]) == list(r[()]), name
        else:
            np.testing.assert_array_equal(o[()], r[()], err_msg=name)   # NaN == NaN here


def mapping_counts(path: Path) -> tuple[dict[str, int], dict[str, list[str]]]:
    """({virtual dataset: mappings}, {top dataset: file names its mappings name})."""
    counts: dict[str, int] = {}
    names: dict[str, list[str]] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.is_virtual:
                counts[name] = obj.id.get_create_plist().get_virtual_count()
                names[name] = sorted({vs.file_name for vs in obj.virtual_sources()})
        f.visititems(visit)
    return counts, names


@pytest.mark.parametrize("layout", ["trains", "frames"])
@pytest.mark.parametrize("name", ["agipd-corr", "agipd-raw"])
def test_nested_view_reads_as_direct(name: str, layout: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    det = make(tmp_path / "run", name)
    direct = to_vds(det, tmp_path / "direct.h5", layout=layout, mapping="compact")
    monkeypatch.setattr(nested, "NEST_MAPPINGS", LIMIT)
    out = to_vds(det, tmp_path / "nested.h5", layout=layout, mapping="compact")
    assert_same_file(out, direct)
    counts, names = mapping_counts(out)
    with h5py.File(out, "r") as f:
        record = json.loads(f.attrs["detstack_record"])
        blocked = {k: v for k, v in record["mappings"].items() if "nested_blocks" in v}
        assert blocked, record["mappings"]      # the pixel keys at least were cut
        for key, entry in blocked.items():
            blocks = [n for n in counts if n.startswith(f"_blocks/{key}/")]
            assert counts[key] == entry["nested_blocks"] == len(blocks) > 1
            assert names[key] == ["."]
            assert entry["count"] == sum(counts[b] for b in blocks) + len(blocks)
            assert all(counts[b] <= LIMIT for b in blocks)
            assert all(names[b] and "." not in names[b] for b in blocks)
    for n, c in counts.items():     # more mappings only in datasets mapping their blocks
        assert c <= LIMIT or names[n] == ["."], (n, c)
    vdet = type(det)(open_view(out), raw=RUNS[name]["raw"])
    for key in ("image.data", "image.cellId"):
        xr.testing.assert_identical(vdet.get_array(key), det.get_array(key))


@pytest.mark.parametrize("name", ["agipd-corr", "jungfrau"])
def test_nested_cxi_reads_as_direct(name: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames-first datasets are cut along frames (JUNGFRAU: whole trains of cells),
    the by_module ones along their frame or train axis."""
    det = make(tmp_path / "run", name)
    direct = to_cxi(det, tmp_path / "direct.cxi")
    monkeypatch.setattr(nested, "NEST_MAPPINGS", LIMIT)
    out = to_cxi(det, tmp_path / "nested.cxi")
    assert_same_file(out, direct)
    counts, _ = mapping_counts(out)
    data = "entry_1/instrument_1/detector_1/data"
    assert counts[data] > 1 and f"_blocks/{data}/000000000" in counts
    assert all(n <= LIMIT for p, n in counts.items() if p.startswith("_blocks/"))
    with h5py.File(out, "r") as f:
        maps = json.loads(f.attrs["detstack_record"])["cxi"]["mappings"]
    assert maps[data] == sum(n for p, n in counts.items()
                             if p.startswith(f"_blocks/{data}/")) + counts[data]


def test_short_runs_keep_their_mappings_in_the_dataset(tmp_path: Path) -> None:
    det = make(tmp_path / "run", "agipd-corr")
    counts, names = mapping_counts(to_vds(det, tmp_path / "v.h5", layout="frames"))
    assert not any(n.startswith("_blocks/") for n in counts)
    assert all("." not in n for n in names.values())
