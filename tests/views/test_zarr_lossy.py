"""Opt-in lossy zarr stores of corrected data: the stated error bound holds on realistic
frames, plain zarr-python / xarray / tensorstore read them, and so do detstack's readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import xarray as xr
import zarr
from view_oracle import expected_array
from zarr_store_helpers import make_run, open_det, validate_record, view_det

import detstack
from detstack import synth
from detstack.cli import main as cli_main
from detstack.convert import to_zarr
from detstack.convert.plan import ViewPlan
from detstack.convert.zarr.lossy import error_bound, parse_lossy, within_bound
from detstack.store import open_view

E = synth.photon_energy("AGIPD500K")
NAME = "AGIPD500K-corr"      # corrected float32 keV, modules missing trains (NaN gaps)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("lossy") / "run", NAME)


def stored_bytes(url: Path, key: str) -> int:
    return sum(p.stat().st_size for p in (url / key).rglob("*") if p.is_file())


@pytest.mark.parametrize(("spec", "kind", "bound"), [(f"photons:{E}", "absolute", E / 2),
                                                     ("bits:7", "relative", 2.0**-8)])
def test_bound_holds_and_plain_readers_read(run: Path, tmp_path: Path, spec: str, kind: str,
                                            bound: float) -> None:
    det = open_det(run, NAME)
    plan = ViewPlan(det)
    url = tmp_path / "lossy.zarr"
    to_zarr(det, url, lossy=spec)
    want = expected_array(plan, "image.data")

    # the record and the array attributes state mode, parameters and bound
    record = dict(open_view(url).record)
    validate_record(record)
    assert error_bound(record, "image.data") == (kind, bound)
    assert error_bound(record, "image.mask") is None      # integer keys stay lossless
    arr = zarr.open_group(str(url), mode="r")["image.data"]
    attrs = arr.attrs["detstack_lossy"]
    assert attrs == record["keys"]["image.data"]["lossy"]
    assert attrs["mode"] == spec.split(":")[0] and attrs["error_bound"]["bound"] == bound

    # plain zarr-python, xarray and tensorstore: no detstack code
    got = arr[...]
    assert np.isnan(want).any() and np.array_equal(np.isnan(got), np.isnan(want))
    assert within_bound(want, got, kind, bound).all()
    assert not np.array_equal(np.nan_to_num(got), np.nan_to_num(want))   # it is lossy
    np.testing.assert_array_equal(np.asarray(xr.open_zarr(url)["image.data"]), got)
    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file",
                                                 "path": str(url / "image.data")}}).result()
    np.testing.assert_array_equal(t.read().result(), got)
    np.testing.assert_array_equal(arr_mask := zarr.open_group(str(url))["image.mask"][...],
                                  expected_array(plan, "image.mask"))
    assert arr_mask.dtype == np.uint32

    # detstack's reader API on the store
    ours = view_det(det, str(url)).get_array("image.data").values
    ref = det.get_array("image.data").values
    assert within_bound(ref, ours, kind, bound).all()
    if kind == "absolute":      # values are whole photons
        n = ours[~np.isnan(ours)] / E
        np.testing.assert_allclose(n, np.round(n), rtol=1e-6, atol=1e-5)


def test_photon_rounding_compresses_8x(tmp_path: Path) -> None:
    run = tmp_path / "run"
    synth.write_run(run, "AGIPD1M", raw=False, modules=[4], n_trains=8, frames_per_train=8,
                    with_control=False)
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=False)
    to_zarr(det, tmp_path / "lossless.zarr", keys=["image.data"])
    to_zarr(det, tmp_path / "photons.zarr", keys=["image.data"],
            lossy=f"photons:{synth.photon_energy('AGIPD1M')}")
    raw_bytes = 8 * 8 * 512 * 128 * 4
    lossless = raw_bytes / stored_bytes(tmp_path / "lossless.zarr", "image.data")
    photons = raw_bytes / stored_bytes(tmp_path / "photons.zarr", "image.data")
    assert lossless < 1.3 and photons >= 8


def test_bad_modes_are_refused(run: Path, tmp_path: Path) -> None:
    det = open_det(run, NAME)
    for bad in ("photons:0", "photons:x", "bits:0", "bits:30", "bits:7.5", "round:3", 3):
        with pytest.raises((ValueError, TypeError), match="lossy"):
            to_zarr(det, tmp_path / "bad.zarr", lossy=bad)
    assert not (tmp_path / "bad.zarr").exists()
    raw_run = make_run(tmp_path / "raw", "AGIPD1M-small")
    with pytest.raises(ValueError, match="float pixel data"):
        to_zarr(open_det(raw_run, "AGIPD1M-small"), tmp_path / "raw.zarr", lossy="bits:7")
    assert parse_lossy({"mode": "bits", "keepbits": 9}).keepbits == 9


def test_cli_lossy(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.zarr"
    assert cli_main(["convert", str(run), str(out), "--to", "zarr", "--corrected",
                     "--lossy", "bits:10"]) == 0
    meta = json.loads((out / "image.data" / "zarr.json").read_text())
    assert meta["attributes"]["detstack_lossy"]["keepbits"] == 10
    assert cli_main(["convert", str(run), str(tmp_path / "v.h5"), "--to", "vds",
                     "--lossy", "bits:10"]) != 0
