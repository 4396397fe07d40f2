"""The Post-processing widget's "Undo pixel locking" control: a layer with planted locking comes
back flat, the step is recorded first, and the summary shows the deviation before -> after."""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_smlm import _layers  # noqa: E402
from napari_smlm.core.localizations import Localizations  # noqa: E402
from napari_smlm.core.postprocessing import subpixel_distribution  # noqa: E402

PX = 100.0


def test_widget_undoes_pixel_locking(make_napari_viewer, qtbot):
    from napari.layers import Layer

    rng = np.random.default_rng(0)
    n = 6000
    tx, ty = rng.uniform(0, 6400, (2, n))

    def lock(v):
        f = np.mod(v / PX, 1.0)
        return (np.floor(v / PX) + f + 0.7 / (2 * np.pi) * np.sin(2 * np.pi * f)) * PX

    locs = Localizations({"frame": rng.integers(0, 300, n), "x_nm": lock(tx), "y_nm": lock(ty),
                          "photons": rng.uniform(500, 3000, n)}, {"pixel_size_nm": PX, "n_frames": 300})
    viewer = make_napari_viewer()
    viewer.add_layer(Layer.create(*_layers.localizations_layer_data(locs, "locs")))
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Post-processing")
    assert not w.pixel_locking.isChecked()  # opt-in
    w.pixel_locking.setChecked(True)
    assert w.config().pixel_locking
    w.run()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=60_000)
    assert w.error is None, w.error
    out = _layers.layer_to_localizations(viewer.layers["locs post-processed"])
    assert subpixel_distribution(locs).deviation_x > 0.5
    assert subpixel_distribution(out, PX).deviation_x < 0.1
    assert "sub-pixel deviation" in w.summary.text()
    steps = viewer.layers["locs post-processed"].metadata["localizations_meta"]["postprocessing"]
    assert [s["step"] for s in steps] == ["pixel_locking"]
