"""Shared pieces of the zarr store tests: synthetic runs with gaps, a real S3 server,
and checks comparing a store with its run.

The oracle for array values is the run itself read with plain h5py through the
view contract (``ViewPlan.blocks``): every (module slot, train) block of source
rows must appear at its place, everything else must read as the fill value.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from view_oracle import expected_array

import detstack
from detstack import synth
from detstack.convert.plan import ViewPlan
from detstack.store import open_view

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "view-record.schema.json"

# kind -> (write_run arguments, detector-class arguments); every run has gaps: missing
# modules, a module missing trains, an empty train, varying frame counts
RUNS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "AGIPD1M-raw": (dict(kind="AGIPD1M", raw=True, n_trains=5, frames_per_train=[4, 0, 6, 3, 5],
                         modules=[0, 3, 9], missing_trains={3: [10002]},
                         empty_trains={9: [10003]}, trains_per_file=2), dict(raw=True)),
    "AGIPD500K-corr": (dict(kind="AGIPD500K", raw=False, n_trains=4, frames_per_train=[3, 5, 2, 4],
                            modules=[1, 2, 6], missing_trains={2: [10001, 10002]},
                            layout="deflate"), dict(raw=False)),
    "DSSC1M-raw": (dict(kind="DSSC1M", raw=True, n_trains=4, frames_per_train=[2, 5, 0, 3],
                        modules=[0, 15], missing_trains={15: [10003]}), dict(raw=True)),
    "LPD1M-corr": (dict(kind="LPD1M", raw=False, n_trains=4, frames_per_train=[3, 4, 2, 1],
                        modules=[2, 5], missing_trains={5: [10000]}, layout="contiguous",
                        trains_per_file=3), dict(raw=False)),
    "AGIPD1M-small": (dict(kind="AGIPD1M", raw=True, n_trains=3, frames_per_train=[2, 0, 3],
                           modules=[0, 5], missing_trains={5: [10000]}), dict(raw=True)),
    "JUNGFRAU": (dict(kind="JUNGFRAU", raw=True, n_trains=4, n_modules=4, n_cells=2,
                      modules=[1, 2, 4], missing_trains={2: [10001]},
                      empty_trains={4: [10002]}), {}),
}


def make_run(folder: Path, name: str) -> Path:
    kwargs, _ = RUNS[name]
    synth.write_run(folder, **kwargs, overwrite=True)
    return folder


def open_det(run_dir: str | os.PathLike[str], name: str) -> Any:
    kwargs, det_kwargs = RUNS[name]
    cls = getattr(detstack, kwargs["kind"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(detstack.RunDirectory(str(run_dir)), **det_kwargs)


def view_det(det: Any, url: str, **kw: Any) -> Any:
    """The same detector class over the view at ``url``."""
    view = open_view(url, **kw)
    det_kwargs = {"raw": det._is_all_raw()} if det.kind.xtdf else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return type(det)(view, **det_kwargs)


def check_arrays(plan: ViewPlan, ds: xr.Dataset, keys: list[str] | None = None) -> None:
    """Every key of ``ds`` (opened by xarray or zarr) equals the oracle, incl. fill."""
    for key in keys or [kp.key for kp in plan.keys]:
        got = np.asarray(ds[key])
        want = expected_array(plan, key)
        assert got.dtype == want.dtype, key
        np.testing.assert_array_equal(got, want, err_msg=key)


def check_reader_api(det: Any, dv: Any) -> None:
    """get_array (several selections) and trains() agree between run and view."""
    main = det.kind.main_key
    variants: list[dict[str, Any]] = [{}]
    if det.kind.xtdf:
        variants += [dict(pulses=np.s_[1:3]), dict(unstack_pulses=False)]
    for kw in variants:
        xr.testing.assert_identical(det.get_array(main, **kw), dv.get_array(main, **kw))
    n = 0
    for (t1, d1), (t2, d2) in zip(det.trains(require_all=False), dv.trains(require_all=False),
                                  strict=True):
        assert t1 == t2 and d1.keys() == d2.keys()
        for k in d1:
            xr.testing.assert_identical(d1[k], d2[k])
        n += 1
    assert n == len(det.train_ids)


def validate_record(record: dict[str, Any]) -> None:
    import jsonschema
    jsonschema.validate(record, json.loads(SCHEMA.read_text()))


def store_files(root: str | os.PathLike[str]) -> dict[str, bytes]:
    """{relative path: bytes} of every file of a folder store."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


def assert_same_store(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
    """Two folder stores hold the same objects with the same bytes; the root metadata may
    differ only in the record's creation time."""
    fa, fb = store_files(a), store_files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if name == "zarr.json":
            ra, rb = json.loads(fa[name]), json.loads(fb[name])
            for r in (ra, rb):
                r["attributes"]["detstack_record"].pop("created")
            assert ra == rb
        else:
            assert fa[name] == fb[name], name


# -- a real S3 API server (moto) on a free localhost port -------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, Any]]:
    """A moto S3 server; yields fsspec storage options with a fresh bucket 'xfel'."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                     aws_secret_access_key="testing", region_name="us-east-1"
                     ).create_bucket(Bucket="xfel")
        yield {"endpoint_url": endpoint, "key": "testing", "secret": "testing", "anon": False,
               "client_kwargs": {"region_name": "us-east-1"}}
    finally:
        server.stop()
