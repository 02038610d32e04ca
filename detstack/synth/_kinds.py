"""Declarative description of each detector kind the generator can write.

Everything that differs between AGIPD, LPD, DSSC and JUNGFRAU lives in one table here,
so the writers never branch on the detector's name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """What the files of one detector kind look like."""

    name: str
    default_detector: str
    n_modules: int  # modules in the full detector (JUNGFRAU: default, 1..8 allowed)
    first_modno: int  # 0 for XTDF detectors, 1 for JUNGFRAU
    aggregator: str  # file aggregator prefix; module number appended as 2 digits
    module_shape: tuple[int, int]  # (slow_scan, fast_scan) pixels
    raw_planes: int  # raw XTDF frames have (planes, y, x); 0 for JUNGFRAU (no plane axis)
    detector_data_size: int  # width of the per-train `detector/data` byte array
    pool_size: int  # number of distinct pixel frames behind the synthetic values

    @property
    def xtdf(self) -> bool:
        """XTDF detectors (AGIPD, LPD, DSSC) store one row per frame; JUNGFRAU one per train."""
        return self.raw_planes > 0

    def modnos(self, n_modules: int | None = None) -> list[int]:
        """Every module number of the full detector."""
        n = self.n_modules if n_modules is None else n_modules
        return list(range(self.first_modno, self.first_modno + n))

    def source(self, detector: str, modno: int, raw: bool) -> str:
        """Source name of one module (raw `/DET/` or corrected `/CORR/`)."""
        if self.xtdf:
            return f"{detector}/DET/{modno}CH0:xtdf" if raw else f"{detector}/CORR/{modno}CH0:output"
        return (f"{detector}/DET/JNGFR{modno:02d}:daqOutput" if raw
                else f"{detector}/CORR/JNGFR{modno:02d}:output")

    def legacy_source(self, detector: str, modno: int) -> str:
        """The raw-style name that real 2022+ corrected files keep as a soft link."""
        return self.source(detector, modno, raw=True)

    def frame_shape(self, raw: bool) -> tuple[int, ...]:
        """Shape of one frame of the main key (one memory cell for JUNGFRAU)."""
        if self.xtdf and raw:
            return (self.raw_planes, *self.module_shape)
        return self.module_shape


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("AGIPD1M", "SPB_DET_AGIPD1M-1", 16, 0, "AGIPD", (512, 128), 2, 5408, 32),
        Kind("AGIPD500K", "HED_DET_AGIPD500K2G", 8, 0, "AGIPD", (512, 128), 2, 5408, 32),
        Kind("LPD1M", "FXE_DET_LPD1M-1", 16, 0, "LPD", (256, 256), 1, 416, 32),
        Kind("DSSC1M", "SCS_DET_DSSC1M-1", 16, 0, "DSSC", (128, 512), 1, 416, 32),
        Kind("JUNGFRAU", "SPB_IRDA_JF4M", 8, 1, "JNGFR", (512, 1024), 0, 0, 16),
    )
}

FORMAT_VERSIONS = ("0.5", "1.0", "1.1", "1.2", "1.3")
LAYOUTS = ("chunked", "contiguous", "deflate", "shuffle-deflate")
