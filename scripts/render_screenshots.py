"""Screenshots of the Render widget on a simulated astigmatic 3-D movie, in a real napari window.

Run headless with::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/render_screenshots.py

It simulates a 3-D movie of filaments whose depth changes along their length (the 3-D simulator,
``core.simulate`` with an astigmatic ``psf.Astigmatic`` calibration), localizes it with the
classical astigmatic fitter (``core.astigmatic_fit``: x, y, z and their CRLB), opens the
localizations as a points layer and saves, to ``docs/screenshots/``:

* ``render_depth.png`` — the Render widget with a depth-coloured render (colour = z, colour bar
  in nm) of all localizations;
* ``render_slab.png`` — the same render restricted to a z slab;
* ``render_3d.png`` — the localizations as a 3-D point cloud coloured by z (napari's 3-D view).

Also prints the numbers the pictures should show (z range, localizations in the slab).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
PLUGIN = "napari-smlm"

log = logging.getLogger("render_screenshots")


def _process(seconds: float = 0.2) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def _wait(status, timeout: float = 300) -> None:
    from qtpy.QtWidgets import QApplication

    t0 = time.perf_counter()
    while status.running:
        QApplication.processEvents()
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"task still running after {timeout} s")
        time.sleep(0.01)
    _process(0.5)


def _shot(viewer, name: str) -> Path:
    _process(0.8)
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    log.info("wrote %s", path)
    return path


def simulated_3d_localizations(n_frames: int = 3000, seed: int = 3):
    """Localizations (with z) of a simulated astigmatic filament movie, and its ground truth."""
    from napari_smlm.core.astigmatic_fit import localize_astigmatic
    from napari_smlm.core.calibration import AstigmaticCalibration, DefocusCurve
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.simulate import simulate

    # a generic astigmatic calibration (σx and σy focus 500 nm apart; the one of tests/test_3d.py)
    cal = AstigmaticCalibration(
        DefocusCurve(130.0, -250.0, 400.0, 0.1, 0.05), DefocusCurve(140.0, 250.0, 420.0, -0.1, 0.03),
        z_range_nm=(-600.0, 600.0),
    )
    cfg = SimulationConfig(
        n_frames=n_frames, height=64, width=64, structure="filaments", n_filaments=6, density=0.3,
        photons_mean=4000, photons_std=800, bg_photons=20, psf_calibration=cal, z_min_nm=-500, z_max_nm=500,
        z_length_nm=4000, seed=seed,
    )
    frames, gt = simulate(cfg)
    locs = localize_astigmatic(frames, cal, cfg.pixel_size_nm, camera=cfg.camera)
    log.info("simulated %d frames, %d emitter-frames; the astigmatic fit found %d localizations", n_frames, len(gt), len(locs))
    return locs, gt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=3000, help="frames to simulate")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import napari
    import numpy as np
    from napari.layers import Layer

    from napari_smlm import _layers

    OUT.mkdir(parents=True, exist_ok=True)
    locs, _gt = simulated_3d_localizations(a.frames)
    viewer = napari.Viewer(title="napari-smlm", show=True)
    viewer.window.resize(1600, 1000)
    viewer.add_layer(Layer.create(*_layers.localizations_layer_data(locs, "astigmatic fit")))
    pts = viewer.layers["astigmatic fit"]
    _layers.label_axes(viewer)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Render localizations")
    w.picker.value = pts
    w.method.setCurrentText("Gaussian (fixed σ)")
    w.pixel_size.setValue(10.0)
    w.sigma.setValue(15.0)
    w.color_by.setCurrentText("z_nm")
    w.auto_range.setChecked(False)
    w.vmin.setValue(-500.0)
    w.vmax.setValue(500.0)
    w.contrast.setCurrentText("1–99 %")
    w.render()
    _wait(w.status)
    log.info("%s", w.status_label.text())
    pts.visible = False
    viewer.reset_view()
    _layers.show_scale_bar(viewer)
    _shot(viewer, "render_depth.png")

    w.slab.setChecked(True)
    w.z_min.setValue(-150.0)
    w.z_max.setValue(150.0)
    w.render()
    _wait(w.status)
    z = locs["z_nm"]
    log.info("%s (expected %d in the slab)", w.status_label.text(), int(np.sum((z >= -150) & (z <= 150))))
    _shot(viewer, "render_slab.png")

    w.slab.setChecked(False)
    w.output_layer().visible = False
    l3 = w.show_3d()
    cam = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    viewer.reset_view()
    log.info("3-D view: displayed axes %s of %s, camera %s", viewer.dims.displayed, viewer.dims.axis_labels, cam.angles)
    cam.angles = (-20.0, 35.0, 120.0)
    viewer.axes.visible = True  # z, y, x arrows: which way is depth
    log.info("3-D points shown: %d of %d", len(l3.data[l3.shown]), len(l3.data))
    _shot(viewer, "render_3d.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
