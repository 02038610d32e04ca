"""The numpy sections (Parameters, Returns, Raises) of ``DataCollection``'s docstrings.

Kept here so ``collection.py`` stays short: ``detstack.docstrings.complete_docs``
appends each entry to the summary written in the method's source, and
``tests/test_api_docs.py`` checks the result against the signatures.
"""

SOURCE = """\
source : str
    A selected source name.
"""
KEY = """\
key : str
    One of its selected keys.
"""
DEVICES = """\
devices : selection, optional
    Read only some sources and keys (any form :meth:`select` accepts).
"""
SOURCE_RAISES = """\
Raises
------
SourceNameError
    The source is not selected.
"""
KEY_RAISES = """\
Raises
------
SourceNameError, PropertyNameError
    The source or key is not selected.
"""

DOCS = {
    "__init__": """\
Parameters
----------
files : list of RunFile
    The opened files.
inc_suspect_trains : bool, default True
    Keep train IDs the files flag as suspect.
train_ids : numpy.ndarray, optional
    The selected train IDs, ascending (default: every train of the files, after
    checking that no source holds a train twice).
selection : dict, optional
    ``{source: frozenset of keys or None (every key)}`` (default: everything).
is_single_run : bool, optional
    Whether the files are one run (default: judged by their ``runNumber``).

Raises
------
DuplicateTrainError
    A source holds the same train ID in two places (when ``train_ids`` is not given).
""",
    "files_for_source": f"""\
Parameters
----------
{SOURCE}
Returns
-------
list of RunFile
    In the order the files were opened (by name for a run folder).

Raises
------
SourceNameError
    The source is not selected (the message names similar ones).
""",
    "keys_for_source": f"""\
Parameters
----------
{SOURCE}
Returns
-------
set of str
    Key names, e.g. ``{{'image.data', 'image.pulseId', ...}}``; control keys
    end in ``.value`` or ``.timestamp``.

{SOURCE_RAISES}""",
    "is_control": """\
Parameters
----------
source : str
    A source name.

Returns
-------
bool
    True for a selected control source, False otherwise.
""",
    "run_metadata": """\
Returns
-------
dict
    ``{'proposalNumber': ..., 'runNumber': ..., 'dataFormatVersion': ...}``
    and the other METADATA entries of the first file (fewer in old formats).

Raises
------
MultiRunError
    The collection combines files of several runs.
""",
    "source_table": f"""\
Parameters
----------
{SOURCE}group : str, default ''
    Its INDEX group (``'image'``, ``'header'``...; ``''`` for control data).

Returns
-------
SourceTable
    File, first row and row count of every selected train that has data.

{SOURCE_RAISES}IndexFormatError
    The group's INDEX is damaged (negative, overlapping or out-of-range rows).
""",
    "key_table": f"""\
Parameters
----------
{SOURCE}{KEY}
Returns
-------
SourceTable
    Where each selected train keeps the key's rows.

{KEY_RAISES}""",
    "index_groups": f"""\
Parameters
----------
{SOURCE}
Returns
-------
list of str
    Group names as in the files' INDEX section.

{SOURCE_RAISES}""",
    "key_info": f"""\
Parameters
----------
{SOURCE}{KEY}
Returns
-------
tuple
    ``(shape of one entry, numpy dtype)``, e.g. ``((2, 512, 128), uint16)``.

{KEY_RAISES}""",
    "select_trains": """\
Parameters
----------
train_range : slice, int, list, numpy.ndarray, by_index[...] or by_id[...]
    Positions (slice, int, list of ints), a boolean mask over the selected
    trains, ``by_index[...]`` (positions) or ``by_id[...]`` (train IDs: a
    slice, list or array).

Returns
-------
DataCollection
    The same sources over those trains.

Raises
------
TrainIndexError
    A position is out of range.
TypeError
    ``train_range`` is not a train selection.
""",
    "select": """\
Parameters
----------
seln_or_source_glob : str, list, dict or collection
    A source glob (with ``key_glob``); a list of source globs and
    ``(source glob, key glob)`` pairs; a ``{source: set of keys or None}``
    dict (no globs; an empty set or None keeps the source's selected keys);
    or a DataCollection, SourceData or KeyData whose selection to apply.
key_glob : str
    Keys to keep of the sources matched by a source glob; ``'*'`` keeps the
    keys already selected. Sources with none of the keys are dropped.
require_all, require_any : bool
    Keep only the trains where every (any) selected source has data.
warn_drop_trains_frac : float
    With ``require_all``, warn when a source drops at least this fraction
    of the trains.

Returns
-------
DataCollection
    The kept sources and keys (and, with ``require_*``, trains).

Raises
------
NoMatchError
    A glob matches no source or key (also a ValueError).
SourceNameError, PropertyNameError
    A dict names a source or key that is not selected.
""",
    "deselect": """\
Parameters
----------
seln_or_source_glob : str, list, dict or collection
    What to leave out, in any form :meth:`select` accepts; a source given
    with all its keys (or ``None``) is dropped whole.
key_glob : str, default '*'
    With a source glob: the keys to drop (``'*'``: the whole sources).

Returns
-------
DataCollection
    What remains selected.

Raises
------
NoMatchError
    A glob matches no source or key.
SourceNameError, PropertyNameError
    A dict names a source or key that is not selected.
""",
    "union": """\
Parameters
----------
*others : DataCollection
    Collections to combine with this one.

Returns
-------
DataCollection
    Every file once, the union of the selections and of the trains.

Raises
------
DuplicateTrainError
    Two different files hold the same train of the same source.
""",
    "get_array": f"""\
Parameters
----------
{SOURCE}key : str
    One of its keys (control keys with or without ``.value``).
extra_dims : list of str, optional
    Names of the dimensions after ``trainId`` (default ``dim_0``, ``dim_1``...).
roi : numpy index expression, optional
    Applied to every entry, e.g. ``np.s_[:, 100:200]``.
name : str, optional
    Name of the array (default ``'<source>.<key>'``).

Returns
-------
xarray.DataArray
    Every entry over the selected trains, with a ``trainId`` coordinate.

{KEY_RAISES}ValueError
    ``extra_dims`` names the wrong number of dimensions.
""",
    "get_dask_array": f"""\
Parameters
----------
{SOURCE}key : str
    One of its keys.
labelled : bool, default False
    Wrap it in an xarray.DataArray with a ``trainId`` coordinate.

Returns
-------
dask.array.Array or xarray.DataArray
    Entries over the selected trains, in parts of at most 1 GiB.

{KEY_RAISES}""",
    "get_series": f"""\
Parameters
----------
{SOURCE}key : str
    One of its keys, e.g. ``'beamEnergy'`` or ``'header.pulseCount'``.

Returns
-------
pandas.Series
    Values indexed by ``trainId``.

{KEY_RAISES}TypeError
    The key holds more than one value per entry.
""",
    "train_timestamps": """\
Parameters
----------
labelled : bool, default False
    A pandas Series indexed by train ID instead of a numpy array.
pydatetime : bool, default False
    A list of ``datetime.datetime`` objects.
euxfel_local_time : bool, default False
    In Europe/Berlin time instead of UTC (with ``labelled`` or ``pydatetime``).

Returns
-------
numpy.ndarray, pandas.Series or list
    ``datetime64[ns]`` per selected train; NaT (None with ``pydatetime``) where
    a train has no timestamp (format < 1.0 files).

Raises
------
ValueError
    ``euxfel_local_time`` without ``labelled`` or ``pydatetime``.
""",
    "info": """\
Parameters
----------
details_for_sources : iterable of str, optional
    Source globs whose keys (shape, dtype) to list too.
file : file-like, optional
    Where to print (default ``sys.stdout``).
""",
    "train_from_id": f"""\
Parameters
----------
train_id : int
    A selected train ID.
{DEVICES}keep_dims : bool, default False
    Keep the entry axis when a source has one entry in the train.
flat_keys : bool, default False
    Return ``{{(source, key): data}}`` instead of ``{{source: {{key: data}}}}``.

Returns
-------
tuple
    ``(train ID, {{source: {{key: data}}}})``; each source also has a
    ``'metadata'`` entry, and a source without data in the train has only that.

Raises
------
TrainIDError
    The train is not in the selection.
""",
    "train_from_index": f"""\
Parameters
----------
index : int
    Position among the selected trains (negative counts from the end).
{DEVICES}**kwargs
    ``keep_dims`` and ``flat_keys``, as for :meth:`train_from_id`.

Returns
-------
tuple
    ``(train ID, {{source: {{key: data}}}})``.

Raises
------
TrainIndexError
    ``index`` is out of range.
""",
    "trains": f"""\
Parameters
----------
{DEVICES}train_range : train selection, optional
    Only some trains (any form :meth:`select_trains` accepts).
require_all : bool, default False
    Skip trains where any selected source (any index group of its selected
    keys) has no data.
keep_dims : bool, default False
    Keep the entry axis when a source has one entry in a train.
flat_keys : bool, default False
    Yield ``{{(source, key): data}}`` instead of ``{{source: {{key: data}}}}``.

Yields
------
tuple
    ``(train ID, data dict)`` as :meth:`train_from_id` returns it.
""",
}
