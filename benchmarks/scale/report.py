"""The table's cells and the summary lines under it (memory vs run length, bulk-read speed)."""

from __future__ import annotations

from .registry import MEASUREMENTS, Context


def fmt(result: dict[str, object]) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    return f"{result['seconds']:.2f} s, {result['rss_mb']:.0f} MB"


def memory_vs_length(name: str, kind: str, n0: int, r0: dict[str, object], n1: int,
                     r1: dict[str, object]) -> str:
    """How peak RSS grows with run length: MB per 1,000 trains between the shortest and
    the longest run, of the whole process and of the operation alone (peak minus the RSS
    when the clock started: the opened run and the imports)."""
    per = 1000 / (n1 - n0)
    peak = (float(r1["rss_mb"]) - float(r0["rss_mb"])) * per
    line = f"memory vs run length, {name}, {kind}: peak {peak:+.1f} MB per 1,000 trains"
    if r0.get("start_mb") and r1.get("start_mb"):
        own = [float(r["rss_mb"]) - float(r["start_mb"]) for r in (r0, r1)]
        opened = (float(r1["start_mb"]) - float(r0["start_mb"])) * per
        line += (f" (the operation alone {own[0]:.0f} MB at {n0:,} trains, {own[1]:.0f} MB at "
                 f"{n1:,}: {(own[1] - own[0]) * per:+.1f} MB per 1,000; the opened run before "
                 f"it {opened:+.1f})")
    return line


def summary(raw: dict[str, list[dict[str, object] | None]], ctxs: list[Context]) -> list[str]:
    """Peak RSS at the shortest and longest run of each kind (is memory independent of
    run length?), and the view's bulk-read speed relative to reading the sources."""
    out = []
    for row, results in raw.items():
        for kind in sorted({c.kind for c in ctxs}):
            have = [(c.trains, r) for c, r in zip(ctxs, results, strict=True)
                    if c.kind == kind and r is not None]
            if len(have) >= 2:
                (n0, r0), (n1, r1) = min(have, key=lambda x: x[0]), max(have, key=lambda x: x[0])
                out.append(f"peak RSS, {MEASUREMENTS[row].name}, {kind}: {r0['rss_mb']:.0f} MB "
                           f"at {n0:,} trains, {r1['rss_mb']:.0f} MB at {n1:,}")
                out.append(memory_vs_length(MEASUREMENTS[row].name, kind, n0, r0, n1, r1))
    for row, what in (("vds_bulk", "the view"), ("vds_frames_bulk", "the frames view")):
        if row not in raw or "src_bulk" not in raw:
            continue
        for c, v, d in zip(ctxs, raw[row], raw["src_bulk"], strict=True):
            if v is not None and d is not None:
                out.append(f"bulk read, {c.kind} {c.trains:,} trains: {what} reads at "
                           f"{float(d['seconds']) / float(v['seconds']):.2f}x the speed of "
                           "the run files")
    return out
