"""One small hierarchy of typed errors.

Every error names the file, source, key or train at fault and says what to do,
so a user can act on the message without reading our code.
"""

from __future__ import annotations


class DetstackError(Exception):
    """Base class of every error detstack raises on purpose."""

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled with the arguments it was made from (an error raised in a worker
        process reaches the parent with its type; OSError's own rule would call
        ``__init__`` with the message alone)."""
        return type(self), getattr(self, "_made_from", self.args), dict(vars(self))


class FileFormatError(DetstackError, OSError):
    """A file is not a usable EuXFEL HDF5 file (not HDF5, truncated, missing INDEX...).

    Parameters
    ----------
    path : str or path-like
        The file (kept as ``.path``).
    problem : str
        What is wrong with it (kept as ``.problem``).
    hint : str, optional
        What to do about it.
    """

    def __init__(self, path: object, problem: str, hint: str = "") -> None:
        self._made_from = (path, problem, hint)
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


class AmbiguousDetectorError(DetstackError, ValueError):
    """The data holds several detectors of the kind asked for; name one (ValueError, as in
    EXtra-data)."""


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


class MissingDependencyError(DetstackError, ImportError):
    """An optional package a feature needs is not installed; names the extra to install.

    Parameters
    ----------
    package : str
        The missing package, e.g. ``'fastparquet'``.
    extra : str
        The detstack extra that installs it, e.g. ``'parquet'``.
    feature : str
        What needs it, e.g. ``'writing .parq manifests'``.
    """

    def __init__(self, package: str, extra: str, feature: str) -> None:
        self._made_from = (package, extra, feature)
        self.package = package
        self.extra = extra
        super().__init__(f"{feature} needs the optional package {package}, which is not "
                         f"installed: pip install 'detstack[{extra}]'")


class UnusableFileWarning(UserWarning):
    """A run file that could not be read was left out (``.path`` names it).

    Parameters
    ----------
    message : str
        Why the file was left out.
    path : str or path-like
        The file.
    """

    def __init__(self, message: str, path: object) -> None:
        super().__init__(message)
        self.path = str(path)


class EmptySelectionError(DetstackError, ValueError):
    """A selection (trains, modules) that leaves nothing to read or write."""


class OutputWriteError(DetstackError, OSError):
    """Writing an output failed (disk full, file too large, permission...); nothing was
    left under the output's name and the temporary files were removed.

    Parameters
    ----------
    target : str or path-like
        The output (kept as ``.target``).
    problem : str
        What went wrong.
    hint : str, optional
        What to do about it.
    """

    def __init__(self, target: object, problem: str, hint: str = "") -> None:
        self._made_from = (target, problem, hint)
        self.target = str(target)
        msg = f"{self.target}: {problem}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class TargetLockedError(DetstackError, RuntimeError):
    """Another live process is writing the same output (a second resume, a parallel
    conversion); wait for it, or remove its lock if no such process runs."""


class WorkerDiedError(DetstackError, RuntimeError):
    """A worker process of a conversion was killed (out of memory, a signal); what it
    wrote is not trusted, and the output is left resumable."""


class InconsistentModulesError(DetstackError, ValueError):
    """The modules (or files) of one detector disagree: a key's entry shape or dtype,
    the frame count of a train, or the pulse/cell IDs of a train. Reading on would give
    scrambled, truncated or mislabelled frames."""


class NotRegularFileError(FileFormatError):
    """A path that should be a data file is a FIFO, device, socket or folder; opening it
    could block forever or read endless bytes."""


class UnsafeReferenceError(DetstackError, PermissionError):
    """A view refers to data outside the files it declares or the places the reader
    allowed (e.g. a symlink to /etc, a mapping to a file not in its record)."""


class ViewLimitError(DetstackError, ValueError):
    """View metadata asks for more than any real view needs (an absurd array shape, a
    chunk that decodes past its declared size, JSON nested too deeply)."""


class ViewRecordError(FileFormatError):
    """A view's record disagrees with its arrays (shape, trains, modules, frames), so
    frames would land in the wrong place."""


class CorruptChunkError(FileFormatError):
    """A stored chunk cannot be decoded exactly (a damaged deflate stream, a wrong
    decompressed size, a filter that fails): its frames are unreadable, never zeros."""


class MissingDataError(FileFormatError):
    """Data that a view's counts say exists is not there (a deleted zarr shard, a missing
    virtual-dataset source): reading it would silently give fill values."""


class IndexFormatError(FileFormatError):
    """A file's INDEX contradicts itself or its data (negative or overlapping ranges,
    rows past the end, a per-frame trainId that disagrees with it)."""
