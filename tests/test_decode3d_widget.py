"""Training widget: the PSF-calibration picker trains / fine-tunes a 3-D model for that PSF (issue 13.3)."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_smlm.core.calibration import AstigmaticCalibration, DefocusCurve  # noqa: E402
from napari_smlm.core.checkpoint import load_checkpoint  # noqa: E402
from napari_smlm.core.config import SimulationConfig  # noqa: E402
from napari_smlm.core.training import TrainConfig, iter_train  # noqa: E402
from napari_smlm.widgets._state import RunState  # noqa: E402

TINY = {"frame_features": [8, 8], "context_features": [8, 8, 8], "head_features": 8}
OTHER = AstigmaticCalibration(
    DefocusCurve(150.0, 200.0, 380.0), DefocusCurve(145.0, -200.0, 380.0), z_range_nm=(-400.0, 400.0), source="other"
)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def test_training_widget_fine_tunes_decode3d_to_a_calibration_file(viewer, qtbot, tmp_path):
    sim = SimulationConfig(height=16, width=16, density=1.0, photons_mean=3000.0, bg_photons=20.0)
    start = tmp_path / "start.pt"
    one = TrainConfig(steps=1, steps_per_epoch=1, batch_size=2, val_batches=1, device="cpu")
    list(iter_train("decode3d", sim, one, checkpoint_path=start, model_config=TINY))
    cal = tmp_path / "mine.yaml"
    OTHER.save(cal)

    _, tw = viewer.window.add_plugin_dock_widget("napari-smlm", "Training")
    tw.model_combo.setCurrentText("decode3d")
    tw.session.models.add_checkpoint(start, source="file")
    tw.init_combo.setCurrentIndex(tw.init_combo.findData(str(start.resolve())))
    tw.crop.setValue(16)
    tw.steps.setValue(2)
    tw.steps_per_epoch.setValue(1)
    tw.batch_size.setValue(2)
    tw.val_batches.setValue(1)
    tw.device.setCurrentText("cpu")
    out = tmp_path / "tuned.pt"
    tw.checkpoint_edit.setText(str(out))

    tw.psf_edit.setText(str(tmp_path / "missing.yaml"))  # a bad file: a clear error, nothing starts
    assert not tw.start()
    assert tw.status.state is not RunState.RUNNING

    tw.psf_edit.setText(str(cal))
    assert tw.start()
    qtbot.waitUntil(lambda: tw.status.state in (RunState.DONE, RunState.FAILED, RunState.STOPPED), timeout=60_000)
    assert tw.status.state is RunState.DONE, tw.status.message
    ck = load_checkpoint(out)
    assert ck.model_config["psf_calibration"] == OTHER.to_dict()
    assert ck.simulation["psf_calibration"] == OTHER.to_dict()
    assert ck.model_config["z_range_nm"] == [-400.0, 400.0]
