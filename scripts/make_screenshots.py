"""Screenshots of the napari-smlm widgets in a real napari window, on real data.

Run headless with::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_screenshots.py

(``make screenshots`` does this). It opens the EPFL 2013 "Bundled Tubes High Density" movie
(361 frames, 100 nm pixels) with the plugin's reader, reconstructs it with the best shipped model
(``decode`` > ``fid-storm`` > ``deep-storm`` > any other), trains a model for a few steps,
simulates a movie and evaluates the reconstruction against the ground truth, saving
``viewer.screenshot(canvas_only=False)`` PNGs to ``docs/screenshots/``.

When no shipped weights exist yet, the reconstruction uses a hand-set placeholder detector (the
test-only ``toy-test`` family from ``tests/_toy_family.py``): the pictures then show the
workflow, not the quality of a trained model. Rerun this script once weights land.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = ROOT.parent / "shared" / "data" / "external"
MOVIE = EXTERNAL / "EliasNehme_Deep-STORM" / "testStack_SimulatedMicrotubules.tif"
GROUND_TRUTH = EXTERNAL / "EliasNehme_Deep-STORM" / "Positions_Bundeld_Tubulin_Recreated.derived.csv"
OUT = ROOT / "docs" / "screenshots"
PLUGIN = "napari-smlm"
PREFERRED = ("decode", "fid-storm", "deep-storm", "u-storm", "skip-storm", "drl-storm", "srcnn")

log = logging.getLogger("make_screenshots")
#: Layer names of the reconstruction run (set by ``reconstruction``, used by ``evaluation``).
_RESULT_NAMES: dict[str, str] = {}


def _process(seconds: float = 0.2) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def _wait(status, timeout: float, tick=None) -> None:
    """Spin the Qt event loop until a task leaves RUNNING (``tick()`` called on every turn)."""
    from qtpy.QtWidgets import QApplication

    t0 = time.perf_counter()
    while status.running:
        QApplication.processEvents()
        if tick is not None:
            tick()
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"task still running after {timeout} s")
        time.sleep(0.01)
    _process(0.5)


def _shot(viewer, name: str) -> Path:
    _process(0.5)
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    log.info("wrote %s", path)
    return path


def _camera(viewer):
    """``viewer.scene.camera`` (napari >= 0.9), else the older ``viewer.camera``."""
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


def _clear_docks(viewer) -> None:
    viewer.window.remove_dock_widget("all")
    _process(0.2)


def _placeholder_checkpoint(tmpdir: Path) -> Path:
    """A hand-set toy detector (no training): bright 3×3 blobs of the centre frame."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    import _toy_family  # noqa: F401  (registers "toy-test")

    from napari_smlm.core.checkpoint import Checkpoint, save_checkpoint
    from napari_smlm.core.config import SimulationConfig

    w1, b1 = torch.zeros(8, 3, 3, 3), torch.zeros(8)
    w1[0, 1] = 1.0 / 9
    b1[0] = -0.3
    w2, b2 = torch.zeros(1, 8, 3, 3), torch.tensor([-1.5])
    w2[0, 0, 1, 1] = 6.0
    state = {"0.weight": w1, "0.bias": b1, "2.weight": w2, "2.bias": b2}
    path = tmpdir / "placeholder_detector.pt"
    save_checkpoint(path, Checkpoint("toy-test", {"channels": 8, "threshold": 0.5, "scale": 200.0}, state,
                                     SimulationConfig(camera="ideal").to_dict()))
    return path


def reconstruction(viewer, tmpdir: Path, checkpoint: Path | None = None) -> tuple[str, bool]:
    from napari_smlm.core.checkpoint import shipped_models

    (movie,) = viewer.open(str(MOVIE), plugin=PLUGIN)
    (gt,) = viewer.open(str(GROUND_TRUTH), plugin=PLUGIN)
    gt.name = "ground truth (EPFL)"
    gt.visible = False
    viewer.dims.axis_labels = ("frame", "y", "x")
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    shipped = shipped_models()
    model = next((m for m in PREFERRED if m in shipped), shipped[0] if shipped else None)
    placeholder = model is None
    if checkpoint is not None and Path(checkpoint).exists():
        # e.g. the EPFL-matched fine-tune (benchmarks/finetune_epfl.sh): its camera comes with it
        w.load_checkpoint_file(checkpoint)
        model, placeholder = f"{Path(checkpoint).name}", False
    elif placeholder:
        w.load_checkpoint_file(_placeholder_checkpoint(tmpdir))
        w.camera_combo.setCurrentText("ideal")
        w.estimate_button.click()
        model = "placeholder detector"
    else:
        w.select_model(f"shipped:{model}")
    w.movie_picker.value = movie
    w.batch_size.setValue(16)
    w.run_button.click()
    shot_taken = []

    def mid_run() -> None:
        # early in the run: a 361-frame run takes ~3 s, and a shot after a 0.4 s wait must still show it running
        if not shot_taken and w._n_done >= 160 and w.status.running:
            _process(0.1)
            _shot(viewer, "reconstruction_running.png")
            shot_taken.append(True)

    _wait(w.status, 900, mid_run)
    log.info("%s", w.status_label.text())
    names = w.result_names()
    _RESULT_NAMES.update(names)
    if names.get("output") in viewer.layers:
        viewer.layers[names["output"]].visible = False
    viewer.layers[names["sr"]].visible = False  # frame + its localizations; the SR image gets its own picture
    viewer.dims.set_current_step(0, 180)
    viewer.reset_view()
    _shot(viewer, "reconstruction.png")
    viewer.layers[names["sr"]].visible = True
    # the super-resolved image alone, zoomed on a bundle
    movie.visible = False
    viewer.layers[names["points"]].visible = False
    cam = _camera(viewer)
    cam.center = (3000.0, 3200.0)
    cam.zoom = cam.zoom * 1.6
    _shot(viewer, "super_resolved.png")
    movie.visible = True
    viewer.layers[names["points"]].visible = True
    viewer.reset_view()
    return model, placeholder


def training(viewer) -> None:
    from napari_smlm.core.models import available_models

    _clear_docks(viewer)
    _, tw = viewer.window.add_plugin_dock_widget(PLUGIN, "Training")
    families = available_models()
    tw.model_combo.setCurrentText("decode" if "decode" in families else next(iter(families)))
    tw.movie_picker.value = viewer.layers[MOVIE.stem]
    tw.form.camera_combo.setCurrentText("ideal")
    tw.match_movie()
    tw.form.set_values(photons_mean=3000.0, photons_std=800.0, bg_photons=50.0, density=5.0, psf_sigma_nm=130.0)
    tw.preview()
    tw.crop.setValue(32)
    tw.steps.setValue(160)
    tw.steps_per_epoch.setValue(20)
    tw.batch_size.setValue(8)
    tw.val_batches.setValue(2)
    tw.device.setCurrentText("cpu")
    with tempfile.TemporaryDirectory() as d:
        tw.checkpoint_edit.setText(str(Path(d) / "screenshot_model.pt"))
        tw.start_button.click()
        _wait(tw.status, 900)
        log.info("%s", tw.status_label.text())
        tw._scroll.ensureWidgetVisible(tw.save_button)  # preview, settings and loss curves in view
        _shot(viewer, "training.png")


def simulation(viewer) -> None:
    _clear_docks(viewer)
    for layer in viewer.layers:
        layer.visible = False
    _, sw = viewer.window.add_plugin_dock_widget(PLUGIN, "Simulation")
    sw.form.set_values(n_frames=200, height=64, width=64, density=1.0, structure="filaments", seed=3)
    sw.name_edit.setText("simulated")
    sw.run_button.click()
    _wait(sw.status, 600)
    viewer.dims.set_current_step(0, 57)
    viewer.reset_view()
    _shot(viewer, "simulation.png")
    for name in ("simulated movie", "simulated ground truth"):
        viewer.layers.remove(name)


def evaluation(viewer) -> None:
    _clear_docks(viewer)
    movie = viewer.layers[MOVIE.stem]
    names = _RESULT_NAMES
    for layer in viewer.layers:
        layer.visible = layer.name in (names["sr"], names["points"], "ground truth (EPFL)", movie.name)
    _, ew = viewer.window.add_plugin_dock_widget(PLUGIN, "Evaluation")
    ew.gt_picker.value = viewer.layers["ground truth (EPFL)"]
    ew.pred_picker.value = viewer.layers[names["points"]]
    ew.sr_picker.value = viewer.layers[names["sr"]]
    ew.evaluate_button.click()
    ew.compare_button.click()
    log.info("metrics: %s", {k: ew.metrics[k] for k in ("jaccard", "rmse_lateral_nm", "efficiency_lateral")})
    viewer.dims.set_current_step(0, 180)
    viewer.reset_view()
    cam = _camera(viewer)
    cam.center = (3200.0, 3200.0)
    cam.zoom = cam.zoom * 1.4
    _shot(viewer, "evaluation.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["reconstruction", "training", "simulation", "evaluation"], nargs="*")
    p.add_argument("--checkpoint", type=Path, default=ROOT / "benchmarks" / "checkpoints" / "decode_epfl_finetune.pt",
                   help="reconstruct with this checkpoint when it exists (default: the EPFL-matched fine-tune)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not MOVIE.exists():
        log.error("data not found: %s", MOVIE)
        return 1
    import napari
    import torch

    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-smlm", show=True)
    viewer.window.resize(1600, 1000)
    viewer.scale_bar.visible = True
    only = set(a.only or ("reconstruction", "training", "simulation", "evaluation"))
    with tempfile.TemporaryDirectory() as d:
        model, placeholder = reconstruction(viewer, Path(d), a.checkpoint)
        log.info("reconstructed with %s%s", model, " (placeholder: no shipped weights yet)" if placeholder else "")
        if "training" in only:
            training(viewer)
        if "simulation" in only:
            simulation(viewer)
        if "evaluation" in only:
            evaluation(viewer)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
