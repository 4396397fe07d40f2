"""Screenshot of the PSF calibration (3-D) widget on a simulated bead z-stack, in a real napari window.

Run headless with::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/calibration_screenshot.py

It simulates 9 beads stepped through 49 × 25 nm with the asymmetric astigmatic calibration of
tests/test_3d.py (``core.calibration_beads.simulate_bead_stack``), writes them as an ImageJ TIFF with
its z spacing and pixel size, opens it with the plugin's reader (the widget prefills both from
the file), runs the calibration and saves ``docs/screenshots/calibration_widget.png``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots" / "calibration_widget.png"
log = logging.getLogger("calibration_screenshot")


def _process(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import napari
    import tifffile

    from napari_smlm.core.calibration import AstigmaticCalibration, DefocusCurve
    from napari_smlm.core.calibration_beads import simulate_bead_stack

    truth = AstigmaticCalibration(
        DefocusCurve(130.0, -250.0, 400.0, 0.1, 0.05), DefocusCurve(140.0, 250.0, 420.0, -0.1, 0.03),
        z_range_nm=(-600.0, 600.0),
    )
    stack, _ = simulate_bead_stack(truth, n_slices=49, step_nm=25.0, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "beads.tif"
        md = {"spacing": 0.025, "unit": "um", "axes": "ZYX"}  # 25 nm z step; 10 px/µm = 100 nm pixels
        tifffile.imwrite(path, stack, imagej=True, resolution=(10.0, 10.0), metadata=md)
        viewer = napari.Viewer(title="napari-smlm", show=True)
        viewer.window.resize(1500, 950)
        viewer.open(str(path), plugin="napari-smlm")
        _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "PSF calibration (3-D)")
        beads = viewer.layers["beads"]
        beads.contrast_limits = (float(stack.min()), float(stack.max()))
        viewer.dims.set_point(0, 12)  # slice 12 of 49: beads elongated along y
        w.run()
        t0 = time.perf_counter()
        while w.status.running and time.perf_counter() - t0 < 300:
            _process(0.05)
        _process(1.0)
        log.info("%s | %s", w.status_label.text(), w.result_label.text())
        viewer.screenshot(str(OUT), canvas_only=False, flash=False)
        log.info("wrote %s", OUT)
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
