"""Every public class, function and method documents its parameters, what it returns and
the errors it raises, in numpy style (checked with numpydoc's own validator), so
``help(det.get_array)`` is a complete reference."""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from numpydoc.docscrape import NumpyDocString
from numpydoc.validate import get_doc_object, validate

import detstack
import detstack.convert
import detstack.errors
import detstack.store
import detstack.synth
from detstack.detectors.keydata import MultimodKeyData
from detstack.detectors.masked import MaskedKeyData, MaskedXtdfKeyData
from detstack.detectors.xtdf_keydata import XtdfImageKeyData
from detstack.run.keydata import KeyData
from detstack.run.sourcedata import SourceData

# numpydoc checks that make "documents every parameter and return value" testable:
# no docstring, undocumented or unknown parameters, parameters or returns without a
# description, no Returns (Yields) section where the code returns (yields) a value
CHECKS = {"GL08", "PR01", "PR02", "PR07", "RT01", "RT03", "YD01"}
MODULES = [detstack, detstack.convert, detstack.store, detstack.synth]
# classes reached through the exports rather than exported themselves
REACHED = [SourceData, KeyData, MultimodKeyData, XtdfImageKeyData, MaskedKeyData,
           MaskedXtdfKeyData]
# entry points whose errors mostly come from deeper calls: a Raises section is required
# even where their own body raises nothing
MUST_LIST_RAISES = ["RunDirectory", "H5File", "open_view", "AGIPD1M", "JUNGFRAU",
                    "AGIPD1M.get_array", "AGIPD1M.get_dask_array", "AGIPD1M.trains",
                    "JUNGFRAU.get_array", "to_vds", "to_cxi", "to_manifest", "to_zarr",
                    "to_icechunk", "materialize", "write_frames"]


def _public_classes_and_functions() -> list[Any]:
    found: dict[int, Any] = {}
    for mod in MODULES:
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                found.setdefault(id(obj), obj)
    for cls in REACHED:
        found.setdefault(id(cls), cls)
    return list(found.values())


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    """(qualified name, function or property) of every public member detstack defines."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("detstack"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if inspect.isfunction(member) or isinstance(
                    member, (property, functools.cached_property)):
                yield f"{cls.__name__}.{name}", member


def _api() -> dict[str, Any]:
    api: dict[str, Any] = {}
    by_id: set[int] = set()
    for obj in _public_classes_and_functions():
        api.setdefault(obj.__qualname__, obj)
        by_id.add(id(obj))
        if inspect.isclass(obj):
            for qualname, member in _members(obj):
                target = getattr(member, "fget", None) or getattr(member, "func", None) \
                    or member
                if id(target) not in by_id:
                    by_id.add(id(target))
                    api[qualname] = member
    return api


API = _api()


def test_the_walk_reaches_the_whole_api() -> None:
    for name in ["DataCollection.select", "DataCollection.trains", "SourceData.keys",
                 "KeyData.ndarray", "KeyData.xarray", "AGIPD1M.get_array",
                 "JUNGFRAU.get_array", "StackView.asarray", "ViewCollection", "to_icechunk",
                 "to_zarr", "write_run", "XtdfImageKeyData.xarray", "FileFormatError"]:
        assert name in API, name
    assert len(API) > 150


@pytest.mark.parametrize("name", sorted(API))
def test_numpy_docstring_is_complete(name: str) -> None:
    obj = API[name]
    if isinstance(obj, (property, functools.cached_property)):
        assert inspect.getdoc(obj), f"{name}: the property has no docstring"
        return
    result = validate(get_doc_object(obj))
    problems = [f"{code} {message}" for code, message in result["errors"] if code in CHECKS]
    assert not problems, f"{name}: " + "; ".join(problems)
    if inspect.isfunction(obj):
        undocumented = _raised(obj) - _documented_raises(obj)
        assert not undocumented, (f"{name} raises {sorted(c.__name__ for c in undocumented)} "
                                  "without naming them (or a base class) under Raises")


@pytest.mark.parametrize("name", MUST_LIST_RAISES)
def test_entry_points_name_their_errors(name: str) -> None:
    assert NumpyDocString(inspect.getdoc(API[name]) or "")["Raises"], name


def _resolve(func: Any, expr: str) -> type | None:
    """The exception class an expression in ``func``'s module names, if it names one."""
    scope = {**vars(builtins), **vars(detstack.errors), **func.__globals__}
    try:
        value = eval(expr, scope)  # noqa: S307 - our own source, module names only
    except Exception:  # noqa: BLE001 - local variables, attributes of arguments
        return None
    return value if inspect.isclass(value) and issubclass(value, BaseException) else None


def _raised(func: Any) -> set[type]:
    """Exception classes ``func``'s own body raises (nested functions left out)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError):
        return set()
    found: set[type] = set()

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not top:
            return
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            cls = _resolve(func, ast.unparse(exc))
            if cls is not None and cls is not NotImplementedError:
                found.add(cls)
        for child in ast.iter_child_nodes(node):
            visit(child, False)

    visit(tree.body[0], True)
    return found


def _documented_raises(func: Any) -> set[type]:
    """Every raised class covered by the Raises section (the class or a subclass of a
    class named there)."""
    named = []
    for entry in NumpyDocString(inspect.getdoc(func) or "")["Raises"]:
        for part in f"{entry.name},{entry.type}".split(","):
            cls = _resolve(func, part.strip().split(".")[-1]) if part.strip() else None
            if cls is not None:
                named.append(cls)
    return {cls for cls in _raised(func) if any(issubclass(cls, n) for n in named)}


def test_package_ships_py_typed() -> None:
    assert (Path(detstack.__file__).parent / "py.typed").is_file()
