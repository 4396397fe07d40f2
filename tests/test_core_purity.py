"""DESIGN.md convention 1: importing the core pulls in no Qt, napari or magicgui."""

import subprocess
import sys

FORBIDDEN = ("qtpy", "napari", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6")


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_core_imports_no_gui():
    mods = _loaded_after(
        "import napari_smlm.core, napari_smlm.core.simulate, napari_smlm.core.metrics, napari_smlm.core.render, "
        "napari_smlm.core.io, napari_smlm.core.training, napari_smlm.core.inference, napari_smlm.core.models\n"
        "napari_smlm.core.models.available_models()"
    )
    assert not (mods & set(FORBIDDEN)), mods & set(FORBIDDEN)


def test_io_and_localizations_import_no_torch():
    """The napari reader path must stay light: no torch."""
    mods = _loaded_after("import napari_smlm, napari_smlm.core.io, napari_smlm.core.localizations")
    assert "torch" not in mods
    assert not (mods & set(FORBIDDEN))
