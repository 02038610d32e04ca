"""Comparison helpers for the differential tests of the detector reader API.

EXtra-data is the oracle: each helper asserts that a detstack result equals the
reference result in values, dtype, dims and coordinates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr


def ed_open(path: str | os.PathLike[str], *, inc_suspect_trains: bool = True) -> Any:
    """Open a run folder or a file with EXtra-data, without writing a map cache."""
    from extra_data import H5File
    from extra_data.reader import DataCollection

    path = Path(path)
    if path.is_file():
        return H5File(str(path), inc_suspect_trains=inc_suspect_trains)
    names = sorted(n for n in os.listdir(path) if n.endswith(".h5"))
    return DataCollection.from_paths([str(path / n) for n in names], is_single_run=True,
                                     inc_suspect_trains=inc_suspect_trains, parallelize=False)


def ds_open(path: str | os.PathLike[str], *, inc_suspect_trains: bool = True) -> Any:
    """Open a run folder or a file with detstack."""
    import detstack

    if Path(path).is_file():
        return detstack.H5File(path, inc_suspect_trains=inc_suspect_trains)
    return detstack.RunDirectory(path, inc_suspect_trains=inc_suspect_trains)


def assert_same_values(ours: Any, ref: Any) -> None:
    """Same shape, dtype and values (NaN equal to NaN)."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    nan_ok = ours.dtype.kind in "fc"
    if not np.array_equal(ours, ref, equal_nan=nan_ok):  # fast path; details if not equal
        np.testing.assert_array_equal(ours, ref, strict=True)


def _index_levels(arr: xr.DataArray, dim: str) -> dict[str, np.ndarray] | None:
    idx = arr.indexes.get(dim)
    if isinstance(idx, pd.MultiIndex):
        return {n: np.asarray(idx.get_level_values(n)) for n in idx.names}
    return None


def assert_same_coords(ours: xr.DataArray, ref: xr.DataArray) -> None:
    assert set(ours.coords) == set(ref.coords), (sorted(ours.coords), sorted(ref.coords))
    for name in ref.coords:
        o, r = ours.coords[name], ref.coords[name]
        assert o.dims == r.dims, (name, o.dims, r.dims)
        levels_o, levels_r = _index_levels(ours, name), _index_levels(ref, name)
        if levels_r is not None:
            assert levels_o is not None, f"{name} should be a MultiIndex"
            assert list(levels_o) == list(levels_r), (name, list(levels_o), list(levels_r))
            for lev in levels_r:
                assert_same_values(levels_o[lev], levels_r[lev])
        else:
            assert levels_o is None, f"{name} should not be a MultiIndex"
            assert_same_values(o.values, r.values)


def assert_same_xarray(ours: xr.DataArray, ref: xr.DataArray, *, values: bool = True) -> None:
    """Same dims, shape, dtype, coordinates (incl. MultiIndex levels) and values."""
    assert isinstance(ours, xr.DataArray), type(ours)
    assert ours.dims == ref.dims, (ours.dims, ref.dims)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    assert_same_coords(ours, ref)
    if values:
        assert_same_values(ours.values, ref.values)


def raises_like(ours_call: Any, ref_call: Any) -> BaseException:
    """Both calls fail, ours with the builtin exception class the reference raises.

    The reference's own classes (e.g. its SourceNameError, a KeyError) are matched by
    their nearest builtin base class. Returns our exception.
    """
    try:
        ref_call()
    except Exception as exc:  # noqa: BLE001 - any failure of the oracle is what we learn
        ref_exc = exc
    else:
        raise AssertionError("the reference did not raise")
    builtin = next(c for c in type(ref_exc).__mro__ if c.__module__ == "builtins")
    try:
        ours_call()
    except builtin as exc:
        return exc
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"we raised {exc!r}; the reference raised {ref_exc!r}") from exc
    raise AssertionError(f"we did not raise; the reference raised {ref_exc!r}")


def det_pair(path: str | os.PathLike[str], cls: str, *, trains: Any = None,
             inc_suspect_trains: bool = True, **kwargs: Any) -> tuple[Any, Any]:
    """(ours, reference) detector objects of class ``cls`` on the same files."""
    import warnings

    from extra_data import components

    import detstack

    ours_run = ds_open(path, inc_suspect_trains=inc_suspect_trains)
    ref_run = ed_open(path, inc_suspect_trains=inc_suspect_trains)
    if trains is not None:
        ours_run = ours_run.select_trains(to_ours(trains))
        ref_run = ref_run.select_trains(trains)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return (getattr(detstack, cls)(ours_run, **kwargs),
                getattr(components, cls)(ref_run, **kwargs))


def to_ours(sel: Any) -> Any:
    """EXtra-data's by_id/by_index objects as detstack's; anything else unchanged."""
    import detstack

    name = type(sel).__name__
    if name == "by_id" and type(sel).__module__.startswith("extra_data"):
        return detstack.by_id[sel.value]
    if name == "by_index" and type(sel).__module__.startswith("extra_data"):
        return detstack.by_index[sel.value]
    return sel


def compare(ours_call: Any, ref_call: Any, *, errors: bool = False) -> Any:
    """Run both; equal results (arrays or DataArrays). With ``errors=True`` the reference
    may fail instead, and then ours must fail the same way (the exception is returned)."""
    try:
        ref = ref_call()
    except Exception as exc:  # noqa: BLE001
        if not errors:
            raise AssertionError(f"the reference failed: {exc!r}") from exc
        return raises_like(ours_call, ref_call)
    ours = ours_call()
    if isinstance(ref, xr.DataArray):
        assert_same_xarray(ours, ref)
    else:
        assert_same_values(ours, ref)
    return ours
