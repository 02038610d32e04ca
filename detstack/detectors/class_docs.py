"""The docstrings of the XTDF detector classes, filled in from one template.

Every class shows its whole signature in ``help()``, so the shared Parameters, Raises
and Examples sections are written once here and completed per class (name, example
detector name, extra parameters).
"""

from __future__ import annotations

import inspect

TEMPLATE = """\
{summary}

Parameters
----------
data : DataCollection
    A run (``detstack.RunDirectory``, ``detstack.H5File``) or a view
    (``detstack.open_view``): the same class reads both.
detector_name : str, optional
    Detector name, e.g. ``'{example_name}'``. Needed only when the data holds
    more than one detector of this kind.
modules : set of int, optional
    Module numbers to use (default: every module found).
min_modules : int, default 1
    Keep only trains where at least this many modules have data.
raw : bool or None, default None
    ``True``: raw data (``/DET/`` sources); ``False``: corrected data
    (``/CORR/``); ``None``: corrected if present, else raw with a warning.
{extra_parameters}
Raises
------
SourceNameError
    No sources of this detector (or of the chosen ``modules``/``raw``) are found.
ValueError
    Several detectors match (pass ``detector_name``), ``min_modules`` is not
    positive, no train has ``min_modules`` modules, or ``raw=True`` finds only
    corrected data.{extra_value_errors}
InconsistentModulesError
    The modules disagree on the frame count of a train.

Examples
--------
>>> run = detstack.RunDirectory("/gpfs/exfel/exp/SPB/202401/p700000/raw/r0238")
>>> det = {cls}(run, raw=True)
>>> det.get_array("image.data", pulses=detstack.by_index[:8])
"""

PARALLEL_GAIN = """\
parallel_gain : bool, default False
    Read parallel-gain data: each train holds its frames three times (high,
    medium, low gain, one after another). Arrays then get a ``gain`` axis
    (0 high to 2 low) and the pulse/cell IDs of the first third.
"""
PARALLEL_GAIN_ERROR = """ Also: ``parallel_gain=True`` with a frame
    count per train not divisible by 3."""


def xtdf_doc(cls: str, example_name: str, summary: str, *, parallel_gain: bool = False) -> str:
    """The numpy docstring of one XTDF detector class.

    Parameters
    ----------
    cls : str
        The class name, used in the example.
    example_name : str
        A typical detector name, e.g. ``'SPB_DET_AGIPD1M-1'``.
    summary : str
        The first line and any paragraphs after it (indentation is removed).
    parallel_gain : bool, default False
        The class takes ``parallel_gain`` (LPD).

    Returns
    -------
    str
        The docstring.
    """
    return TEMPLATE.format(summary=inspect.cleandoc(summary), cls=cls, example_name=example_name,
                           extra_parameters=PARALLEL_GAIN if parallel_gain else "",
                           extra_value_errors=PARALLEL_GAIN_ERROR if parallel_gain else "")
