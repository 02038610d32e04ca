"""Find which multi-module detectors a run holds."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..run.collection import DataCollection
from .base import MultimodDetectorBase, find_detector_names


def _all_classes() -> list[type[MultimodDetectorBase]]:
    from .jungfrau import JUNGFRAU
    from .xtdf import AGIPD1M, AGIPD500K, DSSC1M, LPD1M, LPDSolo
    return [AGIPD1M, AGIPD500K, DSSC1M, LPD1M, LPDSolo, JUNGFRAU]


def identify_multimod_detectors(data: DataCollection, detector_name: str | None = None, *,
                                single: bool = False,
                                clses: Iterable[type[MultimodDetectorBase]] | None = None
                                ) -> Any:
    """Which multi-module detectors ``data`` holds.

    Unlike the reference, ``detector_name`` is honoured: it restricts the result.

    Parameters
    ----------
    data : DataCollection
        A run or view.
    detector_name : str, optional
        Only detectors of this name.
    single : bool, default False
        Return exactly one ``(name, class)`` instead of a set.
    clses : iterable of detector classes, optional
        Classes to look for (default: every detector class).

    Returns
    -------
    set of (str, type) or (str, type)
        ``{(detector name, class)}``, e.g. ``{('SPB_DET_AGIPD1M-1', AGIPD1M)}``;
        one such tuple with ``single=True``.

    Raises
    ------
    ValueError
        With ``single=True``: no detector, or several (pass ``detector_name``).
    """
    found = set()
    for cls in (clses or _all_classes()):
        for name in find_detector_names(data, cls.kind):
            if detector_name is None or name == detector_name:
                found.add((name, cls))
    if not single:
        return found
    if not found:
        raise ValueError("No detector sources identified in the data")
    if len(found) > 1:
        names = ", ".join(sorted(n for n, _ in found))
        raise ValueError(f"Multiple detectors identified: {names}. Pass detector_name= or "
                         "clses= to choose one")
    return found.pop()
