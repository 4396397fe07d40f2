"""The Reconstruction widget's batch spin box: ``auto`` lets the GPU plan size the batch on CUDA.

Since a given ``batch_size`` wins over the automatic GPU plan (``core.inference.choose_batch``), a
widget that always passed its spin box's number would run 16-frame batches on an H100. The spin box
therefore starts at ``auto`` (0): None (the plan) on CUDA, a small CPU batch elsewhere; a number
typed by the user always wins.
"""

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import torch  # noqa: E402

from napari_smlm.widgets import _reconstruction  # noqa: E402


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-smlm", "Reconstruction")
    return w


def test_auto_is_the_default_and_shown_as_such(widget):
    assert widget.batch_size.value() == 0
    assert widget.batch_size.text() == "auto"


def test_auto_on_cpu_is_the_widget_batch(widget):
    widget.device.setCurrentText("cpu")
    assert widget._batch_size() == _reconstruction.WIDGET_CPU_BATCH


def test_auto_on_cuda_leaves_the_batch_to_the_gpu_plan(widget, monkeypatch):
    import napari_smlm.core.device as device

    monkeypatch.setattr(device, "resolve_device", lambda d="auto": torch.device("cuda", 0))
    assert widget._batch_size() is None


def test_a_number_always_wins(widget, monkeypatch):
    import napari_smlm.core.device as device

    monkeypatch.setattr(device, "resolve_device", lambda d="auto": torch.device("cuda", 0))
    widget.batch_size.setValue(48)
    assert widget._batch_size() == 48
