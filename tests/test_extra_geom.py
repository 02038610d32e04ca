"""The README recipe: one frame assembled by extra_geom from ``get_array``, from a zarr
store read with plain xarray, and from the virtual CXI file gives the same image."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import xarray as xr
from extra_geom import AGIPD_1MGeometry, LPD_1MGeometry

import detstack
from detstack import convert, synth

# quadrant corner positions (mm) as EuXFEL's example notebooks give them
AGIPD_QUADS = [(-525, 625), (-550, -10), (520, -160), (542.5, 475)]
LPD_QUADS = [(11.4, 299), (-11.5, 8), (254.5, -16), (278.5, 275)]


@pytest.fixture(scope="module", params=["AGIPD1M", "LPD1M"])
def views(request, tmp_path_factory):
    """A corrected run with one module missing, its zarr store and CXI file."""
    kind = request.param
    folder = tmp_path_factory.mktemp(kind)
    modules = [m for m in range(16) if m != 13]
    synth.write_run(folder / "run", kind, raw=False, n_trains=3, frames_per_train=4,
                    modules=modules, with_control=False, missing_trains={2: [10001]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = getattr(detstack, kind)(detstack.RunDirectory(folder / "run"))
    convert.to_zarr(det, folder / "run.zarr")
    convert.to_cxi(det, folder / "run.cxi")
    if kind == "AGIPD1M":
        geom = AGIPD_1MGeometry.from_quad_positions(quad_pos=AGIPD_QUADS)
    else:
        geom = LPD_1MGeometry.from_quad_positions(quad_pos=LPD_QUADS)
    return det, folder, geom


def test_same_image_from_every_form(views):
    det, folder, geom = views
    train, pulse = 1, 2                       # module 2 misses this train: NaN there

    # 1. the reader API: module_gaps puts each module at its slot (missing ones NaN)
    frames = det.select_trains(np.s_[train:train + 1])["image.data"].ndarray(module_gaps=True)
    from_api = frames[:, pulse]
    # 2. a zarr store with plain xarray: the module axis already has every slot
    from_zarr = xr.open_zarr(folder / "run.zarr")["image.data"][:, train, pulse].values
    # 3. the CXI file (frames first): frame index = frames before this train + pulse
    index = int(det.frame_map.train_counts()[:train].sum()) + pulse
    with h5py.File(folder / "run.cxi") as f:
        from_cxi = f["entry_1/instrument_1/detector_1/data"][index]

    images = [geom.position_modules(np.asarray(a).squeeze())[0]
              for a in (from_api, from_zarr, from_cxi)]
    assert images[0].ndim == 2 and images[0].shape[0] > 1000
    for img in images[1:]:
        np.testing.assert_array_equal(img, images[0])
    assert np.isfinite(images[0]).any()
    # the missing module (13) and the module missing this train (2) are NaN
    assert np.isnan(from_api[[2, 13]]).all() and np.isfinite(from_api[[0, 14]]).all()


def test_get_array_frame_feeds_extra_geom(views):
    det, _, geom = views
    arr = det.get_array("image.data", pulses=np.s_[:1]).isel(train=0, pulse=0)
    full = np.full((16,) + arr.shape[1:], np.nan, np.float32)
    full[[det.module_slot(m) for m in arr.module.values]] = arr.values
    img, centre = geom.position_modules(full)
    frames = det.select_trains(np.s_[:1])["image.data"].ndarray(module_gaps=True)[:, 0]
    np.testing.assert_array_equal(img, geom.position_modules(frames)[0])
    assert len(centre) == 2
