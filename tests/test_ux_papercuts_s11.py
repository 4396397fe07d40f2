"""Papercuts from a microscopist's session 11 walk-through of the CLI on real data (no Qt needed)."""

import subprocess
import sys

import numpy as np
import pytest

from napari_smlm.cli import main
from napari_smlm.core.localizations import Localizations


def _locs(n=60, frames=20, seed=0, px=100.0):
    rng = np.random.default_rng(seed)
    return Localizations({
        "frame": np.sort(rng.integers(0, frames, n)), "x_nm": rng.uniform(100, 1900, n),
        "y_nm": rng.uniform(100, 1900, n), "photons": rng.uniform(500, 3000, n),
    }, {"pixel_size_nm": px, "image_shape": (20, 20)})


def _movie(path, n=6):
    import tifffile

    tifffile.imwrite(path, np.random.default_rng(0).poisson(120, (n, 24, 24)).astype(np.uint16))
    return path


@pytest.mark.parametrize("content", [b"II*\x00" + bytes(200), b"garbage that is no checkpoint\n"])
def test_a_file_that_is_no_checkpoint_says_so_without_torch_advice(tmp_path, content):
    """A TIFF (or any non-torch file) given as a checkpoint printed torch's advice to load it with
    weights_only=False ("can result in arbitrary code execution") and "please file an issue"."""
    from napari_smlm.core.checkpoint import CheckpointError, load_checkpoint

    bad = tmp_path / "movie.tif"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    msg = str(info.value)
    assert str(bad) in msg and "not a PyTorch checkpoint" in msg
    assert "weights_only" not in msg and "issue" not in msg and "\n" not in msg


def test_a_pickle_with_code_is_refused_in_one_plain_line(tmp_path):
    import pickle

    from napari_smlm.core.checkpoint import CheckpointError, load_checkpoint

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    import torch

    bad = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    msg = str(info.value)
    assert str(bad) in msg and "refused" in msg
    assert "weights_only" not in msg and "issue" not in msg and "\n" not in msg
    del pickle


def test_checkpoint_option_given_a_folder_says_folder(tmp_path, capsys):
    movie = _movie(tmp_path / "m.tif")
    assert main(["-q", "localize", str(movie), "-o", str(tmp_path / "l.csv"), "--checkpoint", str(movie)]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and str(movie) in err and "not a PyTorch checkpoint" in err
    assert main(["-q", "localize", str(movie), "-o", str(tmp_path / "l.csv"), "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and str(tmp_path) in err and "is a folder" in err
    assert "no such file" not in err


def test_localize_output_that_is_an_existing_folder_says_folder(tmp_path, capsys):
    movie = _movie(tmp_path / "m.tif")
    out = tmp_path / "results"
    out.mkdir()
    assert main(["-q", "localize", str(movie), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--output" in err and "is a folder" in err
    assert "results.csv" in err.replace(str(tmp_path) + "/", "")  # a suggestion of a file name in it
    assert list(out.iterdir()) == []


def test_a_filter_that_keeps_nothing_names_the_column_range_and_the_values(tmp_path, capsys):
    """It printed the Python dict of the config: "no localization passes {'photons': (1e9, None)} (roi None)"."""
    from napari_smlm.core.io.locs import write_localizations

    src = write_localizations(tmp_path / "locs.csv", _locs())
    assert main(["-q", "postprocess", str(src), "-o", str(tmp_path / "out.csv"), "--filter", "photons:1e9:"]) == 2
    err = capsys.readouterr().err
    assert "{" not in err and "roi None" not in err
    assert "--filter" in err and "locs.csv" in err and "photons >= 1e+09" in err
    assert "photons in the table:" in err  # the range the user can choose from
    assert not (tmp_path / "out.csv").exists()


def test_evaluate_warns_when_ground_truth_stops_before_the_localizations(tmp_path, capsys):
    """The ground truth of another movie (20 frames) against a 361-frame table scored silently (JI 3 %)."""
    from napari_smlm.core.io.locs import write_localizations

    gt = write_localizations(tmp_path / "gt.csv", _locs(frames=20, seed=1))
    pred = write_localizations(tmp_path / "pred.csv", _locs(n=300, frames=100, seed=2))
    assert main(["evaluate", str(gt), str(pred)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "gt.csv" in err and "pred.csv" in err
    assert "frames 1 to 20" in err and "false positives" in err and "--frames" in err
    # the same table against itself: nothing to warn about
    assert main(["evaluate", str(pred), str(pred)]) == 0
    assert "false positives" not in capsys.readouterr().err


def test_python_dash_m_cli_honours_quiet(tmp_path):
    """`python -m napari_smlm.cli ... -q` still printed progress: the command modules import
    ``napari_smlm.cli``, a second copy of the module run as ``__main__``, whose -q flag was never set."""
    movie = _movie(tmp_path / "m.tif", n=6)
    r = subprocess.run([sys.executable, "-m", "napari_smlm.cli", "simulate", "-o", str(tmp_path / "sim"),
                        "--frames", "3", "-q"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "simulate:" not in r.stderr, r.stderr
    del movie


@pytest.mark.parametrize(("argv", "option"), [
    (["train", "--model", "nope", "--steps", "1"], "--model nope"),
    (["train", "--model", "decode", "--init", "nope", "--steps", "1"], "--init nope"),
])
def test_train_names_the_option_of_an_unknown_model(tmp_path, capsys, argv, option):
    """`train --model nope` said "unknown model 'nope'" and `--init nope` "nope: neither ...": no option named."""
    assert main([*argv, "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option}:") and "decode" in err
    assert not (tmp_path / "x.pt").exists()


def test_fit3d_names_the_psf_option_of_a_missing_calibration(tmp_path, capsys):
    movie = _movie(tmp_path / "m.tif")
    assert main(["-q", "fit3d", str(movie), "--psf", str(tmp_path / "cal.yaml"), "-o", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert f"--psf {tmp_path / 'cal.yaml'}: calibration file not found" in err
    assert "assuming" not in err  # the camera note came first, before the real problem


def test_a_movie_given_where_a_table_belongs_says_localize_it_first(tmp_path, capsys):
    from napari_smlm.core.io.locs import write_localizations

    gt = write_localizations(tmp_path / "gt.csv", _locs())
    movie = _movie(tmp_path / "movie.tif")
    assert main(["evaluate", str(gt), str(movie)]) == 2
    err = capsys.readouterr().err
    assert str(movie) in err and "'.tif'" in err and "localize it first" in err


@pytest.mark.parametrize("given", ["--movie", "--ground-truth"])
def test_train_movie_without_its_ground_truth_is_a_bad_input_with_status_2(tmp_path, capsys, given):
    """`train --movie m.tif` alone still raised SystemExit: exit status 1 and no 'error:' prefix (review of h11-ux)."""
    from napari_smlm.core.io.locs import write_localizations

    path = _movie(tmp_path / "m.tif") if given == "--movie" else write_localizations(tmp_path / "gt.csv", _locs())
    argv = ["-q", "train", "--model", "decode", given, str(path), "--steps", "1", "-o", str(tmp_path / "x.pt")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "--movie" in err and "--ground-truth" in err
    assert not (tmp_path / "x.pt").exists()


def test_a_filter_from_a_yaml_config_that_keeps_nothing_still_says_why(tmp_path, capsys):
    """PyYAML reads ``1e9`` (no dot) as the string '1e9'; the filter accepts it (float('1e9')), but the
    message of an empty result formatted it with ``:g`` and said only "Unknown format code 'g' for
    object of type 'str'" (review of h11-ux)."""
    from napari_smlm.core.io.locs import write_localizations
    from napari_smlm.core.postprocessing.pipeline import PostprocessConfig, postprocess

    cfg = PostprocessConfig.from_yaml("drift: none\nfilter_ranges:\n  photons: [1e9, null]\n")
    assert cfg.filter_ranges["photons"][0] == "1e9"  # what PyYAML gives: a string
    with pytest.raises(ValueError, match=r"photons >= 1e\+09 \(photons in the table: "):
        postprocess(_locs(), cfg)
    src = write_localizations(tmp_path / "locs.csv", _locs())
    (tmp_path / "pp.yaml").write_text("drift: none\nfilter_ranges:\n  photons: [null, 1e1]\n")
    argv = ["-q", "postprocess", str(src), "-o", str(tmp_path / "out.csv"), "--config", str(tmp_path / "pp.yaml")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "photons <= 10 (photons in the table:" in err and "format code" not in err


def test_a_folder_named_like_a_shipped_model_does_not_hide_the_model(tmp_path, monkeypatch, capsys):
    """A results folder called ``decode`` in the working directory: ``--init decode`` said "--init decode: neither
    a checkpoint file nor a model with shipped weights (shipped: decode, ...)", and resolve_checkpoint('decode')
    tried to load the folder. A folder is never a checkpoint: the shipped model is meant (review of h11-ux)."""
    from napari_smlm.core.checkpoint import CheckpointError, resolve_checkpoint, shipped_models

    assert "decode" in shipped_models()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "decode").mkdir()
    (tmp_path / "results").mkdir()
    assert resolve_checkpoint("decode").model == "decode"
    with pytest.raises(CheckpointError, match="is a folder"):
        resolve_checkpoint("results")  # a folder that names no shipped model is still refused as a folder
    (tmp_path / "x.pt").write_bytes(b"mine")  # stops train at the --output check, after the --init check
    assert main(["-q", "train", "--model", "decode", "--init", "decode", "--steps", "1", "-o", "x.pt"]) == 2
    err = capsys.readouterr().err
    assert "--init" not in err.split("\n")[0] and "x.pt" in err
    assert main(["-q", "train", "--model", "decode", "--init", "results", "--steps", "1", "-o", "y.pt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --init results:") and "folder" in err
    assert (tmp_path / "x.pt").read_bytes() == b"mine"


def test_evaluate_does_not_blame_the_ground_truth_for_one_false_positive_after_its_last_emitter(tmp_path, capsys):
    """A CSV ground truth records no frame count: when its last frames hold no emitter, one false positive there
    warned "wrong ground-truth file? --frames 0 98 scores only its frames", advice that drops a real false
    positive from the score. Warned only when a real share of the localizations lies after the truth (review)."""
    from napari_smlm.core.io.locs import write_localizations

    truth = _locs(n=400, frames=98, seed=4)  # frames 0..97 hold emitters; 98 and 99 of the movie are empty
    found = Localizations.concat([truth.shift(dx_nm=5.0), Localizations(
        {"frame": np.array([99]), "x_nm": np.array([500.0]), "y_nm": np.array([500.0]), "photons": np.array([800.0])},
        dict(truth.meta))])
    gt = write_localizations(tmp_path / "gt.csv", truth)
    pred = write_localizations(tmp_path / "pred.csv", found)
    assert main(["evaluate", str(gt), str(pred)]) == 0
    assert "wrong ground-truth" not in capsys.readouterr().err


def test_a_checkpoint_in_torch_s_legacy_pickle_format_still_loads(tmp_path):
    """The first-bytes check before torch.load (zip 'PK..' or pickle 0x80) must keep the legacy, non-zip format
    of torch.save(..., _use_new_zipfile_serialization=False), which weights_only loading reads (review of h11-ux)."""
    import torch

    from napari_smlm.core.checkpoint import load_checkpoint, shipped_checkpoint_path

    payload = torch.load(shipped_checkpoint_path("decode"), map_location="cpu", weights_only=True)
    legacy = tmp_path / "legacy.pt"
    torch.save(payload, legacy, _use_new_zipfile_serialization=False)
    assert legacy.read_bytes()[:2] == b"\x80\x02"  # not a zip archive
    ck = load_checkpoint(legacy)
    assert ck.model == "decode" and set(ck.state_dict) == set(payload["state_dict"])
