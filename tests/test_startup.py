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
        "import gc, os, sys\n"
        "os.environ['NAPARI_SMLM_FULL_EXIT'] = '1'  # main() returns (see the fast-exit test below)\n"
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


def test_localize_process_exits_without_teardown_once_its_outputs_are_written(tmp_path):
    """A real `localize` process ends with os._exit after writing everything (issue 16): no atexit
    handlers, same return code, stdout flushed into a pipe, the same table as in process; other
    commands, errors, ``NAPARI_SMLM_FULL_EXIT`` and a live non-daemon thread get the usual shutdown."""
    import os

    from napari_smlm.cli import main
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.io import write_movie
    from napari_smlm.core.simulate import simulate

    if "decode" not in set(shipped_models()):
        pytest.skip("decode weights not shipped")
    tif = write_movie(tmp_path / "m.tif", simulate(SimulationConfig(n_frames=20, height=32, width=32, seed=1))[0], pixel_size_nm=100.0)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "NAPARI_SMLM_FULL_EXIT")}

    def run(out: str, *, thread: bool = False, env_extra: dict | None = None, args: tuple = ()):
        code = (
            "import atexit, sys, threading\n"
            "atexit.register(lambda: print('ATEXIT RAN', flush=True))\n"
            "ev = threading.Event()\n"
            + ("threading.Thread(target=ev.wait).start()  # still working when main() ends\n" if thread else "")
            + "from napari_smlm.cli import main\n"
            f"sys.argv = ['napari-smlm', 'localize', {str(tif)!r}, '--model', 'decode', '--device', 'cpu', '-o', {out!r}, *{args!r}]\n"
            "rc = main()\n"
            "print('RETURNED', rc)\n"
            "ev.set()\n"
            "sys.exit(rc)\n"
        )
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**env, **(env_extra or {})})

    fast = run(str(tmp_path / "fast.csv"))
    assert fast.returncode == 0, fast.stderr[-3000:]
    assert "localizations:" in fast.stdout and "in 20 frames" in fast.stdout  # flushed into the pipe
    assert "RETURNED" not in fast.stdout and "ATEXIT RAN" not in fast.stdout  # no teardown
    assert main(["localize", str(tif), "--model", "decode", "--device", "cpu", "-o", str(tmp_path / "ref.csv")]) == 0
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no .part left
        "fast.csv", "fast_localize.json", "m.tif", "ref.csv", "ref_localize.json"]
    # an error (the output exists): the usual return and shutdown, rc 2
    err = run(str(tmp_path / "fast.csv"))
    assert err.returncode == 2 and "RETURNED 2" in err.stdout and "ATEXIT RAN" in err.stdout and "exists" in err.stderr
    # asked for the full shutdown, or a thread still working: main() returns, atexit runs
    for kw, name in (({"env_extra": {"NAPARI_SMLM_FULL_EXIT": "1"}}, "full.csv"), ({"thread": True}, "thread.csv")):
        full = run(str(tmp_path / name), **kw)
        assert full.returncode == 0 and "RETURNED 0" in full.stdout and "ATEXIT RAN" in full.stdout, (kw, full.stderr[-2000:])
        assert (tmp_path / name).read_bytes() == (tmp_path / "ref.csv").read_bytes()


def test_checkpoint_weight_check_names_the_bad_tensor_in_one_pass(tmp_path):
    """The NaN/inf check over all weights at once still names a bad tensor, and a large finite
    float64 weight is not mistaken for inf (no rounding to float32)."""
    import torch

    from napari_smlm.core.checkpoint import CheckpointError, load_checkpoint, shipped_checkpoint_path

    if "decode" not in set(shipped_models()):
        pytest.skip("decode weights not shipped")
    payload = torch.load(shipped_checkpoint_path("decode"), map_location="cpu", weights_only=True)
    keys = [k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel() > 1]
    bad = dict(payload, state_dict=dict(payload["state_dict"]))
    bad["state_dict"][keys[3]] = bad["state_dict"][keys[3]].clone().index_fill_(0, torch.tensor([0]), float("inf"))
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=f"1 weight tensor.*{keys[3]}"):
        load_checkpoint(tmp_path / "bad.pt")
    big = dict(payload, state_dict=dict(payload["state_dict"]))
    big["state_dict"]["extra_float64"] = torch.tensor([1e300], dtype=torch.float64)  # finite, over float32's range
    torch.save(big, tmp_path / "big.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "big.pt")
    assert "NaN or inf" not in str(err.value)  # refused for the unexpected key, not as non-finite
