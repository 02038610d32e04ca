"""Parameter entries shared by the detector key data classes' docstrings (``$name`` lines).

Written once here, filled in by ``detstack.docstrings.with_blocks``.
"""

from __future__ import annotations

from ..docstrings import with_blocks

BLOCKS = {
    "fill_value": """\
fill_value : int or float, optional
    Value for absent modules, trains and frames (default NaN for floats, 0 for
    integers).
""",
    "astype": """\
astype : dtype, optional
    Dtype of the result (default: the stored dtype).
""",
    "module_gaps": """\
module_gaps : bool, default False
    One slot per module of the whole detector (absent ones filled), not
    only the modules with data.
""",
    "subtrain_index": """\
subtrain_index : {'pulseId', 'cellId'}, default 'pulseId'
    Label the frames of a train by pulse ID or by memory cell ID.
""",
    "decompress_threads": """\
decompress_threads : int, optional
    Threads reading and decompressing blocks (default: two per core for plain
    copies, one per core when every block must be decompressed).
""",
    "roi": """\
roi : tuple of slices/ints, optional
    Region read from each entry, e.g. ``np.s_[10:60, 100:200]``.
""",
    "frame_roi": """\
roi : tuple of slices/ints, optional
    Region read from each frame, e.g. ``np.s_[10:60, 100:200]``; for raw AGIPD
    the frame is ``(data_gain, y, x)``.
""",
    "split_limits": """\
parts : int, optional
    Minimum number of parts (fewer only if there are fewer trains).
trains_per_part : int, optional
    Maximum trains per part.
frames_per_part : int, optional
    Target frames per part; parts always hold whole trains, so a single train
    with more frames makes a part on its own.
""",
    "out": """\
out : numpy.ndarray, optional
    Array of ``buffer_shape(module_gaps, roi)`` to fill instead of a new one.
""",
}

#: decorator filling the ``$name`` lines of a method's docstring from BLOCKS
shared = with_blocks(BLOCKS)
