"""A movie without a pixel size in a real (xvfb) napari viewer with the Reconstruction dock.

The reader shows it at the default 100 nm and says so (a warning notification, the dock's movie
line); every layer is in nm, so napari's scale bar reads nm; a run at another pixel size moves
the movie onto the results' grid and the movie stops being "assumed".
"""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_widgets import _dock, _reconstruct, toy_checkpoint, viewer  # noqa: E402,F401

from napari_smlm.core.io.tiff import DEFAULT_PIXEL_SIZE_NM, write_movie  # noqa: E402
from napari_smlm.core.simulate import simulate  # noqa: E402


def _warnings_about(text):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [n.message for n in notification_manager.records
            if n.severity == NotificationSeverity.WARNING and text in n.message]


def test_movie_without_pixel_size_in_the_reconstruction_dock(viewer, qtbot, tmp_path, toy_checkpoint):  # noqa: F811
    from test_widgets import SIM

    frames, _ = simulate(SIM.replace(n_frames=6))
    path = write_movie(tmp_path / "no pixel size.tif", frames)  # no pixel size in the file
    w = _dock(viewer, "Reconstruction")
    layer = w.open_movie(path)
    assert layer is not None and w.movie_picker.value is layer
    px = DEFAULT_PIXEL_SIZE_NM
    # said to the user: a notification naming the file, and the dock's movie line
    said = _warnings_about("no pixel size.tif")
    assert said and f"{px:g} nm" in said[-1] and "Pixel size" in said[-1]
    assert f"{px:g} nm (assumed" in w.movie_info.text()
    assert w.pixel_size.value() == pytest.approx(px)
    # one set of units in the viewer, so the scale bar reads nm (was: pixels vs nm -> none)
    np.testing.assert_allclose(layer.scale, (1, px, px))
    assert viewer.layers.units is not None and str(viewer.layers.units[-1]) == "nanometer"
    assert viewer.canvas.overlays.scale_bar.visible

    # a run at the real pixel size: the movie follows, and is no longer an assumed default
    w.pixel_size.setValue(160.0)
    _reconstruct(qtbot, w, layer, toy_checkpoint)
    np.testing.assert_allclose(layer.scale, (1, 160, 160))
    assert layer.metadata["pixel_size_nm"] == 160.0 and layer.metadata["pixel_size_source"] != "default"
    points = w.result_layers()["points"]
    assert viewer.layers.units is not None and [str(u) for u in points.units[-2:]] == ["nanometer", "nanometer"]
    assert "160 nm" in w.movie_info.text() and "assumed" not in w.movie_info.text()


def test_opening_a_movie_shows_the_scale_bar(viewer, tmp_path):  # noqa: F811
    # every movie is in nm now (its own pixel size or the default), so the scale bar has a unit to show
    assert not viewer.canvas.overlays.scale_bar.visible
    (layer,) = viewer.open(str(write_movie(tmp_path / "m.tif", np.ones((2, 16, 16), np.uint16))), plugin="napari-smlm")
    assert viewer.canvas.overlays.scale_bar.visible
    assert str(viewer.layers.units[-1]) == "nanometer"


def test_a_pixel_size_the_user_set_survives_opening_a_movie_without_one(viewer, tmp_path):  # noqa: F811
    """The reader's 100 nm is a guess: it must not replace the camera pixel size the user typed (it did not before
    session 12, when such a movie had no pixel size at all). A pixel size from a file still sets the field."""
    w = _dock(viewer, "Reconstruction")
    w.pixel_size.setValue(160.0)  # the user's camera
    layer = w.open_movie(write_movie(tmp_path / "no px.tif", np.ones((4, 16, 16), np.uint16)))
    assert layer is not None and layer.metadata["pixel_size_source"] == "default"
    assert w.pixel_size.value() == pytest.approx(160.0)
    assert "assumed" in w.movie_info.text()
    with_px = w.open_movie(write_movie(tmp_path / "px.tif", np.ones((4, 16, 16), np.uint16), pixel_size_nm=107.0))
    assert w.movie_picker.value is with_px and w.pixel_size.value() == pytest.approx(107.0)
    w.movie_picker.value = layer  # back to the movie without one: the field keeps the last known value
    assert w.pixel_size.value() == pytest.approx(107.0)


def test_export_after_a_run_at_the_assumed_pixel_size_says_so(viewer, qtbot, tmp_path, toy_checkpoint):  # noqa: F811
    """The walk-through: a Picasso export after a run at the assumed 100 nm did not say it was assumed."""
    import yaml

    from test_widgets import SIM

    from napari_smlm.core.io.formats.picasso import PIXEL_SIZE_NOTE_KEY, picasso_yaml_path

    frames, _ = simulate(SIM.replace(n_frames=4))
    w = _dock(viewer, "Reconstruction")
    layer = w.open_movie(write_movie(tmp_path / "nopx.tif", frames))
    _reconstruct(qtbot, w, layer, toy_checkpoint)  # the Pixel size field untouched: 100 nm assumed
    assert w.localizations().meta["pixel_size_source"] == "default"
    out = w.export_localizations(tmp_path / "a_locs.hdf5")
    doc = list(yaml.safe_load_all(picasso_yaml_path(out).read_text()))[-1]
    assert doc["Pixelsize"] == DEFAULT_PIXEL_SIZE_NM and "assumed" in doc[PIXEL_SIZE_NOTE_KEY]
    said = _warnings_about("a_locs.hdf5")
    assert said and "assumed" in said[-1] and "Exported" in said[-1]
    # napari's Save Selected Layers (our writer) of the points says it too
    from napari.plugins.io import save_layers

    points = w.result_layers()["points"]
    (_, yml) = save_layers(str(tmp_path / "saved_locs.hdf5"), [points], plugin="napari-smlm")
    assert "assumed" in list(yaml.safe_load_all(open(yml, encoding="utf-8")))[-1][PIXEL_SIZE_NOTE_KEY]

    # the user sets the camera's pixel size: the next export has nothing to say
    w.pixel_size.setValue(160.0)
    _reconstruct(qtbot, w, layer, None)
    out = w.export_localizations(tmp_path / "b_locs.hdf5")
    doc = list(yaml.safe_load_all(picasso_yaml_path(out).read_text()))[-1]
    assert doc["Pixelsize"] == 160.0 and PIXEL_SIZE_NOTE_KEY not in doc
    assert not _warnings_about("b_locs.hdf5")


def test_a_pixel_size_from_the_file_is_not_assumed(viewer, qtbot, tmp_path, toy_checkpoint):  # noqa: F811
    from test_widgets import SIM

    frames, _ = simulate(SIM.replace(n_frames=4))
    w = _dock(viewer, "Reconstruction")
    layer = w.open_movie(write_movie(tmp_path / "px.tif", frames, pixel_size_nm=100.0))  # the default's value, read
    _reconstruct(qtbot, w, layer, toy_checkpoint)
    assert w.localizations().meta["pixel_size_source"] == "description"
    w.export_localizations(tmp_path / "a.csv")
    assert not _warnings_about("a.csv")
