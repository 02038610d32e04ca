"""Do the modules of each detector agree? Key sets, shapes and dtypes, frame counts."""

from __future__ import annotations

from typing import Any

import numpy as np


def module_problems(data: Any) -> list[str]:
    """Disagreements between the modules of every detector in ``data``, one line each."""
    from ..detectors.base import find_detector_names
    from ..detectors.identify import _all_classes

    problems: list[str] = []
    for cls in _all_classes():
        for name in sorted(find_detector_names(data, cls.kind)):
            problems += _detector_problems(data, cls, name)
    return problems


def _detector_problems(data: Any, cls: Any, name: str) -> list[str]:
    import re

    pattern = re.compile(re.escape(name) + "/(?:DET|CORR)/" + cls.kind.module_re)
    sources = sorted(s for s in data.instrument_sources
                     if pattern.match(s) and s not in data.legacy_sources)
    if len(sources) < 2:
        return []
    problems = []
    layouts = {s: {k: data.key_info(s, k) for k in data.keys_for_source(s)} for s in sources}
    ref_src = sources[0]
    ref = layouts[ref_src]
    for src in sources[1:]:
        keys = layouts[src]
        only_ref, only_src = sorted(set(ref) - set(keys)), sorted(set(keys) - set(ref))
        if only_ref or only_src:
            problems.append(f"{src}: keys differ from {ref_src}: "
                            + "; ".join(filter(None, [
                                f"lacks {', '.join(only_ref[:5])}" if only_ref else "",
                                f"has extra {', '.join(only_src[:5])}" if only_src else ""])))
        for key in sorted(set(ref) & set(keys)):
            (s0, d0), (s1, d1) = ref[key], keys[key]
            if tuple(s0) != tuple(s1) or np.dtype(d0) != np.dtype(d1):
                problems.append(f"{src}: {key} is {tuple(s1)} {np.dtype(d1)} per entry, but "
                                f"{tuple(s0)} {np.dtype(d0)} in {ref_src}")
    group = cls.kind.index_group
    tids = data.train_ids_array
    counts = np.stack([data.source_table(s, group).counts_for(tids) for s in sources])
    top = counts.max(axis=0)
    bad = np.flatnonzero(((counts != top) & (counts > 0)).any(axis=0))
    if len(bad):
        t = int(bad[0])
        per = {s.split("/")[-1]: int(c) for s, c in zip(sources, counts[:, t], strict=True) if c}
        problems.append(f"{name}: modules disagree on the frame count of {len(bad)} trains, "
                        f"first train {int(tids[t])}: {per}")
    return problems
