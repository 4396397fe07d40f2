"""The small shared controls (widgets/_controls.py) and the Training widget's pieces (_training_job, _training_plots)."""

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_smlm.widgets import _controls, _training_job  # noqa: E402
from napari_smlm.widgets._state import RunState  # noqa: E402


def test_spin_boxes_keep_value_range_suffix_and_decimals(qtbot):
    s = _controls.spin(5, 1, 10, 2, " px", "tip")
    d = _controls.dspin(0.123456, 0.0, 1.0, 0.01, 3, " µm", "dtip")
    assert (s.value(), s.minimum(), s.maximum(), s.singleStep(), s.suffix(), s.toolTip()) == (5, 1, 10, 2, " px", "tip")
    assert d.decimals() == 3 and d.value() == pytest.approx(0.123) and d.suffix() == " µm" and d.toolTip() == "dtip"
    assert _controls.spin(50, 1, 10).value() == 10  # clamped to the range set first


def test_path_field_fills_from_its_dialog_and_keeps_the_text_when_cancelled(qtbot):
    answers = iter(["/data/psf.yaml", ""])
    f = _controls.PathField("none", "a tip", choose=lambda parent: next(answers))
    qtbot.addWidget(f)
    assert f.edit.placeholderText() == "none" and f.edit.toolTip() == "a tip" and f.path == ""
    f.button.click()
    assert f.edit.text() == "/data/psf.yaml"
    f.button.click()  # cancelled
    assert f.path == "/data/psf.yaml"
    f.edit.setText("  /other.yaml ")
    assert f.path == "/other.yaml"


def test_training_texts_and_checkpoint_path(tmp_path):
    class U:
        step, total_steps, loss, metrics = 3, 10, 0.5, {"jaccard": 0.25}

    hist = {"step": [1, 2, 3], "loss": [1, 1, 0.5], "val_step": [2], "val_loss": [0.75]}
    assert _training_job.progress_text(U, hist, 90.0) == "step 3/10, loss 0.5, validation 0.75, JI 0.25 (1.5 min)"
    assert _training_job.run_summary(RunState.STOPPED, None, hist, None).startswith("Stopped after 3 steps. No checkpoint")
    assert _training_job.run_summary(RunState.DONE, None, hist, "/a.pt") == "Done after 3 steps. Best checkpoint: /a.pt"
    assert _training_job.checkpoint_path(f"  {tmp_path}/m.pt ", "decode") == tmp_path / "m.pt"
    auto = _training_job.checkpoint_path("", "decode")
    assert auto.parent == _training_job.default_checkpoint_dir() and auto.name.startswith("decode-")


def test_plan_training_refuses_an_uncreatable_folder_and_a_bad_psf_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(_training_job.SetupError, match="Cannot create"):
        _training_job.plan_training(None, "decode", None, None, blocker / "sub" / "m.pt")
    from napari_smlm.core.config import SimulationConfig

    with pytest.raises(_training_job.SetupError, match="PSF calibration"):
        _training_job.plan_training(None, "decode3d", SimulationConfig(), None, tmp_path / "m.pt", psf=str(tmp_path / "no.yaml"))
    plan = _training_job.plan_training(None, "decode", SimulationConfig(), None, tmp_path / "ok" / "m.pt")
    assert plan.path.parent.is_dir() and plan.init is None and plan.pairs is None and plan.model_config is None


def test_plan_training_keeps_an_existing_checkpoint_file(tmp_path):
    """Training writes its checkpoint at the first validation: a file already there is refused before the run
    (as ``train`` does without ``--overwrite``), in GUI words."""
    from napari_smlm.core.config import SimulationConfig

    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"not yours")
    with pytest.raises(_training_job.SetupError) as e:
        _training_job.plan_training(None, "decode", SimulationConfig(), None, mine)
    msg = str(e.value)
    assert "mine.pt" in msg and "already exists" in msg and "--overwrite" not in msg
    assert mine.read_bytes() == b"not yours"
    with pytest.raises(_training_job.SetupError, match="folder"):
        _training_job.plan_training(None, "decode", SimulationConfig(), None, tmp_path)


def test_save_checkpoint_as_never_replaces_a_file_unless_told(tmp_path, monkeypatch):
    """'Save checkpoint as' keeps a file the user already has (and the training checkpoint itself)."""
    errors = []
    monkeypatch.setattr(_training_job, "notify_error", errors.append)
    monkeypatch.setattr(_training_job, "notify_info", lambda msg: None)

    class Models:
        added = []

        def add_checkpoint(self, path, source):
            self.added.append(path)

    models = Models()
    src = tmp_path / "run.pt"
    src.write_bytes(b"trained")
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"the user's own model")
    assert _training_job.save_checkpoint_as(models, str(src), mine) is None
    assert mine.read_bytes() == b"the user's own model" and "mine.pt" in errors[-1]
    assert _training_job.save_checkpoint_as(models, str(src), src, overwrite=True) is None
    assert src.read_bytes() == b"trained"
    out = _training_job.save_checkpoint_as(models, str(src), mine, overwrite=True)
    assert out == mine and mine.read_bytes() == b"trained" and models.added == [mine]
    new = _training_job.save_checkpoint_as(models, str(src), tmp_path / "sub" / "new.pt")
    assert new.read_bytes() == b"trained" and len(models.added) == 2
