"""z in localization files (issue 13.5): ThunderSTORM ``z [nm]``/``uncertainty_z [nm]``,
Picasso ``z``/``lpz`` (nm, see the docstring of ``core/io/formats/picasso.py`` for the source
lines) and SMLM-2016 ``znano`` are written and read back exactly.

Each format's raw file is also checked against the format's own convention
(:func:`assert_z_in_file`): a writer that put z in camera pixels (or that read them back as
nm) would pass a naive write-then-read round trip, so the raw values are compared with the
table in nm, and a test shows that this check fails on a file written with z in pixels.
"""

from __future__ import annotations

import contextlib
import io

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from napari_smlm.core.io import (
    read_localizations,
    read_picasso_hdf5,
    read_smlm2016_csv,
    read_thunderstorm_csv,
    write_localizations,
    write_picasso_hdf5,
    write_smlm2016_csv,
    write_thunderstorm_csv,
)
from napari_smlm.core.io.formats import picasso as picasso_fmt
from napari_smlm.core.io.formats._common import EXACT_FLOATS
from napari_smlm.core.localizations import Localizations

PX = 130.0  # a pixel size that is not 100, so that nm and px can never coincide


def locs_3d(n: int = 40, seed: int = 3, float32: bool = False) -> Localizations:
    rng = np.random.default_rng(seed)
    data = {
        "frame": np.sort(rng.integers(0, 25, n)),
        # inside the image by a pixel: Picasso's loader drops x < 0 or y < 0 (in its pixels)
        "x_nm": rng.uniform(PX, 63 * PX, n),
        "y_nm": rng.uniform(PX, 47 * PX, n),
        "z_nm": rng.uniform(-600.0, 600.0, n),
        "sigma_z_nm": rng.uniform(15.0, 60.0, n),
        "photons": rng.uniform(500, 5000, n),
        "bg": rng.uniform(5, 50, n),
        "sigma_x_nm": rng.uniform(5, 30, n),
        "sigma_y_nm": rng.uniform(5, 30, n),
    }
    if float32:  # values Picasso's float32 fields hold exactly
        for k in ("z_nm", "sigma_z_nm"):
            data[k] = data[k].astype(np.float32).astype(np.float64)
    return Localizations(data, {"pixel_size_nm": PX, "image_shape": (48, 64), "n_frames": 25})


def raw_z(fmt: str, path) -> tuple[np.ndarray, np.ndarray | None]:
    """(z, z uncertainty) exactly as stored in the file, None where the format has none."""
    if fmt == "thunderstorm":
        df = pd.read_csv(path, **EXACT_FLOATS)
        return df["z [nm]"].to_numpy(), df["uncertainty_z [nm]"].to_numpy()
    if fmt == "picasso":
        with h5py.File(path, "r") as f:
            rec = f["locs"][()]
        return rec["z"].astype(np.float64), rec["lpz"].astype(np.float64)
    if fmt == "smlm2016":
        return pd.read_csv(path, **EXACT_FLOATS)["znano"].to_numpy(), None
    raise ValueError(fmt)


def assert_z_in_file(fmt: str, path, locs: Localizations) -> None:
    """The file holds z (and its uncertainty) in nm, as the format defines, and reads back exactly."""
    z, sz = raw_z(fmt, path)
    # Every one of these formats stores z in nm (Picasso too, unlike its x/y in pixels).
    np.testing.assert_array_equal(z, locs["z_nm"], err_msg=f"{fmt}: raw z is not the table's z in nm")
    if sz is not None:
        np.testing.assert_array_equal(sz, locs["sigma_z_nm"], err_msg=f"{fmt}: raw z uncertainty is not in nm")
    back = read_localizations(path, fmt=fmt)
    np.testing.assert_array_equal(back.frames, locs.frames)
    np.testing.assert_array_equal(back["z_nm"], locs["z_nm"], err_msg=f"{fmt}: z changed in the round trip")
    if sz is not None:
        np.testing.assert_array_equal(back["sigma_z_nm"], locs["sigma_z_nm"])


WRITERS = {
    "thunderstorm": lambda d, locs: write_thunderstorm_csv(d / "t.csv", locs),
    "picasso": lambda d, locs: write_picasso_hdf5(d / "p_locs.hdf5", locs),
    "smlm2016": lambda d, locs: write_smlm2016_csv(d / "activations.csv", locs),
}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_z_round_trip_is_exact_and_in_nm(tmp_path, fmt):
    locs = locs_3d(float32=fmt == "picasso")
    path = WRITERS[fmt](tmp_path, locs)
    assert_z_in_file(fmt, path, locs)
    back = read_localizations(path, fmt=fmt)
    for c in ("x_nm", "y_nm"):
        np.testing.assert_allclose(back[c], locs[c], rtol=1e-6 if fmt == "picasso" else 1e-15)


def _rewrite_z_in_pixels(fmt: str, path) -> None:
    """The bug the check must catch: a writer that stored z (and its uncertainty) in camera pixels."""
    if fmt == "thunderstorm":
        df = pd.read_csv(path, **EXACT_FLOATS)
        df["z [nm]"] /= PX
        df["uncertainty_z [nm]"] /= PX
        with open(path, "w", newline="") as fh:
            fh.write(",".join(f'"{h}"' for h in df.columns) + "\n")
            df.to_csv(fh, header=False, index=False, lineterminator="\n")
    elif fmt == "picasso":
        with h5py.File(path, "r+") as f:
            rec = f["locs"][()]
            rec["z"] /= PX
            rec["lpz"] /= PX
            f["locs"][...] = rec
    else:
        df = pd.read_csv(path, **EXACT_FLOATS)
        df["znano"] /= PX
        df.to_csv(path, index=False)


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_a_file_with_z_in_pixels_fails_the_check(tmp_path, fmt):
    locs = locs_3d(float32=fmt == "picasso")
    path = WRITERS[fmt](tmp_path, locs)
    _rewrite_z_in_pixels(fmt, path)
    with pytest.raises(AssertionError, match="z"):
        assert_z_in_file(fmt, path, locs)
    # and the reader does not silently "fix" it either: it reports what the file says
    back = read_localizations(path, fmt=fmt)
    np.testing.assert_allclose(back["z_nm"], locs["z_nm"] / PX, rtol=1e-6)


def test_thunderstorm_header_and_units(tmp_path):
    locs = locs_3d()
    p = write_thunderstorm_csv(tmp_path / "t.csv", locs)
    header = p.read_text().splitlines()[0]
    assert '"z [nm]"' in header and '"uncertainty_z [nm]"' in header
    # z in micrometres (another length unit) is converted to nm on read
    p2 = tmp_path / "um.csv"
    p2.write_text('"frame","x [nm]","y [nm]","z [um]","uncertainty_z [um]"\n1,100,200,-0.25,0.03\n')
    b = read_thunderstorm_csv(p2)
    assert b["z_nm"][0] == pytest.approx(-250.0) and b["sigma_z_nm"][0] == pytest.approx(30.0)


def test_picasso_3d_file_fields_and_yaml_stay_valid(tmp_path):
    locs = locs_3d(float32=True)
    locs.df["d_zcalib"] = np.linspace(0.01, 0.2, len(locs))
    p = write_picasso_hdf5(tmp_path / "run_locs.hdf5", locs)
    with h5py.File(p, "r") as f:
        rec = f["locs"][()]
    names = rec.dtype.names
    assert names[:9] == ("frame", "x", "y", "photons", "sx", "sy", "bg", "lpx", "lpy")
    assert names[9:11] == ("z", "lpz") and rec.dtype["z"] == np.dtype("<f4") and rec.dtype["lpz"] == np.dtype("<f4")
    assert "d_zcalib" in names and "sigma_z_nm" not in names and "z_nm" not in names
    # x stays in camera pixels (centre at integer), z in nm
    np.testing.assert_allclose(rec["x"], locs["x_nm"] / PX - 0.5, rtol=1e-6, atol=1e-4)
    docs = list(yaml.safe_load_all(picasso_fmt.picasso_yaml_path(p).read_text()))
    info = docs[-1]
    assert {"Width": 64, "Height": 48, "Frames": 25, "Pixelsize": PX}.items() <= info.items()
    assert isinstance(info["Byte Order"], str) and info["Data Type"] == "uint16"
    back = read_picasso_hdf5(p)
    np.testing.assert_array_equal(back["z_nm"], locs["z_nm"])
    np.testing.assert_array_equal(back["sigma_z_nm"], locs["sigma_z_nm"])
    np.testing.assert_allclose(back["d_zcalib"], locs["d_zcalib"], rtol=1e-6)


def test_picasso_file_written_like_picasso_reads_z_as_nm(tmp_path):
    """A /locs table as Picasso's zfit saves it (z, lpz in nm, d_zcalib) reads as z_nm = z."""
    n = 3
    rec = np.zeros(n, dtype=[("frame", "<u4"), ("x", "<f4"), ("y", "<f4"), ("photons", "<f4"), ("sx", "<f4"),
                             ("sy", "<f4"), ("bg", "<f4"), ("lpx", "<f4"), ("lpy", "<f4"), ("net_gradient", "<f4"),
                             ("z", "<f4"), ("d_zcalib", "<f4"), ("lpz", "<f4")])
    rec["frame"] = [0, 1, 2]
    rec["x"], rec["y"] = [3.0, 10.25, 20.5], [4.0, 5.5, 30.0]
    rec["sx"], rec["sy"] = [1.2, 0.9, 1.0], [0.9, 1.3, 1.0]
    rec["photons"], rec["bg"], rec["lpx"], rec["lpy"] = 2000, 20, 0.1, 0.1
    rec["z"] = [-312.5, 40.0, 250.0]
    rec["lpz"] = [25.0, 30.0, 35.0]
    rec["d_zcalib"] = [0.02, 0.05, 0.01]
    p = tmp_path / "movie_locs.hdf5"
    with h5py.File(p, "w") as f:
        f.create_dataset("locs", data=rec)
    (tmp_path / "movie_locs.yaml").write_text(
        "Byte Order: <\nData Type: uint16\nFrames: 3\nHeight: 32\nWidth: 32\n---\n"
        "Generated by: Picasso Localize\nPixelsize: 130\n---\nGenerated by: Picasso v0.10.3 Fit 3D\n"
        "Magnification factor: 0.79\nX Coefficients: [0, 0, 0, 0, 0, 0, 1]\n"
    )
    back = read_localizations(p)
    np.testing.assert_array_equal(back["z_nm"], [-312.5, 40.0, 250.0])
    np.testing.assert_array_equal(back["sigma_z_nm"], [25.0, 30.0, 35.0])
    np.testing.assert_allclose(back["x_nm"], (rec["x"] + 0.5) * 130.0)
    assert "d_zcalib" in back and back.meta["pixel_size_nm"] == 130.0


def test_smlm2016_writer(tmp_path):
    locs = locs_3d()
    p = write_localizations(tmp_path / "activations.csv", locs, fmt="smlm2016")
    lines = p.read_text().splitlines()
    assert lines[0] == "Ground-truth,frame,xnano,ynano,znano,intensity"
    first = lines[1].split(",")
    assert first[0] == "1" and int(first[1]) == locs.frames[0] + 1  # 1-based in the file
    back = read_smlm2016_csv(p)
    for c in ("x_nm", "y_nm", "z_nm", "photons"):
        np.testing.assert_array_equal(back[c], locs[c], err_msg=c)
    np.testing.assert_array_equal(back["ground_truth"], np.arange(1, len(locs) + 1))
    # a .csv suffix alone still means ThunderSTORM
    assert read_localizations(write_localizations(tmp_path / "ts.csv", locs)).meta["format"] == "thunderstorm"


def test_smlm2016_2d_table_round_trips_without_inventing_z(tmp_path):
    locs = Localizations({"frame": [0, 3], "x_nm": [150.25, 2000.0], "y_nm": [50.5, 1234.5]})
    p = write_smlm2016_csv(tmp_path / "a.csv", locs)
    back = read_localizations(p)
    assert back.meta["format"] == "smlm2016"
    assert "z_nm" not in back and "photons" not in back
    np.testing.assert_array_equal(back["x_nm"], locs["x_nm"])
    np.testing.assert_array_equal(back.frames, [0, 3])


def test_picasso_reads_our_3d_file_when_installed(tmp_path):
    """Picasso's own loader (when picassosr is installed, e.g. the benchmark venv) gets z in nm."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from picasso import io as pio
    except Exception:  # noqa: BLE001 - any import failure: picasso is not usable here
        pytest.skip("picassosr not installed (optional benchmark dependency)")
    locs = locs_3d(float32=True)
    p = write_picasso_hdf5(tmp_path / "ours_locs.hdf5", locs)
    with contextlib.redirect_stdout(io.StringIO()):
        plocs, info = pio.load_locs(str(p))
    plocs = pd.DataFrame(plocs) if not isinstance(plocs, pd.DataFrame) else plocs
    assert len(plocs) == len(locs)
    order = np.argsort(plocs["frame"].to_numpy(), kind="stable")
    np.testing.assert_array_equal(plocs["z"].to_numpy()[order].astype(np.float64), locs["z_nm"])
    np.testing.assert_allclose((plocs["x"].to_numpy()[order] + 0.5) * PX, locs["x_nm"], rtol=1e-6)
    px = next(d["Pixelsize"] for d in info if isinstance(d, dict) and "Pixelsize" in d)
    assert px == PX
