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


# ----------------------------------------------------------------------------- issue 16: lazy start-up
FAMILY_MODULES = ("napari_smlm.core.models.density", "napari_smlm.core.models.decode", "napari_smlm.core.models.decode3d")


def test_importing_the_cli_imports_no_torch_scipy_or_pandas():
    """`napari-smlm --help` and argument errors cost only the interpreter and numpy."""
    out = _run(
        "import sys, napari_smlm.cli\n"
        "print(sorted(m for m in ('torch', 'scipy', 'pandas', 'h5py', 'yaml', 'tifffile', 'matplotlib', 'dask') if m in sys.modules))\n"
    )
    assert out.strip() == "[]"


def test_a_checkpoint_loads_with_only_its_family_module():
    if "decode" not in set(shipped_models()):
        pytest.skip("decode weights not shipped")
    out = _run(
        "import sys\n"
        "from napari_smlm.core.checkpoint import resolve_checkpoint\n"
        "ck = resolve_checkpoint('decode')\n"
        f"print(ck.model, sorted(m for m in {FAMILY_MODULES!r} + ('scipy', 'napari_smlm.core.calibration') if m in sys.modules))\n"
    )
    assert out.strip() == "decode ['napari_smlm.core.models.decode']"


def test_family_module_map_matches_the_registry():
    """Every shipped family is in the lazy name -> module map, under the module that registers it."""
    from napari_smlm.core.models import _FAMILY_MODULES, REGISTRY, available_models, family_class

    available_models()
    ours = {n for n, c in REGISTRY.items() if c.__module__.startswith("napari_smlm.core.models.")}
    assert ours == set(_FAMILY_MODULES)
    for name, mod in _FAMILY_MODULES.items():
        assert family_class(name).__module__ == mod
    with pytest.raises(ValueError, match="unknown model 'no-such-model'"):
        family_class("no-such-model")


def test_the_network_built_to_check_a_checkpoint_is_reused_once():
    import torch

    from napari_smlm.core.checkpoint import resolve_checkpoint

    if "decode" not in set(shipped_models()):
        pytest.skip("decode weights not shipped")
    ck = resolve_checkpoint("decode")
    spare = ck.__dict__["_spare_net"][0]
    import copy
    import pickle

    for other in (pickle.loads(pickle.dumps(ck)), copy.deepcopy(ck)):  # copies build their own network
        assert "_spare_net" not in other.__dict__ and other.model == ck.model and other.state_dict.keys() == ck.state_dict.keys()
    net = ck.build("cpu")
    assert net is spare and not net.training
    again = ck.build("cpu")  # a module of its own, the same weights
    assert again is not net
    for (k, a), (_, b) in zip(net.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    ck2 = resolve_checkpoint("decode")
    ck2.state_dict = {k: v.clone() for k, v in ck2.state_dict.items()}  # changed since loading: not the spare
    assert ck2.build("cpu") is not ck2.__dict__.get("_spare_net", (None,))[0]
    assert "_spare_net" not in ck2.__dict__


def test_localize_process_loads_one_family_no_scipy_and_restores_the_collector(tmp_path):
    """A real `localize` process (main() without arguments): one model family, no scipy, same table;
    the cyclic GC paused during start-up is back on afterwards with the start-up objects frozen."""
    import numpy as np

    from napari_smlm.cli import main
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.io import write_movie
    from napari_smlm.core.simulate import simulate

    if "decode" not in set(shipped_models()):
        pytest.skip("decode weights not shipped")
    tif = write_movie(tmp_path / "m.tif", simulate(SimulationConfig(n_frames=20, height=32, width=32, seed=1))[0], pixel_size_nm=100.0)
    code = (
        "import gc, sys\n"
        "from napari_smlm.cli import main\n"
        f"sys.argv = ['napari-smlm', 'localize', {str(tif)!r}, '--model', 'decode', '--device', 'cpu', '-o', {str(tmp_path / 'p.csv')!r}]\n"
        "rc = main()\n"
        f"print('RC', rc, gc.isenabled(), gc.get_freeze_count() > 0, sorted(m for m in {FAMILY_MODULES!r} + ('scipy',) if m in sys.modules))\n"
    )
    line = [ln for ln in _run(code).splitlines() if ln.startswith("RC ")][-1]
    assert line == "RC 0 True True ['napari_smlm.core.models.decode']", line
    # the same table as an in-process run through main(argv) (collector untouched there)
    assert main(["localize", str(tif), "--model", "decode", "--device", "cpu", "-o", str(tmp_path / "q.csv")]) == 0
    assert (tmp_path / "p.csv").read_bytes() == (tmp_path / "q.csv").read_bytes()
    assert np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1).shape[0] > 0
