"""``check(run)``: do the modules of every detector in a run agree?

``detstack validate`` reports what this finds; readers raise the same findings
as ``InconsistentModulesError`` when they use the key or train at fault.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from ..errors import DetstackError


@dataclass(frozen=True)
class Problem:
    """One disagreement: what it concerns (detector, key) and the full message."""

    detector: str
    what: str        # "key <name>", "frame counts", "pulse IDs"
    message: str

    def __str__(self) -> str:
        return self.message


def _module_sources(run: Any, cls: Any, name: str) -> dict[str, list[str]]:
    """Module sources of one detector, split into raw (DET) and corrected (CORR)."""
    out: dict[str, list[str]] = {}
    for where in ("DET", "CORR"):
        pattern = cls.kind.source_re(where)
        found = [s for s in sorted(run.instrument_sources)
                 if (m := pattern.match(s)) and m.group("detname") == name
                 and s not in run.legacy_sources]
        if found:
            out[where] = found
    return out


def check(run: Any) -> list[Problem]:
    """Every disagreement between the modules of each detector of ``run``: key entry
    shapes and dtypes (per file), frame counts and pulse/cell IDs per train."""
    from ..detectors.consistency import key_layout_problems
    from ..detectors.identify import identify_multimod_detectors

    problems: list[Problem] = []
    for name, cls in sorted(identify_multimod_detectors(run), key=lambda nc: nc[0]):
        bad_keys: set[str] = set()
        for sources in _module_sources(run, cls, name).values():
            keys = set().union(*(run.keys_for_source(s) for s in sources))
            for key in sorted(keys):
                for msg in key_layout_problems(run, sources, key):
                    problems.append(Problem(name, f"key {key}", msg))
                    bad_keys.add(key)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                det = cls(run, name)
            if cls.kind.xtdf and cls.kind.pulse_key not in bad_keys and cls.kind.pulse_key in det:
                det.frame_labels("pulseId")
            elif not cls.kind.xtdf and cls.kind.cell_key not in bad_keys and cls.kind.cell_key in det:
                det.cell_ids()
        except (DetstackError, ValueError) as exc:
            msg = str(exc)
            what = ("frame counts" if "frame counts" in msg else
                    "pulse IDs" if "Inconsistent" in msg else "detector")
            problems.append(Problem(name, what, msg))
    return problems
