"""Big localization tables (issue 12, part 4): lazy Picasso HDF5, chunked render, lazy napari reader.

The tables here have 200k rows (the reader's lazy threshold is lowered for the test); the 10 M-row
figures come from ``benchmarks/big_tables.py``.
"""

import numpy as np
import pytest

from napari_smlm.core.io.formats.picasso import read_picasso_hdf5, write_picasso_hdf5
from napari_smlm.core.io.lazy_table import LazyPicassoTable
from napari_smlm.core.io.stream import LocStreamWriter
from napari_smlm.core.localizations import Localizations
from napari_smlm.core.render import render_chunked, render_gaussian, render_histogram

N_ROWS, N_FRAMES, H, W, PX = 200_000, 400, 64, 48, 100.0


def _table(n=N_ROWS, n_frames=N_FRAMES, seed=0):
    """Clustered localizations sorted by frame, a few outside the camera field."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform((0, 0), (W * PX, H * PX), (300, 2))
    c = centres[rng.integers(0, len(centres), n)]
    xy = c + rng.normal(0, 25.0, (n, 2))
    xy[:50] = rng.uniform(-500, -1, (50, 2))  # outside the image: dropped by every render
    frames = np.sort(rng.integers(0, n_frames, n))
    return Localizations(
        {"frame": frames, "x_nm": xy[:, 0], "y_nm": xy[:, 1], "photons": rng.uniform(500, 3000, n),
         "bg": rng.uniform(10, 50, n), "sigma_x_nm": rng.uniform(5, 20, n), "sigma_y_nm": rng.uniform(5, 20, n),
         "prob": rng.uniform(0.5, 1, n)},
        {"pixel_size_nm": PX, "image_shape": (H, W), "n_frames": n_frames},
    )


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    """A 200k-row Picasso HDF5 written the way a long localize run writes it: chunk by chunk."""
    locs = _table()
    path = tmp_path_factory.mktemp("big") / "big_locs.hdf5"
    w = LocStreamWriter(path, columns=list(locs.columns), pixel_size_nm=PX, image_shape=(H, W), n_frames=N_FRAMES)
    for a in range(0, N_FRAMES, 64):
        w.append(locs.frame_range(a, a + 64), min(a + 64, N_FRAMES))
    w.close()
    return path


def test_lazy_chunks_equal_the_eager_reader(streamed):
    eager = read_picasso_hdf5(streamed)
    t = LazyPicassoTable(streamed, chunk_rows=30_000)
    assert len(t) == len(eager) == N_ROWS and t.image_shape == (H, W) and t.pixel_size_nm == PX
    chunks = list(t.iter_chunks())
    assert len(chunks) == 7 and max(map(len, chunks)) == 30_000
    lazy = Localizations.concat(chunks)
    common = [col for col in eager.columns if col in lazy.columns]
    assert {"frame", "x_nm", "y_nm", "photons", "sigma_x_nm", "prob"} <= set(common)
    for col in common:
        np.testing.assert_array_equal(lazy[col], eager[col], err_msg=col)


def test_chunked_render_equals_one_shot_render(streamed):
    eager = read_picasso_hdf5(streamed)
    t = LazyPicassoTable(streamed)
    shape = (H * 10, W * 10)
    one = render_gaussian(eager, 10.0, sigma_nm=15.0, shape=shape)
    chunked = render_chunked(t.iter_chunks(chunk_rows=30_000, fields=("x", "y")), 10.0, shape, method="gaussian", sigma_nm=15.0)
    np.testing.assert_array_equal(chunked.image, one.image)
    assert chunked.meta["n_chunks"] == 7 and chunked.meta["n_rendered"] == one.meta["n_rendered"] <= N_ROWS - 50
    hist = render_chunked(t.iter_chunks(chunk_rows=30_000), 10.0, shape, method="histogram")
    np.testing.assert_array_equal(hist.image, render_histogram(eager, 10.0, shape=shape).image)
    with pytest.raises(ValueError, match="histogram' or 'gaussian"):
        render_chunked(t.iter_chunks(), 10.0, shape, method="gaussian_per_loc")


def test_decimated_and_frame_subsets_are_what_they_say(streamed, tmp_path):
    eager = read_picasso_hdf5(streamed)
    t = LazyPicassoTable(streamed, chunk_rows=7_000)  # chunk size not a multiple of k
    sub = t.decimated(10_000)
    k = sub.meta["decimation"]
    assert k == 20 and len(sub) == 10_000 and sub.meta["n_rows_total"] == N_ROWS
    for col in ("frame", "x_nm", "y_nm", "photons"):
        np.testing.assert_array_equal(sub[col], eager[col][::k], err_msg=col)
    assert t.n_frames == N_FRAMES
    np.testing.assert_array_equal(t.frame_counts(), np.bincount(eager.frames, minlength=N_FRAMES))
    for f in (0, 137, N_FRAMES - 1):
        fr = t.frame(f)
        want = eager.frame_range(f, f + 1)
        assert len(fr) == len(want) > 0 and set(fr.frames) == {f}
        np.testing.assert_array_equal(fr["x_nm"], want["x_nm"])
    assert len(t.frame(N_FRAMES + 5)) == 0
    # a table not sorted by frame (Picasso after filtering / grouping): the same rows per frame
    shuffled = eager.filter(np.random.default_rng(1).permutation(len(eager)))
    p2 = write_picasso_hdf5(tmp_path / "shuffled_locs.hdf5", shuffled, image_shape=(H, W), n_frames=N_FRAMES)
    t2 = LazyPicassoTable(p2)
    for f in (3, 222):
        got = np.sort(t2.frame(f)["x_nm"])
        np.testing.assert_array_equal(got, np.sort(read_picasso_hdf5(p2).frame_range(f, f + 1)["x_nm"]))


def test_lazy_table_errors_name_the_file(tmp_path, streamed):
    from napari_smlm.core.io.errors import SMLMFileError

    import shutil

    lone = tmp_path / "lone_locs.hdf5"
    shutil.copy(streamed, lone)
    with pytest.raises(SMLMFileError, match="lone_locs.hdf5.*YAML"):
        LazyPicassoTable(lone)


# ----------------------------------------------------------------------------- the napari reader
napari = pytest.importorskip("napari")


@pytest.fixture
def big_reader(monkeypatch):
    import npe2

    from napari_smlm import _reader

    npe2.PluginManager.instance().discover()
    monkeypatch.setattr(_reader, "LAZY_ROWS", 100_000)
    monkeypatch.setattr(_reader, "DISPLAY_POINTS", 8_000)
    return _reader


def test_reader_opens_a_big_table_lazily(streamed, big_reader, monkeypatch):
    from napari.components import ViewerModel

    from napari_smlm.core.io.formats import picasso

    from napari_smlm import _layers

    eager = read_picasso_hdf5(streamed)
    # the lazy path never reads the whole table into pandas
    monkeypatch.setattr(picasso, "read_picasso_hdf5", lambda *a, **k: pytest.fail("read the whole table"))
    monkeypatch.setattr(big_reader, "BIG_POINTS_MODE", "decimated")  # the default, "frame": tests/test_frame_view.py
    viewer = ViewerModel()
    layers = viewer.open(str(streamed), plugin="napari-smlm")
    kinds = {la._type_string: la for la in layers}
    pts, img = kinds["points"], kinds["image"]
    k = pts.metadata[_layers.FRAME_VIEW_KEY].decimation()
    assert k == 25 and "1 in 25 of 200,000" in pts.name and pts.metadata["n_rows_total"] == N_ROWS
    assert len(pts.data) == 8_000
    np.testing.assert_array_equal(pts.data[:, 0], eager.frames[::k])
    np.testing.assert_allclose(pts.data[:, 1], eager["y_nm"][::k])
    np.testing.assert_allclose(pts.data[:, 2], eager["x_nm"][::k])
    # the image renders every row, as a one-shot render of the whole table would
    px = big_reader.BIG_RENDER_PIXEL_NM
    one = render_gaussian(eager, px, sigma_nm=big_reader.BIG_RENDER_SIGMA_NM, shape=(H * 10, W * 10))
    np.testing.assert_array_equal(img.data, one.image)
    assert "all 200,000" in img.name and img.metadata["n_rendered"] == one.meta["n_rendered"]
    # a point and the image share world coordinates (nm)
    np.testing.assert_allclose(img.scale, (px, px))


def test_reader_keeps_small_tables_eager(streamed, big_reader, monkeypatch):
    from napari.components import ViewerModel

    monkeypatch.setattr(big_reader, "LAZY_ROWS", N_ROWS)
    (layer,) = ViewerModel().open(str(streamed), plugin="napari-smlm")
    assert len(layer.data) == N_ROWS and "frame_view" not in layer.metadata
