"""Papercuts met using the CLI as a microscopist would (session 6, helper "ux").

Each test reproduces one problem seen on real data: what the user typed, what went wrong.
"""

from __future__ import annotations

import errno
import logging

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_smlm.cli import main
from napari_smlm.core.io.errors import SMLMFileError
from napari_smlm.core.io.safe import check_output


@pytest.fixture
def locs_csv(tmp_path):
    """A small ThunderSTORM CSV, as `localize -o locs.csv` writes (no pixel size in the file)."""
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({
        "id": np.arange(1, n + 1),
        "frame": rng.integers(1, 50, n),
        "x [nm]": rng.uniform(500, 5500, n),
        "y [nm]": rng.uniform(500, 5500, n),
        "intensity [photon]": rng.uniform(500, 3000, n),
        "offset [photon]": rng.uniform(20, 40, n),
        "uncertainty_xy [nm]": rng.uniform(5, 20, n),
    })
    p = tmp_path / "locs.csv"
    df.to_csv(p, index=False)
    return p


# ----------------------------------------------------------------------------- postprocess -> Picasso
def test_postprocess_never_writes_over_an_existing_picasso_yaml(locs_csv, tmp_path, capsys):
    """`postprocess locs.csv -o keep.hdf5` replaced an existing keep.yaml without --overwrite."""
    yaml = tmp_path / "keep.yaml"
    yaml.write_text("precious: 1\n")
    rc = main(["postprocess", str(locs_csv), "-o", str(tmp_path / "keep.hdf5"), "--camera-pixel-size", "100"])
    assert rc == 2
    assert yaml.read_text() == "precious: 1\n"
    assert not (tmp_path / "keep.hdf5").exists() and not (tmp_path / "keep_postprocess.json").exists()
    err = capsys.readouterr().err
    assert "keep.yaml" in err and "--overwrite" in err and "Traceback" not in err
    # with --overwrite it is replaced (the user asked), and Picasso's YAML is complete
    assert main(["postprocess", str(locs_csv), "-o", str(tmp_path / "keep.hdf5"), "--camera-pixel-size", "100",
                 "--overwrite"]) == 0
    assert "Pixelsize: 100.0" in yaml.read_text()


def test_postprocess_keeps_the_yaml_of_a_picasso_input(locs_csv, tmp_path):
    """`postprocess a.hdf5 -o a.h5`: the output's sidecar a.yaml is the input's own YAML."""
    a = tmp_path / "a.hdf5"
    assert main(["postprocess", str(locs_csv), "-o", str(a), "--camera-pixel-size", "100"]) == 0
    before = (tmp_path / "a.yaml").read_bytes()
    assert main(["postprocess", str(a), "-o", str(tmp_path / "a.h5"), "--overwrite"]) == 2
    assert (tmp_path / "a.yaml").read_bytes() == before and not (tmp_path / "a.h5").exists()


def test_postprocess_to_picasso_without_pixel_size_is_refused_before_the_work(locs_csv, tmp_path, capsys):
    """It used to run every step, then fail with "pass pixel_size_nm" (a Python name, not the option)."""
    out = tmp_path / "p.hdf5"
    assert main(["postprocess", str(locs_csv), "-o", str(out), "--nena", "--frc"]) == 2
    err = capsys.readouterr().err
    assert "--camera-pixel-size" in err and "pixel_size_nm" not in err and "p.hdf5" in err
    assert list(tmp_path.iterdir()) == [locs_csv]  # nothing written


def test_postprocess_refuses_two_outputs_with_one_name(locs_csv, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert main(["postprocess", str(locs_csv), "-o", str(out), "--report", str(out)]) == 2
    assert "same file" in capsys.readouterr().err and not out.exists()


# ----------------------------------------------------------------------------- unwritable folders
def test_output_under_a_file_is_refused_naming_the_option(locs_csv, tmp_path, capsys):
    assert main(["render", str(locs_csv), "-o", str(locs_csv / "sr.tif")]) == 2
    err = capsys.readouterr().err
    assert "--output" in err and "is a file, not a folder" in err and "Traceback" not in err


def test_read_only_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    """A read-only folder used to fail only when the result was written (after the whole run)."""
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) == os.fspath(ro) else real_access(p, mode, **kw))
    with pytest.raises(SMLMFileError, match=r"--render: cannot write in folder .*ro: read-only"):
        check_output(ro / "sr.tif", what="--render")
    with pytest.raises(SMLMFileError, match=r"to create a/b in it"):
        check_output(ro / "a" / "b" / "sim.tif", what="--output")
    assert check_output(tmp_path / "new" / "x.csv", what="--output") == tmp_path / "new" / "x.csv"


def test_os_error_names_the_target_not_the_temporary_file():
    from napari_smlm.cli import _os_error_text

    exc = OSError(errno.EROFS, "Read-only file system", "/data/run/.sr.tif.0g53mad2.part.tif")
    assert _os_error_text(exc) == "/data/run/sr.tif: cannot write: Read-only file system"
    exc = OSError(errno.EACCES, "Permission denied", "/data/run/sim")
    assert _os_error_text(exc) == "/data/run/sim: Permission denied"


# ----------------------------------------------------------------------------- corrupt TIFF
def test_truncated_tiff_is_one_clear_error_without_tifffile_log_lines(tmp_path, caplog):
    from napari_smlm.core.io.tiff import open_movie

    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.random.default_rng(1).integers(90, 200, (40, 32, 32), dtype=np.uint16), imagej=True)
    bad = tmp_path / "trunc.tif"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with caplog.at_level(logging.WARNING), pytest.raises(SMLMFileError) as e:
        open_movie(bad)
    assert "trunc.tif" in str(e.value) and "truncated or corrupt" in str(e.value)
    assert "<tifffile." not in str(e.value)  # not tifffile's object repr
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]  # no "ERROR tifffile: ..." on the console
    assert logging.getLogger("tifffile").propagate  # restored
    assert open_movie(good).shape == (40, 32, 32)


# ----------------------------------------------------------------------------- argparse
def test_a_bad_option_value_is_a_short_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["localize", "m.tif", "-o", str(tmp_path / "x.csv"), "--threshold", "2"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 3, err  # was ~20 lines of usage above the error
    assert err[0] == "usage: napari-smlm localize [options] movie [movie ...]"
    assert "--threshold" in err[1] and "[0, 1]" in err[1]


def test_an_unknown_option_names_its_command(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["postprocess", "l.csv", "-o", str(tmp_path / "x.csv"), "--drift-pxl", "20"])
    err = capsys.readouterr().err
    assert "napari-smlm postprocess: error: unrecognized arguments: --drift-pxl" in err


def test_unknown_model_names_the_option(tmp_path, capsys):
    movie = tmp_path / "m.tif"
    tifffile.imwrite(movie, np.full((6, 16, 16), 100, np.uint16))
    assert main(["localize", str(movie), "-o", str(tmp_path / "x.csv"), "--model", "decod"]) == 2
    err = capsys.readouterr().err
    assert "--model decod" in err and "napari-smlm models" in err
    assert main(["localize", str(movie), "-o", str(tmp_path / "x.csv"), "--checkpoint", str(tmp_path / "no.pt")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


# ----------------------------------------------------------------------------- --help
def _command_parsers():
    import argparse

    from napari_smlm.cli import build_parser

    out, todo = {}, [("", build_parser())]
    while todo:
        name, p = todo.pop()
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub, sp in a.choices.items():
                    out[f"{name} {sub}".strip()] = sp
                    todo.append((f"{name} {sub}".strip(), sp))
    return out


def test_help_gives_each_default_once_and_says_switches_are_off():
    """`calibrate --help` said "px (7) (default: 7)"; `--frc`, `--nena`, `--crlb` gave no default."""
    import argparse
    import re

    doubled, silent = [], []
    for name, sp in _command_parsers().items():
        fmt = sp._get_formatter()
        for a in sp._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) or not a.option_strings:
                continue
            h = fmt._expand_help(a)  # the text --help prints
            if re.search(r"\(([^()]+)\) \(default: \1\)", h) or h.count("(default") > 1:
                doubled.append(f"{name} {a.option_strings[-1]}: {h}")
            if isinstance(a, argparse._StoreTrueAction) and "default" not in h:
                silent.append(f"{name} {a.option_strings[-1]}")
    assert not doubled, doubled
    assert not silent, silent



def test_localize_says_when_it_assumes_the_pixel_size(tmp_path, capsys):
    """Locan's images.tif (no pixel size in the file) was localized at an assumed 100 nm without a word."""
    from napari_smlm.core.checkpoint import shipped_models

    if "decode" not in shipped_models():
        pytest.skip("no shipped decode weights")
    movie = tmp_path / "nopx.tif"
    tifffile.imwrite(movie, np.random.default_rng(2).integers(95, 110, (6, 24, 24), dtype=np.uint16))
    assert main(["localize", str(movie), "-o", str(tmp_path / "a.csv"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "nopx.tif: the file gives no pixel size; assuming 100 nm" in err and "--pixel-size" in err
    assert main(["localize", str(movie), "-o", str(tmp_path / "b.csv"), "--device", "cpu", "--pixel-size", "133"]) == 0
    assert "no pixel size" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- RCC on small tables
def test_rcc_auto_segments_fit_a_small_table(external_data, tmp_path, capsys):
    """Picasso's 564-row test table: `--drift rcc` (segments automatic) failed with
    "segment 0 holds 87 localizations ... use at most 5 segments" - it had chosen 5 itself."""
    src = external_data / "jungmannlab_picasso" / "testdata_locs.hdf5"
    assert main(["postprocess", str(src), "-o", str(tmp_path / "p.hdf5"), "--drift", "rcc"]) == 0
    assert (tmp_path / "p_drift.csv").exists()
    # too many segments asked: the advice is a number that works
    assert main(["postprocess", str(src), "-o", str(tmp_path / "q.hdf5"), "--drift", "rcc", "--segments", "8"]) == 2
    err = capsys.readouterr().err
    assert "of the 8 asked" in err and "--segments 4" in err
    assert main(["postprocess", str(src), "-o", str(tmp_path / "q.hdf5"), "--drift", "rcc", "--segments", "4"]) == 0


def test_rcc_on_too_few_localizations_says_so():
    from napari_smlm.core.localizations import Localizations
    from napari_smlm.core.postprocessing import rcc

    rng = np.random.default_rng(3)
    locs = Localizations({"frame": np.sort(rng.integers(0, 200, 150)), "x_nm": rng.uniform(0, 5000, 150),
                          "y_nm": rng.uniform(0, 5000, 150)})
    with pytest.raises(ValueError, match=r"150 localizations are too few for drift correction.*fiducials"):
        rcc(locs)


def test_png_of_a_thin_strip_is_written_without_a_matplotlib_warning(tmp_path):
    """`render decode_dstorm_data.h5` (a 1644×28 px render) printed matplotlib's tight-layout UserWarning."""
    import warnings

    from PIL import Image

    from napari_smlm.cli import _save_png

    img = np.zeros((28, 1644))
    img[10:14, 100:1500] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _save_png(tmp_path / "strip.png", img, title="decode_dstorm_data.h5", pixel_size_nm=10.0)
    w, h = Image.open(tmp_path / "strip.png").size
    assert h >= 200  # room for the title and the axis labels


def test_a_non_tiff_movie_gets_a_way_forward(tmp_path, capsys):
    """Picasso's testdata.raw: "not a readable TIFF file (TiffFileError: ...)" said nothing of what to do."""
    raw = tmp_path / "testdata.raw"
    raw.write_bytes(np.arange(4 * 16 * 16, dtype="<u2").tobytes())
    assert main(["localize", str(raw), "-o", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "testdata.raw: not a TIFF movie (.raw file)" in err and "Fiji" in err and "TiffFileError" not in err
    smlm = tmp_path / "data.smlm"
    smlm.write_bytes(b"PK\x03\x04")
    assert main(["render", str(smlm), "-o", str(tmp_path / "x.tif")]) == 2
    assert "(supported: .csv, .h5, .hdf5)" in capsys.readouterr().err


def test_napari_reader_checks_a_truncated_tiff_quietly(tmp_path, caplog):
    """Opening trunc.tif in napari printed tifffile's "<tifffile.TiffFile 'trunc.tif'> ImageJ series
    metadata invalid ..." lines on the terminal before the plugin's own (clear) error."""
    from napari_smlm import _reader

    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.random.default_rng(1).integers(90, 200, (40, 32, 32), dtype=np.uint16), imagej=True)
    bad = tmp_path / "trunc.tif"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with caplog.at_level(logging.WARNING):
        reader = _reader.get_movie_reader(str(bad))
        assert reader is not None
        with pytest.raises(SMLMFileError, match="trunc.tif: truncated or corrupt TIFF"):
            reader(str(bad))
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]  # (a terminal shows these)


# ----------------------------------------------------------------------------- postprocess option errors
@pytest.mark.parametrize("opts, said", [
    (["--drift", "rcc", "--segments", "1"], "--segments: must be >= 2, got 1"),
    (["--drift", "rcc", "--drift-pixel", "-5"], "--drift-pixel: must be a positive number"),
    (["--link-distance", "30", "--link-dark", "-1"], "--link-dark: must be >= 0"),
    (["--frc", "--frc-pixel", "0"], "--frc-pixel: must be a positive number"),
    (["--filter", "photons"], "--filter: filter 'photons': expected COLUMN:LOW:HIGH"),
])
def test_postprocess_errors_name_the_option_typed(locs_csv, tmp_path, capsys, opts, said):
    """They named PostprocessConfig's fields ("drift_pixel_nm must be ..."), not the options."""
    assert main(["postprocess", str(locs_csv), "-o", str(tmp_path / "p.csv"), *opts]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_postprocess_refuses_a_negative_camera_pixel_size(locs_csv, tmp_path, capsys):
    """`--camera-pixel-size -100` was accepted (and written into the outputs)."""
    with pytest.raises(SystemExit):
        main(["postprocess", str(locs_csv), "-o", str(tmp_path / "p.csv"), "--camera-pixel-size", "-100"])
    assert "--camera-pixel-size: -100: must be" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_postprocess_config_file_errors_name_the_file(locs_csv, tmp_path, capsys):
    cfg = tmp_path / "pp.yaml"
    cfg.write_text("drift: rcc\nsegments: 1\n")
    assert main(["postprocess", str(locs_csv), "-o", str(tmp_path / "p.csv"), "--config", str(cfg)]) == 2
    assert f"{cfg}: segments must be >= 2" in capsys.readouterr().err
    assert main(["postprocess", str(locs_csv), "-o", str(tmp_path / "p.csv"), "--config", str(tmp_path / "no.yaml")]) == 2
    assert "--config" in capsys.readouterr().err


# ----------------------------------------------------------------------------- merged tables in ThunderSTORM CSV
def test_merged_last_frame_is_one_based_in_thunderstorm_csv(tmp_path):
    """`postprocess --link-distance ... -o x.csv`: on disk "frame" was 1-based and "last_frame" 0-based
    (a single-frame event read frame 1, last_frame 0)."""
    from napari_smlm.core.io import read_localizations, write_localizations
    from napari_smlm.core.localizations import Localizations

    locs = Localizations({"frame": np.array([0, 0, 3]), "x_nm": [10.0, 500.0, 900.0], "y_nm": [5.0, 5.0, 5.0],
                          "last_frame": np.array([0.0, 2.0, 3.0]), "n_merged": np.array([1.0, 3.0, 1.0])})
    out = tmp_path / "merged.csv"
    write_localizations(out, locs)
    disk = pd.read_csv(out)
    assert list(disk["frame"]) == [1, 1, 4] and list(disk["last_frame"]) == [1, 3, 4]
    back = read_localizations(out)
    np.testing.assert_array_equal(back["last_frame"], [0, 2, 3])
    np.testing.assert_array_equal(back["frame"], [0, 0, 3])
    # a file of the earlier writer (last_frame 0-based on disk) is read as it was
    old = tmp_path / "old.csv"
    old.write_text('"id","frame","x [nm]","y [nm]","last_frame","n_merged"\n1,1,10,5,0.0,1.0\n2,1,500,5,2.0,3.0\n')
    np.testing.assert_array_equal(read_localizations(old)["last_frame"], [0, 2])


def test_frames_past_the_end_name_the_option_and_the_movie(tmp_path, capsys):
    """`localize demo1.tif --frames 30 40` on a 20-frame movie: "empty frame range 30:20 for a movie of
    20 frames" (no option, no file, and a range the user never typed)."""
    movie = tmp_path / "twenty.tif"
    tifffile.imwrite(movie, np.full((20, 16, 16), 100, np.uint16))
    for out in ("a.csv", "a.hdf5"):  # the in-memory and the streamed path
        assert main(["localize", str(movie), "-o", str(tmp_path / out), "--frames", "30", "40"]) == 2
        assert "--frames 30 40: twenty.tif has 20 frames (0 to 19)" in capsys.readouterr().err
        assert not (tmp_path / out).exists()


def test_localize_render_to_a_png_name_says_it_wants_a_tiff(tmp_path, capsys):
    """``--render x.png`` used to say "the --render PNG and --render are the same file"."""
    movie = tmp_path / "m.tif"
    tifffile.imwrite(movie, np.full((4, 16, 16), 100, dtype=np.uint16), photometric="minisblack")
    rc = main(["localize", str(movie), "-o", str(tmp_path / "l.csv"), "--render", str(tmp_path / "sr.png")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "--render" in err and "give a .tif name" in err and "sr.tif" in err
    assert not (tmp_path / "l.csv").exists()
