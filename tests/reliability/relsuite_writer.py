"""A writer in a child process, for tests that kill it: ``python relsuite_writer.py
WRITER RUN OUT [overwrite] [resume] [slow]``. Prints ``started`` once its detector is
open and ``finished`` when the writer returned; ``slow`` pauses after each zarr task
(so a kill lands mid-conversion)."""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np

import detstack
from detstack.convert import to_manifest, to_vds, to_zarr
from detstack.convert.archive import materialize
from detstack.convert.cxi import to_cxi
from detstack.convert.frames_file import write_frames


def write(writer: str, run: str, out: str, overwrite: bool, resume: bool, slow: bool) -> None:
    det = detstack.AGIPD1M(detstack.RunDirectory(run), raw=True)
    print("started", flush=True)

    def pause(done: int, total: int) -> None:
        if slow:
            time.sleep(0.05)
    if writer == "zarr":
        to_zarr(det, out, overwrite=overwrite, resume=resume, threads=1, progress=pause)
    elif writer == "vds":
        to_vds(det, out, overwrite=overwrite)
    elif writer == "cxi":
        to_cxi(det, out, overwrite=overwrite)
    elif writer == "manifest":
        to_manifest(det, out, overwrite=overwrite)
    elif writer == "frames":
        counts = det.frame_map.train_counts().astype(np.int64)
        tids = np.repeat(np.asarray(det.frame_map.train_ids), counts)
        pids = np.concatenate([np.arange(c) for c in counts])
        write_frames(det, out, tids, pids, overwrite=overwrite)
    elif writer == "materialize":
        materialize(run + "/view.h5", out, overwrite=overwrite)
    else:
        raise SystemExit(f"unknown writer {writer}")
    print("finished", flush=True)


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    flags = set(sys.argv[4:])
    write(sys.argv[1], sys.argv[2], sys.argv[3], "overwrite" in flags, "resume" in flags,
          "slow" in flags)
