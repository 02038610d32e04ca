"""Docstring entries every writer shares (``$name`` lines), written once.

Filled in by ``detstack.docstrings.with_blocks``.
"""

from __future__ import annotations

from ..docstrings import with_blocks

BLOCKS = {
    "det_or_run": """\
det_or_run : detector or DataCollection
    A detector object (e.g. ``detstack.AGIPD1M(run, raw=True)``, with any
    module/train selection), or a run holding a single detector.
""",
    "keys": """\
keys : list of str, optional
    Keys to write (default: every key all modules have).
""",
    "overwrite": """\
overwrite : bool, default False
    Replace an existing output; otherwise an existing one is refused.
""",
    "returns_path": """\
pathlib.Path
    ``path``.
""",
    "path_exists": """\
FileExistsError
    ``path`` exists and ``overwrite`` is False.
""",
}

#: decorator filling the ``$name`` lines of a writer's docstring from BLOCKS
writer_docs = with_blocks(BLOCKS)
