"""Run every public entry point on one run folder, in a child process, and classify each.

Usage: ``python relsuite_driver.py RUN REFERENCE OUT`` (REFERENCE: a run folder holding
what RUN must read as, or ``-`` if every data entry point must refuse RUN; every entry
point's values are compared with ``get_array`` of REFERENCE, which the property tests
check against plain h5py). Prints
one JSON line per entry point, ``{"entry", "outcome", "message"}``, flushing before
each starts (``{"entry", "outcome": "started"}``) so a parent that kills a hung child
knows where it hung. Outcomes: ``ok`` (no error and the same values as the
reference), ``typed`` (a ``DetstackError``), ``untyped`` (any other exception),
``wrong`` (values differ from the reference, or RUN was accepted although it must be
refused).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import detstack
from detstack.errors import DetstackError

KEY = "image.data"
DATA_ENTRIES = ("get_array", "get_dask_array", "trains", "to_vds", "to_manifest",
                "to_zarr", "to_cxi", "write_frames")


def _det(run: str) -> Any:
    return detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)


def _stack(det: Any) -> dict[tuple[int, int], np.ndarray]:
    """{(module, train ID): (frames, ...)} read by get_array (the reference form)."""
    arr = det.get_array(KEY)
    out: dict[tuple[int, int], list[np.ndarray]] = {}
    tids = arr.coords["trainId"].values if "trainId" in arr.coords else arr.coords["train"].values
    vals = np.asarray(arr.values)
    for mi, mod in enumerate(arr.coords["module"].values):
        for fi, tid in enumerate(tids):
            out.setdefault((int(mod), int(tid)), []).append(vals[mi, fi])
    return {k: np.stack(v) for k, v in out.items()}


def _blocks_of_view(path: str, **kw: Any) -> dict[tuple[int, int], np.ndarray]:
    return _stack(detstack.AGIPD1M(detstack.open_view(path, **kw), raw=True))


def _blocks_of_trains(det: Any) -> dict[tuple[int, int], np.ndarray]:
    """{(module, train ID): frames} from ``det.trains()`` (one stacked array per train)."""
    out: dict[tuple[int, int], np.ndarray] = {}
    for tid, data in det.trains(require_all=False):
        arr = data[KEY]
        vals = np.asarray(arr.values)
        for mi, mod in enumerate(arr.coords["module"].values):
            out[(int(mod), int(tid))] = vals[mi]
    return out


def _blocks_of_cxi(path: str) -> dict[tuple[int, int], np.ndarray]:
    with h5py.File(path, "r") as h5:
        data = h5["entry_1/instrument_1/detector_1/data"][...]
        tids = h5["entry_1/trainId"][...]
        mods = h5["entry_1/instrument_1/detector_1/module_identifier"][...]
    out: dict[tuple[int, int], list[np.ndarray]] = {}
    for f, tid in enumerate(tids):
        for mi, mod in enumerate(mods):
            out.setdefault((int(mod), int(tid)), []).append(data[f, mi])
    return {k: np.stack(v) for k, v in out.items()}


def _cxi_both(path: str) -> dict[tuple[int, int], np.ndarray]:
    """The CXI file read by detstack (typed errors), then in the standard CXI layout by
    plain h5py (whose errors detstack cannot type: it only ever gets there once
    detstack read every frame)."""
    _blocks_of_view(path)
    return _blocks_of_cxi(path)


def _frames_file(det: Any, out: str) -> dict[tuple[int, int], np.ndarray]:
    """Every frame (synthetic pulse IDs are 0, 1, ...) through write_frames, read back."""
    counts = det.frame_map.train_counts().astype(np.int64)
    t = np.repeat(np.asarray(det.frame_map.train_ids), counts)
    p = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, int)
    det.write_frames(out, t, p)
    return _stack(detstack.AGIPD1M(detstack.H5File(out), raw=True))


def entries(run: str, out: Path) -> dict[str, Callable[[], Any]]:
    from detstack.convert import to_manifest, to_vds, to_zarr
    from detstack.convert.cxi import to_cxi
    return {
        "open": lambda: detstack.RunDirectory(run),
        "detector": lambda: _det(run),
        "get_array": lambda: _stack(_det(run)),
        "get_dask_array": lambda: _dask(_det(run)),
        "trains": lambda: _blocks_of_trains(_det(run)),
        "to_vds": lambda: (to_vds(_det(run), out / "v.h5"), _blocks_of_view(str(out / "v.h5")))[1],
        "to_manifest": lambda: (to_manifest(_det(run), out / "m.json", relative=False),
                                _blocks_of_view(str(out / "m.json"), allowed_prefixes=[run]))[1],
        "to_zarr": lambda: (to_zarr(_det(run), out / "s.zarr"),
                            _blocks_of_view(str(out / "s.zarr")))[1],
        "to_cxi": lambda: (to_cxi(_det(run), out / "v.cxi"), _cxi_both(str(out / "v.cxi")))[1],
        "write_frames": lambda: _frames_file(_det(run), str(out / "frames.h5")),
        "cli_validate": lambda: _cli(["validate", run]),
        "cli_info": lambda: _cli(["info", run]),
        "cli_convert": lambda: _cli(["convert", run, str(out / "cli.zarr"), "--quiet"]),
    }


def _dask(det: Any) -> dict[tuple[int, int], np.ndarray]:
    arr = det.get_dask_array(KEY)
    arr = arr.copy(data=np.asarray(arr.data.compute()))
    vals = np.asarray(arr.values)
    tids = arr.coords["trainId"].values
    out: dict[tuple[int, int], list[np.ndarray]] = {}
    for mi, mod in enumerate(arr.coords["module"].values):
        for fi, tid in enumerate(tids):
            out.setdefault((int(mod), int(tid)), []).append(vals[mi, fi])
    return {k: np.stack(v) for k, v in out.items()}


def _cli(argv: list[str]) -> tuple[int, str]:
    from detstack.cli import main
    err, outp = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outp):
        rc = main(argv)
    return rc, err.getvalue() + outp.getvalue()


def _normal(blocks: dict[tuple[int, int], np.ndarray]) -> dict[tuple[int, int], np.ndarray]:
    """Every block as its frames (gain, y, x), without fill-only frames (padding and absent
    blocks; NaN padding counts as fill), so every reader form compares alike (synthetic frames are never all zero)."""
    out = {}
    for k, v in blocks.items():
        frames = v.reshape((-1,) + v.shape[-3:])
        flat = frames.reshape(len(frames), -1)
        if flat.dtype.kind == "f":        # get_array pads missing pulses with NaN
            flat = np.nan_to_num(flat)
        frames = frames[flat.any(axis=1)]
        if len(frames):
            out[k] = frames
    return out


def same(a: dict[tuple[int, int], np.ndarray], b: dict[tuple[int, int], np.ndarray]) -> bool:
    a, b = _normal(a), _normal(b)
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def main() -> None:
    run, ref, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    warnings.simplefilter("ignore")
    todo = entries(run, out)
    want: dict[tuple[int, int], np.ndarray] | None = None
    for name, fn in todo.items():
        print(json.dumps({"entry": name, "outcome": "started"}), flush=True)
        msg = ""
        try:
            got = fn()
        except DetstackError as exc:
            outcome, msg = "typed", str(exc)
        except Exception as exc:  # noqa: BLE001 - classifying every failure is the point
            outcome = "untyped"
            msg = f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=-3)}"
        else:
            if name.startswith("cli_"):
                rc, text = got
                outcome = "untyped" if "Traceback" in text else f"exit {rc}"
                if name == "cli_convert" and rc and len(text.strip().splitlines()) != 1:
                    outcome = "untyped"     # a refusal is one line
                msg = text.strip()[-600:]
            elif name not in DATA_ENTRIES:
                outcome = "ok"
            elif ref == "-":
                outcome, msg = "wrong", "accepted input that must be refused"
            else:
                if want is None:    # every form of a clean run reads as its get_array
                    want = _stack(_det(ref))
                outcome = "ok" if same(got, want) else "wrong"
                if outcome == "wrong":
                    msg = "values differ from the reference"
        print(json.dumps({"entry": name, "outcome": outcome, "message": msg[:2000]}),
              flush=True)
    os._exit(0)   # skip interpreter teardown: a crash there would be misreported


if __name__ == "__main__":
    main()
