"""The Render widget in a real (xvfb) napari viewer, opened as a plugin dock widget.

napari hands a plugin widget a ``PublicOnlyProxy`` of the viewer; every test goes through it.
"""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_smlm import _layers  # noqa: E402
from napari_smlm.core.config import SimulationConfig  # noqa: E402
from napari_smlm.core.localizations import Localizations  # noqa: E402
from napari_smlm.core.render_color import map_to_colors  # noqa: E402
from napari_smlm.core.simulate import simulate  # noqa: E402
from napari_smlm.widgets._state import RunState  # noqa: E402

PLUGIN, NAME = "napari-smlm", "Render localizations"
TIMEOUT_MS = 30_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _raw(layer):
    while hasattr(layer, "__wrapped__"):
        layer = layer.__wrapped__
    return layer


def _points(viewer, locs, name):
    from napari.layers import Layer

    viewer.add_layer(Layer.create(*_layers.localizations_layer_data(locs, name)))
    return viewer.layers[name]


def _dock(viewer):
    from napari.utils._proxies import PublicOnlyProxy

    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, NAME)
    assert isinstance(w.viewer, PublicOnlyProxy)
    return w


def _render(qtbot, w):
    assert w.render()
    qtbot.waitUntil(lambda: w.status.state in (RunState.DONE, RunState.FAILED, RunState.STOPPED), timeout=TIMEOUT_MS)
    assert w.status.state is RunState.DONE, w.status.message


def _table(x, y, z=None, **extra):
    n = len(x)
    cols = {"frame": np.arange(n), "x_nm": np.asarray(x, float), "y_nm": np.asarray(y, float), **extra}
    if z is not None:
        cols["z_nm"] = np.asarray(z, float)
    return Localizations(cols, {"pixel_size_nm": 100.0, "image_shape": (10, 10)})


def test_rerender_changes_pixel_size_and_keeps_the_output_layer(viewer, qtbot):
    gt = simulate(SimulationConfig(n_frames=10, height=16, width=16, density=1.0, seed=2))[1]
    gt.meta.update(pixel_size_nm=100.0, image_shape=(16, 16))
    pts = _points(viewer, gt, "gt")
    w = _dock(viewer)
    w.picker.value = pts
    w.method.setCurrentText("Histogram")
    w.pixel_size.setValue(20.0)
    _render(qtbot, w)
    out = viewer.layers["gt [render]"]
    first = _raw(out)
    assert out.data.shape == (80, 80) and tuple(out.scale) == (20.0, 20.0)
    assert out.data.sum() == len(gt)  # a histogram counts every localization in the field
    out.colormap = "viridis"  # the user's display setting
    w.pixel_size.setValue(10.0)
    w.contrast.setCurrentText("min–max")
    _render(qtbot, w)
    again = viewer.layers["gt [render]"]
    assert _raw(again) is first and _raw(w.output_layer()) is first  # the same layer object, updated in place
    assert again.data.shape == (160, 160) and tuple(again.scale) == (10.0, 10.0)
    assert again.colormap.name == "viridis"
    assert tuple(again.contrast_limits) == (0.0, float(again.data.max()))  # the min–max preset
    # the render lies on the points: pixel (i, j) of world (y, x) holds the localization there
    i, j = (int(np.floor(v + 0.5)) for v in again.world_to_data((gt["y_nm"][0], gt["x_nm"][0])))
    assert again.data[i, j] >= 1
    assert "Rendered" in w.status_label.text()
    assert sum(1 for la in viewer.layers if la.name.startswith("gt [render]")) == 1


def test_colour_by_z_puts_low_and_high_z_in_their_colours_at_their_pixels(viewer, qtbot):
    # low z at (x, y) = (250, 250) nm, high z at (750, 650) nm
    locs = _table([250.0, 750.0], [250.0, 650.0], z=[-400.0, 400.0], sigma_x_nm=[10.0, 30.0], sigma_y_nm=[10.0, 30.0])
    pts = _points(viewer, locs, "z pts")
    w = _dock(viewer)
    w.picker.value = pts
    assert w.color_by.currentText() == "z_nm"  # a table with z is coloured by depth by default
    w.method.setCurrentText("Histogram")
    w.pixel_size.setValue(100.0)
    w.auto_range.setChecked(False)
    w.vmin.setValue(-500.0)
    w.vmax.setValue(500.0)
    _render(qtbot, w)
    out = viewer.layers["z pts [render]"]
    assert out.rgb and out.data.shape == (10, 10, 3)
    low, high = map_to_colors([-400.0, 400.0], (-500, 500))
    for (x, y), colour in (((250.0, 250.0), low), ((750.0, 650.0), high)):
        i, j = (int(np.floor(v + 0.5)) for v in out.world_to_data((y, x))[:2])
        np.testing.assert_allclose(out.data[i, j], colour, atol=1e-6)
    assert not np.allclose(low, high)
    assert w.colorbar_canvas.isVisible() or not w.isVisible()
    assert out.metadata["render"]["value_range"] == (-500.0, 500.0)
    # colour by a derived feature: uncertainty_nm (RMS of sigma_x/y_nm), 10 nm at the first point, 30 nm at the second
    assert "uncertainty_nm" in w.feature_choices()
    w.color_by.setCurrentText("uncertainty_nm")
    w.vmin.setValue(0.0)
    w.vmax.setValue(40.0)
    _render(qtbot, w)
    out = viewer.layers["z pts [render]"]
    for (x, y), colour in zip(((250.0, 250.0), (750.0, 650.0)), map_to_colors([10.0, 30.0], (0, 40))):
        i, j = (int(np.floor(v + 0.5)) for v in out.world_to_data((y, x))[:2])
        np.testing.assert_allclose(out.data[i, j], colour, atol=1e-6)
    # back to a density render: the layer becomes single-channel, same name, same place in the list
    idx = list(viewer.layers).index(out)
    w.color_by.setCurrentText("none (density)")
    _render(qtbot, w)
    dens = viewer.layers["z pts [render]"]
    assert not dens.rgb and list(viewer.layers).index(dens) == idx


def test_z_slab_keeps_exactly_the_rows_in_range_in_render_and_3d(viewer, qtbot):
    rng = np.random.default_rng(3)
    z = rng.uniform(-600, 600, 300)
    locs = _table(rng.uniform(0, 1000, 300), rng.uniform(0, 1000, 300), z=z)
    pts = _points(viewer, locs, "slab")
    w = _dock(viewer)
    w.picker.value = pts
    assert w.slab.isEnabled() and w.z_min.value() <= z.min() and w.z_max.value() >= z.max()
    w.slab.setChecked(True)
    w.z_min.setValue(-150.0)
    w.z_max.setValue(250.0)
    w.method.setCurrentText("Histogram")
    w.color_by.setCurrentText("none (density)")
    _render(qtbot, w)
    inside = (z >= -150) & (z <= 250)
    assert viewer.layers["slab [render]"].data.sum() == inside.sum() < len(z)
    l3 = w.show_3d()
    # (z, frame, y, x): frame, y, x line up with the 2-D points (and a movie); z is a world axis of its own
    np.testing.assert_allclose(l3.data, np.column_stack([z, locs.frames, locs["y_nm"], locs["x_nm"]]))
    assert viewer.dims.ndim == 4 and viewer.dims.ndisplay == 3
    assert tuple(viewer.dims.displayed) == (0, 2, 3)  # z, y, x on screen
    np.testing.assert_array_equal(l3.shown, inside)
    assert len(_raw(l3)._view_data) == inside.sum()  # every frame at once, only the slab
    w.slab.setChecked(False)  # the filter follows the controls at once
    assert l3.shown.all() and len(_raw(l3)._view_data) == len(z)
    viewer.dims.ndisplay = 2  # the 2-D points still show one frame at a time
    viewer.dims.set_current_step(1, 7)
    assert len(viewer.layers["slab"]._view_data) == 1
    viewer.dims.ndisplay = 3  # napari's 2-D/3-D toggle: the cloud holds every frame again
    assert len(_raw(l3)._view_data) == len(z)
    # a 2-D table: no slab, no 3-D points
    flat = _points(viewer, _table([1.0, 2.0], [1.0, 2.0]), "flat")
    w.picker.value = flat
    assert not w.slab.isEnabled() and not w.points3d_button.isEnabled()


def test_density_model_features_explained_and_nan_photons_hidden(viewer, qtbot):
    locs = _table([100.0, 500.0], [100.0, 500.0], photons=[np.nan, np.nan], count=[0.9, 1.4], peak=[0.2, 0.3], prob=[0.9, 1.0])
    pts = _points(viewer, locs, "deep-storm")
    assert "photons" not in pts.features and {"count", "peak"} <= set(pts.features)
    assert "emitters" in pts.metadata["feature_descriptions"]["count"]
    w = _dock(viewer)
    w.picker.value = pts
    assert w.feature_choices() == ["frame", "count", "peak", "prob"]  # table order; no photons
    k = w.color_by.findText("count")
    assert "emitters" in w.color_by.itemData(k, __import__("qtpy").QtCore.Qt.ItemDataRole.ToolTipRole)
    w.color_by.setCurrentText("peak")
    assert "density-map value" in w.feature_info.text()
    # per-localization σ without an uncertainty column: a clear failure, no layer
    w.method.setCurrentText("Gaussian (per-localization σ)")
    assert not w.render()
    assert "per-localization σ needs" in w.status_label.text() and "uncertainty_nm" in w.status_label.text()
    assert "deep-storm [render]" not in viewer.layers


def test_the_render_widget_split_keeps_its_names():
    """_render.py split by concept (the 3-D view and z slab in _render_3d.py): the old names
    still import from widgets._render, and the widget is the one class with both parts."""
    from napari_smlm.widgets import _render, _render_3d

    assert _render._raw is _render_3d._raw
    for name in ("RenderWidget", "METHODS", "NO_COLOR", "COLORMAPS", "_axis_label", "_with_derived", "_render_later"):
        assert hasattr(_render, name), name
    for name in ("show_3d", "_apply_slab", "_on_slab_changed", "_on_ndisplay", "_hide_flat_points", "_restore_flat_points"):
        assert getattr(_render.RenderWidget, name) is getattr(_render_3d.Render3DView, name), name
