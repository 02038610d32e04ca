"""The rows of benchmarks/bench_scale.py, grouped by what they measure.

`load_rows()` imports the row modules in table order (a row registers itself when its module
is imported, so the import order is the order of the table).
"""

from __future__ import annotations

import importlib

ROW_MODULES = ("rows_open", "rows_vds", "rows_cxi", "rows_manifest", "rows_memory")


def load_rows() -> None:
    """Register every row, in the order of the table."""
    for name in ROW_MODULES:
        importlib.import_module(f"{__name__}.{name}")
