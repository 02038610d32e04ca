"""Parsing of the option values the commands share: train ranges, module lists, JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any


def json_object(text: str) -> dict[str, Any]:
    """``--storage-options '{"anon": true}'`` as a dict."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. \'{"anon": true}\'')
    return value


def _int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{what} {value} is negative")
    return value


def train_range(text: str) -> slice | list[int]:
    """``A:B`` (train IDs A to B, B excluded; either end may be left out) or ``A``
    (exactly train A). An empty range (``5:2``) is refused here."""
    if ":" not in text:
        return [_int(text, "train ID")]
    start_s, _, stop_s = text.partition(":")
    start = _int(start_s, "train ID") if start_s.strip() else None
    stop = _int(stop_s, "train ID") if stop_s.strip() else None
    if start is not None and stop is not None and start >= stop:
        raise argparse.ArgumentTypeError(
            f"{text} is empty: A:B selects train IDs from A up to B, B excluded")
    return slice(start, stop)


def module_list(text: str) -> list[int]:
    """``0,1,2``, ``0-7`` or a mix (``0-3,8``) as a sorted list of module numbers."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, sep, hi = part.partition("-")
        a = _int(lo, "module")
        b = _int(hi, "module") if sep else a
        if b < a:
            raise argparse.ArgumentTypeError(f"module range {part} is empty")
        out.update(range(a, b + 1))
    if not out:
        raise argparse.ArgumentTypeError("no module numbers given")
    return sorted(out)


def key_list(text: str) -> list[str]:
    """``image.data,image.pulseId`` as a list of keys."""
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise argparse.ArgumentTypeError("no keys given")
    return keys


def positive_int(text: str) -> int:
    value = _int(text, "value")
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value
