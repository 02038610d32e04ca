"""The main public API documents every parameter, what it returns and what it raises."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import detstack
from detstack import convert

API = [
    detstack.AGIPD1M, detstack.AGIPD500K, detstack.DSSC1M, detstack.LPD1M,
    detstack.JUNGFRAU,
    detstack.AGIPD1M.get_array, detstack.AGIPD1M.get_dask_array, detstack.AGIPD1M.trains,
    detstack.AGIPD1M.masked_data, detstack.AGIPD1M.select_trains,
    detstack.AGIPD1M.split_trains, detstack.AGIPD1M.data_availability,
    detstack.AGIPD1M.write_virtual_cxi, detstack.AGIPD1M.write_frames,
    detstack.JUNGFRAU.get_array, detstack.JUNGFRAU.get_dask_array, detstack.JUNGFRAU.trains,
    detstack.RunDirectory, detstack.H5File, detstack.open_view,
    detstack.identify_multimod_detectors, detstack.stack_detector_data,
    convert.to_vds, convert.to_cxi, convert.to_manifest, convert.to_zarr,
    convert.materialize, convert.write_frames,
]

NOTHING_RAISED = {detstack.AGIPD1M.data_availability}


@pytest.mark.parametrize("obj", API, ids=lambda o: o.__qualname__)
def test_numpy_docstring_covers_the_signature(obj: object) -> None:
    doc = inspect.getdoc(obj) or ""
    target = obj.__init__ if inspect.isclass(obj) else obj  # type: ignore[misc]
    params = [p for p in inspect.signature(target).parameters.values() if p.name != "self"]
    assert "Parameters\n----------" in doc or not params, obj
    for p in params:
        name = f"**{p.name}" if p.kind is p.VAR_KEYWORD else p.name
        assert f"\n{name} :" in f"\n{doc}" or f"\n{name}\n" in f"\n{doc}\n", (obj, name)
    if not inspect.isclass(obj) and inspect.signature(obj).return_annotation not in (
            None, "None"):
        assert "Returns\n-------" in doc or "Yields\n------" in doc, obj
    assert "Raises\n------" in doc or obj in NOTHING_RAISED, obj


def test_package_ships_py_typed() -> None:
    assert (Path(detstack.__file__).parent / "py.typed").is_file()
