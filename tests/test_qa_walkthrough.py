"""Fixes from a microscopist's walk-through of the Render widget and "Stream results to file…".

Headless napari (xvfb); the widgets are opened as plugin dock widgets, as a user would.
"""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_smlm import _layers  # noqa: E402
from napari_smlm.core.localizations import Localizations  # noqa: E402
from napari_smlm.widgets._render import _axis_label  # noqa: E402


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _points(viewer, locs, name):
    from napari.layers import Layer

    viewer.add_layer(Layer.create(*_layers.localizations_layer_data(locs, name)))
    return viewer.layers[name]


def _table(n=200, z=True, seed=1):
    rng = np.random.default_rng(seed)
    cols = {"frame": np.arange(n) % 20, "x_nm": rng.uniform(0, 2000, n), "y_nm": rng.uniform(0, 2000, n)}
    if z:
        cols["z_nm"] = rng.uniform(-500, 500, n)
    return Localizations(cols, {"pixel_size_nm": 100.0, "image_shape": (20, 20)})


def test_3d_view_hides_flat_2d_points_and_restores_them_in_2d(viewer):
    """2-D layers (points of every frame in the thick 3-D slice, renders) lay flat at z = 0 through the cloud."""
    pts = _points(viewer, _table(), "locs")
    other = _points(viewer, _table(z=False, seed=2), "other")
    other.visible = False  # the user's choice: must stay hidden afterwards
    img = viewer.add_image(np.ones((8, 8), np.float32), scale=(250.0, 250.0), name="render")  # a 2-D image, flat too
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Render localizations")
    w.picker.value = pts
    l3 = w.show_3d()
    assert viewer.dims.ndisplay == 3 and l3.visible
    assert not viewer.layers["locs"].visible and not img.visible
    assert "2 2-D layer(s) hidden while in 3-D" in w.status_label.text()
    viewer.dims.ndisplay = 2
    assert viewer.layers["locs"].visible and img.visible and not viewer.layers["other"].visible
    viewer.dims.ndisplay = 3  # napari's own 2-D/3-D toggle hides them again
    assert not viewer.layers["locs"].visible
    viewer.dims.ndisplay = 2
    assert viewer.layers["locs"].visible


def test_3d_points_with_an_inverted_slab_says_the_slab_is_ignored(viewer):
    pts = _points(viewer, _table(), "locs")
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Render localizations")
    w.picker.value = pts
    w.slab.setChecked(True)
    w.z_min.setValue(300.0)
    w.z_max.setValue(-300.0)
    l3 = w.show_3d()
    assert l3.shown.all()
    text = w.status_label.text()
    assert "z slab ignored" in text and "300" in text and "-300" in text
    w.z_max.setValue(400.0)  # a valid slab again: applied, and said
    assert not l3.shown.all() and "z slab:" in w.status_label.text()


def test_colour_bar_label_does_not_repeat_the_feature_as_its_unit():
    assert _axis_label("photons") == "photons"
    assert _axis_label("z_nm") == "z (nm)" and _axis_label("bg") == "bg (photons/px)"


def test_stream_to_an_existing_file_names_it_and_gives_gui_advice(qtbot, tmp_path):
    from napari_smlm.core.io.safe import OutputExistsError
    from napari_smlm.widgets._stream_option import StreamOption

    w = StreamOption()
    qtbot.addWidget(w)
    out = tmp_path / "mine_locs.hdf5"
    out.write_bytes(b"the user's results")
    w.checkbox.setChecked(True)
    w.path_edit.setText(str(out))
    with pytest.raises(OutputExistsError) as info:
        w.output()
    msg = str(info.value)
    assert "Stream results to file" in msg and str(out) in msg and "--overwrite" not in msg
    sidecar = tmp_path / "new_locs.yaml"  # the .hdf5 is new but its Picasso sidecar is not
    sidecar.write_text("mine")
    w.path_edit.setText(str(tmp_path / "new_locs.hdf5"))
    with pytest.raises(OutputExistsError, match="sidecar") as info:
        w.output()
    assert str(sidecar) in str(info.value) and "--overwrite" not in str(info.value)
    w.path_edit.setText(str(tmp_path / "fresh_locs.hdf5"))
    assert w.output() == tmp_path / "fresh_locs.hdf5"
    assert out.read_bytes() == b"the user's results" and sidecar.read_text() == "mine"


def test_streamed_picasso_file_keeps_the_z_uncertainty(tmp_path):
    """``localize --model decode3d -o x.hdf5`` (the streamed writer) dropped sigma_z_nm; the CSV kept it."""
    from napari_smlm.core.io.locs import read_localizations, write_localizations
    from napari_smlm.core.io.stream import LocStreamWriter

    rng = np.random.default_rng(4)
    n = 50
    locs = Localizations({
        "frame": np.sort(rng.integers(0, 10, n)), "x_nm": rng.uniform(100, 1900, n), "y_nm": rng.uniform(100, 1900, n),
        "z_nm": rng.uniform(-500, 500, n), "photons": rng.uniform(500, 3000, n), "bg": rng.uniform(10, 60, n),
        "sigma_x_nm": rng.uniform(5, 30, n), "sigma_y_nm": rng.uniform(5, 30, n), "sigma_z_nm": rng.uniform(20, 90, n),
        "prob": rng.uniform(0.5, 1, n),
    }, {"pixel_size_nm": 100.0, "image_shape": (20, 20)})
    out = tmp_path / "run_locs.hdf5"
    w = LocStreamWriter(out, columns=list(locs.columns), pixel_size_nm=100.0, image_shape=(20, 20), n_frames=10)
    w.append(locs, 10)
    w.close()
    back = read_localizations(out)
    np.testing.assert_allclose(back["z_nm"], locs["z_nm"], rtol=1e-6)
    assert "sigma_z_nm" in back.columns
    np.testing.assert_allclose(back["sigma_z_nm"], locs["sigma_z_nm"], rtol=1e-6)
    # the same table through the one-shot writer: the two Picasso files carry the same fields
    write_localizations(tmp_path / "once_locs.hdf5", locs)
    once = read_localizations(tmp_path / "once_locs.hdf5")
    assert set(once.columns) == set(back.columns)


def test_3d_points_without_a_render_get_a_z_colour_bar_and_range(viewer):
    """Coloured by z in 3-D, the dock showed no colour bar and a stale 0 … 1 range until a render."""
    locs = _table()
    pts = _points(viewer, locs, "locs")
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Render localizations")
    w.picker.value = pts
    assert not w.colorbar_canvas.isVisible()
    l3 = w.show_3d()
    lo, hi = l3.face_contrast_limits
    assert w.colorbar_canvas.isVisibleTo(w)
    assert w.colorbar_figure.axes and w.colorbar_figure.axes[0].get_xlabel() == "z (nm)"
    assert (w.vmin.value(), w.vmax.value()) == pytest.approx((lo, hi), abs=0.01)
    assert lo < 0 < hi


@pytest.mark.parametrize("mode", ["decimated", "frame"])
def test_render_of_a_big_tables_layer_uses_every_row_of_the_file(viewer, qtbot, tmp_path, monkeypatch, mode):
    """A big Picasso table opens as every k-th row or the current frame's; a Render of that layer uses all rows."""
    from napari_smlm import _reader
    from napari_smlm.core.io.locs import write_localizations
    from napari_smlm.widgets._state import RunState

    monkeypatch.setattr(_reader, "LAZY_ROWS", 100)
    monkeypatch.setattr(_reader, "DISPLAY_POINTS", 50)
    monkeypatch.setattr(_reader, "BIG_POINTS_MODE", mode)
    monkeypatch.delenv("NAPARI_SMLM_BIG_POINTS", raising=False)
    path = tmp_path / "big_locs.hdf5"
    write_localizations(path, _table(n=400))
    viewer.open(str(path), plugin="napari-smlm")
    pts = next(la for la in viewer.layers if la.name.startswith("big_locs (") and la.__class__.__name__ == "Points")
    assert int(np.count_nonzero(pts.shown)) < 400  # napari holds a subset ...
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Render localizations")
    w.picker.value = pts
    assert w.render()
    qtbot.waitUntil(lambda: w.status.state in (RunState.DONE, RunState.FAILED, RunState.STOPPED), timeout=30_000)
    assert w.status.state is RunState.DONE
    assert "Rendered 400 localizations" in w.status_label.text()  # ... the render reads every row of the file


def test_closing_the_render_dock_in_3d_shows_the_hidden_layers_again(viewer):
    pts = _points(viewer, _table(), "locs")
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Render localizations")
    w.picker.value = pts
    w.show_3d()
    assert not viewer.layers["locs"].visible
    w.close()
    assert viewer.layers["locs"].visible


def test_render_names_the_frame_slider(viewer, qtbot):
    """A table opened with File > Open showed napari's default "-3" next to the frame slider."""
    from napari_smlm.widgets._state import RunState

    pts = _points(viewer, _table(z=False), "locs")
    assert viewer.dims.axis_labels[0] == "frame"  # the points layer names its axes itself now
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Render localizations")
    w.picker.value = pts
    assert w.render()
    qtbot.waitUntil(lambda: w.status.state in (RunState.DONE, RunState.FAILED, RunState.STOPPED), timeout=30_000)
    qtbot.waitUntil(lambda: "locs [render]" in viewer.layers, timeout=10_000)
    assert tuple(viewer.dims.axis_labels) == ("frame", "y", "x")
