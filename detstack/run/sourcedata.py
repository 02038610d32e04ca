"""One source of a run: ``run[source]``, as EXtra-data scripts use it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import PropertyNameError
from .keydata import KeyData, SourceSection

if TYPE_CHECKING:
    from .collection import DataCollection


def is_train_selection(item: Any) -> bool:
    """Does ``item`` select trains (rather than name a source or key)?"""
    from .selection import ById, ByIndex
    if isinstance(item, (ById, ByIndex, slice, list, np.ndarray, int, np.integer)):
        return not isinstance(item, bool)
    return hasattr(item, "coords") and hasattr(item, "dims")


class SourceData(SourceSection):
    """The selected keys of one source over the selected trains.

    Parameters
    ----------
    data : DataCollection
        The collection the source belongs to.
    source : str
        Its name (``'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf'``, ``'SA1_XTD2_XGM/DOOCS/MAIN'``).
    """

    def __init__(self, data: DataCollection, source: str) -> None:
        data._check_source(source)
        self._data = data
        self.source = source

    @property
    def is_legacy(self) -> bool:
        """Whether this is a legacy (soft-linked) name of another source."""
        return self.source in self._data.legacy_sources

    @property
    def train_ids(self) -> list[int]:
        """The selected train IDs, ascending (including trains without data here)."""
        return self._data.train_ids

    @property
    def files(self) -> list[Any]:
        """The files holding this source's data."""
        return self._data.files_for_source(self.source)

    @property
    def index_groups(self) -> set[str]:
        """INDEX groups of the selected keys ('' for control data)."""
        if self.is_control:
            return {""}
        return {k.partition(".")[0] for k in self.keys()}

    def keys(self, inc_timestamps: bool = True) -> set[str]:
        """The selected keys.

        Parameters
        ----------
        inc_timestamps : bool, default True
            False: control properties by name, without their ``.value`` and
            ``.timestamp`` suffixes (instrument keys are unaffected).

        Returns
        -------
        set of str
            Key names, e.g. ``{'image.data', 'image.pulseId', ...}``.
        """
        keys = self._data.keys_for_source(self.source)
        if not inc_timestamps and self.is_control:
            return {k.removesuffix(".value") for k in keys if k.endswith(".value")}
        return keys

    def one_key(self, index_group: str | None = None) -> str:
        """Some selected key (the first by name), e.g. to count entries.

        Parameters
        ----------
        index_group : str, optional
            Only a key of this INDEX group (``'image'``, ``'header'``...).

        Returns
        -------
        str
            A key name.

        Raises
        ------
        ValueError
            No selected key is in ``index_group``.
        """
        for key in sorted(self.keys()):
            if index_group in (None, "") or key.partition(".")[0] == index_group:
                return key
        raise ValueError(f"{self.source} has no selected key in index group {index_group!r}")

    def _full_key(self, key: str) -> str | None:
        keys = self.keys()
        if key in keys:
            return key
        if self.is_control and f"{key}.value" in keys:
            return f"{key}.value"
        return None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._full_key(key) is not None

    __iter__ = None  # like EXtra-data: use .keys()

    def __getitem__(self, item: Any) -> KeyData | SourceData:
        if is_train_selection(item):
            return self.select_trains(item)
        if not isinstance(item, str):
            raise TypeError("Use source[key] or source[train selection]")
        key = self._full_key(item)
        if key is None:
            raise PropertyNameError(f"Source {self.source} has no key {item!r}. Its keys: "
                                    f"{', '.join(sorted(self.keys()))}")
        return KeyData(self._data, self.source, key)

    def select_trains(self, trains: Any) -> SourceData:
        """The same source over some of the selected trains.

        Parameters
        ----------
        trains : slice, int, list, numpy.ndarray, by_index[...] or by_id[...]
            Any train selection :meth:`DataCollection.select_trains` accepts.

        Returns
        -------
        SourceData
            This source over those trains.

        Raises
        ------
        TrainIndexError
            A position is out of range.
        """
        return SourceData(self._data.select_trains(trains), self.source)

    def select_keys(self, keys: set[str] | None) -> SourceData:
        """The same source restricted to some keys.

        Parameters
        ----------
        keys : set of str or None
            Keys to keep (``None``: keep the current selection).

        Returns
        -------
        SourceData
            This source with only those keys.

        Raises
        ------
        PropertyNameError
            A key is not selected for this source.
        """
        data = self._data if keys is None else self._data.select({self.source: set(keys)})
        return SourceData(data, self.source)

    def data_counts(self, labelled: bool = True, index_group: str | None = None) -> Any:
        """Entries per selected train.

        Parameters
        ----------
        labelled : bool, default True
            A pandas Series indexed by train ID; False: a numpy array aligned with
            ``train_ids``.
        index_group : str, optional
            Count this INDEX group only (default: the largest count over the groups
            of the selected keys).

        Returns
        -------
        pandas.Series or numpy.ndarray
            Entry count per train (0 where the source has none).
        """
        groups = [index_group] if index_group is not None else sorted(self.index_groups)
        counts = np.zeros(len(self.train_ids), np.uint64)
        for group in groups:
            table = self._data.source_table(self.source, group)
            counts = np.maximum(counts, table.counts_for(self._data.train_ids_array))
        if not labelled:
            return counts
        import pandas as pd
        return pd.Series(counts, index=pd.Index(self._data.train_ids_array, name="trainId"))

    def train_id_coordinates(self, index_group: str | None = None) -> np.ndarray:
        """The train ID of every entry, as ``ndarray()`` of a key orders its entries.

        Parameters
        ----------
        index_group : str, optional
            The INDEX group to take entries from (needed when the groups of the
            selected keys hold different counts).

        Returns
        -------
        numpy.ndarray
            uint64 train IDs, each repeated by its entry count.

        Raises
        ------
        ValueError
            The index groups hold different counts (name one with ``index_group``).
        """
        if index_group is None:
            groups = sorted(self.index_groups)
            per_group = [self.data_counts(labelled=False, index_group=g) for g in groups]
            if any((c != per_group[0]).any() for c in per_group[1:]):
                raise ValueError(f"{self.source}: index groups {', '.join(groups)} hold "
                                 "different entry counts; pass index_group=")
            index_group = groups[0]
        return self[self.one_key(index_group)].train_id_coordinates()

    def drop_empty_trains(self, index_group: str | None = None) -> SourceData:
        """The same source over only the trains where it has data.

        Parameters
        ----------
        index_group : str, optional
            Judge by this INDEX group only (default: any group of the selected keys).

        Returns
        -------
        SourceData
            This source over the trains with at least one entry.
        """
        return self.select_trains(self.data_counts(False, index_group=index_group) > 0)

    def run_metadata(self) -> dict[str, object]:
        """The METADATA of the run this source belongs to.

        Returns
        -------
        dict
            As :meth:`DataCollection.run_metadata` gives it.

        Raises
        ------
        MultiRunError
            The collection combines several runs.
        """
        return self._data.run_metadata()

    def __repr__(self) -> str:
        return (f"<detstack.SourceData source={self.source!r} for "
                f"{len(self.train_ids)} trains>")
