"""Tests of napari_smlm.core.io.tiff: lazy movies, writers, bad input."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_smlm.core.io import SMLMFileError, open_movie, read_image, write_image, write_movie
from napari_smlm.core.io import tiff as tiff_mod

EXTERNAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"
DEEPSTORM = EXTERNAL / "EliasNehme_Deep-STORM"
LOCAN = EXTERNAL / "super-resolution_Locan"


def fixture(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"external test data not found: {path} (expected next to the repository in shared/data/external)")
    return path


@pytest.fixture
def stack() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(100, 4000, size=(12, 9, 11), dtype=np.uint16)


# ----------------------------------------------------------------------------- real files
def test_open_deepstorm_training_stack():
    path = fixture(DEEPSTORM / "ArtificialDataset_demo1.tif")
    with open_movie(path) as m:
        assert m.shape == (20, 64, 64)
        assert m.dtype == np.uint16
        assert m.ndim == 3 and len(m) == 20 and m.size == 20 * 64 * 64
        assert m.pixel_size_nm == pytest.approx(100.0)  # ImageJ unit=\u00B5m, XResolution 10/µm
        assert m.pixel_size_source == "imagej"
        assert m.metadata["storage"] == "memmap"
        full = tifffile.imread(path)
        np.testing.assert_array_equal(np.asarray(m), full)
        np.testing.assert_array_equal(m[10], full[10])
        np.testing.assert_array_equal(m[5:20], full[5:20])
        np.testing.assert_array_equal(m[3, 10:20, :], full[3, 10:20, :])
        np.testing.assert_array_equal(m[-1, ..., 7], full[-1, :, 7])
        np.testing.assert_array_equal(m[::4], full[::4])
        np.testing.assert_array_equal(m[[7, 2, 2]], full[[7, 2, 2]])


def test_open_microtubule_test_stack_lazily():
    path = fixture(DEEPSTORM / "testStack_SimulatedMicrotubules.tif")
    m = open_movie(path)
    assert m.shape == (361, 64, 64)
    with tifffile.TiffFile(path) as tif:
        ref = tif.pages[360].asarray()
    np.testing.assert_array_equal(m[360], ref)
    starts = [s for s, _ in m.iter_batches(100)]
    assert starts == [0, 100, 200, 300]
    assert sum(len(b) for _, b in m.iter_batches(100, start=350)) == 11


def test_open_locan_images_without_physical_unit():
    path = fixture(LOCAN / "images.tif")
    m = open_movie(path)
    assert m.shape == (5, 128, 128) and m.dtype == np.uint16
    assert m.pixel_size_nm is None  # ImageJ unit=pixel: no physical size
    assert open_movie(path, pixel_size_nm=133).pixel_size_nm == 133.0


# ----------------------------------------------------------------------------- writers
def test_write_movie_roundtrip_with_pixel_size(tmp_path, stack):
    out = write_movie(tmp_path / "m.tif", stack, pixel_size_nm=117.5, metadata={"camera": "sim", "gain": np.float32(2)})
    m = open_movie(out)
    assert m.shape == stack.shape
    assert m.pixel_size_nm == pytest.approx(117.5)
    assert m.metadata["description"]["camera"] == "sim"
    assert m.metadata["storage"] == "memmap"
    np.testing.assert_array_equal(m[:], stack)
    # the resolution tags alone also give the pixel size (for other readers)
    with tifffile.TiffFile(out) as tif:
        assert 1e7 / tif.pages[0].resolution[0] == pytest.approx(117.5)


def test_write_movie_streams_an_iterable(tmp_path, stack):
    blocks = (b for b in (stack[:5], stack[5], stack[6:]))
    out = write_movie(tmp_path / "s.tif", blocks, pixel_size_nm=100)
    np.testing.assert_array_equal(open_movie(out)[:], stack)


def test_write_movie_rejects_float_and_empty(tmp_path):
    with pytest.raises(SMLMFileError, match="integer"):
        write_movie(tmp_path / "f.tif", np.zeros((2, 4, 4), np.float32))
    with pytest.raises(SMLMFileError, match="no frames"):
        write_movie(tmp_path / "e.tif", iter([]))
    assert not (tmp_path / "f.tif").exists() and not (tmp_path / "e.tif").exists()


def test_write_image_and_read_image(tmp_path):
    img = np.random.default_rng(1).random((20, 30)).astype(np.float32)
    out = write_image(tmp_path / "sr.tif", img, pixel_size_nm=12.5, origin_nm=(100.0, 250.0), metadata={"n_locs": 7})
    arr, px, meta = read_image(out, return_metadata=True)
    np.testing.assert_array_equal(arr, img)
    assert px == pytest.approx(12.5)
    assert meta["origin_nm"] == [100.0, 250.0] and meta["n_locs"] == 7
    with tifffile.TiffFile(out) as tif:  # what Fiji sees
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
        assert tif.pages[0].resolution[0] == pytest.approx(1000 / 12.5)
    arr2, px2 = read_image(out)
    assert px2 == pytest.approx(12.5) and arr2.dtype == np.float32


# ----------------------------------------------------------------------------- series
def test_multi_file_series_list_dir_and_glob(tmp_path, stack):
    d = tmp_path / "run"
    d.mkdir()
    # natural sort: part2 before part10
    write_movie(d / "part10.tif", stack[8:], pixel_size_nm=160)
    write_movie(d / "part2.tif", stack[3:8], pixel_size_nm=160)
    write_movie(d / "part1.tif", stack[:3], pixel_size_nm=160)
    for src in (d, str(d / "part*.tif"), [d / "part1.tif", d / "part2.tif", d / "part10.tif"]):
        m = open_movie(src)
        assert m.shape == stack.shape and m.pixel_size_nm == 160
        assert [Path(p).name for p in m.paths] == ["part1.tif", "part2.tif", "part10.tif"]
        np.testing.assert_array_equal(m[:], stack)
        np.testing.assert_array_equal(m[2:10], stack[2:10])  # across file boundaries
        np.testing.assert_array_equal(m[[11, 0, 4]], stack[[11, 0, 4]])
    assert open_movie(d).metadata["n_frames_per_file"] == [3, 5, 4]


def test_page_mode_compressed_and_file_handle_limit(tmp_path, stack, monkeypatch):
    monkeypatch.setattr(tiff_mod, "_MAX_OPEN_FILES", 2)
    paths = []
    for k in range(4):
        p = tmp_path / f"c{k}.tif"
        tifffile.imwrite(p, stack[3 * k : 3 * k + 3], compression="zlib", photometric="minisblack")
        paths.append(p)
    m = open_movie(paths)
    assert m.metadata["storage"] == "pages"
    np.testing.assert_array_equal(m[:], stack)
    assert sum(s.is_open for s in m._sources) <= 2
    np.testing.assert_array_equal(m[1:11:3, 2:5, ::2], stack[1:11:3, 2:5, ::2])


def test_thread_safe_reads_pickle_and_dask(tmp_path, stack):
    p = tmp_path / "z.tif"
    tifffile.imwrite(p, stack, compression="zlib", photometric="minisblack")
    m = open_movie(p)
    errors = []

    def worker(seed):
        rng = np.random.default_rng(seed)
        for _ in range(20):
            t = int(rng.integers(len(stack)))
            if not np.array_equal(m[t], stack[t]):
                errors.append(t)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2[4], stack[4])
    darr = m.to_dask(chunk_frames=5)
    assert darr.shape == stack.shape and darr.chunks[0] == (5, 5, 2)
    np.testing.assert_array_equal(darr[3:9].compute(), stack[3:9])
    m.close()
    np.testing.assert_array_equal(m[0], stack[0])  # reopens after close


# ----------------------------------------------------------------------------- bad input
def test_not_a_tiff(tmp_path):
    p = tmp_path / "notes.tif"
    p.write_text("these are not pixels\n" * 20)
    with pytest.raises(SMLMFileError) as ei:
        open_movie(p)
    assert ei.value.path == str(p) and "not a readable TIFF" in ei.value.problem
    assert str(ei.value).startswith(str(p) + ": ")
    assert ei.value.__cause__ is not None


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(SMLMFileError, match="does not exist"):
        open_movie(tmp_path / "nope.tif")
    with pytest.raises(SMLMFileError, match="matches no file"):
        open_movie(str(tmp_path / "*.tif"))


@pytest.mark.parametrize("kind", ["shaped", "imagej", "compressed"])
def test_truncated_tiff(tmp_path, stack, kind):
    good = tmp_path / "good.tif"
    kw = {"shaped": {}, "imagej": {"imagej": True}, "compressed": {"compression": "zlib"}}[kind]
    tifffile.imwrite(good, stack, photometric="minisblack", **kw)
    raw = good.read_bytes()
    bad = tmp_path / "cut.tif"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SMLMFileError, match="(?i)truncated|corrupt"):
        open_movie(bad)


def test_rgb_rejected(tmp_path):
    p = tmp_path / "rgb.tif"
    tifffile.imwrite(p, np.zeros((3, 16, 16, 3), np.uint8), photometric="rgb")
    with pytest.raises(SMLMFileError, match="RGB"):
        open_movie(p)


def test_multichannel_rejected(tmp_path):
    p = tmp_path / "ch.tif"
    tifffile.imwrite(p, np.zeros((4, 2, 16, 16), np.uint16), imagej=True, metadata={"axes": "TCYX"})
    with pytest.raises(SMLMFileError, match="multi-channel"):
        open_movie(p)


def test_float_rejected_but_read_image_accepts_it(tmp_path):
    p = tmp_path / "f.tif"
    tifffile.imwrite(p, np.zeros((4, 16, 16), np.float32), photometric="minisblack")
    with pytest.raises(SMLMFileError, match="float TIFFs are not raw camera frames"):
        open_movie(p)
    arr, px = read_image(p)
    assert arr.shape == (4, 16, 16) and px is None


def test_empty_stack_rejected(tmp_path):
    p = tmp_path / "empty.tif"
    with pytest.warns(UserWarning):  # tifffile warns about zero-size data
        tifffile.imwrite(p, np.zeros((0, 16, 16), np.uint16))
    with pytest.raises(SMLMFileError, match="empty"):
        open_movie(p)
    z = tmp_path / "zero.tif"
    z.write_bytes(b"")
    with pytest.raises(SMLMFileError, match="empty"):
        open_movie(z)


def test_single_2d_frame_is_a_movie_of_one(tmp_path):
    p = tmp_path / "one.tif"
    frame = np.arange(16 * 17, dtype=np.uint16).reshape(16, 17)
    tifffile.imwrite(p, frame)
    m = open_movie(p)
    assert m.shape == (1, 16, 17)
    np.testing.assert_array_equal(m[0], frame)


def test_series_with_different_frame_shapes_rejected(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    tifffile.imwrite(a, np.zeros((2, 16, 16), np.uint16), photometric="minisblack")
    tifffile.imwrite(b, np.zeros((2, 16, 20), np.uint16), photometric="minisblack")
    with pytest.raises(SMLMFileError, match="frame shape") as ei:
        open_movie([a, b])
    assert ei.value.path == str(b)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.uint32])
def test_integer_dtypes_and_big_endian(tmp_path, dtype):
    data = (np.arange(3 * 5 * 6) % 200).astype(dtype).reshape(3, 5, 6)
    p = tmp_path / "d.tif"
    tifffile.imwrite(p, data, byteorder=">", photometric="minisblack")
    m = open_movie(p)
    out = m[:]
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, data)


def test_pixel_size_from_ome_and_resolution_tags(tmp_path, stack):
    ome = tmp_path / "a.ome.tif"
    tifffile.imwrite(ome, stack, ome=True, metadata={"axes": "TYX", "PhysicalSizeX": 0.16, "PhysicalSizeXUnit": "µm"})
    assert open_movie(ome).pixel_size_nm == pytest.approx(160.0)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, stack, shaped=False, resolution=(1e4 / 0.108, 1e4 / 0.108), resolutionunit="CENTIMETER")
    assert open_movie(plain).pixel_size_nm == pytest.approx(108.0)
    dpi = tmp_path / "dpi.tif"  # 72 dpi is a screen default, not a microscope pixel
    tifffile.imwrite(dpi, stack, shaped=False, resolution=(72, 72), resolutionunit="INCH")
    assert open_movie(dpi).pixel_size_nm is None


def test_error_type_is_a_valueerror_and_pickles():
    err = SMLMFileError("/x/y.tif", "broken")
    assert isinstance(err, ValueError) and str(err) == "/x/y.tif: broken"
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.problem) == ("/x/y.tif", "broken")
