"""Screenshot of the Post-processing widget on a simulated drifting experiment.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/postprocessing_screenshot.py

A 10,000-frame filament experiment (64×64 px of 100 nm, 0.3 emitters/µm²/frame) with 300 nm of
smooth stage drift is localized by a stand-in for a network (the simulator's ground truth with
Mortensen-precision noise, as in benchmarks/postprocessing.py). The widget corrects the drift
by RCC, merges on-events and measures NeNA and FRC; the viewer shows, side by side, Gaussian
renders of the table before and after, and the dock shows the drift and FRC plots. Saves
``docs/screenshots/postprocessing.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "docs" / "screenshots" / "postprocessing.png"


def main() -> int:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_smlm import _layers
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.render import render
    from napari_smlm.core.simulate import simulate_ground_truth
    from postprocessing import localize_like

    cfg = SimulationConfig(n_frames=10000, height=64, width=64, structure="filaments", density=0.3, drift_nm=300.0,
                           drift_timescale_frames=2500, seed=12)
    _, locs = localize_like(simulate_ground_truth(cfg), seed=1)
    locs.meta.update(pixel_size_nm=cfg.pixel_size_nm, n_frames=cfg.n_frames, image_shape=(cfg.height, cfg.width))
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1550, 950)
    viewer.add_layer(napari.layers.Layer.create(*_layers.localizations_layer_data(locs, "drifting localizations")))
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Post-processing")
    w.drift.setCurrentText("RCC (no fiducials)")
    w.segments.setValue(20)
    w.link.setChecked(True)
    w.nena.setChecked(True)
    w.frc.setChecked(True)
    w.frc_pixel.setValue(5.0)
    w.run()
    t0 = time.perf_counter()
    while w.job is None or w.job.running:
        QApplication.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > 300:
            raise TimeoutError("post-processing still running after 300 s")
    if w.error is not None:
        raise w.error
    shape = (640, 640)
    for name, table in (("before: raw", locs), ("after: drift-corrected + merged", w.result.localizations)):
        img = render(table, method="gaussian", pixel_size_nm=10.0, sigma_nm=10.0, shape=shape)
        viewer.add_layer(napari.layers.Layer.create(*_layers.super_resolved_layer_data(img.image, 10.0, name)))
    for la in list(viewer.layers):
        if la.name.endswith("localizations") or la.name.endswith("post-processed"):
            la.visible = False
    viewer.grid.enabled = True
    viewer.reset_view()
    for _ in range(50):
        QApplication.processEvents()
        time.sleep(0.02)
    bar = w._scroll.verticalScrollBar()  # the dock scrolls (ScrollingDock): show the result's summary and plots
    bar.setValue(bar.maximum())
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False)
    print(f"screenshot: {OUT}; {w.summary.text()!r}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
