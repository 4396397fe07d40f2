"""Issue 14 / issue 10 part 6: validation layer, output guards, signals, training faults, CLI help."""

from __future__ import annotations

import argparse
import math
import os
import signal
import threading

import numpy as np
import pytest

import _toy_family  # noqa: F401  (registers the toy family)
from napari_smlm.cli import build_parser, main
from napari_smlm.core.camera import Camera, get_camera
from napari_smlm.core.checkpoint import load_checkpoint
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.io.safe import OutputExistsError, check_outputs
from napari_smlm.core.training import TrainConfig, iter_train
from napari_smlm.core.validate import ParameterError, arg, check_device, check_model_size

SIM = SimulationConfig(height=24, width=24, density=0.3, photons_mean=3000, photons_std=300, bg_photons=20)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "make, name, value",
    [
        (lambda: SimulationConfig(photons_mean=-1), "photons_mean", "-1"),
        (lambda: SimulationConfig(bg_photons=float("nan")), "bg_photons", "nan"),
        (lambda: SimulationConfig(n_frames=2.5), "n_frames", "2.5"),
        (lambda: TrainConfig(batch_size=-1), "batch_size", "-1"),
        (lambda: TrainConfig(steps_per_epoch=0), "steps_per_epoch", "0"),
        (lambda: Camera(em_gain=0), "em_gain", "0"),
        (lambda: Camera(qe=1.5), "qe", "1.5"),
    ],
)
def test_config_errors_name_parameter_value_and_range(make, name, value):
    with pytest.raises(ParameterError) as e:
        make()
    msg = str(e.value)
    assert name in msg and value in msg and "must be" in msg


def test_device_and_camera_names():
    assert check_device("CUDA:1") == "cuda:1"
    with pytest.raises(ParameterError, match="'gpu'.*auto, cpu, cuda"):
        check_device("gpu")
    assert get_camera("emccd") == get_camera("smlm2016_emccd")
    assert get_camera("sCMOS") == get_camera("generic_scmos")
    with pytest.raises(ValueError, match="unknown camera preset 'emcdd'"):
        get_camera("emcdd")


def test_argparse_types_give_the_range():
    parse = arg("threshold", "--threshold")
    assert parse("0.3") == 0.3
    for bad in ("5", "-1", "nan", "abc"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"\[0, 1\]"):
            parse(bad)
    assert arg("batch_size")("16") == 16
    with pytest.raises(argparse.ArgumentTypeError, match="integer"):
        arg("batch_size")("2.5")


def test_yaml_syntax_and_python_tags_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_frames: [1, 2\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        SimulationConfig.from_yaml(bad)
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"n_frames: !!python/object/apply:os.system ['touch {tmp_path / 'PWNED'}']\n")
    with pytest.raises(ValueError, match="evil.yaml"):
        SimulationConfig.from_yaml(evil)
    assert not (tmp_path / "PWNED").exists()


def test_huge_architecture_refused_without_allocating():
    from napari_smlm.core.models import get_family

    assert check_model_size(get_family("deep-storm")) < 2_000_000
    with pytest.raises(ParameterError, match=r"2,762,136,000 parameters.*at most"):
        check_model_size(get_family("deep-storm", {"width": 45}))  # ~11 GB of weights: refused in ms


def test_render_memory_estimated_before_allocating():
    from napari_smlm.core.render import render

    with pytest.raises(ValueError, match=r"would need ~.*GB.*span x 100\.\.1e\+12 nm"):
        render(np.array([[100.0, 100.0], [1e12, 50.0]]), "gaussian", 10.0)
    img = render(np.array([[100.0, 100.0], [np.nan, 5.0], [-50.0, 5.0]]), "histogram", 10.0)
    assert img.image.sum() == 1 and img.meta["n_rendered"] == 1


# ----------------------------------------------------------------------------- outputs
def test_check_outputs_refuses_inputs_clashes_and_existing(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.tif"
    a.write_text("x")
    with pytest.raises(OutputExistsError, match="also an input"):
        check_outputs([(a, "--output")], inputs=[a], overwrite=True)
    with pytest.raises(OutputExistsError, match="same file"):
        check_outputs([(b, "--output"), (b, "--render")])
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_outputs([(a, "--output")])
    assert check_outputs([(a, "--output"), (None, "--png")], overwrite=True) == [a]


def test_cli_refuses_before_any_work_and_leaves_files_alone(tmp_path, capsys):
    sim = tmp_path / "sim"
    assert main(["simulate", "-o", str(sim), "--frames", "4", "--size", "16", "16"]) == 0
    before = {p.name: p.read_bytes() for p in sim.iterdir()}
    gt = sim / "ground_truth.csv"
    assert main(["simulate", "-o", str(sim), "--frames", "4", "--size", "16", "16"]) == 2
    assert main(["render", str(gt), "-o", str(gt)]) == 2
    (tmp_path / "sr.png").write_text("mine")
    assert main(["render", str(gt), "-o", str(tmp_path / "sr.tif")]) == 2  # the PNG companion exists
    assert not (tmp_path / "sr.tif").exists()
    assert main(["evaluate", str(gt), str(gt), "--json", str(gt)]) == 2
    assert main(["localize", str(sim / "movie.tif"), "-o", str(tmp_path / "l.csv"), "--render", str(sim / "movie.tif")]) == 2
    assert {p.name: p.read_bytes() for p in sim.iterdir()} == before
    assert (tmp_path / "sr.png").read_text() == "mine"
    err = capsys.readouterr().err
    assert err.count("error:") == 5 and "Traceback" not in err
    assert main(["simulate", "-o", str(sim), "--frames", "3", "--size", "16", "16", "--overwrite"]) == 0


def test_sigint_in_simulate_keeps_the_frames_done(tmp_path, capsys):
    """SIGINT stops at the next chunk; the movie and ground truth written are complete and valid; exit 130."""
    from napari_smlm.core.io import open_movie, read_localizations

    out = tmp_path / "big"
    # the handler the CLI must put back: Python's default, or SIG_IGN when pytest itself was started in the background
    # by a shell without job control (``cmd &`` ignores SIGINT; Python then keeps it ignored)
    before = signal.getsignal(signal.SIGINT)

    def interrupt_when_started():
        for _ in range(600):
            if out.is_dir():
                break
            threading.Event().wait(0.05)
        threading.Event().wait(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt_when_started, daemon=True)
    t.start()
    rc = main(["simulate", "-o", str(out), "--frames", "2000000", "--size", "16", "16", "--chunk", "32", "--density", "0.5"])
    t.join()
    assert rc == 130
    movie = open_movie(out / "movie.tif")
    assert 32 <= movie.shape[0] < 2_000_000 and movie.shape[0] % 32 == 0
    gt = read_localizations(out / "ground_truth.csv")
    assert gt["frame"].max() < movie.shape[0]
    assert "interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


# ----------------------------------------------------------------------------- training faults
@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("safety") / "toy.pt"
    cfg = TrainConfig(steps=40, steps_per_epoch=20, batch_size=8, lr=1e-2, val_batches=2, device="cpu")
    list(iter_train("toy-test", SIM, cfg, checkpoint_path=path))
    return path


def test_fine_tune_starts_from_the_starting_loss_and_is_never_worse(toy_checkpoint, tmp_path):
    start = load_checkpoint(toy_checkpoint)
    out = tmp_path / "ft.pt"
    # a learning rate that makes training worse: the output must stay the starting model
    cfg = TrainConfig(steps=6, steps_per_epoch=2, batch_size=8, lr=3.0, val_batches=2, device="cpu", seed=0)
    gen = iter_train("toy-test", SIM, cfg, out, init_checkpoint=toy_checkpoint)
    first = next(gen)
    assert out.exists() and first.kind == "step"  # the starting model is the output before any step
    start_loss = load_checkpoint(out).training["val_loss"]
    try:
        ups = [first, *gen]
    except FloatingPointError as exc:  # diverged all the way: the message says what was kept
        assert "last good checkpoint" in str(exc) and "lower learning rate" in str(exc)
        ups = [first]
    epochs = [u for u in ups if u.kind == "epoch"]
    for u in epochs:
        assert u.best_val_loss <= start_loss  # "best" starts at the starting model's loss, not +inf
    final = load_checkpoint(out)
    assert final.training["val_loss"] <= start_loss + 1e-9
    worse = [u for u in epochs if u.val_loss > start_loss]
    if worse and not [u for u in epochs if u.val_loss < start_loss]:
        for k, v in final.state_dict.items():  # nothing beat the start: the weights are the start's
            assert np.array_equal(v.numpy(), start.state_dict[k].numpy())


def test_nan_loss_is_one_line_with_advice_and_keeps_checkpoint(toy_checkpoint, tmp_path, monkeypatch):
    import torch

    calls = {"n": 0}
    real_loss = _toy_family.ToyFamily.loss

    def loss_turning_nan(self, out, batch):  # finite for the start's scoring and 3 steps, then NaN
        calls["n"] += 1
        value = real_loss(self, out, batch)
        return value * torch.tensor(float("nan")) if calls["n"] > 4 else value

    monkeypatch.setattr(_toy_family.ToyFamily, "loss", loss_turning_nan)
    out = tmp_path / "nan.pt"
    cfg = TrainConfig(steps=50, steps_per_epoch=10, batch_size=4, lr=1e-3, val_batches=1, device="cpu")
    with pytest.raises(FloatingPointError) as e:
        for _ in iter_train("toy-test", SIM, cfg, out, init_checkpoint=toy_checkpoint):
            pass
    msg = str(e.value)
    assert "\n" not in msg and "at step 4" in msg and "lower learning rate" in msg and "--lr 0.0001" in msg
    assert "last good checkpoint" in msg and str(out) in msg
    assert math.isfinite(load_checkpoint(out).training["val_loss"])


# ----------------------------------------------------------------------------- CLI help
def _subparsers(parser):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return a.choices
    return {}


def test_every_option_has_help_with_its_default():
    p = build_parser()
    missing, no_default = [], []
    for name, sp in _subparsers(p).items():
        fmt = sp._get_formatter()
        for a in sp._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            if not a.help:
                missing.append(f"{name} {a.dest}")
            elif a.option_strings and not a.required and a.nargs != 0 and "default" not in fmt._get_help_string(a):
                no_default.append(f"{name} {a.dest}")  # neither "(default: X)" added nor said in words
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"options whose help does not give the default: {no_default}"
    lz = " ".join(_subparsers(p)["localize"].format_help().split())
    assert "--threads" in lz and "--overwrite" in lz and "(default: automatic: on CUDA" in lz and "elsewhere 32" in lz
    assert "--threads" in _subparsers(p)["train"].format_help()
