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
    """The 2-D points layers (every frame, in the thick 3-D slice) lay flat at z = 0 through the cloud."""
    pts = _points(viewer, _table(), "locs")
    other = _points(viewer, _table(z=False, seed=2), "other")
    other.visible = False  # the user's choice: must stay hidden afterwards
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Render localizations")
    w.picker.value = pts
    l3 = w.show_3d()
    assert viewer.dims.ndisplay == 3 and l3.visible
    assert not viewer.layers["locs"].visible
    assert "hidden while in 3-D" in w.status_label.text()
    viewer.dims.ndisplay = 2
    assert viewer.layers["locs"].visible and not viewer.layers["other"].visible
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
