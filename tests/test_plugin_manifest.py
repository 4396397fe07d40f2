"""The npe2 manifest: valid, every target importable, and cheap (no torch) to import."""

import importlib
import json
import re
import subprocess
import sys

import pytest

npe2 = pytest.importorskip("npe2")


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_distribution("napari-smlm")


def test_manifest_is_valid(manifest):
    assert manifest.name == "napari-smlm"
    manifest.validate_imports()  # what `npe2 validate --imports napari-smlm` does


def test_every_python_name_imports(manifest):
    for cmd in manifest.contributions.commands:
        module, _, attr = cmd.python_name.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        assert callable(obj), cmd.python_name


def test_contributions(manifest):
    c = manifest.contributions
    widgets = {w.display_name: w.command for w in c.widgets}
    assert widgets == {
        "Reconstruction": "napari-smlm.reconstruct_movie",
        "Training": "napari-smlm.train_model",
        "Simulation": "napari-smlm.simulate_movie",
        "Evaluation": "napari-smlm.evaluate_localizations",
        "Post-processing": "napari-smlm.postprocess_localizations",
        "Render localizations": "napari-smlm.render_localizations",
        "PSF calibration (3-D)": "napari-smlm.calibrate_psf",
    }
    for w in c.widgets:
        assert re.fullmatch(r"napari-smlm\.[a-z]+_[a-z_]+", w.command)
    patterns = {p for r in c.readers for p in r.filename_patterns}
    assert {"*.tif", "*.tiff", "*.csv", "*.hdf5", "*.h5"} <= patterns
    writers = {(tuple(w.layer_types), tuple(w.filename_extensions)) for w in c.writers}
    assert (("points",), (".csv",)) in writers and (("points",), (".hdf5", ".h5")) in writers
    assert (("image",), (".tif", ".tiff")) in writers
    assert {s.key for s in c.sample_data} == {"simulated", "thunderstorm_demo"}


def test_localization_patterns_come_from_the_format_registry():
    """napari.yaml is static: its localization reader patterns and points writers must equal
    what the format registry (core.io.formats) says, so adding a format cannot forget them."""
    from pathlib import Path

    import napari_smlm
    from napari_smlm.core.io.formats import FORMATS, reader_patterns

    m = npe2.PluginManifest.from_file(Path(napari_smlm.__file__).with_name("napari.yaml"))
    c = m.contributions
    (loc_reader,) = [r for r in c.readers if r.command == "napari-smlm.get_localization_reader"]
    assert sorted(loc_reader.filename_patterns) == reader_patterns()
    points_writers = {w.command: tuple(w.filename_extensions) for w in c.writers if "points" in w.layer_types}
    assert points_writers == {f.napari_writer: f.write_suffixes for f in FORMATS.values() if f.napari_writer}
    commands = {cmd.id for cmd in c.commands}
    assert {f.napari_writer for f in FORMATS.values() if f.napari_writer} <= commands


def test_manifest_targets_do_not_import_torch(manifest):
    """Importing what napari imports to read, write or list the plugin must stay torch-free."""
    modules = sorted({cmd.python_name.partition(":")[0] for cmd in manifest.contributions.commands})
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(k for k in sys.modules if k == 'torch' or k.startswith('torch.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_reader_writer_sample_modules_have_no_qt():
    code = (
        "import sys\n"
        "import napari_smlm._reader, napari_smlm._writer, napari_smlm._sample_data, napari_smlm._layers\n"
        "bad = [k for k in ('torch', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui') if k in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
