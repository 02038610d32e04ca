"""Progress of long steps (scanning, building views, references, copying), silent by default.

Library code wraps its long loops in :func:`track` or reports through :func:`counter`;
nothing is shown unless a caller installs a reporter (``with reporting(tqdm_bar): ...``,
as the ``detstack`` command does on a terminal). So the library never prints, and
progress costs nothing when nobody watches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Bar(Protocol):
    """What a reporter returns for one step: tqdm bars have exactly this interface."""

    def update(self, n: int = 1) -> Any: ...

    def close(self) -> None: ...


#: ``factory(label, total) -> Bar``; ``total`` is None when unknown.
Reporter = Callable[[str, "int | None"], Bar]

_reporter: Reporter | None = None


@contextmanager
def reporting(factory: Reporter | None) -> Iterator[None]:
    """Show the progress of every step run inside the block through ``factory``.

    Parameters
    ----------
    factory : callable or None
        ``factory(label, total)`` returning an object with ``update(n)`` and ``close()``,
        such as :func:`tqdm_bar`. None reports nothing.
    """
    global _reporter
    previous, _reporter = _reporter, factory
    try:
        yield
    finally:
        _reporter = previous


def active() -> bool:
    """True when a reporter is installed (someone watches the progress)."""
    return _reporter is not None


def track(items: Iterable[T], label: str, total: int | None = None) -> Iterable[T]:
    """``items``, advancing a progress bar labelled ``label`` per item when one is shown.

    Parameters
    ----------
    items : iterable
        What the loop runs over.
    label : str
        Short name of the step, e.g. ``"scanning files"``.
    total : int, optional
        Number of items, when ``items`` has no length.

    Returns
    -------
    iterable
        ``items`` itself when no reporter is installed, else a generator over it.
    """
    factory = _reporter
    if factory is None:
        return items
    if total is None and isinstance(items, Sized):
        total = len(items)
    return _tracked(items, factory(label, total))


def _tracked(items: Iterable[T], bar: Bar) -> Iterator[T]:
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()


def counter(label: str) -> Callable[[int, int], None]:
    """A ``callback(done, total)`` for code that reports counts (no-op when nobody watches).

    The bar is created on the first call and closed when ``done`` reaches ``total``.
    """
    factory = _reporter
    if factory is None:
        return lambda done, total: None
    state: dict[str, Any] = {"bar": None, "done": 0}

    def report(done: int, total: int) -> None:
        if state["bar"] is None:
            state["bar"] = factory(label, total)
        bar = state["bar"]
        if done > state["done"]:
            bar.update(done - state["done"])
            state["done"] = done
        if done >= total:
            bar.close()

    return report


def tqdm_bar(label: str, total: int | None) -> Bar:
    """A tqdm bar on stderr, removed when finished."""
    from tqdm import tqdm

    return tqdm(total=total, desc=label, leave=False, dynamic_ncols=True, mininterval=0.2)
