"""stack_detector_data / stack_data / StackView, checked against extra_data as an oracle.

The mock runs hold unwritten (all-zero) pixel chunks, so every module array is
replaced with distinct, read-only values before stacking: a mix-up of modules
then changes the result, and any write into the inputs fails loudly.
"""

import re
from pathlib import Path
from typing import Any

import extra_data
import numpy as np
import pytest
from extra_data.tests.make_examples import make_fxe_run, make_jungfrau_run

from detstack.detectors.stacking import StackView, stack_data, stack_detector_data

LPD_SHAPE = (128, 1, 256, 256)
Train = dict[str, dict[str, Any]]


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def _load_train(run_dir: Path, sources: str, key: str, **kw: Any) -> Train:
    run = extra_data.RunDirectory(str(run_dir), parallelize=False)
    _, train = run.select(sources, key).train_from_index(0, **kw)
    return train


def _modno(source: str, pattern: str = r"/DET/(\d+)CH") -> int:
    return int(re.search(pattern, source).group(1))


@pytest.fixture(scope="module", params=["0.5", "1.0"])
def lpd_base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Train:
    """One LPD train (16 modules) with module m holding values 1000*m + [100, 1000)."""
    run_dir = tmp_path_factory.mktemp(f"fxe{request.param}")
    make_fxe_run(str(run_dir), format_version=request.param)
    train = _load_train(run_dir, "*/DET/*", "image.data")
    assert len(train) == 16
    noise = np.random.default_rng(42).integers(100, 1000, LPD_SHAPE, dtype=np.uint16)
    out: Train = {}
    for source, src_data in train.items():
        assert src_data["image.data"].shape == LPD_SHAPE
        assert src_data["image.data"].dtype == np.uint16
        out[source] = {"image.data": _read_only(noise + np.uint16(1000 * _modno(source)))}
    return out


@pytest.fixture
def lpd(lpd_base: Train) -> Train:
    """A fresh train dict per test (arrays shared, read-only) so tests can drop sources/keys."""
    return {source: dict(src_data) for source, src_data in lpd_base.items()}


@pytest.fixture
def small(lpd: Train) -> Train:
    """The LPD train cut to 2 frames, for tests that stack many times."""
    return {s: {"image.data": d["image.data"][:2]} for s, d in lpd.items()}


@pytest.fixture(scope="module")
def jf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("jf")
    make_jungfrau_run(str(run_dir))
    return run_dir


def assert_same(ours: Any, ref: Any) -> None:
    assert isinstance(ours, np.ndarray)
    ref = np.asarray(ref)
    assert ours.shape == ref.shape
    assert ours.dtype == ref.dtype
    assert np.array_equal(ours, ref, equal_nan=ours.dtype.kind in "fc")


def source_for(train: Train, modno: int, pattern: str = r"/DET/(\d+)CH") -> str:
    return next(s for s in train if _modno(s, pattern) == modno)


def test_default_axis(lpd: Train) -> None:
    ours = stack_detector_data(lpd, "image.data")
    assert ours.shape == (128, 1, 16, 256, 256)
    assert ours.flags.c_contiguous
    assert_same(ours, extra_data.stack_detector_data(lpd, "image.data"))
    for m in range(16):
        assert np.array_equal(ours[:, :, m], lpd[source_for(lpd, m)]["image.data"])


@pytest.mark.parametrize("axis, shape", [
    (0, (16, 2, 1, 256, 256)), (1, (2, 16, 1, 256, 256)), (-1, (2, 1, 256, 256, 16)),
    (-5, (16, 2, 1, 256, 256)), (3, (2, 1, 256, 16, 256)),
])
def test_axis(small: Train, axis: int, shape: tuple[int, ...]) -> None:
    ours = stack_detector_data(small, "image.data", axis=axis)
    assert ours.shape == shape
    assert ours.flags.c_contiguous
    assert_same(ours, extra_data.stack_detector_data(small, "image.data", axis=axis))


def test_stack_data(lpd: Train) -> None:
    ours = stack_data(lpd, "image.data")
    assert ours.shape == (128, 1, 16, 256, 256)
    assert_same(ours, extra_data.stack_data(lpd, "image.data"))
    # Ordered by the numbers in the name: module 10 lands at position 10, not 2.
    np.testing.assert_array_equal(ours[:, :, 10], lpd[source_for(lpd, 10)]["image.data"])


def test_stack_data_xcept(small: Train) -> None:
    skip = [source_for(small, 3), source_for(small, 12)]
    ours = stack_data(small, "image.data", axis=0, xcept=skip)
    assert ours.shape == (14, 2, 1, 256, 256)
    assert_same(ours, extra_data.stack_data(small, "image.data", axis=0, xcept=skip))
    assert_same(stack_data(small, "image.data", xcept=skip[0]),
                extra_data.stack_data(small, "image.data", xcept=[skip[0]]))
    for func in (stack_data, extra_data.stack_data):
        with pytest.raises(ValueError, match="xcept"):
            func(small, "image.data", xcept=list(small))


def test_stack_data_errors(small: Train) -> None:
    del small[source_for(small, 4)]["image.data"]
    for func in (stack_data, extra_data.stack_data):
        with pytest.raises(KeyError, match="image.data"):
            func(small, "image.data")
    small[source_for(small, 4)]["image.data"] = np.zeros((2, 1, 256, 256), np.float32)
    with pytest.raises(ValueError, match=re.escape("dtype('float32')")):
        stack_data(small, "image.data")
    small[source_for(small, 4)]["image.data"] = np.zeros((3, 1, 256, 256), np.uint16)
    with pytest.raises(ValueError, match=re.escape("(3, 1, 256, 256)")):
        stack_data(small, "image.data")


def _drop_modules(train: Train, how: list[str]) -> Train:
    """Make modules 3, 7, 5 missing: source deleted, key deleted, empty array."""
    if "source" in how:
        del train[source_for(train, 3)]
    if "key" in how:
        del train[source_for(train, 7)]["image.data"]
    if "empty" in how:
        train[source_for(train, 5)]["image.data"] = np.zeros((0, 1, 256, 256), np.uint16)
    return train


MISSING = [["source"], ["key"], ["empty"], ["source", "key", "empty"]]


@pytest.mark.parametrize("how", MISSING)
@pytest.mark.parametrize("fillvalue, fill", [(22, 22), (None, 0)])
def test_missing_modules(small: Train, how: list[str], fillvalue: int | None, fill: int) -> None:
    train = _drop_modules(small, how)
    ours = stack_detector_data(train, "image.data", fillvalue=fillvalue)
    assert ours.shape == (2, 1, 16, 256, 256)
    assert_same(ours, extra_data.stack_detector_data(train, "image.data", fillvalue=fillvalue))
    assert not (ours[:, :, 0] == fill).any()
    gone = {"source": 3, "key": 7, "empty": 5}
    for m in range(16):
        assert (ours[:, :, m] == fill).all() == (m in [gone[h] for h in how])


def test_missing_full_size_and_nan_into_int(lpd: Train) -> None:
    train = _drop_modules(lpd, ["source", "key", "empty"])
    ours = stack_detector_data(train, "image.data", fillvalue=22)
    assert ours.shape == (128, 1, 16, 256, 256)
    assert_same(ours, extra_data.stack_detector_data(train, "image.data", fillvalue=22))
    for func in (stack_detector_data, extra_data.stack_detector_data):
        with pytest.raises(ValueError):
            func(train, "image.data", fillvalue=np.nan)
    with pytest.raises(ValueError, match="fillvalue nan cannot be stored .* uint16"):
        stack_detector_data(train, "image.data", fillvalue=np.nan)
    for func in (stack_detector_data, extra_data.stack_detector_data):
        with pytest.raises(OverflowError):
            func(train, "image.data", fillvalue=70000)


@pytest.mark.parametrize("how", MISSING)
def test_missing_modules_view(small: Train, how: list[str]) -> None:
    train = _drop_modules(small, how)
    comb = stack_detector_data(train, "image.data", fillvalue=22, real_array=False)
    ref = extra_data.stack_detector_data(train, "image.data", fillvalue=22, real_array=False)
    real = stack_detector_data(train, "image.data", fillvalue=22)
    assert isinstance(comb, StackView)
    assert comb.shape == ref.shape == (2, 1, 16, 256, 256)
    assert comb.ndim == 5 and comb.dtype == np.uint16 and len(comb) == 2
    for m in range(16):
        assert_same(comb[:, :, m], ref[:, :, m])
        assert_same(comb[:, :, m], real[:, :, m])
    sub = comb[0, 0]
    assert isinstance(sub, StackView) and sub.shape == ref[0, 0].shape == (16, 256, 256)
    for m in range(16):
        assert_same(sub[m], ref[0, 0][m])
    assert_same(sub.asarray(), ref[0, 0].asarray())
    assert_same(comb.asarray(), ref.asarray())
    assert_same(np.asarray(comb), real)
    assert np.asarray(comb, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="without copying"):
        np.asarray(comb, copy=False)
    assert f"{16 - len(how)}/16 modules" in repr(comb)


def test_mismatched_shapes(small: Train) -> None:
    for m in (0, 15):
        small[source_for(small, m)]["image.data"] = np.zeros((1, 1, 512, 128), np.uint16)
    for func in (stack_detector_data, extra_data.stack_detector_data):
        with pytest.raises(ValueError, match=re.escape("(1, 1, 512, 128)")):
            func(small, "image.data")
    with pytest.raises(ValueError, match=re.escape(source_for(small, 15))):
        stack_detector_data(small, "image.data")


def test_mismatched_frame_count(small: Train) -> None:
    for m in (2, 9):
        small[source_for(small, m)]["image.data"] = np.zeros((64, 1, 256, 256), np.uint16)
    for func in (stack_detector_data, extra_data.stack_detector_data):
        with pytest.raises(ValueError, match=re.escape("(64, 1, 256, 256)")):
            func(small, "image.data")


def test_mismatched_dtypes(small: Train) -> None:
    small[source_for(small, 3)]["image.data"] = np.zeros((2, 1, 256, 256), np.float32)
    for func in (stack_detector_data, extra_data.stack_detector_data):
        with pytest.raises(ValueError, match=re.escape("dtype('float32')")):
            func(small, "image.data")
    with pytest.raises(ValueError, match=re.escape(source_for(small, 3))):
        stack_detector_data(small, "image.data")


def test_module_out_of_range(small: Train) -> None:
    small["FXE_DET_LPD1M-1/DET/16CH0:xtdf"] = {"image.data": np.zeros((2, 1, 256, 256), np.uint16)}
    for func in (stack_detector_data, extra_data.stack_detector_data):
        with pytest.raises(IndexError, match="Module 16 .* 16 modules"):
            func(small, "image.data")


def test_no_data_and_pattern_mismatch(small: Train) -> None:
    for func in (stack_detector_data, extra_data.stack_detector_data):
        with pytest.raises(ValueError, match="No data"):
            func({}, "image.data")
        with pytest.raises(ValueError, match="doesn't match pattern"):
            func({**small, "FXE_XAD_GEC/CAM/CAMERA:daqOutput": {"image.data": 0}}, "image.data")


@pytest.mark.parametrize("keep_dims", [False, True])
def test_jungfrau(jf_dir: Path, keep_dims: bool) -> None:
    train = _load_train(jf_dir, "*JF4M/DET/*", "data.adc", keep_dims=keep_dims)
    rng = np.random.default_rng(1)
    for src_data in train.values():
        arr = src_data["data.adc"]
        src_data["data.adc"] = _read_only(rng.random(arr.shape, dtype=np.float32))
    del train[source_for(train, 5, r"/DET/JNGFR(\d+)")]
    kw: dict[str, Any] = dict(modules=8, pattern=r"/DET/JNGFR(\d+)", starts_at=1)
    ours = stack_detector_data(train, "data.adc", **kw)
    assert ours.shape == ((1,) if keep_dims else ()) + (16, 8, 512, 1024)
    assert_same(ours, extra_data.stack_detector_data(train, "data.adc", **kw))
    assert np.isnan(ours[..., 4, :, :]).all()  # JNGFR05 -> index 4, float fill is NaN
    assert not np.isnan(ours[..., 3, :, :]).any()
    view = stack_detector_data(train, "data.adc", real_array=False, **kw)
    assert_same(view.asarray(), ours)


def _tiny_view(n_present: int, modules: int) -> tuple[StackView, Any, np.ndarray]:
    """Our view, extra_data's view and the real stacked array of (1, 4) modules."""
    train = {f"A/DET/{m}CH0": {"x": np.arange(4.0).reshape(1, 4) + m} for m in range(n_present)}
    kw: dict[str, Any] = dict(axis=0, modules=modules)
    return (stack_detector_data(train, "x", real_array=False, **kw),
            extra_data.stack_detector_data(train, "x", real_array=False, **kw),
            stack_detector_data(train, "x", **kw))


def test_squeeze_two_modules() -> None:
    ours, ref, real = _tiny_view(2, 2)
    assert ours.shape == ref.shape == (2, 1, 4)
    sq = ours.squeeze()
    assert isinstance(sq, StackView) and sq.shape == ref.squeeze().shape == (2, 4)
    # extra_data's squeezed view reports (2, 4) but its asarray() gives (4, 2); ours agrees
    # with numpy:
    assert_same(sq.asarray(), real.squeeze())
    assert_same(ours.squeeze(axis=1).asarray(), real.squeeze(axis=1))
    for func in (ours.squeeze, ref.squeeze):
        with pytest.raises(ValueError, match="size != 1"):
            func(axis=0)
        with pytest.raises(np.exceptions.AxisError):
            func(axis=-4)
        with pytest.raises(TypeError):
            func(axis=1.0)
    with pytest.raises(ValueError, match="repeated axis"):
        ours.squeeze(axis=(1, -2))


def test_squeeze_one_module() -> None:
    ours, ref, real = _tiny_view(1, 1)
    assert ours.shape == ref.shape == (1, 1, 4)
    assert_same(ours.squeeze(), ref.squeeze())
    assert ours.squeeze().shape == (4,)
    for axis in (0, -3, (0,)):
        assert_same(ours.squeeze(axis=axis), ref.squeeze(axis=axis))
        assert_same(ours.squeeze(axis=axis), real.squeeze(axis=axis))
    assert ours.squeeze(axis=-2).shape == ref.squeeze(axis=-2).shape == (1, 4)
    assert_same(ours.squeeze(axis=-2).asarray(), real.squeeze(axis=-2))
    assert_same(ours.squeeze(axis=(0, 1)), real.squeeze(axis=(0, 1)))
    for func in (ours.squeeze, ref.squeeze):
        with pytest.raises(np.exceptions.AxisError):
            func(axis=4)


# --- Deliberate differences from extra_data -------------------------------------------


def test_full_slice_keeps_stack_axis(small: Train) -> None:
    """extra_data puts the stack axis of a sliced view back at -3; we keep it in place."""
    view = stack_detector_data(small, "image.data", axis=0, real_array=False)
    real = stack_detector_data(small, "image.data", axis=0)
    sub = view[:, 0]
    assert sub.shape == (16, 1, 256, 256) and sub.stack_axis == 0
    assert_same(sub[3], real[3, 0])
    assert extra_data.stack_detector_data(small, "image.data", axis=0, real_array=False)[
        :, 0].shape == (1, 16, 256, 256)  # the quirk we fix
    for axis in (0, 1, 2, -1):
        view = stack_detector_data(small, "image.data", axis=axis, real_array=False)
        real = stack_detector_data(small, "image.data", axis=axis)
        for key in (np.s_[1], np.s_[:, 0], np.s_[..., 3], np.s_[:, None, ..., 5, :],
                    np.s_[-1, :, ::3], np.s_[...], np.s_[0, 0, 0]):
            try:
                got = view[key]
            except IndexError as e:  # only unsupported stack-axis selections may fail
                assert "only select a single module" in str(e)
                continue
            assert_same(np.asarray(got), real[key])


def test_view_index_errors(small: Train) -> None:
    view = stack_detector_data(small, "image.data", real_array=False)
    with pytest.raises(IndexError, match="Module 16 is out of range .* 16 modules"):
        view[:, :, 16]
    with pytest.raises(IndexError, match="-17"):
        view[:, :, -17]  # extra_data wraps this round to module 15
    assert_same(view[:, :, -1], small[source_for(small, 15)]["image.data"])
    assert_same(view[:, :, np.int64(2)], small[source_for(small, 2)]["image.data"])
    with pytest.raises(IndexError, match="single module"):
        view[:, :, 1:3]
    with pytest.raises(IndexError, match="single module"):
        view[:, :, True]
    with pytest.raises(IndexError, match="too many indices"):
        view[0, 0, 0, 0, 0, 0]
    with pytest.raises(IndexError, match="single ellipsis"):
        view[..., 0, ...]


def test_key_in_no_source(small: Train) -> None:
    with pytest.raises(ValueError, match="max()"):
        extra_data.stack_detector_data(small, "image.mask")
    with pytest.raises(ValueError, match="has the key 'image.mask'"):
        stack_detector_data(small, "image.mask")


def test_module_below_starts_at(small: Train) -> None:
    """extra_data silently stores module 0 at index -1 (the last module) here."""
    del small[source_for(small, 15)]
    with pytest.raises(IndexError, match="Module -1 .* starts_at=1"):
        stack_detector_data(small, "image.data", starts_at=1)


def test_duplicate_module(small: Train) -> None:
    small["FXE_DET_LPD1M-1/DET/3CH1:xtdf"] = dict(small[source_for(small, 3)])
    with pytest.raises(ValueError, match="both give module 3"):
        stack_detector_data(small, "image.data")


def test_axis_out_of_range(small: Train) -> None:
    with pytest.raises(np.exceptions.AxisError):
        stack_detector_data(small, "image.data", axis=-6)  # extra_data wraps to -1
    with pytest.raises(np.exceptions.AxisError):
        stack_detector_data(small, "image.data", axis=5, real_array=False)
