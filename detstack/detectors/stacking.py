"""Combine one train's per-module arrays into a single detector array.

A train dict (``{source: {key: array}}``) holds one array per detector module.
Analysis and geometry code want them as one array with a module axis, with a
fill value standing in for modules that sent nothing. ``stack_detector_data``
does that; ``StackView`` is its copy-free variant for callers that only need
to pick modules out again (e.g. geometry assembly).
"""

import operator
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import PropertyNameError

__all__ = ["StackView", "stack_data", "stack_detector_data"]

Index = Any  # one entry of a numpy index: int, slice, None, array...


def _normalise_axis(axis: int, ndim: int) -> int:
    """Map a possibly negative axis into range(ndim), as numpy would (no wrap-around)."""
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim


def _fill_scalar(dtype: np.dtype, fillvalue: Any) -> Any:
    """The value for missing modules: NaN for floats, 0 otherwise, unless given."""
    if fillvalue is None:
        fillvalue = np.nan if dtype.kind in "fc" else 0
    try:
        if dtype.kind in "biu" and isinstance(fillvalue, float) and not np.isfinite(fillvalue):
            raise ValueError(f"cannot convert float {fillvalue} to integer")
        return dtype.type(fillvalue)
    except (ValueError, OverflowError) as e:
        raise type(e)(
            f"fillvalue {fillvalue!r} cannot be stored in arrays of dtype {dtype} ({e}); "
            f"pass a fillvalue that fits this dtype, e.g. fillvalue=0"
        ) from e


def _assemble(arrays: Mapping[int, np.ndarray], nmodules: int, mod_shape: tuple[int, ...],
              dtype: np.dtype, fill: Any, axis: int) -> np.ndarray:
    """Copy modules into a new C-contiguous array with the module axis at ``axis``."""
    out = np.empty(mod_shape[:axis] + (nmodules,) + mod_shape[axis:], dtype=dtype)
    by_module = np.moveaxis(out, axis, 0)  # a view: writing it fills ``out``
    for modno in range(nmodules):
        if modno in arrays:
            by_module[modno] = arrays[modno]
        else:
            by_module[modno] = fill
    return out


def _describe(groups: Mapping[Any, list[str]]) -> str:
    return "; ".join(f"{k!r}: {', '.join(sorted(v))}" for k, v in groups.items())


def _check_dtypes(arrays: Mapping[str, np.ndarray]) -> np.dtype:
    """All arrays must share one dtype: silently upcasting would hide a data problem."""
    by_dtype: dict[np.dtype, list[str]] = {}
    for source, arr in arrays.items():
        by_dtype.setdefault(arr.dtype, []).append(source)
    if len(by_dtype) > 1:
        raise ValueError(
            f"Arrays have mismatched dtypes: {_describe(by_dtype)}. Convert them to one "
            f"dtype (or leave out the odd sources) before stacking."
        )
    return next(iter(by_dtype))


def stack_detector_data(
    train: Mapping[str, Mapping[str, Any]], data: str, axis: int = -3, modules: int = 16,
    fillvalue: Any = None, real_array: bool = True, *, pattern: str = r"/DET/(\d+)CH",
    starts_at: int = 0,
) -> "np.ndarray | StackView":
    """Stack key ``data`` of every module source in ``train`` along a new module axis.

    The module number comes from group 1 of ``pattern`` searched in each source
    name, minus ``starts_at``. Modules without the key, or whose array is empty
    (first dimension 0) while others have data, are filled with ``fillvalue``.

    Parameters
    ----------
    train : dict
        One train as ``DataCollection.trains()`` gives it: ``{source: {key: array}}``.
    data : str
        The key to stack, e.g. ``'image.data'``.
    axis : int, default -3
        Where the module axis goes in the result.
    modules : int, default 16
        Length of the module axis.
    fillvalue : scalar, optional
        Value for missing modules (default NaN for float data, 0 otherwise).
    real_array : bool, default True
        ``False`` returns a copy-free ``StackView`` instead of a NumPy array.
    pattern : str, default ``r"/DET/(\\d+)CH"``
        Regular expression whose group 1 is the module number in a source name.
    starts_at : int, default 0
        Module number of the first slot (e.g. 1 for JUNGFRAU).

    Returns
    -------
    numpy.ndarray or StackView
        The modules' arrays stacked along ``axis``.

    Raises
    ------
    ValueError
        An empty ``train``, ``modules`` below 1, a ``pattern`` without a group, no
        source with the key, or modules whose arrays differ in shape or dtype.
    IndexError
        A module number outside ``0 .. modules - 1`` after ``starts_at``.
    """
    if not train:
        raise ValueError("No data: the train dict is empty, so there is nothing to stack.")
    if modules < 1:
        raise ValueError(f"modules must be at least 1, got {modules}")
    regex = re.compile(pattern)
    if regex.groups < 1:
        raise ValueError(f"pattern {pattern!r} needs a group capturing the module number")
    arrays: dict[str, np.ndarray] = {}
    modnos: dict[str, int] = {}
    by_modno: dict[int, str] = {}
    for source, source_data in train.items():
        match = regex.search(source)
        if match is None:
            raise ValueError(
                f"Source {source!r} doesn't match pattern {pattern!r}; pass pattern= with a "
                f"regex whose first group is the module number, or drop non-module sources."
            )
        if data not in source_data:
            continue
        modno = int(match.group(1)) - starts_at
        if modno in by_modno:
            raise ValueError(
                f"Sources {by_modno[modno]!r} and {source!r} both give module "
                f"{modno + starts_at} for {data!r}; select only one of them."
            )
        by_modno[modno] = source
        modnos[source] = modno
        arrays[source] = np.asarray(source_data[data])
    if not arrays:
        raise ValueError(
            f"No data: no source in the train has the key {data!r} (sources: "
            f"{', '.join(sorted(train))}). Check the key name, e.g. 'image.data'."
        )
    dtype = _check_dtypes(arrays)

    by_shape: dict[tuple[int, ...], list[str]] = {}
    for source, arr in arrays.items():
        by_shape.setdefault(arr.shape, []).append(source)
    if len(by_shape) > 1:
        empty = [s for s in by_shape if s and s[0] == 0]
        full = [s for s in by_shape if not (s and s[0] == 0)]
        if len(by_shape) != 2 or len(empty) != 1 or empty[0][1:] != full[0][1:]:
            raise ValueError(
                f"Arrays have mismatched shapes: {_describe(by_shape)}. All modules must "
                f"have one shape (modules without data may be empty in the first dimension)."
            )
        for source in by_shape[empty[0]]:  # treat as missing modules
            del arrays[source]
    mod_shape = next(iter(arrays.values())).shape

    for source, modno in sorted(modnos.items(), key=lambda item: item[1]):
        if not 0 <= modno < modules:
            raise IndexError(
                f"Module {modno} (source {source!r}, starts_at={starts_at}) is out of range for "
                f"a detector with {modules} modules; pass the right modules= or starts_at=."
            )
    fill = _fill_scalar(dtype, fillvalue)
    axis = _normalise_axis(axis, len(mod_shape) + 1)
    present = {modnos[source]: arr for source, arr in arrays.items()}
    if real_array:
        return _assemble(present, modules, mod_shape, dtype, fill, axis)
    return StackView(present, modules, mod_shape, dtype, fill, stack_axis=axis)


def stack_data(train: Mapping[str, Mapping[str, Any]], data: str, axis: int = -3,
               xcept: Iterable[str] = ()) -> np.ndarray:
    """Stack key ``data`` of every source except ``xcept``, without gap filling.

    Sources are ordered by the integers in their names (so 'DET/2CH0' comes
    before 'DET/10CH0'), which suits sources that are not detector modules.

    Parameters
    ----------
    train : mapping
        ``{source: {key: array}}``, one train as ``run.train_from_id`` returns it.
    data : str
        The key to stack, e.g. ``'image.data'``.
    axis : int, default -3
        Position of the new source axis in the result.
    xcept : str or iterable of str, optional
        Sources to leave out.

    Returns
    -------
    numpy.ndarray
        The sources' arrays stacked on ``axis``.

    Raises
    ------
    ValueError
        No source is left, or the arrays differ in shape or dtype.
    PropertyNameError
        A source lacks the key (leave it out with ``xcept``).
    """
    skip = {xcept} if isinstance(xcept, str) else set(xcept)  # a lone name, not its letters
    sources = [s for s in train if s not in skip]
    if not sources:
        raise ValueError("No data after filtering by 'xcept' argument.")
    sources.sort(key=lambda s: [int(n) for n in re.findall(r"\d+", s)])
    lacking = [s for s in sources if data not in train[s]]
    if lacking:
        raise PropertyNameError(
            f"Key {data!r} is missing from source(s) {', '.join(lacking)}; "
            f"pass them in xcept= or use stack_detector_data, which fills gaps."
        )
    arrays = {s: np.asarray(train[s][data]) for s in sources}
    _check_dtypes(arrays)
    shapes = {arr.shape for arr in arrays.values()}
    if len(shapes) > 1:
        by_shape: dict[tuple[int, ...], list[str]] = {}
        for source, arr in arrays.items():
            by_shape.setdefault(arr.shape, []).append(source)
        raise ValueError(f"Arrays have mismatched shapes: {_describe(by_shape)}.")
    return np.stack(list(arrays.values()), axis=axis)


class StackView:
    """Read-only view of per-module arrays as if stacked on ``stack_axis``, without copying.

    Index it with an integer at the stack axis to get one module (a missing one
    gives an array of the fill value), or with ``:`` there to get a new
    ``StackView`` of every module sliced by the other indices. In that new view
    the stack axis stays where it lands after the other indices are applied
    (integer indices before it remove axes, ``None`` adds one), so the view
    always equals the same index applied to ``asarray()``.

    Parameters
    ----------
    data : mapping of int to numpy.ndarray
        ``{module number: array}`` of the modules present, each of ``mod_shape``.
    nmodules : int
        Modules on the stack axis (absent ones read as ``fillvalue``).
    mod_shape : tuple of int
        Shape of one module's array.
    dtype : dtype or numpy.ndarray
        Dtype of the stack (or an array whose dtype to use).
    fillvalue : scalar
        Value of the modules not in ``data``.
    stack_axis : int, default -3
        Position of the module axis.

    Raises
    ------
    ValueError
        A module's array does not have ``mod_shape``, or its number is out of range.
    """

    def __init__(self, data: Mapping[int, np.ndarray], nmodules: int,
                 mod_shape: tuple[int, ...], dtype: Any, fillvalue: Any,
                 stack_axis: int = -3) -> None:
        self._data = dict(data)
        self.nmodules = nmodules
        self.mod_shape = tuple(mod_shape)
        # anything np.dtype accepts, or an array standing for its dtype (as EXtra-data allows)
        self.dtype = np.dtype(dtype.dtype if isinstance(dtype, np.ndarray) else dtype)
        self.fillvalue = fillvalue
        self.ndim = len(self.mod_shape) + 1
        self.stack_axis = _normalise_axis(stack_axis, self.ndim)
        for modno, arr in self._data.items():
            if arr.shape != self.mod_shape or not 0 <= modno < nmodules:
                raise ValueError(f"Module {modno} array {arr.shape} doesn't fit {self!r}")
        self._fill_array: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of ``asarray()``."""
        ax = self.stack_axis
        return self.mod_shape[:ax] + (self.nmodules,) + self.mod_shape[ax:]

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"<StackView (shape={self.shape}, {len(self._data)}/{self.nmodules} modules, "
                f"stack axis {self.stack_axis}, dtype={self.dtype})>")

    def _module(self, modno: int) -> np.ndarray:
        """One module's array; missing modules share one cached fill array."""
        if modno in self._data:
            return self._data[modno]
        if self._fill_array is None:
            self._fill_array = np.full(self.mod_shape, self.fillvalue, dtype=self.dtype)
        return self._fill_array

    def _expand(self, key: Any) -> tuple[Index, ...]:
        """Turn ``key`` into a tuple with one entry per axis (plus any ``None``)."""
        key = key if isinstance(key, tuple) else (key,)
        n_ellipsis = sum(k is Ellipsis for k in key)
        if n_ellipsis > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        n_used = sum(k is not None and k is not Ellipsis for k in key)
        if n_used > self.ndim:
            raise IndexError(f"too many indices: {self!r} is {self.ndim}-dimensional, "
                             f"but {n_used} were indexed")
        fill = (slice(None),) * (self.ndim - n_used)
        if n_ellipsis:
            pos = next(i for i, k in enumerate(key) if k is Ellipsis)
            return key[:pos] + fill + key[pos + 1:]
        return key + fill

    def __getitem__(self, key: Any) -> "np.ndarray | StackView":
        key = self._expand(key)
        axis_entries = [i for i, k in enumerate(key) if k is not None]
        pos = axis_entries[self.stack_axis]
        at_stack, rest = key[pos], key[:pos] + key[pos + 1:]
        if _is_int(at_stack):
            modno = operator.index(at_stack)
            if not -self.nmodules <= modno < self.nmodules:
                raise IndexError(f"Module {modno} is out of range for a stack of "
                                 f"{self.nmodules} modules")
            return self._module(modno % self.nmodules)[rest]
        if isinstance(at_stack, slice) and at_stack == slice(None):
            if not all(k is None or isinstance(k, slice) or _is_int(k) for k in rest):
                raise IndexError("Slicing all modules of a StackView supports only integers, "
                                 "slices and None on other axes; use .asarray() first.")
            new_axis = sum(k is None or isinstance(k, slice) for k in key[:pos])
            template = np.broadcast_to(np.empty((), self.dtype), self.mod_shape)[rest]
            sliced = {m: arr[rest] for m, arr in self._data.items()}
            return StackView(sliced, self.nmodules, template.shape, self.dtype,
                             self.fillvalue, stack_axis=new_axis)
        raise IndexError(
            f"StackView can only select a single module (an integer) or all modules (':') on "
            f"its stack axis ({self.stack_axis}), not {at_stack!r}; use .asarray() first."
        )

    def asarray(self) -> np.ndarray:
        """Copy into a real array, filling missing modules.

        Returns
        -------
        numpy.ndarray
            Of ``shape``, absent modules holding ``fillvalue``.
        """
        return _assemble(self._data, self.nmodules, self.mod_shape, self.dtype,
                         self.fillvalue, self.stack_axis)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """Let ``np.asarray(view)`` work; a real array always needs a copy."""
        if copy is False:
            raise ValueError("A StackView can't become a numpy array without copying")
        arr = self.asarray()
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def squeeze(self, axis: int | tuple[int, ...] | None = None) -> "np.ndarray | StackView":
        """Drop length-1 axes, like ``ndarray.squeeze``.

        Parameters
        ----------
        axis : int or tuple of int, optional
            Axes to drop (default: every length-1 axis).

        Returns
        -------
        numpy.ndarray or StackView
            A view without those axes; squeezing the stack axis of a one-module
            view returns that module's array.

        Raises
        ------
        TypeError
            ``axis`` is not None, an int or a tuple of ints.
        ValueError
            An axis is repeated or its length is not 1.
        """
        if axis is None:
            axes = [i for i, n in enumerate(self.shape) if n == 1]
        elif _is_int(axis):
            axes = [_normalise_axis(operator.index(axis), self.ndim)]
        elif isinstance(axis, tuple) and all(_is_int(a) for a in axis):
            axes = [_normalise_axis(operator.index(a), self.ndim) for a in axis]
        else:
            raise TypeError(f"axis={axis!r} not supported; use None, an int or a tuple of ints")
        if len(set(axes)) != len(axes):
            raise ValueError(f"repeated axis in squeeze: {axis!r}")
        if any(self.shape[a] != 1 for a in axes):
            raise ValueError("cannot squeeze out an axis with size != 1")
        return self[tuple(0 if i in axes else slice(None) for i in range(self.ndim))]


def _is_int(obj: Any) -> bool:
    """True for Python/numpy integers but not booleans (numpy treats those as masks)."""
    return isinstance(obj, (int, np.integer)) and not isinstance(obj, (bool, np.bool_))
