"""Numpy docstrings completed from text written once.

A class with many public methods (``DataCollection``) keeps each method's summary in
its source and the Parameters/Returns/Raises sections in a sibling ``*_docs`` module,
so the source file stays short (``complete_docs``); parameter entries shared by many
methods are written once and named by a ``$name`` line where they stand
(``with_blocks``). ``help()`` shows the whole numpy docstring either way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T", bound=type)
F = TypeVar("F", bound=Callable[..., Any])


def complete_docs(sections: Mapping[str, str]) -> Callable[[T], T]:
    """Class decorator appending numpy sections to the class's docstrings.

    Parameters
    ----------
    sections : mapping of str to str
        ``{method name: sections text}``; the key ``'__init__'`` completes the class
        docstring (numpy style documents constructor parameters there).

    Returns
    -------
    callable
        The decorator; it returns the class itself, its docstrings completed.

    Raises
    ------
    KeyError
        A key names no method defined in the class (a renamed method).
    """
    def apply(cls: T) -> T:
        for name, text in sections.items():
            if name == "__init__":
                cls.__doc__ = _joined(cls.__doc__, text)
                continue
            member = cls.__dict__[name]
            func = getattr(member, "fget", None) or getattr(member, "func", None) or member
            func.__doc__ = _joined(func.__doc__, text)
        return cls
    return apply


def _joined(summary: str | None, sections: str) -> str:
    return inspect.cleandoc(summary or "") + "\n\n" + inspect.cleandoc(sections) + "\n"


def with_blocks(blocks: Mapping[str, str]) -> Callable[[F], F]:
    """Function decorator: each docstring line that is just ``$name`` becomes ``blocks[name]``.

    Parameter descriptions shared by many methods are written once; the source still
    says which one stands where.

    Parameters
    ----------
    blocks : mapping of str to str
        ``{name: text}``, each text one or more complete numpy entries (unindented).

    Returns
    -------
    callable
        The decorator; it returns the function itself, its docstring filled in.

    Raises
    ------
    KeyError
        A ``$name`` line names no block.
    """
    def apply(func: F) -> F:
        lines = []
        for line in inspect.cleandoc(func.__doc__ or "").splitlines():
            name = line.strip()
            lines.append(blocks[name[1:]].rstrip("\n") if name.startswith("$") else line)
        func.__doc__ = "\n".join(lines) + "\n"
        return func
    return apply
