"""Declarative descriptions of each detector kind.

Everything that differs between detectors lives here, so the readers never
branch on the detector's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class DetectorKind:
    """How one kind of multi-module detector names and stores its data."""

    name: str
    detname_re: str
    module_re: str          # after the detector name; has a 'modno' group
    n_modules: int          # 0: found from the data (JUNGFRAU)
    module_shape: tuple[int, int]
    main_key: str
    mask_key: str
    index_group: str        # index group of the per-frame data
    per_frame_prefix: str   # keys with one row per frame ("image."); "" if rows are trains
    modno_base: int = 0
    pulse_key: str = "image.pulseId"
    cell_key: str = "image.cellId"

    def source_re(self, where: str) -> re.Pattern[str]:
        """Pattern for module sources; ``where`` is 'DET', 'CORR' or '(DET|CORR)'."""
        return re.compile(rf"(?P<detname>{self.detname_re})/{where}/{self.module_re}")

    @property
    def xtdf(self) -> bool:
        return bool(self.per_frame_prefix)


_XTDF_MODULE = r"(?P<modno>\d+)CH"


def _xtdf(name: str, detname_re: str, n_modules: int, shape: tuple[int, int]) -> DetectorKind:
    return DetectorKind(name, detname_re, _XTDF_MODULE, n_modules, shape, "image.data",
                        "image.mask", "image", "image.")


AGIPD1M = _xtdf("AGIPD1M", r"[^/]+_AGIPD1M[^/]*", 16, (512, 128))
AGIPD500K = _xtdf("AGIPD500K", r"[^/]+AGIPD500K[^/]*", 8, (512, 128))
DSSC1M = _xtdf("DSSC1M", r"[^/]+_DSSC1M[^/]*", 16, (128, 512))
LPD1M = _xtdf("LPD1M", r"[^/]+_LPD1M[^/]*", 16, (256, 256))
LPD_SOLO = _xtdf("LPDSolo", r"[^/]+_LPD_SOLO[^/]*", 1, (256, 256))
JUNGFRAU = DetectorKind(
    "JUNGFRAU", r"[^/]+_(?:JNGFR|JF[14]M|JUNGF|JF|JF500K\d?)",
    r"(?:MODULE_|RECEIVER-|JNGFR)(?P<modno>\d+)", 0, (512, 1024), "data.adc", "data.mask",
    "data", "", modno_base=1, pulse_key="data.memoryCell", cell_key="data.memoryCell",
)

ALL_KINDS = (AGIPD1M, AGIPD500K, DSSC1M, LPD1M, LPD_SOLO, JUNGFRAU)
