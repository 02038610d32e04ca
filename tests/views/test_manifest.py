"""Zarr manifests: references that plain xarray/zarr and detstack read exactly like the run.

The oracle is the run itself: detstack's reader API on the run (``get_array``,
``trains``) and, for plain-tool reads, every key's view array built from the run with
h5py through the view contract (``ViewPlan.blocks``).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import h5py
import jsonschema
import numpy as np
import pytest
import xarray as xr
import zarr
from fsspec.implementations.reference import ReferenceNotReachable
from view_oracle import expected_array
from zarr_store_helpers import s3_server  # noqa: F401 - fixture

import detstack
from detstack import synth
from detstack.cli import main as cli_main
from detstack.convert import to_manifest
from detstack.convert.manifest import UnsupportedKeyError
from detstack.convert.plan import ViewPlan
from detstack.errors import DetstackError, FileFormatError
from detstack.store import open_view
from detstack.store.manifest import UnsafeReferenceError, manifest_store

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas/view-record.schema.json")
                    .read_text())

# name -> (write_run arguments, detector-class arguments). Every run has gaps (absent
# modules, a module missing trains, an empty train), varying frame counts and, where
# trains_per_file is set, several sequence files per module.
RUNS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "agipd-raw-chunked": (dict(kind="AGIPD1M", raw=True, n_trains=5,
                               frames_per_train=[4, 0, 6, 3, 5], modules=[0, 3, 9],
                               missing_trains={3: [10002]}, empty_trains={9: [10003]},
                               trains_per_file=2), dict(raw=True)),
    "agipd500k-corr-deflate": (dict(kind="AGIPD500K", raw=False, n_trains=4,
                                    frames_per_train=[3, 5, 2, 4], modules=[1, 6],
                                    missing_trains={6: [10001, 10002]}, layout="deflate",
                                    trains_per_file=3), dict(raw=False)),
    "dssc-raw-shuffle": (dict(kind="DSSC1M", raw=True, n_trains=4, frames_per_train=[2, 5, 0, 3],
                              modules=[0, 15], missing_trains={15: [10003]},
                              layout="shuffle-deflate", trains_per_file=2), dict(raw=True)),
    "lpd-corr-contiguous": (dict(kind="LPD1M", raw=False, n_trains=4, frames_per_train=[3, 4, 2, 1],
                                 modules=[2, 5], missing_trains={5: [10000]}, layout="contiguous",
                                 trains_per_file=3), dict(raw=False)),
    "lpd-raw-gain-multiframe": (dict(kind="LPD1M", raw=True, n_trains=3,
                                     frames_per_train=[2, 1, 3], parallel_gain=True,
                                     modules=[0, 7], frames_per_chunk=4, trains_per_file=2),
                                dict(raw=True, parallel_gain=True)),
    "jungfrau-shuffle": (dict(kind="JUNGFRAU", raw=True, n_trains=4, n_modules=4, n_cells=2,
                              modules=[1, 2, 4], missing_trains={2: [10001]},
                              empty_trains={4: [10002]}, layout="shuffle-deflate",
                              trains_per_file=2), {}),
    "jungfrau-contiguous": (dict(kind="JUNGFRAU", raw=True, n_trains=3, n_modules=2, n_cells=3,
                                 modules=[2], layout="contiguous"), {}),
}


def write(folder: Path, name: str, **extra: Any) -> Path:
    kwargs, _ = RUNS[name]
    synth.write_run(folder, **{**kwargs, **extra}, overwrite=True)
    return folder


def open_det(source: Any, name: str) -> Any:
    kwargs, det_kwargs = RUNS[name]
    if not isinstance(source, detstack.DataCollection):
        source = detstack.RunDirectory(str(source))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(detstack, kwargs["kind"])(source, **det_kwargs)


def plain_options(manifest: Path) -> dict[str, Any]:
    """What a user of plain xarray/zarr passes (the compact form's template, if any)."""
    so: dict[str, Any] = {"fo": str(manifest), "remote_protocol": "file"}
    if manifest.suffix == ".json" and "templates" in json.loads(manifest.read_text()):
        so["template_overrides"] = {"base": str(manifest.parent)}
    return so


def assert_same_reads(det: Any, view_det: Any) -> None:
    kw = {"unstack_pulses": False} if getattr(det, "parallel_gain", False) else {}
    main = det.kind.main_key
    xr.testing.assert_identical(det.get_array(main, **kw), view_det.get_array(main, **kw))
    pairs = zip(det.trains(require_all=False), view_det.trains(require_all=False), strict=True)
    for (t1, d1), (t2, d2) in pairs:
        assert t1 == t2 and d1.keys() == d2.keys()
        for k in d1:
            xr.testing.assert_identical(d1[k], d2[k])


@pytest.fixture(scope="module", params=sorted(RUNS))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[str, Path, dict[str, Path]]:
    """A run of each kind/layout with a JSON and a Parquet manifest in its folder."""
    folder = write(tmp_path_factory.mktemp(request.param), request.param)
    det = open_det(folder, request.param)
    return request.param, folder, {fmt: to_manifest(det, folder / f"view.{fmt}")
                                   for fmt in ("json", "parq")}


@pytest.mark.parametrize("fmt", ["json", "parq"])
def test_detstack_reads_manifest_like_run(built, fmt):
    name, folder, manifests = built
    det = open_det(folder, name)
    view = open_view(manifests[fmt])
    assert view.record["form"] == "manifest"
    jsonschema.validate(view.record, SCHEMA)
    assert_same_reads(det, open_det(view, name))


@pytest.mark.parametrize("fmt", ["json", "parq"])
def test_plain_xarray_and_zarr_read_every_key(built, fmt, monkeypatch):
    name, folder, manifests = built
    det = open_det(folder, name)
    plan = ViewPlan(det, squeeze=True)
    monkeypatch.chdir(folder)  # relative Parquet references resolve against the working dir
    so = plain_options(manifests[fmt])
    ds = xr.open_dataset("reference://", engine="zarr",
                         mask_and_scale=False, storage_options=so)
    group = zarr.open_group("reference://", storage_options=so, mode="r")
    for kp in plan.keys:
        want = expected_array(plan, kp.key)
        got = ds[kp.key]
        assert got.dtype == kp.dtype, kp.key          # uint16 stays uint16: no fill masking
        np.testing.assert_array_equal(got.values, want, err_msg=kp.key)
        if kp.key == det.kind.main_key:
            np.testing.assert_array_equal(group[kp.key][:], want)
    main = ds[det.kind.main_key]
    assert main.dims[:3] == ("module", "train", "pulse" if det.kind.xtdf else "cell")
    assert main.dims[-2:] == ("slow_scan", "fast_scan")
    np.testing.assert_array_equal(ds["train"].values, det.train_ids)
    np.testing.assert_array_equal(ds["module"].values,
                                  np.arange(det.n_modules) + det.kind.modno_base)
    group_name = det.kind.index_group
    np.testing.assert_array_equal(ds.coords[f"count.{group_name}"].values,
                                  plan.counts(group_name))
    assert det.kind.pulse_key in ds.coords
    assert ds.attrs["detstack_record"]["keys"].keys() == {kp.key for kp in plan.keys}


def test_absent_data_reads_as_fill_value(tmp_path):
    write(tmp_path, "agipd500k-corr-deflate")
    det = open_det(tmp_path, "agipd500k-corr-deflate")
    out = to_manifest(det, tmp_path / "v.json")
    ds = xr.open_dataset("reference://", engine="zarr",
                         mask_and_scale=False, storage_options=plain_options(out))
    data = ds["image.data"]
    assert data.dtype == np.float32
    assert np.isnan(data.sel(module=0).values).all()                      # absent module
    assert np.isnan(data.sel(module=6, train=10001).values).all()         # missing train
    assert np.isnan(data.sel(module=1, train=10002).values[2:]).all()     # beyond 2 frames
    assert not np.isnan(data.sel(module=1, train=10002).values[:2]).any()
    refs = [v for k, v in json.loads(out.read_text())["refs"].items()
            if k.startswith("image.data/") and isinstance(v, list)]
    into_run = [r for r in refs if not r[0].endswith(".arrays.h5")]
    assert len(into_run) == det.frame_map.counts.sum()  # one reference per stored frame
    assert len(refs) == len(into_run) + 1   # and the last chunk (absent): fill values


def test_refuses_compressed_multiframe_chunks(tmp_path):
    write(tmp_path, "agipd-raw-chunked", layout="deflate", frames_per_chunk=4)
    det = open_det(tmp_path, "agipd-raw-chunked")
    with pytest.raises(UnsupportedKeyError, match="to_zarr") as err:
        to_manifest(det, tmp_path / "v.json")
    assert err.value.key == "image.data" and "4 rows per compressed chunk" in str(err.value)
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob(".*partial"))
    with pytest.warns(UserWarning, match="image.data"):
        out = to_manifest(det, tmp_path / "v.json", on_unsupported="skip")
    ds = xr.open_dataset("reference://", engine="zarr",
                         mask_and_scale=False, storage_options=plain_options(out))
    assert "image.data" not in ds and "image.pulseId" in ds.coords
    record = ds.attrs["detstack_record"]
    assert "image.data" in record["manifest"]["skipped"] and "image.data" not in record["keys"]
    jsonschema.validate(record, SCHEMA)
    view = open_view(out)
    assert "image.data" not in view.keys_for_source(record["detector"]["modules"]["0"]["source"])


def test_uncompressed_multiframe_chunks_are_split_exactly(tmp_path):
    write(tmp_path, "agipd-raw-chunked", frames_per_chunk=4)
    det = open_det(tmp_path, "agipd-raw-chunked")
    assert_same_reads(det, open_det(open_view(to_manifest(det, tmp_path / "v.json")),
                                    "agipd-raw-chunked"))


def test_fletcher32_shuffle_deflate_chain(tmp_path):
    """An HDF5 pipeline shuffle -> deflate -> fletcher32 becomes the same zarr codec chain."""
    write(tmp_path, "dssc-raw-shuffle", layout="chunked")
    for path in tmp_path.glob("RAW-*-DSSC*.h5"):
        with h5py.File(path, "r+") as f:
            name = next(n for n in _dataset_names(f) if n.endswith("image/data"))
            data, attrs = f[name][()], dict(f[name].attrs)
            del f[name]
            ds = f.create_dataset(name, data=data, chunks=(1, *data.shape[1:]), shuffle=True,
                                  compression="gzip", compression_opts=3, fletcher32=True)
            ds.attrs.update(attrs)
    det = open_det(tmp_path, "dssc-raw-shuffle")
    out = to_manifest(det, tmp_path / "v.json")
    meta = json.loads(json.loads(out.read_text())["refs"]["image.data/.zarray"])
    assert [c["id"] for c in meta["filters"]] == ["shuffle", "zlib", "fletcher32"]
    assert meta["compressor"] is None
    assert_same_reads(det, open_det(open_view(out), "dssc-raw-shuffle"))


def _dataset_names(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


def test_refuses_heterogeneous_filters(tmp_path):
    a, b = write(tmp_path / "a", "dssc-raw-shuffle"), write(tmp_path / "b", "dssc-raw-shuffle",
                                                           layout="chunked")
    for f in b.glob("RAW-*-DSSC15-*.h5"):
        shutil.copy(f, a / f.name)
    det = open_det(a, "dssc-raw-shuffle")
    with pytest.raises(UnsupportedKeyError, match="differ in chunk shape or HDF5 filters"):
        to_manifest(det, a / "v.json")


def test_refuses_chunks_that_skip_filters(tmp_path):
    write(tmp_path, "dssc-raw-shuffle")
    det = open_det(tmp_path, "dssc-raw-shuffle")
    plan = ViewPlan(det, ["image.data"], squeeze=True)
    kp_path = next(plan.blocks(plan.key("image.data")))
    for f in det.data.files:
        f.close()
    with h5py.File(kp_path.file, "r+") as f:
        ds = f[kp_path.dataset]
        frame = ds[kp_path.src_start]
        # the same values stored without shuffle/deflate: h5py still reads them right
        ds.id.write_direct_chunk((kp_path.src_start, 0, 0, 0), frame.tobytes(), filter_mask=3)
    with h5py.File(kp_path.file, "r") as f:
        np.testing.assert_array_equal(f[kp_path.dataset][kp_path.src_start], frame)
    det = open_det(tmp_path, "dssc-raw-shuffle")
    with pytest.raises(UnsupportedKeyError, match="filter_mask"):
        to_manifest(det, tmp_path / "v.json")


def test_unallocated_chunks(mock_data):
    """EXtra-data's mock runs allocate no pixel chunks: uint16 reads its fill value 0
    exactly; float32 rows would read HDF5's 0.0 where the view reads NaN, so refused."""
    raw = detstack.LPD1M(detstack.RunDirectory(mock_data("lpd_mini_gap")), raw=True)
    out = Path(mock_data("lpd_mini_gap")).parent / "lpd_mini_gap_manifest.json"
    try:
        to_manifest(raw, out, overwrite=True)
        xr.testing.assert_identical(raw.get_array("image.data"),
                                    detstack.LPD1M(open_view(out), raw=True)
                                    .get_array("image.data"))
    finally:
        out.unlink(missing_ok=True)
    proc = detstack.AGIPD1M(detstack.RunDirectory(mock_data("spb_proc", "1.2")))
    with pytest.raises(UnsupportedKeyError, match="not allocated"):
        to_manifest(proc, Path(mock_data("spb_proc", "1.2")) / "never.json")


def test_refuses_views_as_sources(tmp_path):
    write(tmp_path, "jungfrau-contiguous")
    out = to_manifest(open_det(tmp_path, "jungfrau-contiguous"), tmp_path / "v.json")
    with pytest.raises(DetstackError, match="build manifests from the run's own files"):
        to_manifest(open_det(open_view(out), "jungfrau-contiguous"), tmp_path / "w.json")


@pytest.mark.parametrize("fmt", ["json", "parq"])
def test_moved_run_folder_with_manifest_still_reads(tmp_path, fmt, monkeypatch):
    """detstack follows a run moved with its manifest (the record's relative names);
    plain tools read the references' absolute paths, so they use detstack's store, or
    the compact form's template."""
    name = "jungfrau-shuffle"
    before = write(tmp_path / "before", name)
    det = open_det(before, name)
    expected = det.get_array("data.adc")
    to_manifest(det, before / f"view.{fmt}")
    to_manifest(det, before / f"compact.{fmt}", compact=True)
    after = tmp_path / "moved" / "run"
    after.parent.mkdir()
    shutil.move(before, after)
    view_det = open_det(open_view(after / f"view.{fmt}"), name)
    xr.testing.assert_identical(expected, view_det.get_array("data.adc"))
    want = expected_array(ViewPlan(open_det(after, name), squeeze=True), "data.adc")
    ds = xr.open_zarr(manifest_store(after / f"view.{fmt}"), zarr_format=2,
                      mask_and_scale=False)
    np.testing.assert_array_equal(ds["data.adc"].values, want)
    monkeypatch.chdir(after)   # the compact form's relative Parquet paths need this
    ds = xr.open_dataset("reference://", engine="zarr", mask_and_scale=False,
                         storage_options=plain_options(after / f"compact.{fmt}"))
    np.testing.assert_array_equal(ds["data.adc"].values, want)


def test_manifest_outside_run_opens_anywhere(tmp_path, monkeypatch):
    run = write(tmp_path / "run", "jungfrau-contiguous")
    det = open_det(run, "jungfrau-contiguous")
    expected = det.get_array("data.adc")
    for name, rel in (("v.json", True), ("a.json", False), ("v.parq", True), ("a.parq", False)):
        out = to_manifest(det, tmp_path / "views" / name, relative=rel)
        xr.testing.assert_identical(expected,
                                    open_det(open_view(out), "jungfrau-contiguous")
                                    .get_array("data.adc"))
        assert cli_main(["verify", str(out)]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)   # plain xarray, no template override, any working folder
    ds = xr.open_dataset("reference://", engine="zarr", storage_options={
        "fo": str(tmp_path / "views" / "v.json"), "remote_protocol": "file"})
    np.testing.assert_array_equal(ds["data.adc"].values,
                                  expected_array(ViewPlan(det), "data.adc"))


@pytest.mark.parametrize("target", ["../../../../etc/passwd", "/etc/passwd",
                                    "file:///etc/hostname", "s3://bucket/x.h5"])
def test_tampered_references_are_refused(tmp_path, target):
    run = write(tmp_path, "jungfrau-contiguous")
    out = to_manifest(open_det(run, "jungfrau-contiguous"), run / "v.json")
    doc = json.loads(out.read_text())
    key = next(k for k, v in doc["refs"].items() if isinstance(v, list))
    doc["refs"][key][0] = target if "://" in target or target.startswith("/") \
        else "{{base}}/" + target
    out.write_text(json.dumps(doc))
    with pytest.raises(UnsafeReferenceError, match="outside its own folder|not one of the"):
        open_view(out)
    with pytest.raises(UnsafeReferenceError):
        zarr.open_group(manifest_store(out), mode="r")


def test_tampered_parquet_reference_is_refused_on_read(tmp_path):
    import fastparquet
    run = write(tmp_path, "jungfrau-contiguous")
    out = to_manifest(open_det(run, "jungfrau-contiguous"), run / "v.parq")
    rec = out / "data.adc" / "refs.0.parq"
    frame = fastparquet.ParquetFile(str(rec)).to_pandas()
    frame.loc[frame["path"].notna(), "path"] = "../../../etc/passwd"
    fastparquet.write(str(rec), frame, object_encoding={"path": "utf8"}, has_nulls=["path"],
                      write_index=False)
    view = open_view(out)
    with pytest.raises(UnsafeReferenceError):
        view._keepalive[1]["data.adc"][1, 0]


def test_changed_or_missing_sources(tmp_path):
    run = write(tmp_path, "jungfrau-contiguous")
    out = to_manifest(open_det(run, "jungfrau-contiguous"), run / "v.json")
    source = next(run.glob("RAW-*JNGFR02*.h5"))
    os.utime(source, (1e9, 1e9))      # touched, content unchanged: still the same file
    open_view(out)
    with h5py.File(source, "r+") as f:  # rewritten in place: same size, other bytes
        f.attrs["edited"] = 1
    with pytest.raises(FileFormatError, match="missing or changed"):
        open_view(out)
    view = open_view(out, check_sources=False)
    with pytest.raises(FileFormatError, match="different content|bytes"):  # reads refused
        open_det(view, "jungfrau-contiguous").get_array("data.adc")
    source.unlink()
    view = open_view(out, check_sources=False)
    with pytest.raises(ReferenceNotReachable, match="RAW-R0001-JNGFR02"):  # never fill
        open_det(view, "jungfrau-contiguous").get_array("data.adc")


def test_absolute_paths_and_url_prefix(tmp_path):
    run = write(tmp_path, "dssc-raw-shuffle")
    det = open_det(run, "dssc-raw-shuffle")
    out = to_manifest(det, run / "abs.json", relative=False)
    doc = json.loads(out.read_text())
    assert "templates" not in doc
    refs = [v[0] for v in doc["refs"].values() if isinstance(v, list)]
    assert {Path(r).parent for r in refs} == {run.resolve()}   # absolute, sidecar beside
    record = json.loads(doc["refs"][".zattrs"])["detstack_record"]
    assert all(Path(f["path"]).is_absolute() for f in record["source_files"])
    assert_same_reads(det, open_det(open_view(out), "dssc-raw-shuffle"))
    parq = to_manifest(det, run / "abs.parq", relative=False)
    assert_same_reads(det, open_det(open_view(parq), "dssc-raw-shuffle"))
    # URL prefix: full URLs (what VirtualiZarr and kerchunk read), the sidecar's too when
    # the manifest is written inside the run's folder (published with it)
    url = to_manifest(det, run / "url.json", url_prefix="s3://bucket/raw/r0001/")
    doc = json.loads(url.read_text())
    assert "templates" not in doc
    refs = {v[0] for v in doc["refs"].values() if isinstance(v, list)}
    assert "s3://bucket/raw/r0001/url.arrays.h5" in refs
    assert all(r.startswith("s3://bucket/raw/r0001/RAW-R0001-DSSC")
               for r in refs - {"s3://bucket/raw/r0001/url.arrays.h5"})
    record = json.loads(doc["refs"][".zattrs"])["detstack_record"]
    assert record["manifest"]["paths"] == "url"
    assert record["manifest"]["sidecar"]["path"] == "s3://bucket/raw/r0001/url.arrays.h5"
    assert all(f["path"].startswith("s3://bucket/raw/r0001/") for f in record["source_files"])
    jsonschema.validate(record, SCHEMA)
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"   # outside the run's folder
    outside = to_manifest(det, elsewhere / "url.json", url_prefix="s3://bucket/raw/r0001/")
    side = json.loads(json.loads(outside.read_text())["refs"][".zattrs"])["detstack_record"]
    assert side["manifest"]["sidecar"]["path"] == (elsewhere.resolve() / "url.arrays.h5").as_uri()
    # the compact form: one template, which a reader may point at a local copy of the files
    url = to_manifest(det, run / "url-compact.json", url_prefix="s3://bucket/raw/r0001/",
                      compact=True)
    doc = json.loads(url.read_text())
    assert doc["templates"] == {"base": "s3://bucket/raw/r0001"}
    refs = [v for v in doc["refs"].values() if isinstance(v, list)]
    assert all(r[0].startswith("{{base}}/RAW-R0001-DSSC") for r in refs)
    # the template lets a reader point the same manifest at a local copy of the files
    so = {"fo": str(url), "remote_protocol": "file", "template_overrides": {"base": str(run)}}
    ds = xr.open_dataset("reference://", engine="zarr",
                         mask_and_scale=False, storage_options=so)
    np.testing.assert_array_equal(ds["image.data"].values,
                                  expected_array(ViewPlan(det, squeeze=True), "image.data"))


def test_overwrite_and_atomic_replace(tmp_path):
    run = write(tmp_path, "jungfrau-contiguous")
    det = open_det(run, "jungfrau-contiguous")
    for name in ("v.json", "v.parq"):
        out = to_manifest(det, run / name)
        with pytest.raises(FileExistsError):
            to_manifest(det, out)
        to_manifest(det, out, overwrite=True, keys=["data.adc"])
        assert list(open_view(out).record["keys"]) == ["data.adc"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="name it .json or .parq"):
        to_manifest(det, run / "v.txt")
    with pytest.raises(ValueError, match="on_unsupported"):
        to_manifest(det, run / "w.json", on_unsupported="ignore")


def test_not_a_manifest(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(FileFormatError):
        open_view(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("not json")
    with pytest.raises(FileFormatError):
        open_view(tmp_path / "y.json")


def test_cli_convert_to_manifest(tmp_path):
    run = write(tmp_path, "agipd-raw-chunked")
    assert cli_main(["convert", str(run), str(run / "cli.parq"), "--to", "manifest",
                     "--raw"]) == 0
    assert cli_main(["verify", str(run / "cli.parq")]) == 0
    det = open_det(run, "agipd-raw-chunked")
    assert_same_reads(det, open_det(open_view(run / "cli.parq"), "agipd-raw-chunked"))


# -- files on S3 (a moto server on localhost) ---------------------------------------------

@pytest.fixture(scope="module")
def s3_options(s3_server: dict[str, Any]) -> Any:  # noqa: F811 - fixture argument
    """The shared moto server (zarr_store_helpers), with this module's bucket 'runs'."""
    import boto3

    boto3.client("s3", endpoint_url=s3_server["endpoint_url"], aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1"
                 ).create_bucket(Bucket="runs")
    return s3_server


def test_run_and_manifests_on_s3(tmp_path, s3_options):
    import s3fs
    name = "agipd500k-corr-deflate"
    run = write(tmp_path / "run", name, n_trains=3, frames_per_train=[2, 0, 1],
                missing_trains={6: [10000]})  # small: moto is slow
    det = open_det(run, name)
    expected = det.get_array("image.data")
    to_manifest(det, run / "view.json")
    to_manifest(det, run / "view.parq")
    local = to_manifest(det, tmp_path / "remote.json", url_prefix="s3://runs/r0001/")
    fs = s3fs.S3FileSystem(**s3_options, skip_instance_cache=True)
    fs.put(str(run) + "/", "runs/r0001/", recursive=True)
    for fmt in ("json", "parq"):   # relative manifests uploaded with the run
        view = open_view(f"s3://runs/r0001/view.{fmt}", storage_options=s3_options)
        xr.testing.assert_identical(expected, open_det(view, name).get_array("image.data"))
    with pytest.raises(UnsafeReferenceError):  # a local manifest naming S3 data: opt in
        open_view(local, storage_options=s3_options)
    view = open_view(local, storage_options=s3_options, allowed_prefixes=["s3://runs/r0001"])
    xr.testing.assert_identical(expected, open_det(view, name).get_array("image.data"))
    # data on S3, the sidecar beside the local manifest: one file system per protocol
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
    from fsspec.implementations.local import LocalFileSystem
    so = {"fo": str(local), "fs": {
        "s3": {**s3_options, "asynchronous": True, "skip_instance_cache": True},
        "file": AsyncFileSystemWrapper(LocalFileSystem(), asynchronous=True)}}
    ds = xr.open_dataset("reference://", engine="zarr",
                         mask_and_scale=False, storage_options=so)
    np.testing.assert_array_equal(ds["image.data"].values,
                                  expected_array(ViewPlan(det, squeeze=True), "image.data"))


# -- Icechunk with virtual references ------------------------------------------------------

def test_icechunk_virtual_references(tmp_path):
    import icechunk

    from detstack.convert.icechunk import open_icechunk, to_icechunk
    name = "dssc-raw-shuffle"
    run = write(tmp_path / "run", name)
    det = open_det(run, name)
    repo = to_icechunk(det, tmp_path / "view.icechunk")
    with pytest.raises(FileExistsError):
        to_icechunk(det, tmp_path / "view.icechunk")
    record = dict(zarr.open_group(repo.readonly_session("main").store, mode="r")
                  .attrs["detstack_record"])
    jsonschema.validate(record, SCHEMA)
    prefix = record["icechunk"]["container_prefix"]
    assert prefix == run.resolve().as_uri() + "/"
    # a reader authorises the container, then plain xarray reads the virtual chunks
    storage = icechunk.local_filesystem_storage(str(tmp_path / "view.icechunk"))
    opened = icechunk.Repository.open(storage, authorize_virtual_chunk_access=
                                      icechunk.containers_credentials({prefix: None}))
    ds = xr.open_zarr(opened.readonly_session("main").store, consolidated=False)
    assert ds["image.data"].dtype == np.uint16
    np.testing.assert_array_equal(ds["image.data"].values,
                                  expected_array(ViewPlan(det, squeeze=True), "image.data"))
    unauthorised = icechunk.Repository.open(storage)
    group = zarr.open_group(unauthorised.readonly_session("main").store, mode="r")
    with pytest.raises(Exception, match="authorize"):
        group["image.data"][0, 0, 0]
    assert_same_reads(det, open_det(open_icechunk(tmp_path / "view.icechunk"), name))
    with open(next(run.glob("RAW-*.h5")), "ab") as fh:   # other content (a touch is no change)
        fh.write(b"\0")
    with pytest.raises(FileFormatError, match="missing or changed"):
        open_icechunk(tmp_path / "view.icechunk")
    open_icechunk(tmp_path / "view.icechunk", check_sources=False)


def test_parquet_records_split_across_modules(tmp_path, monkeypatch):
    """References stream into record files module by module; records that straddle two
    modules and records with holes read back exactly (tiny records: many of each)."""
    from detstack.convert.manifest import writer
    name = "agipd-raw-chunked"
    det = open_det(write(tmp_path / "run", name), name)
    monkeypatch.setattr(writer, "RECORD_SIZE", 7)
    out = to_manifest(det, tmp_path / "run" / "small.parq")
    n_records = len(list((out / "image.data").glob("refs.*.parq")))
    assert n_records > 2 * len(det.modules)
    monkeypatch.chdir(tmp_path / "run")
    ds = xr.open_dataset("reference://", engine="zarr", mask_and_scale=False,
                         storage_options=plain_options(out))
    plan = ViewPlan(det, squeeze=True)
    for kp in plan.keys:
        np.testing.assert_array_equal(ds[kp.key].values, expected_array(plan, kp.key),
                                      err_msg=kp.key)
    assert_same_reads(det, open_det(open_view(out), name))


def test_json_streamed_in_many_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON references are written a batch at a time (bounded memory): with batches of 3
    references the document is still one valid JSON object reading like the run."""
    import detstack.convert.manifest.output as manifest_mod
    run = write(tmp_path / "run", "agipd-raw-chunked")
    monkeypatch.setattr(manifest_mod, "JSON_BATCH", 3)
    out = to_manifest(open_det(run, "agipd-raw-chunked"), tmp_path / "view.json")
    refs = json.loads(out.read_text())["refs"]
    assert sum(k.startswith("image.data/") for k in refs) > 3 * 5
    assert_same_reads(open_det(run, "agipd-raw-chunked"),
                      open_det(open_view(out), "agipd-raw-chunked"))
    arr = zarr.open_group("reference://", mode="r",   # plain zarr: slots of modules 0, 3, 9
                          storage_options=plain_options(out))["image.data"][[0, 3, 9]]
    want = open_det(run, "agipd-raw-chunked").get_array("image.data").values
    np.testing.assert_array_equal(arr, np.nan_to_num(want, nan=0).astype(arr.dtype))
