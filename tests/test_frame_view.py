"""Points that follow the frame for big tables (issue 12.4): frame index, frame views, napari hook.

Tables of 50k rows; the reader's lazy threshold is lowered for the test. The 10 M-row figures come
from ``benchmarks/big_tables.py``.
"""

import numpy as np
import pytest

from napari_smlm.core.frame_index import FrameIndex, IndexedLocalizations, as_frame_table
from napari_smlm.core.io.formats.picasso import read_picasso_hdf5, write_picasso_hdf5
from napari_smlm.core.io.lazy_table import LazyPicassoTable
from napari_smlm.core.localizations import Localizations

N, NF, H, W, PX = 50_000, 250, 40, 30, 100.0


def _locs(n=N, n_frames=NF, seed=0, sort=True):
    rng = np.random.default_rng(seed)
    fr = rng.integers(0, n_frames, n)
    fr[:3] = (0, n_frames - 1, 7)  # the first and last frames are used
    if sort:
        fr = np.sort(fr)
    return Localizations(
        {"frame": fr, "x_nm": rng.uniform(0, W * PX, n), "y_nm": rng.uniform(0, H * PX, n),
         "photons": rng.uniform(500, 3000, n), "bg": rng.uniform(10, 50, n),
         "sigma_x_nm": rng.uniform(5, 20, n), "sigma_y_nm": rng.uniform(5, 20, n)},
        {"pixel_size_nm": PX, "image_shape": (H, W), "n_frames": n_frames},
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A frame-sorted and an unsorted Picasso HDF5 of the same rows (+ YAML)."""
    d = tmp_path_factory.mktemp("fv")
    locs = _locs()
    shuffled = locs.filter(np.random.default_rng(3).permutation(len(locs)))
    return {
        "sorted": write_picasso_hdf5(d / "sorted_locs.hdf5", locs, image_shape=(H, W), n_frames=NF),
        "unsorted": write_picasso_hdf5(d / "unsorted_locs.hdf5", shuffled, image_shape=(H, W), n_frames=NF),
    }


# ============================================================================ core
@pytest.mark.parametrize("sort", [True, False])
def test_frame_index_gives_the_rows_of_any_frame_range(sort):
    rng = np.random.default_rng(1)
    f = rng.integers(0, 40, 5000)
    f = np.sort(f) if sort else f
    chunks = [f[a:a + 777] for a in range(0, len(f), 777)]
    idx = FrameIndex(chunks, n_frames=50)
    assert idx.n_rows == 5000 and idx.n_frames == 50 and idx.is_sorted is sort
    np.testing.assert_array_equal(idx.counts(), np.bincount(f, minlength=50))
    for a, b in [(0, 1), (7, 8), (3, 9), (39, 40), (45, 60), (-5, 2), (10, 10)]:
        np.testing.assert_array_equal(idx.rows(a, b), np.flatnonzero((f >= a) & (f < b)), err_msg=f"{a}:{b}")
    with pytest.raises(ValueError, match="frame numbers must be >= 0"):
        FrameIndex(np.array([0, -1, 2]))
    empty = FrameIndex(np.zeros(0, np.int64))
    assert empty.n_rows == 0 and len(empty.rows(0, 5)) == 0


def test_indexed_localizations_frames_and_decimation():
    locs = _locs(sort=False)
    t = as_frame_table(locs)
    assert isinstance(t, IndexedLocalizations) and t.n_rows == N and t.n_frames == NF
    for a, b in [(0, 1), (100, 103), (NF - 1, NF)]:
        got = t.frames(a, b)
        want = locs.frame_range(a, b)
        assert got.equals(Localizations(want.df, got.meta)) and len(got) > 0
    d = t.decimated(1000)
    assert d.meta["decimation"] == 50 and len(d) == 1000
    np.testing.assert_array_equal(d["x_nm"], locs["x_nm"][::50])
    full = t.read_all()
    assert full is not locs and full.equals(locs)
    with pytest.raises(TypeError, match="not a localization table"):
        as_frame_table(42)


@pytest.mark.parametrize("kind", ["sorted", "unsorted"])
def test_lazy_table_reads_only_the_rows_of_the_frames(files, kind):
    eager = read_picasso_hdf5(files[kind])
    t = LazyPicassoTable(files[kind], chunk_rows=9_000)
    assert t._frame_index is None
    list(t.iter_chunks(fields=("x", "y")))  # a full pass (the reader's render) builds the index
    assert t._frame_index is not None and t.frame_index.is_sorted is (kind == "sorted")
    for a, b in [(0, 1), (7, 10), (NF - 1, NF), (NF + 3, NF + 4)]:
        got, want = t.frames(a, b), eager.frame_range(a, b)
        assert len(got) == len(want)
        for col in ("frame", "x_nm", "y_nm", "photons"):
            np.testing.assert_array_equal(got[col], want[col], err_msg=f"{kind} {a}:{b} {col}")
    full = t.read_all()
    for col in ("frame", "x_nm", "photons"):
        np.testing.assert_array_equal(full[col], eager[col])


# ============================================================================ napari, headless model
napari = pytest.importorskip("napari")


def _shown(layer):
    """Coordinates and features of the points a frame-view layer shows (its hidden anchors left out).

    Also checks that napari re-sliced the layer: the points it draws on the current slice are
    exactly these.
    """
    m = np.asarray(layer.shown)
    np.testing.assert_array_equal(np.sort(np.asarray(layer._view_indices)), np.flatnonzero(m))
    return layer.data[m], layer.features[m].reset_index(drop=True)


def test_in_memory_frame_view_follows_the_slider_and_reads_back_whole():
    from napari.components import ViewerModel
    from napari.layers import Layer

    from napari_smlm import _layers

    locs = _locs(sort=False)
    v = ViewerModel()
    ldt = _layers.frame_view_points(locs, "run", frame=3)
    assert ldt[1]["name"] == f"run (current frame of {N:,})"
    layer = v.add_layer(Layer.create(*ldt))
    assert _layers.follow_frame(v, layer)
    assert v.dims.range[0].start == 0 and v.dims.range[0].stop == NF - 1  # the slider spans the movie
    for f in (11, 0, NF - 1, 123):
        v.dims.set_current_step(0, f)
        data, feats = _shown(layer)
        want = locs.frame_range(f, f + 1)
        assert len(data) == len(want) > 0
        np.testing.assert_array_equal(data[:, 0], f)
        np.testing.assert_array_equal(data[:, 1], want["y_nm"])
        np.testing.assert_array_equal(data[:, 2], want["x_nm"])
        np.testing.assert_array_equal(feats["photons"], want["photons"])
        assert "uncertainty_nm" in feats
        assert len(layer.data) >= len(want) + 2 and not layer.shown[len(want):].any()  # hidden padding + anchors
        np.testing.assert_array_equal(layer.data[-1], (NF - 1, H * PX, W * PX))  # the last anchor
    # what Render / Evaluation / export read: every row, not the shown ones
    back = _layers.layer_to_localizations(layer)
    assert len(back) == N and back.equals(locs)
    # a window of ±1 frame, drawn on the current frame
    _layers.set_frame_view_mode(layer, "frame", window=1, viewer=v)
    assert layer.name == f"run (frame ±1 of {N:,})"
    data, feats = _shown(layer)
    want = locs.frame_range(122, 125)
    assert len(data) == len(want) and set(feats["frame"]) == {122, 123, 124}
    np.testing.assert_array_equal(data[:, 0], 123)
    # decimated mode: every k-th row on its own frame; the slider no longer changes it
    _layers.set_frame_view_mode(layer, "decimated", viewer=v)
    assert layer.name == f"run (all {N:,})"  # 50k <= 100k: every row
    np.testing.assert_array_equal(layer.data[:, 0], locs.frames)
    v.dims.set_current_step(0, 5)
    assert len(layer.data) == N and len(_layers.layer_to_localizations(layer)) == N
    # back to frame mode at the current frame
    _layers.set_frame_view_mode(layer, "frame", window=0, viewer=v)
    assert len(_shown(layer)[0]) == len(locs.frame_range(5, 6))
    # the user's own data: the view lets go and the layer reads back as its points
    layer.data = layer.data[:4]
    v.dims.set_current_step(0, 9)
    assert len(layer.data) == 4 and _layers.frame_view(layer) is None
    assert _layers.FRAME_VIEW_KEY not in layer.metadata  # the table is let go (memory)
    assert len(_layers.layer_to_localizations(layer)) == 4


def test_removed_layer_is_let_go_and_other_layers_are_not_followed():
    from napari.components import ViewerModel
    from napari.layers import Layer

    from napari_smlm import _layers

    locs = _locs(n=5000, n_frames=50)
    v = ViewerModel()
    _layers.install_frame_follow(v)
    plain = v.add_layer(Layer.create(*_layers.localizations_layer_data(locs, "plain")))
    assert not _layers.follow_frame(v, plain)
    layer = v.add_layer(Layer.create(*_layers.frame_view_points(locs, "view")))  # followed on insertion
    v.dims.set_current_step(0, 20)
    assert len(_shown(layer)[0]) == len(locs.frame_range(20, 21))
    v.layers.remove(layer)
    before = layer.data.copy()
    v.dims.set_current_step(0, 30)
    np.testing.assert_array_equal(layer.data, before)
    assert len(plain.data) == 5000


def test_live_layer_updated_in_place_becomes_a_frame_view():
    """The end of a long run: the run's points layer (same object) is turned into a frame view."""
    from napari.components import ViewerModel
    from napari.layers import Layer

    from napari_smlm import _layers

    locs = _locs(n=20_000, n_frames=100, sort=False)
    v = ViewerModel()
    live = v.add_layer(Layer.create(*_layers.localizations_layer_data(locs.filter(np.arange(3000)), "run")))
    live.shown = np.arange(3000) % 2 == 0  # e.g. a filter preview had hidden some points
    v.dims.set_current_step(0, 40)
    layer = _layers.update_layer(live, _layers.frame_view_points(locs, "run", describe=False))
    assert layer is live and _layers.follow_frame(v, layer)
    data, feats = _shown(layer)
    want = locs.frame_range(40, 41)
    assert len(data) == len(want) and int(np.count_nonzero(layer.shown)) == len(want)
    np.testing.assert_array_equal(np.sort(feats["x_nm"].to_numpy()), np.sort(want["x_nm"]))
    # a slider step changes only the rows shown: no data event (the Evaluation widget would clear its metrics)
    seen = []
    layer.events.data.connect(lambda e: seen.append(e))
    v.dims.set_current_step(0, 41)
    assert not seen and len(_shown(layer)[0]) == len(locs.frame_range(41, 42))
    assert len(_layers.layer_to_localizations(layer)) == 20_000


# ============================================================================ a real viewer (xvfb): the reader
pytest.importorskip("pytestqt")


@pytest.fixture
def big_reader(monkeypatch):
    from napari_smlm import _reader

    monkeypatch.setattr(_reader, "LAZY_ROWS", 10_000)
    monkeypatch.setattr(_reader, "DISPLAY_POINTS", 4_000)
    monkeypatch.delenv("NAPARI_SMLM_BIG_POINTS", raising=False)
    return _reader


@pytest.mark.parametrize("kind", ["sorted", "unsorted"])
def test_opened_big_table_shows_the_current_frame(make_napari_viewer, files, big_reader, kind):
    from napari_smlm import _layers

    eager = read_picasso_hdf5(files[kind])
    viewer = make_napari_viewer()
    layers = viewer.open(str(files[kind]), plugin="napari-smlm")
    pts = next(la for la in layers if la._type_string == "points")
    img = next(la for la in layers if la._type_string == "image")
    assert pts.name == f"{kind}_locs (current frame of {N:,})" and f"all {N:,}" in img.name
    assert pts.metadata["n_rows_total"] == N and "decimation" not in pts.metadata
    assert viewer.dims.range[0].stop == NF - 1
    for f in (17, NF - 1, 0, 140):
        viewer.dims.set_current_step(0, f)  # the reader made this viewer follow the frame
        data, feats = _shown(pts)
        want = eager.frame_range(f, f + 1)
        assert len(data) == len(want) > 0, f
        np.testing.assert_array_equal(data[:, 0], f)
        np.testing.assert_array_equal(np.sort(data[:, 2]), np.sort(want["x_nm"]))
        np.testing.assert_array_equal(np.sort(feats["photons"].to_numpy()), np.sort(want["photons"]))
    back = _layers.layer_to_localizations(pts)
    assert len(back) == N
    np.testing.assert_array_equal(back["x_nm"], eager["x_nm"])


def test_decimated_mode_by_setting(make_napari_viewer, files, big_reader, monkeypatch):
    from napari_smlm import _layers

    monkeypatch.setenv("NAPARI_SMLM_BIG_POINTS", "decimated")
    eager = read_picasso_hdf5(files["sorted"])
    viewer = make_napari_viewer()
    pts = next(la for la in viewer.open(str(files["sorted"]), plugin="napari-smlm") if la._type_string == "points")
    k = 13  # ceil(50,000 / 4,000)
    assert pts.name == f"sorted_locs (1 in {k} of {N:,})"
    np.testing.assert_array_equal(pts.data[:, 0], eager.frames[::k])
    np.testing.assert_array_equal(pts.data[:, 2], eager["x_nm"][::k])
    viewer.dims.set_current_step(0, 40)
    assert len(pts.data) == len(eager.frames[::k])  # the slider does not change a decimated view
    assert len(_layers.layer_to_localizations(pts)) == N
    monkeypatch.setattr(big_reader, "BIG_POINTS_MODE", "frame")  # the module setting wins over the environment
    pts2 = next(la for la in viewer.open(str(files["sorted"]), plugin="napari-smlm") if la._type_string == "points")
    assert "current frame" in pts2.name


def test_render_and_export_of_a_frame_view_use_every_row(make_napari_viewer, qtbot, files, big_reader, tmp_path):
    from napari_smlm.core.io.formats import read_localizations
    from napari_smlm.core.render import iter_render
    from napari_smlm.widgets._state import RunState

    eager = read_picasso_hdf5(files["sorted"])
    viewer = make_napari_viewer()
    pts = next(la for la in viewer.open(str(files["sorted"]), plugin="napari-smlm") if la._type_string == "points")
    viewer.dims.set_current_step(0, 30)
    assert int(np.count_nonzero(pts.shown)) < 1000
    # export (napari's File > Save Selected Layer goes through the same npe2 writer)
    out = tmp_path / "export.csv"
    pts.save(str(out), plugin="napari-smlm")
    back = read_localizations(out)
    assert len(back) == N
    np.testing.assert_allclose(np.sort(back["x_nm"]), np.sort(eager["x_nm"]), atol=1e-3)
    # the Render widget renders all rows, coloured by a derived feature too
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Render localizations")
    w.picker.value = viewer.layers[pts.name]
    assert w.render()
    qtbot.waitUntil(lambda: w.status.state in (RunState.DONE, RunState.FAILED, RunState.STOPPED), timeout=30_000)
    assert w.status.state is RunState.DONE, w.status.message
    settings = w.settings()
    want = [u.result for u in iter_render(_all_rows(pts), settings) if u.result is not None][-1]
    np.testing.assert_array_equal(w._result.image, want.image)
    assert want.meta.get("n_rendered", N) > 0.9 * N


def _all_rows(layer):
    from napari_smlm import _layers

    return _layers.layer_to_localizations(layer)


def test_streamed_run_file_as_a_frame_view(tmp_path):
    """StreamOption.frame_view: the end of a streamed run shows the current frame of the file."""
    from napari.components import ViewerModel
    from napari.layers import Layer

    from napari_smlm import _layers
    from napari_smlm.core.io.stream import LocStreamWriter
    from napari_smlm.widgets._stream_option import StreamOption

    locs = _locs(n=20_000, n_frames=100)
    path = tmp_path / "run_locs.hdf5"
    w = LocStreamWriter(path, columns=list(locs.columns), pixel_size_nm=PX, image_shape=(H, W), n_frames=100)
    for a in range(0, 100, 30):
        w.append(locs.frame_range(a, a + 30), min(a + 30, 100))
    w.close()

    class Col:
        stream_path = str(path)

    assert StreamOption.frame_view(type("NoFile", (), {"stream_path": None})(), "run") is None
    ldt = StreamOption.frame_view(Col(), "run [decode #1]")
    assert ldt[1]["name"] == "run [decode #1] (current frame of 20,000)"
    v = ViewerModel()
    layer = v.add_layer(Layer.create(*ldt))
    _layers.follow_frame(v, layer)
    v.dims.set_current_step(0, 66)
    want = locs.frame_range(66, 67)
    np.testing.assert_allclose(np.sort(_shown(layer)[0][:, 2]), np.sort(want["x_nm"]), atol=1e-3)
    assert len(_layers.layer_to_localizations(layer)) == 20_000


def test_layers_menu_action_switches_the_mode(make_napari_viewer, files, big_reader):
    """The Layers > Visualize action (npe2 menu napari/layers/visualize), run through napari's app-model."""
    from napari._app_model import get_app_model

    from napari_smlm import _layers

    viewer = make_napari_viewer()
    pts = next(la for la in viewer.open(str(files["sorted"]), plugin="napari-smlm") if la._type_string == "points")
    viewer.layers.selection.active = pts
    app = get_app_model()
    assert "napari-smlm.toggle_frame_view" in app.commands
    menu_ids = {getattr(i, "command", None) and i.command.id for i in app.menus.get_menu("napari/layers/visualize")}
    assert "napari-smlm.toggle_frame_view" in menu_ids
    assert app.commands.execute_command("napari-smlm.toggle_frame_view").result() == "decimated"
    assert pts.name == f"sorted_locs (1 in 13 of {N:,})" and int(np.count_nonzero(pts.shown)) == len(pts.data)
    viewer.dims.set_current_step(0, 77)
    assert app.commands.execute_command("napari-smlm.toggle_frame_view").result() == "frame"
    assert "current frame" in pts.name
    viewer.dims.set_current_step(0, 78)
    want = read_picasso_hdf5(files["sorted"]).frame_range(78, 79)
    assert len(_shown(pts)[0]) == len(want)
    assert len(_layers.layer_to_localizations(pts)) == N


def test_moved_frame_view_reads_back_where_it_is_shown():
    """A layer the user translated (e.g. to align with a movie) exports its rows in world coordinates."""
    from napari.components import ViewerModel
    from napari.layers import Layer

    from napari_smlm import _layers

    locs = _locs(n=3000, n_frames=30)
    v = ViewerModel()
    layer = v.add_layer(Layer.create(*_layers.frame_view_points(locs, "run")))
    _layers.follow_frame(v, layer)
    layer.translate = (0.0, 50.0, -20.0)
    back = _layers.layer_to_localizations(layer)
    assert len(back) == 3000
    np.testing.assert_allclose(back["y_nm"], locs["y_nm"] + 50.0)
    np.testing.assert_allclose(back["x_nm"], locs["x_nm"] - 20.0)
    np.testing.assert_array_equal(back.frames, locs.frames)


def test_render_and_postprocessing_read_a_frame_views_table_on_the_worker(make_napari_viewer, qtbot, files, big_reader,
                                                                          monkeypatch):
    """Reading a big table's rows (seconds for 10 M) happens in the job, not on the GUI thread."""
    import threading

    from napari_smlm import _layers
    from napari_smlm.widgets._state import RunState

    readers = []
    real = _layers.FrameView.full_table

    def spy(self):
        readers.append(threading.current_thread())
        return real(self)

    monkeypatch.setattr(_layers.FrameView, "full_table", spy)
    viewer = make_napari_viewer()
    pts = next(la for la in viewer.open(str(files["sorted"]), plugin="napari-smlm") if la._type_string == "points")
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Render localizations")
    w.picker.value = viewer.layers[pts.name]
    assert w.render()
    viewer.dims.set_current_step(0, 12)  # the slider may move while the worker reads: same table
    qtbot.waitUntil(lambda: w.status.state in (RunState.DONE, RunState.FAILED, RunState.STOPPED), timeout=30_000)
    assert w.status.state is RunState.DONE, w.status.message
    assert w._result is not None and w._result.image.sum() > 0
    assert readers and all(t is not threading.main_thread() for t in readers)
    readers.clear()
    _, pp = viewer.window.add_plugin_dock_widget("napari-smlm", "Post-processing")
    pp.layer_combo.setCurrentText(pts.name)
    pp.run()
    qtbot.waitUntil(lambda: pp.result is not None or pp.error is not None, timeout=60_000)
    assert pp.error is None, pp.error
    assert readers and all(t is not threading.main_thread() for t in readers)
    want = _layers.layer_to_localizations(pts)  # (on the GUI thread here: the test's own reference)
    assert len(want) == N


def test_a_frame_view_layer_updated_with_plain_points_shows_them_all():
    """A re-run that replaces a big run's layer: the old view's hidden rows and table go with it."""
    from napari.components import ViewerModel
    from napari.layers import Layer

    from napari_smlm import _layers

    locs = _locs(n=20_000, n_frames=100)
    v = ViewerModel()
    layer = v.add_layer(Layer.create(*_layers.frame_view_points(locs, "run", describe=False)))
    assert _layers.follow_frame(v, layer) and not np.asarray(layer.shown).all()  # hidden padding / anchors
    n = len(layer.data)
    plain = _layers.localizations_layer_data(locs.filter(np.arange(n)), "run")  # same length: shown would be kept
    assert _layers.update_layer(layer, plain) is layer
    assert np.asarray(layer.shown).all() and _layers.FRAME_VIEW_KEY not in layer.metadata
    assert len(_layers.layer_to_localizations(layer)) == n
