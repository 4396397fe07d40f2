"""Papercuts from the session 12 walk-through, fixed in session 13: the Evaluation dock (xvfb).

Every widget is opened with ``add_plugin_dock_widget``: it holds napari's ``PublicOnlyProxy`` of the viewer.

* Ground truth and localizations were pre-selected as the same layer when no layer was marked as ground truth.
* The model comparison's header was cut (behind a horizontal scroll bar) when the dock was narrow.
* The image picker offered (and chose) the raw movie when no super-resolved image was open; the model
  comparison's movie picker offered a render.
"""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_smlm import _layers  # noqa: E402
from napari_smlm.core.localizations import Localizations  # noqa: E402


def _table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return Localizations({"frame": rng.integers(0, 5, n), "x_nm": rng.uniform(0, 3000, n),
                          "y_nm": rng.uniform(0, 3000, n), "photons": rng.uniform(500, 3000, n)},
                         {"pixel_size_nm": 100.0})


def _add(viewer, name, kind=None, seed=0):
    """A points layer; ``kind`` None: nothing says what it holds (another plugin's layer, a hand-made one)."""
    from napari.layers import Layer

    data, kw, t = _layers.localizations_layer_data(_table(seed=seed), name, kind=kind or "localizations")
    if kind is None:
        kw["metadata"] = {k: v for k, v in kw["metadata"].items() if k != "smlm_kind"}
    viewer.add_layer(Layer.create(data, kw, t))
    return viewer.layers[name]


def _evaluation(viewer):
    return viewer.window.add_plugin_dock_widget("napari-smlm", "Evaluation")


def _same(a, b):
    return _layers.same_layer(a, b)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _errors():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [n.message for n in notification_manager.records if n.severity == NotificationSeverity.ERROR]


# ============================================================================ pre-selection
def test_unmarked_layers_are_never_preselected_as_the_same(viewer):
    truth, found = _add(viewer, "truth"), _add(viewer, "found", seed=1)
    _, w = _evaluation(viewer)
    gt, pred = w.gt_picker.value, w.pred_picker.value
    assert not _same(gt, pred)  # was: "found" for both
    assert gt is None and pred is not None  # which one is the truth cannot be told: the user says
    assert not w.evaluate_button.isEnabled() and "ground-truth" in w.note.text()
    n = len(_errors())
    assert w.evaluate() is None and len(_errors()) == n + 1 and "ground-truth" in _errors()[-1]
    w.gt_picker.value = truth
    w.pred_picker.value = found
    assert w.evaluate_button.isEnabled() and w.evaluate() is not None


def test_a_marked_ground_truth_is_chosen_and_the_localizations_are_another_layer(viewer):
    gt = _add(viewer, "positions", kind="ground_truth")
    other = _add(viewer, "mine", seed=1)  # unmarked, on top
    _, w = _evaluation(viewer)
    assert _same(w.gt_picker.value, gt) and _same(w.pred_picker.value, other)
    assert w.evaluate_button.isEnabled()


def test_only_a_ground_truth_layer_leaves_the_localizations_empty(viewer):
    gt = _add(viewer, "positions", kind="ground_truth")
    _, w = _evaluation(viewer)
    assert _same(w.gt_picker.value, gt) and w.pred_picker.value is None
    assert not w.evaluate_button.isEnabled() and "localization" in w.note.text()


def test_layers_opened_after_the_dock_are_not_both_picked(viewer):
    _, w = _evaluation(viewer)
    _add(viewer, "truth")
    _add(viewer, "found", seed=1)
    assert not _same(w.gt_picker.value, w.pred_picker.value)
    gt = _add(viewer, "positions", kind="ground_truth", seed=2)  # now one is marked: it becomes the ground truth
    assert _same(w.gt_picker.value, gt) and not _same(w.pred_picker.value, gt)


def test_the_same_layer_for_both_is_refused_with_a_message(viewer):
    layer = _add(viewer, "found")
    _add(viewer, "truth", kind="ground_truth", seed=1)
    _, w = _evaluation(viewer)
    w.gt_picker.value = layer  # the user picks the same layer twice (the widget holds proxies of it)
    w.pred_picker.value = layer
    assert not w.evaluate_button.isEnabled() and "same layer" in w.note.text()
    n = len(_errors())
    assert w.evaluate() is None and len(_errors()) == n + 1 and "same layer" in _errors()[-1]


# ============================================================================ narrow dock
def _narrowest(qtbot, viewer, w, dock):
    from qtpy.QtCore import Qt

    viewer.window.show()
    win = w.window()
    win.resizeDocks([dock], [1], Qt.Orientation.Horizontal)  # as narrow as the dock goes
    qtbot.waitUntil(lambda: dock.width() <= w.minimumSizeHint().width() + 2 and w.isVisible())


def _check_fits(table, stretch=0):
    """Every header readable, every row shown, nothing behind a scroll bar."""
    hh = table.horizontalHeader()
    assert hh.length() <= table.viewport().width()  # no column outside the table
    assert not table.horizontalScrollBar().isVisible() and not table.verticalScrollBar().isVisible()
    fm = hh.fontMetrics()
    for j in range(table.columnCount()):
        label = table.horizontalHeaderItem(j).text()
        assert table.horizontalHeaderItem(j).toolTip()
        if j != stretch:
            assert hh.sectionSize(j) >= fm.horizontalAdvance(label), label  # the whole header shows
    assert table.viewport().height() >= sum(table.rowHeight(i) for i in range(table.rowCount()))


def test_the_model_comparison_and_metric_tables_fit_a_narrow_dock(qtbot, viewer):
    truth, found = _add(viewer, "truth", kind="ground_truth"), _add(viewer, "found", seed=1)
    dock, w = _evaluation(viewer)
    _narrowest(qtbot, viewer, w, dock)
    models = ["decode", "decode3d", "deep-storm", "drl-storm", "fid-storm", "skip-storm", "srcnn", "u-storm",
              "picasso (baseline)"]
    w.benchmark_rows = [{"model": m, "jaccard_percent_greedy": 61.2 + i, "rmse_lateral_nm_greedy": 31.7 + i,
                         "efficiency_lateral_greedy": 48.2 - i, "ssim": 0.8123, "frames_per_s": 123.4 * (i + 1)}
                        for i, m in enumerate(models)]
    w._fill_benchmark_table()
    assert w.evaluate() is not None
    qtbot.waitUntil(lambda: w.benchmark_table.isVisible())
    t = w.benchmark_table
    _check_fits(t)
    assert t.item(8, 0).toolTip() == "picasso (baseline)"  # elided in the cell, whole on hover
    assert t.item(8, 5).text() == "1111"  # not 1.11e+03
    _check_fits(w.table, stretch=1)
    assert w.table.rowCount() >= 10


def test_metric_names_show_whole_next_to_a_long_value(qtbot, viewer):
    """Symptom (docs/screenshots/evaluation.png): a ground truth without photons puts 'n/a (no CRLB: needs a
    'photons' column …)' in the value column, which took the width: the names read 'Jacca…x (%)', 'RMSE…(nm)'."""
    from napari.layers import Layer

    t = _table()
    data, kw, kind = _layers.localizations_layer_data(Localizations(t.to_dataframe().drop(columns=["photons"]), t.meta),
                                                      "truth", kind="ground_truth")
    viewer.add_layer(Layer.create(data, kw, kind))
    _add(viewer, "found", seed=1)
    dock, w = _evaluation(viewer)
    _narrowest(qtbot, viewer, w, dock)
    assert w.evaluate() is not None
    qtbot.waitUntil(lambda: w.table.isVisible())
    texts = [w.table.item(i, 1).text() for i in range(w.table.rowCount())]
    assert any("photons" in v for v in texts)  # the long value is there
    _check_fits(w.table, stretch=1)
    fm, col = w.table.fontMetrics(), w.table.columnWidth(0)
    for i in range(w.table.rowCount()):
        assert col >= fm.horizontalAdvance(w.table.item(i, 0).text()), w.table.item(i, 0).text()


# ============================================================================ the image to compare
def _add_image(viewer, name, data, kind=None):
    """An image layer; ``kind``: "movie" / "super_resolved" as this plugin's readers mark them, None: unmarked."""
    from napari.layers import Layer

    if kind == "super_resolved":
        viewer.add_layer(Layer.create(*_layers.super_resolved_layer_data(data, 25.0, name)))
    elif kind == "movie":
        viewer.add_layer(Layer.create(*_layers.movie_layer_data(data, 100.0, name)))
    else:
        viewer.add_image(data, name=name)
    return viewer.layers[name]


def _choices(picker):
    return [picker.itemText(i) for i in range(picker.count())]


def test_the_image_picker_never_offers_the_raw_movie_and_says_why_compare_cannot_run(viewer):
    """Symptom: with a movie and no render open, 'Image' showed the raw movie and 'Compare images' was enabled."""
    _add_image(viewer, "raw", np.zeros((4, 16, 16), np.uint16), kind="movie")
    _add_image(viewer, "other stack", np.zeros((3, 16, 16), np.float32))  # unmarked, but not one 2-D image
    _add_image(viewer, "one frame", np.zeros((16, 16), np.uint16), kind="movie")  # a movie of one frame
    _add(viewer, "truth", kind="ground_truth")
    _, w = _evaluation(viewer)
    assert w.sr_picker.value is None and _choices(w.sr_picker) == []  # was: "raw" chosen
    assert not w.compare_button.isEnabled()
    assert "No super-resolved image" in w.compare_button.toolTip() and "No super-resolved image" in w.note.text()
    n = len(_errors())
    assert w.compare_images() is None and len(_errors()) == n + 1 and "No super-resolved image" in _errors()[-1]
    # a render opened later is chosen, and Compare runs
    render = _add_image(viewer, "raw [render]", np.ones((64, 64), np.float32), kind="super_resolved")
    assert _same(w.sr_picker.value, render) and w.compare_button.isEnabled()
    assert "No super-resolved image" not in w.note.text()
    assert w.compare_images() is not None


def test_the_image_picker_prefers_a_render_and_offers_unmarked_grey_images(viewer):
    render = _add_image(viewer, "sr", np.ones((64, 64), np.float32), kind="super_resolved")
    _add_image(viewer, "raw", np.zeros((4, 16, 16), np.uint16), kind="movie")  # on top of the render
    _add_image(viewer, "thunderstorm render", np.ones((64, 64), np.float32))  # another program's image: no kind
    _, w = _evaluation(viewer)
    assert _same(w.sr_picker.value, render)  # the render, not the top image
    assert _choices(w.sr_picker) == ["thunderstorm render", "sr"]  # was: "raw" offered too
    viewer.layers.remove("sr")
    assert w.sr_picker.value.name == "thunderstorm render" and not w.compare_button.isEnabled()  # no ground truth
    assert "ground-truth" in w.compare_button.toolTip()


def test_the_model_comparison_never_offers_a_render_as_its_movie(viewer):
    """Symptom: with a movie of another reader (no kind) under a render, 'Compare models' chose the render."""
    _add_image(viewer, "movie (other reader)", np.zeros((4, 16, 16), np.uint16))
    _add_image(viewer, "movie [render]", np.ones((64, 64), np.float32), kind="super_resolved")
    _, w = _evaluation(viewer)
    assert w.movie_picker.value.name == "movie (other reader)"  # was: "movie [render]" (the top layer)
    assert _choices(w.movie_picker) == ["movie (other reader)"]
