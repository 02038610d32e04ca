"""Opening views (HDF5 virtual views, zarr manifests, zarr stores) as collections."""

from .open import open_view, register_opener
from .view_collection import RowView, ViewCollection, ViewModuleFile

__all__ = ["RowView", "ViewCollection", "ViewModuleFile", "open_view", "register_opener"]
