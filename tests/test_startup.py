"""Start-up cost of ``napari-smlm localize``: what the command path must not import (nothing timed)."""

import subprocess
import sys

import pytest

from napari_smlm.core.checkpoint import shipped_models

HEAVY = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "torch._dynamo",
         "matplotlib", "dask", "sympy")


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_model_size_check_counts_without_allocating_or_importing_dynamo():
    """check_model_size builds on the meta device without running the initialisers (no torch._dynamo)."""
    code = (
        "import sys\n"
        "from napari_smlm.core.validate import check_model_size\n"
        "from napari_smlm.core.models import get_family\n"
        "counts = [check_model_size(get_family(m)) for m in ('decode', 'deep-storm', 'u-storm', 'fid-storm')]\n"
        "print(counts, 'torch._dynamo' in sys.modules)\n"
        "nets = [get_family(m).build() for m in ('decode', 'deep-storm', 'u-storm', 'fid-storm')]\n"
        "print([sum(p.numel() for p in n.parameters()) for n in nets])\n"
    )
    first, second = _run(code).strip().splitlines()
    counts, dynamo = first.rsplit(" ", 1)
    assert dynamo == "False"
    assert counts == second  # the same parameter counts as real builds


def test_localize_path_imports_no_gui_and_no_compiler(tmp_path):
    if "decode" not in set(shipped_models()):
        pytest.skip("decode weights not shipped")
    code = (
        "import sys\n"
        "from napari_smlm.core.config import SimulationConfig\n"
        "from napari_smlm.core.simulate import simulate\n"
        "from napari_smlm.core.io import write_movie\n"
        f"tif = write_movie({str(tmp_path / 'm.tif')!r}, simulate(SimulationConfig(n_frames=3, height=16, width=16, seed=1))[0], pixel_size_nm=100.0)\n"
        "from napari_smlm.cli import main\n"
        f"rc = main(['localize', str(tif), '--model', 'decode', '--device', 'cpu', '-o', {str(tmp_path / 'o.csv')!r}])\n"
        f"print('RC', rc, sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    line = [ln for ln in _run(code).splitlines() if ln.startswith("RC ")][-1]
    assert line == "RC 0 []", line
    assert (tmp_path / "o.csv").stat().st_size > 0
