"""The metadata-only AGIPD-1M runs the table measures: generated once, shared by invocations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .registry import FRAMES_PER_TRAIN, TRAINS_PER_FILE


def ensure_run(workdir: Path, kind: str, trains: int) -> tuple[Path, dict[str, object]]:
    """The metadata-only run of this size (generated in a subprocess the first time)."""
    folder = workdir / f"agipd1m-{kind}-{trains}"
    marker = workdir / f"agipd1m-{kind}-{trains}.json"
    import fcntl
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / ".generate.lock", "w") as lock:  # benchmarks sharing a workdir
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and folder.is_dir():
            return folder, json.loads(marker.read_text())
        return folder, _generate(folder, marker, kind, trains)


def _generate(folder: Path, marker: Path, kind: str, trains: int) -> dict[str, object]:
    code = (
        "import json, sys, time\n"
        "from detstack import synth\n"
        "t = time.perf_counter()\n"
        f"files = synth.write_run({str(folder)!r}, 'AGIPD1M', raw={kind == 'raw'}, "
        f"n_trains={trains}, frames_per_train={FRAMES_PER_TRAIN}, "
        f"trains_per_file={TRAINS_PER_FILE}, metadata_only=True, overwrite=True)\n"
        "import os\n"
        "disk = sum(os.stat(p).st_blocks * 512 for p in files)\n"
        "print(json.dumps({'files': len(files), 'seconds': time.perf_counter() - t, "
        "'disk_mb': disk / 2**20}))\n"
    )
    print(f"writing {folder} ...", file=sys.stderr, flush=True)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    info = json.loads(out.strip().splitlines()[-1])
    marker.write_text(json.dumps(info))
    return info
