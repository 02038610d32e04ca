"""Names of the entry axes of every key, and which length-1 axes a view may drop.

One table for every view form, so a key's dimensions are called the same in the
HDF5 view, the zarr manifest, the zarr store and Icechunk:

* the last two axes of pixel keys are ``slow_scan, fast_scan``;
* raw AGIPD keeps a ``data_gain`` axis before them (plane 0 ADC value, plane 1 gain);
* JUNGFRAU entries hold every memory cell: their first axis is ``cell``;
* byte blobs of XTDF detectors: ``magic_byte`` (magic numbers), ``detector_byte``,
  ``reserved_byte``, ``checksum_byte``;
* raw LPD/DSSC frames and their per-frame IDs carry a length-1 axis after the frame
  (``(n, 1, 256, 256)``): it has no meaning. Zarr forms drop it (the chunk bytes are
  the same); the HDF5 view keeps it as ``singleton``, because a mapping whose virtual
  and source selections differ in shape sends HDF5 down its slow copy path.

Anything else is ``<key>.axis<i>``.
"""

from __future__ import annotations

from dataclasses import dataclass

SINGLETON = "singleton"
SINGLETON_NOTE = ("length-1 axis kept from the source files so HDF5 copies on its fast path "
                  "(virtual and source selections of the same shape); index it with 0:1 and "
                  "squeeze after reading")
BYTE_KEYS = {"magicNumberBegin": "magic_byte", "magicNumberEnd": "magic_byte",
             "detector.data": "detector_byte", "header.reserved": "reserved_byte",
             "trailer.checksum": "checksum_byte"}


@dataclass(frozen=True)
class EntryAxes:
    """The entry axes of one key: their names, and which are meaningless length-1 axes."""

    names: tuple[str, ...]        # one per source entry axis
    singleton: tuple[int, ...]    # positions (in the entry) of length-1 axes without meaning

    def kept(self, squeeze: bool) -> tuple[int, ...]:
        """Entry axes a view stores: all, or all but the singletons."""
        return tuple(i for i in range(len(self.names)) if not (squeeze and i in self.singleton))


def entry_axes(key: str, entry: tuple[int, ...], *, xtdf: bool, per_frame: bool,
               module_shape: tuple[int, ...], cells: int) -> EntryAxes:
    """Name every entry axis of ``key`` (see the module docstring for the rules)."""
    names: list[str | None] = [None] * len(entry)
    if len(entry) >= 2 and tuple(entry[-2:]) == tuple(module_shape):
        names[-2:] = ["slow_scan", "fast_scan"]
        if xtdf and per_frame and len(entry) == 3 and entry[0] > 1:
            names[0] = "data_gain"
    if not xtdf and not per_frame and entry and entry[0] == cells:
        names[0] = "cell"
    byte_name = BYTE_KEYS.get(key) or BYTE_KEYS.get(key.rsplit(".", 1)[-1])
    if byte_name and len(entry) == 1:
        names[0] = byte_name
    singleton = tuple(i for i, (n, size) in enumerate(zip(names, entry, strict=True))
                      if n is None and size == 1)
    extra = {i: SINGLETON + (f"_{j}" if j else "") for j, i in enumerate(singleton)}
    final = tuple(n if n is not None else extra.get(i, f"{key}.axis{i}")
                  for i, n in enumerate(names))
    return EntryAxes(final, singleton)
