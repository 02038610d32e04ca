"""The reliability suite's tally: what it tried, and how each try ended.

Tests call ``count(kind)``; the conftest sums the tallies of every xdist worker and
prints the closing line. A silently wrong, hung or crashed try also fails its test.
"""

from __future__ import annotations

from collections import Counter

KINDS = ("bad inputs", "faults", "attacks", "silently wrong", "hangs", "crashes",
         "known wrong")   # found in strict-xfail cases whose fix is in another branch
TALLY: Counter[str] = Counter()


def count(kind: str, n: int = 1) -> None:
    assert kind in KINDS, kind
    TALLY[kind] += n


def summary(tally: Counter[str]) -> str:
    line = (f"{tally['bad inputs']} bad inputs tried, {tally['faults']} faults injected, "
            f"{tally['attacks']} attacks refused, {tally['silently wrong']} silently wrong")
    if tally["hangs"] or tally["crashes"]:
        line += f", {tally['hangs']} hangs, {tally['crashes']} crashes"
    if tally["known wrong"]:
        line += (f" ({tally['known wrong']} more failures in cases marked xfail as "
                 "known gaps)")
    return line
