"""Tests of napari_smlm.core.io.locs: readers, writers, detection, conventions."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from napari_smlm.core.io import (
    FORMATS,
    SMLMFileError,
    detect_format,
    is_localization_file,
    open_movie,
    read_decode_csv,
    read_decode_h5,
    read_localizations,
    read_picasso_hdf5,
    read_smlm2016_csv,
    read_thunderstorm_csv,
    write_localizations,
    write_picasso_hdf5,
    write_thunderstorm_csv,
)
from napari_smlm.core.localizations import Localizations

EXTERNAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"
DEEPSTORM = EXTERNAL / "EliasNehme_Deep-STORM"
PICASSO = EXTERNAL / "jungmannlab_picasso"
LOCAN = EXTERNAL / "super-resolution_Locan"


def fixture(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"external test data not found: {path} (expected next to the repository in shared/data/external)")
    return path


def make_locs(n: int = 50, seed: int = 0, **extra) -> Localizations:
    rng = np.random.default_rng(seed)
    data = {
        "frame": rng.integers(0, 30, n),
        "x_nm": rng.uniform(0, 6400, n),
        "y_nm": rng.uniform(0, 5000, n),
        "photons": rng.uniform(500, 5000, n),
        "bg": rng.uniform(5, 50, n),
        "sigma_x_nm": rng.uniform(5, 30, n),
        "sigma_y_nm": rng.uniform(5, 30, n),
        "psf_sigma_nm": rng.uniform(90, 150, n),
    }
    data.update(extra)
    return Localizations(data, {"pixel_size_nm": 100.0, "image_shape": (50, 64), "n_frames": 30})


# ============================================================================ real files
def test_read_deepstorm_positions_thunderstorm():
    locs = read_thunderstorm_csv(fixture(DEEPSTORM / "positions_demo1.csv"))
    assert len(locs) == 4956
    assert locs.frames.min() == 0 and locs.frames.max() == 19  # 1-based in the file
    assert {"photons", "bg", "psf_sigma_nm", "bkgstd_photon", "id"} <= set(locs.columns)
    assert locs["bg"][0] == 50.0
    assert 106 <= locs["psf_sigma_nm"].min() and locs["psf_sigma_nm"].max() <= 115
    assert locs["x_nm"][0] == pytest.approx(67.843)


def test_read_locan_thunderstorm_double_quoted_header():
    locs = read_localizations(fixture(LOCAN / "Thunderstorm_dstorm_data.csv"))
    assert len(locs) == 19
    assert locs.frames[0] == 2000  # "2001.0" in the file
    assert "chi2" in locs and "sigma_x_nm" in locs  # older "uncertainty [nm]"
    np.testing.assert_array_equal(locs["sigma_x_nm"], locs["sigma_y_nm"])
    assert locs["sigma_x_nm"][0] == pytest.approx(22.93255128689051)


def test_read_bundled_tubes_unquoted_header():
    path = fixture(DEEPSTORM / "Positions_Bundeld_Tubulin_Recreated.derived.csv")
    assert detect_format(path) == "thunderstorm"
    locs = read_localizations(path)
    assert len(locs) == 81178
    assert locs.columns == ["frame", "x_nm", "y_nm"]
    assert locs.frames.min() == 0 and locs.frames.max() == 360


def test_read_picasso_fixture():
    locs = read_localizations(fixture(PICASSO / "testdata_locs.hdf5"))
    assert len(locs) == 564
    assert locs.meta["pixel_size_nm"] == 130.0  # the localize step's Pixelsize, not Camera's 160
    assert locs.meta["image_shape"] == (32, 32) and locs.meta["n_frames"] == 1000
    assert locs.frames.min() == 11 and locs.frames.max() == 990
    with h5py.File(PICASSO / "testdata_locs.hdf5", "r") as f:
        raw = f["locs"][()]
    np.testing.assert_allclose(locs["x_nm"], (raw["x"].astype(float) + 0.5) * 130.0)
    np.testing.assert_allclose(locs["sigma_y_nm"], raw["lpy"].astype(float) * 130.0)
    np.testing.assert_allclose(locs["psf_sigma_nm"], raw["sx"].astype(float) * 130.0)
    assert {"net_gradient", "likelihood", "iterations"} <= set(locs.columns)


def test_read_decode_fixture():
    path = fixture(LOCAN / "decode_dstorm_data.h5")
    assert detect_format(path) == "decode_h5"
    locs = read_localizations(path)
    assert len(locs) == 96
    with h5py.File(path, "r") as f:
        xyz, fr = f["data/xyz"][()], f["data/frame_ix"][()]
    # DECODE x (first image axis = rows) -> y_nm with px_size[0]; y -> x_nm with px_size[1]
    np.testing.assert_allclose(locs["y_nm"], (xyz[:, 0] + 0.5) * 127.0, rtol=1e-6)
    np.testing.assert_allclose(locs["x_nm"], (xyz[:, 1] + 0.5) * 117.0, rtol=1e-6)
    np.testing.assert_allclose(locs["z_nm"], xyz[:, 2], rtol=1e-6)
    np.testing.assert_array_equal(locs.frames, fr)
    assert locs.meta["pixel_size_xy_nm"] == (117.0, 127.0)
    assert {"photons", "bg", "prob", "sigma_x_nm", "sigma_z_nm", "sigma_photons"} <= set(locs.columns)
    unswapped = read_decode_h5(path, swap_xy=False)
    np.testing.assert_allclose(unswapped["x_nm"], (xyz[:, 0] + 0.5) * 127.0, rtol=1e-6)


def test_positions_match_the_movie_pixel_convention():
    """Isolated emitters' centroids sit at x_nm / px - 0.5 in pixel-index units."""
    locs = read_thunderstorm_csv(fixture(DEEPSTORM / "positions_demo1.csv"))
    movie = open_movie(fixture(DEEPSTORM / "ArtificialDataset_demo1.tif"))
    px = movie.pixel_size_nm
    assert px == 100.0
    rows, cols = np.mgrid[-2:3, -2:3]
    errors = []
    for frame in range(len(movie)):  # frame 0 alone has a single isolated emitter at this density
        sub = locs.in_frame(frame)
        xy = sub.xy_nm
        dist = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)
        np.fill_diagonal(dist, np.inf)
        isolated = (dist.min(axis=1) > 600) & (sub["photons"] > 1500)
        img = movie[frame].astype(np.float64)
        bg = np.median(img)
        for x, y in xy[isolated]:
            i, j = int(y / px), int(x / px)
            if not (2 <= i < img.shape[0] - 2 and 2 <= j < img.shape[1] - 2):
                continue
            w = np.clip(img[i - 2 : i + 3, j - 2 : j + 3] - bg, 0, None)
            ci, cj = i + (w * rows).sum() / w.sum(), j + (w * cols).sum() / w.sum()
            errors.append((cj - (x / px - 0.5), ci - (y / px - 0.5)))
    errors = np.array(errors)
    assert len(errors) >= 5
    med = np.median(errors, axis=0)
    assert np.all(np.abs(med) < 0.25), med  # a 0.5 px convention error would fail here
    assert np.all(np.median(np.abs(errors), axis=0) < 0.5)


# ============================================================================ round trips
def test_thunderstorm_roundtrip(tmp_path):
    locs = make_locs(z_nm=np.linspace(-300, 300, 50), chi2=np.arange(50.0))
    out = write_thunderstorm_csv(tmp_path / "t.csv", locs)
    header = out.read_text().splitlines()[0]
    assert header.startswith(
        '"id","frame","x [nm]","y [nm]","z [nm]","sigma [nm]","intensity [photon]","offset [photon]"'
    )
    assert '"uncertainty_xy [nm]"' in header and '"chi2"' in header
    back = read_thunderstorm_csv(out)
    np.testing.assert_array_equal(back.frames, locs.frames)
    for c in ("x_nm", "y_nm", "z_nm", "photons", "bg", "psf_sigma_nm", "chi2"):
        np.testing.assert_allclose(back[c], locs[c], rtol=1e-12)
    rms = np.sqrt(0.5 * (locs["sigma_x_nm"] ** 2 + locs["sigma_y_nm"] ** 2))
    np.testing.assert_allclose(back["sigma_x_nm"], rms)
    # file frames are 1-based
    first = out.read_text().splitlines()[1].split(",")
    assert int(first[1]) == locs.frames[0] + 1


def test_thunderstorm_roundtrip_keeps_free_columns(tmp_path):
    locs = make_locs(prob=np.full(50, 0.9), cluster=np.arange(50.0))
    back = read_localizations(write_localizations(tmp_path / "f.csv", locs))
    np.testing.assert_allclose(back["prob"], 0.9)
    np.testing.assert_allclose(back["cluster"], np.arange(50.0))


def test_thunderstorm_pixel_units(tmp_path):
    p = tmp_path / "px.csv"
    p.write_text('"frame","x [px]","y [px]"\n1,2.5,3.0\n2,0.0,1.0\n')
    with pytest.raises(SMLMFileError, match="pixel_size_nm"):
        read_thunderstorm_csv(p)
    locs = read_localizations(p, pixel_size_nm=160)
    np.testing.assert_allclose(locs["x_nm"], [400.0, 0.0])
    assert locs.meta["pixel_size_nm"] == 160


def test_picasso_roundtrip(tmp_path):
    locs = make_locs(z_nm=np.linspace(-200, 200, 50), net_gradient=np.full(50, 5000.0))
    out = write_picasso_hdf5(tmp_path / "run_locs.hdf5", locs)
    ypath = tmp_path / "run_locs.yaml"
    assert ypath.exists()
    info = list(yaml.safe_load_all(ypath.read_text()))[-1]
    assert info["Pixelsize"] == 100.0 and info["Width"] == 64 and info["Height"] == 50 and info["Frames"] == 30
    assert info["Generated by"].startswith("napari-smlm ")
    with h5py.File(out, "r") as f:
        rec = f["locs"][()]
    assert rec.dtype.names[:9] == ("frame", "x", "y", "photons", "sx", "sy", "bg", "lpx", "lpy")
    assert rec.dtype["frame"] == np.dtype("<u4") and rec.dtype["x"] == np.dtype("<f4")
    np.testing.assert_allclose(rec["x"], locs["x_nm"] / 100 - 0.5, rtol=1e-6, atol=1e-4)
    back = read_picasso_hdf5(out)
    assert back.meta["pixel_size_nm"] == 100.0 and back.meta["image_shape"] == (50, 64)
    np.testing.assert_array_equal(back.frames, locs.frames)
    for c in ("x_nm", "y_nm", "z_nm", "photons", "bg", "sigma_x_nm", "sigma_y_nm", "psf_sigma_nm", "net_gradient"):
        np.testing.assert_allclose(back[c], locs[c], rtol=2e-7 * 4, atol=1e-3, err_msg=c)  # float32 storage


def test_picasso_writer_fills_missing_columns_and_reader_drops_them(tmp_path):
    locs = Localizations({"frame": [0, 1], "x_nm": [150.0, 250.0], "y_nm": [50.0, 350.0]}, {"pixel_size_nm": 100.0})
    out = write_localizations(tmp_path / "bare_locs.hdf5", locs)
    with h5py.File(out, "r") as f:
        rec = f["locs"][()]
    assert np.all(rec["lpx"] > 0) and np.all(np.isfinite(rec["photons"]))  # Picasso drops lp <= 0 / NaN
    back = read_localizations(out)
    assert back.columns == ["frame", "x_nm", "y_nm"]
    np.testing.assert_allclose(back["x_nm"], [150.0, 250.0], rtol=1e-6)


def test_picasso_pixel_size_argument_and_missing(tmp_path):
    locs = make_locs(5)
    with pytest.raises(SMLMFileError, match="pixel size"):
        write_picasso_hdf5(tmp_path / "a_locs.hdf5", Localizations(locs.df, {}))
    out = write_picasso_hdf5(tmp_path / "a_locs.hdf5", locs, pixel_size_nm=50.0, image_shape=(10, 10), n_frames=99)
    assert read_picasso_hdf5(out).meta["n_frames"] == 99
    # stored x = x_nm / 50 - 0.5 px; read as 100 nm pixels: (x + 0.5) * 100 = 2 * x_nm
    assert read_picasso_hdf5(out, pixel_size_nm=100.0)["x_nm"] == pytest.approx(2 * locs["x_nm"], rel=1e-5)
    ypath = tmp_path / "a_locs.yaml"
    ypath.write_text("Width: 10\nHeight: 10\n---\nGenerated by: test\n")
    with pytest.raises(SMLMFileError, match="Pixelsize"):
        read_picasso_hdf5(out)
    assert read_picasso_hdf5(out, pixel_size_nm=50.0).meta["pixel_size_nm"] == 50.0


def test_picasso_last_pixelsize_wins_and_python_tags(tmp_path):
    out = write_picasso_hdf5(tmp_path / "b_locs.hdf5", make_locs(3))
    (tmp_path / "b_locs.yaml").write_text(
        "Camera.Pixelsize: 160\nPixelsize: 160\nWidth: 64\nHeight: 50\nFrames: 7\n"
        "Odd: !!python/tuple [1, 2]\n---\nPixelsize: 130\nGenerated by: Picasso Localize\n"
    )
    locs = read_picasso_hdf5(out)
    assert locs.meta["pixel_size_nm"] == 130.0 and locs.meta["n_frames"] == 7


# ============================================================================ other formats
def test_smlm2016_with_trailing_space_and_headerless(tmp_path):
    rows = "1,1,100.5,200.25,-50,1500\n2,3,400.0,10.0,0,900\n"
    p = tmp_path / "activations.csv"
    p.write_text("Ground-truth,frame,xnano,ynano,znano,intensity \n" + rows)
    assert detect_format(p) == "smlm2016"
    locs = read_localizations(p)
    np.testing.assert_array_equal(locs.frames, [0, 2])
    np.testing.assert_allclose(locs["x_nm"], [100.5, 400.0])
    np.testing.assert_allclose(locs["photons"], [1500, 900])
    assert "ground_truth" in locs and "z_nm" in locs
    q = tmp_path / "headerless.csv"
    q.write_text(rows)
    assert detect_format(q) == "smlm2016"
    again = read_smlm2016_csv(q)
    assert again.equals(locs)


def test_decode_csv_export(tmp_path):
    p = tmp_path / "emitters.csv"
    meta = {"xy_unit": "px", "px_size": [100.0, 100.0]}
    p.write_text(
        "# DECODE EmitterSet\n"
        '# {"version": "0.10.0"}\n'
        f"# {json.dumps(meta)}\n"
        "x,y,z,phot,frame_ix,id,prob,bg,x_cr,y_cr,z_cr,x_sig,y_sig,z_sig\n"
        "1.0,2.0,30.0,1000.0,0,-1,0.9,10.0,,,,0.1,0.2,20.0\n"
        "5.5,0.0,-30.0,2000.0,4,-1,0.5,12.0,,,,0.1,0.2,20.0\n"
    )
    assert detect_format(p) == "decode_csv" and is_localization_file(p)
    locs = read_localizations(p)
    np.testing.assert_allclose(locs["y_nm"], [150.0, 600.0])  # DECODE x -> rows
    np.testing.assert_allclose(locs["x_nm"], [250.0, 50.0])
    np.testing.assert_allclose(locs["sigma_x_nm"], [20.0, 20.0])
    np.testing.assert_array_equal(locs.frames, [0, 4])
    np.testing.assert_allclose(locs["prob"], [0.9, 0.5])
    assert read_decode_csv(p, swap_xy=False)["x_nm"][0] == pytest.approx(150.0)


def test_decode_h5_synthetic_units(tmp_path):
    p = tmp_path / "em.h5"
    with h5py.File(p, "w") as f:
        f.create_group("meta").attrs.update({"xy_unit": "nm", "px_size": np.array([100.0, 100.0])})
        g = f.create_group("data")
        g["xyz"] = np.array([[0.0, 100.0, 5.0]], np.float32)
        g["frame_ix"] = np.array([3])
        g["phot"] = np.array([500.0], np.float32)
        g.create_dataset("xyz_sig", data=h5py.Empty("f"))
    locs = read_decode_h5(p)
    assert (locs["x_nm"][0], locs["y_nm"][0]) == pytest.approx((150.0, 50.0))
    assert "sigma_x_nm" not in locs and locs.frames[0] == 3


# ============================================================================ detection, errors
def test_formats_registry_and_probe(tmp_path):
    assert {"thunderstorm", "picasso", "smlm2016", "decode_h5", "decode_csv"} <= set(FORMATS)
    assert ".csv" in FORMATS["thunderstorm"].suffixes and FORMATS["picasso"].writer is not None
    other = tmp_path / "table.csv"
    other.write_text("a,b,c\n1,2,3\n")
    txt = tmp_path / "locs.txt"
    txt.write_text("x y frame\n")
    assert not is_localization_file(other)
    assert not is_localization_file(txt)
    assert not is_localization_file(tmp_path / "missing.csv")
    assert not is_localization_file(tmp_path)


def test_nonexistent_file():
    with pytest.raises(SMLMFileError, match="does not exist"):
        read_localizations("/nonexistent/locs.csv")


def test_csv_missing_columns_names_them(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text('"id","frame","x [nm]","intensity [photon]"\n1,1,10,100\n')
    with pytest.raises(SMLMFileError) as ei:
        read_localizations(p)
    msg = ei.value.problem
    assert "y [nm]" in msg and "intensity [photon]" in msg and "x [nm]" in msg  # missing + found
    with pytest.raises(SMLMFileError, match="missing columns"):
        read_thunderstorm_csv(p)


def test_unparseable_content(tmp_path):
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\x00\x01\x02garbage" * 10)
    with pytest.raises(SMLMFileError, match="binary"):
        read_localizations(binary)
    words = tmp_path / "words.csv"
    words.write_text("frame,x [nm],y [nm]\none,two,three\n")
    with pytest.raises(SMLMFileError):
        read_localizations(words)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("frame,x [nm],y [nm]\n1,2,3,4,5\n")
    with pytest.raises(SMLMFileError, match="columns"):
        read_localizations(ragged)
    not_h5 = tmp_path / "fake.hdf5"
    not_h5.write_text("hello")
    with pytest.raises(SMLMFileError, match="HDF5"):
        read_localizations(not_h5)


def test_picasso_hdf5_without_yaml(tmp_path):
    out = write_picasso_hdf5(tmp_path / "x_locs.hdf5", make_locs(4))
    (tmp_path / "x_locs.yaml").unlink()
    with pytest.raises(SMLMFileError) as ei:
        read_localizations(out)
    assert "YAML" in ei.value.problem and str(tmp_path / "x_locs.yaml") in ei.value.problem
    assert ei.value.path == str(out)


def test_write_localizations_by_suffix(tmp_path):
    locs = make_locs(6)
    assert detect_format(write_localizations(tmp_path / "a.csv", locs)) == "thunderstorm"
    assert detect_format(write_localizations(tmp_path / "a_locs.h5", locs)) == "picasso"
    with pytest.raises(SMLMFileError, match="cannot write"):
        write_localizations(tmp_path / "a.xlsx", locs)
    with pytest.raises(SMLMFileError, match="cannot be written"):
        write_localizations(tmp_path / "a.csv", locs, fmt="nairr")  # a read-only format
