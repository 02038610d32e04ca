"""Reading EuXFEL run files: files, index, train IDs, sources, selections."""

from .collection import DataCollection, H5File, RunDirectory, SourceTable
from .files import RunFile
from .selection import ById, ByIndex, by_id, by_index, select_train_ids

__all__ = ["ById", "ByIndex", "DataCollection", "H5File", "RunDirectory", "RunFile",
           "SourceTable", "by_id", "by_index", "select_train_ids"]
