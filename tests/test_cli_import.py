"""``import detstack`` (and the command's start) load no heavy package."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["dask", "xarray", "pandas", "zarr", "fsspec"]


def loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    return res.stdout.split()


def test_import_detstack_loads_no_heavy_package() -> None:
    assert loaded_after("import detstack") == []


def test_reading_a_run_needs_no_heavy_package() -> None:
    assert loaded_after("from detstack import RunDirectory, H5File, by_id") == []


def test_lazy_names_resolve() -> None:
    code = ("import detstack\nassert detstack.AGIPD1M.__name__ == 'AGIPD1M'\n"
            "assert callable(detstack.open_view) and callable(detstack.convert.to_vds)\n"
            "assert set(detstack.__all__) <= set(dir(detstack))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_command_help_loads_no_heavy_package() -> None:
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "detstack", "--help"],
                         capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip().split(".")[0]
                for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & set(HEAVY), imported & set(HEAVY)
