"""Docstrings completed from a separate table of numpy sections.

A class with many public methods (``DataCollection``) keeps each method's summary in
its source and the Parameters/Returns/Raises sections in a sibling ``*_docs`` module,
so the source file stays short while ``help()`` shows the whole numpy docstring.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T", bound=type)


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
