"""One small hierarchy of typed errors.

Every error names the file, source, key or train at fault and says what to do,
so a user can act on the message without reading our code.
"""

from __future__ import annotations


class DetstackError(Exception):
    """Base class of every error detstack raises on purpose."""

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class FileFormatError(DetstackError, OSError):
    """A file is not a usable EuXFEL HDF5 file (not HDF5, truncated, missing INDEX...)."""

    def __init__(self, path: object, problem: str, hint: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        msg = f"{self.path}: {problem}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class NoUsableFilesError(DetstackError, FileNotFoundError):
    """A run folder holds no file that can be read."""


class SourceNameError(DetstackError, KeyError):
    """A source (device/channel) name that the data does not contain."""


class NoMatchError(SourceNameError, ValueError):
    """A source/key glob selection matched nothing (a KeyError and a ValueError)."""


class PropertyNameError(DetstackError, KeyError):
    """A key that a source does not have."""


class TrainIDError(DetstackError, KeyError):
    """A train ID (or train index) that the data does not contain."""


class TrainIndexError(TrainIDError, IndexError):
    """A train position beyond the number of trains (also an IndexError)."""


class DuplicateTrainError(DetstackError, ValueError):
    """The same train ID appears more than once for one source."""


class MultiRunError(DetstackError, ValueError):
    """Run-level metadata was asked of data combining several runs."""


class IndexFormatError(FileFormatError):
    """A file's INDEX contradicts itself or its data (negative or overlapping ranges,
    rows past the end, a per-frame trainId that disagrees with it)."""
