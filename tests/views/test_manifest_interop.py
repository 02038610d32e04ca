"""The default manifest in other tools: VirtualiZarr's kerchunk parsers and kerchunk's
``MultiZarrToZarr``, with the real packages. The oracle is detstack's ``get_array`` on
the run; the record never carries absolute paths when relative ones were asked for.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from obspec_utils.registry import ObjectStoreRegistry
from obstore.store import LocalStore
from virtualizarr import open_virtual_dataset
from virtualizarr.parsers import KerchunkJSONParser, KerchunkParquetParser
from zarr_store_helpers import s3_server  # noqa: F401 - fixture

import detstack
from detstack import synth
from detstack.convert import to_manifest
from detstack.errors import UnsafeReferenceError
from detstack.store import open_view

PARSERS = {"json": KerchunkJSONParser, "parq": KerchunkParquetParser}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw AGIPD-500K, shuffle + deflate, an absent last module slot, a missing train."""
    folder = tmp_path_factory.mktemp("interop") / "run"
    synth.write_run(folder, kind="AGIPD500K", raw=True, n_trains=4, frames_per_train=3,
                    modules=[0, 5], missing_trains={5: [10001]}, layout="shuffle-deflate",
                    trains_per_file=2)
    return folder


def open_det(source: Any) -> Any:
    if not isinstance(source, detstack.DataCollection):
        source = detstack.RunDirectory(str(source))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return detstack.AGIPD500K(source, raw=True)


def present(arr: xr.DataArray, det: Any) -> np.ndarray:
    """The view's array at the detector's module slots (what get_array returns)."""
    return np.asarray(arr.values)[[det.module_slot(m) for m in det.modules]]


def relative_record(manifest: Path) -> dict[str, Any]:
    view = open_view(manifest)
    record = dict(view.record)
    names = [f["path"] for f in record["source_files"]] + [record["manifest"]["sidecar"]["path"]]
    assert not any(os.path.isabs(n) or "://" in n for n in names)
    assert str(manifest.parent.parent) not in json.dumps(record)   # no absolute path at all
    return record


@pytest.mark.parametrize("fmt", ["json", "parq"])
def test_virtualizarr_reads_default_manifest(run, fmt, tmp_path, monkeypatch):
    det = open_det(run)
    expected = det.get_array("image.data")
    out = to_manifest(det, tmp_path / "views" / f"view.{fmt}")
    relative_record(out)
    monkeypatch.chdir(tmp_path)     # paths resolve without any folder of ours
    registry = ObjectStoreRegistry({"file://": LocalStore()})
    parser = PARSERS[fmt]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # zarr: numcodecs codecs are not in the v3 spec
        vds = open_virtual_dataset(out.as_uri(), registry=registry, parser=parser,
                                   loadable_variables=["train", "module"])
        assert vds["image.data"].dims == expected.dims
        np.testing.assert_array_equal(vds["train"].values, det.train_ids)
        ds = xr.open_zarr(parser(out.as_uri(), registry), zarr_format=3, consolidated=False,
                          mask_and_scale=False)
        np.testing.assert_array_equal(present(ds["image.data"], det), expected.values)
        np.testing.assert_array_equal(present(ds["image.pulseId"], det),  # length-1 axis squeezed
                                      det.get_array("image.pulseId").values)
        assert (ds["image.data"].values[-1] == 0).all()   # absent last slot: fill values


def test_multizarrtozarr_combines_two_halves(run, tmp_path):
    from kerchunk.combine import MultiZarrToZarr

    det = open_det(run)
    expected = det.get_array("image.data")
    halves = [to_manifest(det.select_trains(detstack.by_index[sel]), tmp_path / name)
              for sel, name in ((slice(None, 1), "a.json"), (slice(1, None), "b.json"))]
    combined = MultiZarrToZarr([str(p) for p in halves], remote_protocol="file",
                               concat_dims=["train"], identical_dims=["module"]).translate()
    ds = xr.open_dataset("reference://", engine="zarr", backend_kwargs={
        "storage_options": {"fo": combined, "remote_protocol": "file"}, "consolidated": False},
        mask_and_scale=False)
    np.testing.assert_array_equal(ds["train"].values, det.train_ids)
    np.testing.assert_array_equal(present(ds["image.data"], det), expected.values)
    np.testing.assert_array_equal(ds["count.image"].values, _counts(det))


def _counts(det: Any) -> np.ndarray:
    out = np.zeros((det.n_modules, len(det.train_ids)), np.uint64)
    out[[det.module_slot(m) for m in det.modules]] = det.frame_map.counts
    return out


def test_plain_xarray_from_any_folder_and_cli(run, tmp_path, monkeypatch):
    from detstack.cli import main as cli_main

    det = open_det(run)
    expected = det.get_array("image.data")
    for name in ("deep/down/view.json", "deep/down/view.parq"):
        out = to_manifest(det, tmp_path / name)
        monkeypatch.chdir(run)
        ds = xr.open_dataset("reference://", engine="zarr", mask_and_scale=False,
                             backend_kwargs={"storage_options": {"fo": str(out),
                                                                 "remote_protocol": "file"},
                                             "consolidated": False})
        np.testing.assert_array_equal(present(ds["image.data"], det), expected.values)
        assert cli_main(["info", str(out)]) == 0
        assert cli_main(["verify", str(out)]) == 0
        xr.testing.assert_identical(expected, open_det(open_view(out)).get_array("image.data"))


def test_sidecar_is_covered_by_the_trust_model(run, tmp_path):
    det = open_det(run)
    out = to_manifest(det, tmp_path / "view.json")
    side = tmp_path / "view.arrays.h5"
    record = relative_record(out)
    assert record["manifest"]["sidecar"]["path"] == side.name
    # a changed sidecar (same name, other content) is refused, never read
    data = bytearray(side.read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "changed").write_bytes(bytes(data))
    os.replace(tmp_path / "changed", side)
    with pytest.raises(detstack.errors.FileFormatError, match="arrays.h5"):
        open_view(out)
    from detstack.cli import main as cli_main
    assert cli_main(["verify", str(out)]) != 0
    # a sidecar reference turned to /etc/passwd is refused
    to_manifest(det, out, overwrite=True)
    doc = json.loads(out.read_text())
    key = next(k for k, v in doc["refs"].items()
               if isinstance(v, list) and v[0].endswith(".arrays.h5"))
    doc["refs"][key] = ["/etc/passwd", 0, 10]
    out.write_text(json.dumps(doc))
    with pytest.raises(UnsafeReferenceError, match="not one of the source files"):
        open_view(out)
    # a record whose sidecar entry names /etc/passwd: not an HDF5 file, refused
    to_manifest(det, out, overwrite=True)
    doc = json.loads(out.read_text())
    attrs = json.loads(doc["refs"][".zattrs"])
    attrs["detstack_record"]["manifest"]["sidecar"]["path"] = "../" * 20 + "etc/passwd"
    for key, v in doc["refs"].items():
        if isinstance(v, list) and v[0].endswith(".arrays.h5"):
            doc["refs"][key] = ["/etc/passwd", 0, 10]
    doc["refs"][".zattrs"] = json.dumps(attrs)
    meta = json.loads(doc["refs"][".zmetadata"])
    meta["metadata"][".zattrs"] = attrs
    doc["refs"][".zmetadata"] = json.dumps(meta)
    out.write_text(json.dumps(doc))
    with pytest.raises(detstack.errors.DetstackError, match="not an HDF5 file"):
        open_view(out)


def test_moved_run_and_manifest_follow_the_record(run, tmp_path):
    import shutil

    det = open_det(run)
    expected = det.get_array("image.data")
    before = tmp_path / "before"
    shutil.copytree(run, before / "run")
    out = to_manifest(open_det(before / "run"), before / "views" / "view.json")
    after = tmp_path / "after"
    shutil.move(before, after)
    moved = after / "views" / "view.json"
    xr.testing.assert_identical(expected, open_det(open_view(moved)).get_array("image.data"))
    assert not out.exists()


def test_readme_recipe(run, tmp_path, monkeypatch):
    """The README's "With other tools" block, run as it is in a folder with the manifests."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"<!-- interop:python -->\n```python\n(.*?)\n```", readme, re.S)
    assert block, "no interop:python block in README.md"
    det = open_det(run)
    to_manifest(det, tmp_path / "view.json")
    to_manifest(det.select_trains(detstack.by_index[:2]), tmp_path / "first.json")
    to_manifest(det.select_trains(detstack.by_index[2:]), tmp_path / "second.json")
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(block.group(1), scope)   # noqa: S102 - the README's own code
        assert scope["vds"]["image.data"].shape == (det.n_modules, 4, 3, 2, 512, 128)
        np.testing.assert_array_equal(scope["vds"]["train"].values, det.train_ids)
        np.testing.assert_array_equal(present(scope["ds"]["image.data"], det),
                                      det.get_array("image.data").values)


@pytest.mark.parametrize("name", ["c.json", "c.parq"])
def test_compact_form_record_is_relative_too(run, tmp_path, name):
    det = open_det(run)
    out = to_manifest(det, tmp_path / "views" / name, compact=True)
    record = dict(open_view(out).record)
    assert record["manifest"]["references"] in ("template", "relative")
    assert "sidecar" not in record["manifest"] and not (tmp_path / "views" / "c.arrays.h5").exists()
    assert str(tmp_path) not in json.dumps(record)
    xr.testing.assert_identical(det.get_array("image.data"),
                                open_det(open_view(out)).get_array("image.data"))


def test_virtualizarr_concatenates_two_runs_and_writes_kerchunk(run, tmp_path):
    """Virtual datasets of two manifests combined along train (one train per chunk in
    every array), written back as kerchunk references, read by plain xarray."""
    det = open_det(run)
    halves = [to_manifest(det.select_trains(detstack.by_index[sel]), tmp_path / name)
              for sel, name in ((slice(None, 3), "a.json"), (slice(3, None), "b.json"))]
    registry = ObjectStoreRegistry({"file://": LocalStore()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [open_virtual_dataset(p.as_uri(), registry=registry,
                                      parser=KerchunkJSONParser(),
                                      loadable_variables=["train", "module"]) for p in halves]
        combined = xr.concat(parts, dim="train", coords="minimal", compat="override",
                             combine_attrs="drop_conflicts")
        refs = combined.vz.to_kerchunk(format="dict")
        ds = xr.open_dataset("reference://", engine="zarr", mask_and_scale=False,
                             backend_kwargs={"storage_options": {"fo": refs,
                                                                 "remote_protocol": "file"},
                                             "consolidated": False})
        np.testing.assert_array_equal(ds["train"].values, det.train_ids)
        np.testing.assert_array_equal(present(ds["image.data"], det),
                                      det.get_array("image.data").values)


def test_sidecar_in_a_run_folder_is_left_out_quietly(tmp_path):
    folder = tmp_path / "run"
    synth.write_run(folder, kind="JUNGFRAU", raw=True, n_trains=2, n_modules=2, n_cells=2,
                    modules=[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = detstack.JUNGFRAU(detstack.RunDirectory(str(folder)))
    to_manifest(det, folder / "view.json")
    assert (folder / "view.arrays.h5").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")         # no "Skipping unusable file"
        run = detstack.RunDirectory(str(folder))
    assert {Path(f.path).name for f in run.files} == {
        p.name for p in folder.glob("RAW-*.h5")}


# -- manifests of files on S3 (url_prefix), a moto server on localhost --------------------

@pytest.fixture(scope="module")
def s3_published(run: Path, s3_server: dict[str, Any],  # noqa: F811 - fixture argument
                 tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], str]:
    """A copy of the run with url_prefix manifests written inside it (whole run as JSON
    and Parquet, and two halves), uploaded together to s3://interop/r1/."""
    import shutil

    import boto3
    import s3fs

    pub = tmp_path_factory.mktemp("published") / "r1"
    shutil.copytree(run, pub)
    det = open_det(pub)
    prefix = "s3://interop/r1/"
    to_manifest(det, pub / "view.json", url_prefix=prefix)
    to_manifest(det, pub / "view.parq", url_prefix=prefix)
    for sel, name in ((slice(None, 1), "a.json"), (slice(1, None), "b.json")):
        to_manifest(det.select_trains(detstack.by_index[sel]), pub / name, url_prefix=prefix)
    boto3.client("s3", endpoint_url=s3_server["endpoint_url"], aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1"
                 ).create_bucket(Bucket="interop")
    s3fs.S3FileSystem(**s3_server, skip_instance_cache=True).put(
        str(pub) + "/", "interop/r1/", recursive=True)
    return det, s3_server, prefix


def test_url_prefix_manifest_names_everything_by_url(s3_published: Any) -> None:
    det, _, prefix = s3_published
    doc = json.loads((Path(det.data.files[0].path).parent / "view.json").read_text())
    assert "templates" not in doc
    urls = {v[0] for v in doc["refs"].values() if isinstance(v, list)}
    assert urls and all(u.startswith(prefix) for u in urls)
    assert prefix + "view.arrays.h5" in urls          # the sidecar, published with the run
    assert not any(isinstance(v, str) and v.startswith("base64:") for v in doc["refs"].values())


@pytest.mark.parametrize("fmt", ["json", "parq"])
def test_virtualizarr_reads_url_prefix_manifest_from_s3(s3_published: Any, fmt: str) -> None:
    from obstore.store import S3Store

    det, so, prefix = s3_published
    store = S3Store("interop", endpoint=so["endpoint_url"], access_key_id="testing",
                    secret_access_key="testing", region="us-east-1",
                    client_options={"allow_http": True}, virtual_hosted_style_request=False)
    registry = ObjectStoreRegistry({"s3://interop": store})
    # VirtualiZarr reads a Parquet folder's record files with fsspec, chunks with obstore
    parser = PARSERS[fmt](**({"reader_options": {"storage_options": so}} if fmt == "parq"
                             else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # zarr: numcodecs codecs are not in the v3 spec
        vds = open_virtual_dataset(f"{prefix}view.{fmt}", registry=registry, parser=parser,
                                   loadable_variables=["train", "module"])
        np.testing.assert_array_equal(vds["train"].values, det.train_ids)
        ds = xr.open_zarr(parser(f"{prefix}view.{fmt}", registry), zarr_format=3,
                          consolidated=False, mask_and_scale=False)
        np.testing.assert_array_equal(present(ds["image.data"], det),
                                      det.get_array("image.data").values)
        np.testing.assert_array_equal(present(ds["image.pulseId"], det),
                                      det.get_array("image.pulseId").values)


def test_multizarrtozarr_combines_url_prefix_manifests_on_s3(s3_published: Any) -> None:
    from kerchunk.combine import MultiZarrToZarr

    det, so, prefix = s3_published
    remote = {**so, "asynchronous": True, "skip_instance_cache": True}
    import s3fs

    fs = s3fs.S3FileSystem(**so, skip_instance_cache=True)   # the manifests, read from S3
    halves = [json.loads(fs.cat(f"{prefix}{name}")) for name in ("a.json", "b.json")]
    combined = MultiZarrToZarr(halves, remote_protocol="s3",
                               remote_options={**so, "skip_instance_cache": True},
                               concat_dims=["train"], identical_dims=["module"],
                               inline_threshold=0).translate()   # nothing inlined
    ds = xr.open_dataset("reference://", engine="zarr", mask_and_scale=False, backend_kwargs={
        "storage_options": {"fo": combined, "remote_protocol": "s3", "remote_options": remote},
        "consolidated": False})
    np.testing.assert_array_equal(ds["train"].values, det.train_ids)
    np.testing.assert_array_equal(present(ds["image.data"], det),
                                  det.get_array("image.data").values)
    np.testing.assert_array_equal(ds["count.image"].values, _counts(det))
    view = open_view(f"{prefix}view.parq", storage_options=so)   # and detstack itself
    xr.testing.assert_identical(det.get_array("image.data"),
                                open_det(view).get_array("image.data"))
