"""The PSF calibration (3-D) widget in a real (xvfb) napari viewer, opened as a plugin dock widget.

napari hands a plugin widget a ``PublicOnlyProxy`` of the viewer; every test goes through it.
The truth calibration is asymmetric (σx and σy differ in s0 and focal plane), so a swap of
σx/σy in the widget's result or plot fails the tests.
"""

import threading

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_smlm.core.calibration import AstigmaticCalibration, DefocusCurve  # noqa: E402
from napari_smlm.core.calibration_beads import calibrate_stack, simulate_bead_stack  # noqa: E402
from napari_smlm.widgets._state import RunState  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

PLUGIN, NAME = "napari-smlm", "PSF calibration (3-D)"
TIMEOUT_MS = 60_000
TRUTH = AstigmaticCalibration(
    DefocusCurve(130.0, -250.0, 400.0, 0.1, 0.05),
    DefocusCurve(140.0, 250.0, 420.0, -0.1, 0.03),
    z_range_nm=(-600.0, 600.0),
)
N_SLICES, STEP, PX = 41, 30.0, 100.0


@pytest.fixture(scope="module")
def stack():
    return simulate_bead_stack(TRUTH, n_slices=N_SLICES, step_nm=STEP, shape=(64, 64), seed=3)[0]


@pytest.fixture(scope="module")
def reference(stack):
    return calibrate_stack(stack, STEP, PX, source="reference")


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _dock(viewer):
    from napari.utils._proxies import PublicOnlyProxy

    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, NAME)
    assert isinstance(w.viewer, PublicOnlyProxy)
    return w


def _run(qtbot, w, expect=RunState.DONE):
    assert w.run()
    qtbot.waitUntil(lambda: w.status.state in (RunState.DONE, RunState.FAILED, RunState.STOPPED), timeout=TIMEOUT_MS)
    assert w.status.state is expect, w.status.message


@pytest.fixture
def calibrated(viewer, qtbot, stack):
    viewer.add_image(stack, name="beads", metadata={"z_step_nm": STEP, "pixel_size_nm": PX})
    w = _dock(viewer)
    assert w.picker.value.name == "beads"
    assert w.step.value() == STEP and w.pixel_size.value() == PX  # prefilled from the layer's metadata
    _run(qtbot, w)
    return w


def test_run_equals_core_and_plots_sigma_x_and_sigma_y_against_z(calibrated, reference):
    w = calibrated
    got, ref = w.result, reference
    for axis in ("sigma_x", "sigma_y"):
        a, b = getattr(got, axis).to_dict(), getattr(ref, axis).to_dict()
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9), axis
    assert got.z_range_nm == pytest.approx(ref.z_range_nm) and got.n_beads == ref.n_beads
    # The plot: x = z in nm (the calibration's z, spanning the stack's 1200 nm), σx line = σx curve.
    lx, ly = w.lines["sigma_x"], w.lines["sigma_y"]
    x = np.asarray(lx.get_xdata())
    zm = w.measurements["z_nm"]
    assert x.min() == pytest.approx(zm.min()) and x.max() == pytest.approx(zm.max())
    assert 800.0 < x.max() - x.min() <= (N_SLICES - 1) * STEP + 1e-6
    assert -ref.z_offset_nm - 1e-6 <= x.min() < 0.0 < x.max() <= (N_SLICES - 1) * STEP - ref.z_offset_nm + 1e-6
    np.testing.assert_allclose(lx.get_ydata(), ref.sigma_x(x), rtol=1e-9)
    np.testing.assert_allclose(ly.get_ydata(), ref.sigma_y(x), rtol=1e-9)
    assert np.max(np.abs(ref.sigma_x(x) - ref.sigma_y(x))) > 50.0  # a σx/σy swap could not pass
    # σx is the narrower one above focus in the truth (its focal plane is at -250 nm).
    assert lx.get_ydata()[0] < ly.get_ydata()[0] and lx.get_ydata()[-1] > ly.get_ydata()[-1]
    text = w.result_label.text()
    assert f"{ref.n_beads} beads" in text and f"σx {ref.residual_x_nm:.1f} nm" in text
    assert f"{ref.z_range_nm[0]:.0f} … {ref.z_range_nm[1]:.0f} nm" in text
    assert w.save_button.isEnabled()


def test_save_writes_a_loadable_yaml_and_never_overwrites(calibrated, tmp_path):
    w = calibrated
    out = tmp_path / "cal.yaml"
    assert w.save_calibration(out) == out
    loaded = AstigmaticCalibration.load(out)
    assert loaded.sigma_x.to_dict() == pytest.approx(w.result.sigma_x.to_dict())
    assert loaded.sigma_y.to_dict() == pytest.approx(w.result.sigma_y.to_dict())
    assert loaded.z_range_nm == pytest.approx(w.result.z_range_nm)
    other = tmp_path / "other.yaml"
    other.write_text("mine: 1\n")
    assert w.save_calibration(other) is None
    assert other.read_text() == "mine: 1\n"
    assert "already exists" in w.status_label.text() and "--overwrite" not in w.status_label.text()  # the GUI has no such option
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.yaml", "other.yaml"]  # no temporary left


def test_single_slice_and_missing_step_are_refused_with_core_messages(viewer, stack):
    viewer.add_image(stack[:1], name="one slice", metadata={"z_step_nm": STEP})
    w = _dock(viewer)
    assert not w.run()  # core's input checks run before the worker starts
    assert w.status.state is not RunState.RUNNING
    assert "a single slice cannot calibrate z" in w.status_label.text()
    assert w.result is None and not w.save_button.isEnabled()
    viewer.add_image(stack, name="no step")
    w.picker.value = viewer.layers["no step"]
    assert w.step.value() == 0.0 and w.step.text() == "not in metadata"
    assert not w.run()
    assert "z step size is missing" in w.status_label.text()


def test_a_stack_without_beads_fails_with_the_reason(viewer, qtbot):
    rng = np.random.default_rng(0)
    viewer.add_image(rng.poisson(100.0, (9, 48, 48)).astype(np.uint16), name="noise", metadata={"z_step_nm": STEP})
    w = _dock(viewer)
    with qtbot.capture_exceptions() as raised:  # napari re-raises a worker's error on the GUI thread
        _run(qtbot, w, RunState.FAILED)
    assert "no beads found" in w.status_label.text() and w.result is None
    assert any("no beads found" in str(e[1]) for e in raised)
    assert not w.save_button.isEnabled()


def test_stop_ends_the_run_without_a_result(viewer, qtbot, stack):
    viewer.add_image(stack, name="beads", metadata={"z_step_nm": STEP, "pixel_size_nm": PX})
    w = _dock(viewer)
    gate, seen = threading.Event(), []
    # hold the worker after its first update (detecting beads) until Stop was pressed
    def hold(u):
        seen.append(u.stage)
        gate.wait(10)

    w.job_started.connect(lambda worker: worker.yielded.connect(hold, Qt.ConnectionType.DirectConnection))
    assert w.run()
    assert w.stop_button.isEnabled() and not w.run_button.isEnabled()
    qtbot.waitUntil(lambda: bool(seen), timeout=TIMEOUT_MS)
    w.stop_button.click()  # the worker stops at core's next yield
    gate.set()
    qtbot.waitUntil(lambda: w.status.state in (RunState.DONE, RunState.FAILED, RunState.STOPPED), timeout=TIMEOUT_MS)
    assert w.status.state is RunState.STOPPED and w.status_label.text() == "Stopped."
    assert seen == ["detecting beads"]  # no fitting after Stop
    assert w.result is None and not w.save_button.isEnabled() and w.run_button.isEnabled()


def test_a_tiff_opened_by_the_reader_prefills_step_and_pixel_size(viewer, qtbot, stack, reference, tmp_path):
    import tifffile

    path = tmp_path / "beads.tif"  # ImageJ: 30 nm z spacing, 100 nm pixels (10 px per µm)
    md = {"spacing": STEP / 1000, "unit": "um", "axes": "ZYX"}
    tifffile.imwrite(path, stack, imagej=True, resolution=(10.0, 10.0), metadata=md)
    viewer.open(str(path), plugin="napari-smlm")
    w = _dock(viewer)
    assert w.picker.value.name == "beads"
    assert w.step.value() == pytest.approx(STEP) and w.pixel_size.value() == pytest.approx(PX)
    _run(qtbot, w)
    assert w.result.sigma_x.to_dict() == pytest.approx(reference.sigma_x.to_dict(), rel=1e-9)
    assert w.result.step_nm == pytest.approx(STEP)
