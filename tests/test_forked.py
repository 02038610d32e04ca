"""A worker's error reaches the parent typed; one that cannot be pickled as its message."""

from __future__ import annotations

import pytest

from detstack.convert.forked import run_reporting, unpack
from detstack.errors import DetstackError, MissingDataError


class Unpicklable(RuntimeError):
    def __reduce__(self):
        raise TypeError("no pickling")


def test_result_and_typed_error_travel():
    assert unpack(run_reporting(lambda i: i * 3, 7)) == 21

    def fails(i: int) -> None:
        raise MissingDataError("/data/r0001/RAW-R0001-AGIPD05-S00002.h5",
                               f"train {i} of module 5 is missing")

    reported = run_reporting(fails, 11)
    assert reported[0] == "error"
    with pytest.raises(MissingDataError, match="train 11 of module 5"):
        unpack(reported)


def test_unpicklable_error_travels_as_its_message():
    def fails(i: int) -> None:
        raise Unpicklable(f"task {i} broke")

    reported = run_reporting(fails, 2)
    assert reported[1] is None
    with pytest.raises(DetstackError, match="Unpicklable: task 2 broke"):
        unpack(reported)


def test_every_error_class_pickles_with_its_type_and_fields():
    import pickle

    from detstack.convert.manifest.storage import UnsupportedKeyError
    from detstack.errors import MissingDependencyError, OutputWriteError
    from detstack.store.manifest import SourceUnreachableError
    made = [MissingDataError("/data/f.h5", "train 3 is missing", "rebuild it"),
            OutputWriteError("/out/v.h5", "disk full"),
            MissingDependencyError("fastparquet", "parquet", "writing .parq manifests"),
            SourceUnreachableError("refs/0", "/data/f.h5", "moved"),
            UnsupportedKeyError("image.data", "szip compression")]
    for exc in made:
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert vars(back) == vars(exc)
