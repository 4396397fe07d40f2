"""The per-format registry (core.io.formats) and the public-benchmark ground-truth readers:
NAIRR-SMLM emitter CSV, SMLM-2016 activations.csv, storm-analysis HDF5.

Every file is written by the test itself (no external data): the headers follow the
published files (NAIRR-SMLM's *_xy.csv / *_xyz.csv, the SMLM-2016 simulator's
activations.csv, storm-analysis's sa_h5py layout). The coordinate tests place one
emitter at the centre of a known camera pixel of a rendered frame and check that each
reader puts it there, in the API, in the napari points layer and in ``evaluate``.
"""

from __future__ import annotations

import importlib
import json

import h5py
import numpy as np
import pytest

from napari_smlm._layers import movie_scale_translate
from napari_smlm._reader import get_localization_reader
from napari_smlm.cli import main
from napari_smlm.core.io import (
    FORMATS,
    LOCALIZATION_SUFFIXES,
    SMLMFileError,
    claims_file,
    detect_format,
    read_localizations,
    write_localizations,
    write_picasso_hdf5,
    write_thunderstorm_csv,
)
from napari_smlm.core.io import formats as registry
from napari_smlm.core.io.formats import thunderstorm
from napari_smlm.core.localizations import Localizations

PX = 100.0  # nm, the camera pixel of every file below
ROW, COL = 5, 12  # the known pixel; its centre is at x = 1250 nm, y = 550 nm
X_C, Y_C = (COL + 0.5) * PX, (ROW + 0.5) * PX

NAIRR_2D = "No,Frame,Emitter,x (nm),y (nm),sigma (nm),Intensity (photons),Offset (photons),BkgSD (photons)"
NAIRR_3D = (
    "No,Frame,Emitter,x (nm),y (nm),z (nm),sigmax_z0 (nm),sigmay_z0 (nm),"
    "Intensity (photons),Offset (photons),BkgSD (photons)"
)


def rendered_frame(shape=(32, 40)) -> np.ndarray:
    """A frame with one Gaussian spot centred on pixel (ROW, COL) (pixel i spans [i px, (i+1) px))."""
    yy, xx = (np.indices(shape) + 0.5) * PX
    return 500 + 3000 * np.exp(-((xx - X_C) ** 2 + (yy - Y_C) ** 2) / (2 * 110.0**2))


# ============================================================================ sample files
def nairr_csv(path, header=NAIRR_2D):
    rows = [
        f"1,1,7,{X_C},{Y_C},97.98,3000,500,8",
        "2,1,9,2607.11579645817,312.12929599811,97.98,3000,500,8",
        "3,3,7,406.357812139219,1750.02086145595,97.98,3000,500,8",
    ]
    if header == NAIRR_3D:
        rows = [
            f"1,1,7,{X_C},{Y_C},-193.86,172.88,165.79,2400,500,0.5",
            "2,2,16,2107.67206656061,2732.26063968631,168.2,172.88,165.79,2400,500,0.5",
        ]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def activations_csv(path, header=True):
    # The challenge simulator's exact line formats: '%5.0f, %5.0f, %4.3f, ... \n' after a header
    # with a trailing space.
    lines = [f"{1:5.0f}, {1:5.0f}, {X_C:4.3f}, {Y_C:4.3f}, {-20.5:4.3f}, {2811.25:4.3f} ",
             f"{2:5.0f}, {4:5.0f}, {3000.125:4.3f}, {120.5:4.3f}, {300.0:4.3f}, {1500.0:4.3f} "]
    text = ("Ground-truth,frame,xnano,ynano,znano,intensity \n" if header else "") + "\n".join(lines) + "\n"
    path.write_text(text)
    return path


def storm_analysis_h5(path, with_attrs=True):
    """storm-analysis layout: /fr_<n> groups, one dataset per field, x along image rows, z in µm."""
    with h5py.File(path, "w") as f:
        if with_attrs:
            f.attrs.update({"sa_type": "3D-DAOSTORM", "version": 0.1, "pixel_size": PX,
                            "movie_x": 32, "movie_y": 40, "movie_l": 10, "analysis_finished": 1, "n_channels": 1})
        for frame, x, y, z in ((0, float(ROW), float(COL), 0.1), (3, 20.25, 7.5, -0.2)):
            g = f.create_group(f"fr_{frame}")
            g.attrs.update({"n_locs": 1, "dx": 0.5, "dy": 0.0, "dz": 0.0})
            for name, v in (("x", x), ("y", y), ("z", z), ("background", 12.0), ("height", 200.0),
                            ("sum", 2500.0), ("xsigma", 1.2), ("ysigma", 1.5), ("category", 0)):
                g.create_dataset(name, data=np.array([v]))
        f.create_group("fr_5").attrs.update({"n_locs": 0})  # an analysed frame without localizations
    return path


# ============================================================================ registry
def test_every_module_registers_its_formats_and_suffixes_follow():
    names = []
    for mod_name in registry.MODULES:
        mod = importlib.import_module(f"napari_smlm.core.io.formats.{mod_name}")
        fmts = getattr(mod, "FORMATS", None) or (mod.FORMAT,)
        names += [f.name for f in fmts]
    assert names == list(FORMATS)
    assert {"thunderstorm", "picasso", "smlm2016", "decode_h5", "decode_csv", "nairr", "storm_analysis"} == set(FORMATS)
    assert set(LOCALIZATION_SUFFIXES) == {s for f in FORMATS.values() for s in f.suffixes}
    assert registry.WRITER_SUFFIXES == {".csv": "thunderstorm", ".hdf5": "picasso", ".h5": "picasso"}
    for f in FORMATS.values():
        # a default suffix and a napari writer go together; a format may also be writable by name only (fmt=)
        assert bool(f.write_suffixes) == bool(f.napari_writer) and (bool(f.write) or not f.write_suffixes), f.name
        assert f.reader is f.read and f.writer is f.write  # the former LocFormat attribute names


def _sample_files(tmp_path) -> dict[str, object]:
    locs = Localizations({"frame": [0, 2], "x_nm": [X_C, 900.0], "y_nm": [Y_C, 300.0],
                          "photons": [1000.0, 800.0]}, {"pixel_size_nm": PX})
    decode_csv = tmp_path / "emitters_decode.csv"
    decode_csv.write_text("# DECODE EmitterSet\n# {}\n# {\"xy_unit\": \"px\", \"px_size\": [100.0, 100.0]}\n"
                          "x,y,z,phot,frame_ix\n5.0,12.0,0.0,1000,0\n")
    decode_h5 = tmp_path / "emitters_decode.h5"
    with h5py.File(decode_h5, "w") as f:
        g = f.create_group("data")
        g.create_dataset("xyz", data=np.array([[5.0, 12.0, 0.0]]))
        g.create_dataset("frame_ix", data=np.array([0]))
        f.create_group("meta").attrs.update({"xy_unit": "px", "px_size": np.array([100.0, 100.0])})
    return {
        "thunderstorm": write_thunderstorm_csv(tmp_path / "ts.csv", locs),
        "picasso": write_picasso_hdf5(tmp_path / "p_locs.hdf5", locs),
        "smlm2016": activations_csv(tmp_path / "activations.csv"),
        "nairr": nairr_csv(tmp_path / "movie_xy.csv"),
        "decode_csv": decode_csv,
        "decode_h5": decode_h5,
        "storm_analysis": storm_analysis_h5(tmp_path / "sa.hdf5"),
    }


def test_exactly_one_format_detects_each_sample(tmp_path):
    """Detection functions do not overlap: each sample file is claimed by its own format only."""
    samples = _sample_files(tmp_path)
    assert set(samples) == set(FORMATS)
    for name, path in samples.items():
        probe = registry.Probe.of(path)
        claimed = [f.name for f in FORMATS.values() if probe.suffix in f.suffixes and f.detect(probe)]
        assert claimed == [name], (path, claimed)
        assert detect_format(path) == name


def test_one_pixel_centre_lands_on_its_pixel_in_every_format(tmp_path):
    """A single emitter at the centre of pixel (ROW, COL) reads as that centre, in all formats."""
    frame = rendered_frame()
    assert np.unravel_index(np.argmax(frame), frame.shape) == (ROW, COL)
    for name, path in _sample_files(tmp_path).items():
        locs = read_localizations(path).in_frame(0)
        k = int(np.argmin(np.hypot(locs["x_nm"] - X_C, locs["y_nm"] - Y_C)))
        assert (locs["x_nm"][k], locs["y_nm"][k]) == pytest.approx((X_C, Y_C), abs=1e-3), name
        assert (int(locs["y_nm"][k] // PX), int(locs["x_nm"][k] // PX)) == (ROW, COL), name


def test_thunderstorm_writer_and_reader_share_one_mapping(tmp_path):
    """The header written is the mapping's, and every mapped column survives a round trip."""
    n = 4
    rng = np.random.default_rng(1)
    data = {"frame": np.arange(n), "x_nm": rng.uniform(0, 3000, n), "y_nm": rng.uniform(0, 3000, n)}
    for col in thunderstorm.COLUMNS:
        if col.ours not in ("frame", "sigma_xy_nm"):
            data.setdefault(col.ours, rng.uniform(1, 100, n))
    data["sigma_x_nm"] = data["sigma_y_nm"] = rng.uniform(5, 20, n)
    p = write_thunderstorm_csv(tmp_path / "all.csv", Localizations(data))
    header = p.read_text().splitlines()[0].replace('"', "").split(",")
    assert header == [col.header for col in thunderstorm.COLUMNS]
    back = read_localizations(p)
    for name, v in data.items():
        np.testing.assert_allclose(back[name], v, rtol=1e-12, err_msg=name)


# ============================================================================ NAIRR-SMLM
def test_nairr_2d(tmp_path):
    p = nairr_csv(tmp_path / "2DGauss_LD_Train_xy.csv")
    assert detect_format(p) == "nairr"
    locs = read_localizations(p)
    np.testing.assert_array_equal(locs.frames, [0, 0, 2])  # 1-based in the file
    assert locs["x_nm"][1] == pytest.approx(2607.11579645817) and locs["y_nm"][1] == pytest.approx(312.12929599811)
    np.testing.assert_array_equal(locs["emitter_id"], [7, 9, 7])
    np.testing.assert_array_equal(locs["photons"], [3000, 3000, 3000])
    assert locs["psf_sigma_nm"][0] == pytest.approx(97.98)
    assert {"offset_photons", "bkgsd_photons", "id"} <= set(locs.columns) and "bg" not in locs
    assert "z_nm" not in locs and locs.meta["format"] == "nairr"


def test_nairr_3d_and_id_header(tmp_path):
    locs = read_localizations(nairr_csv(tmp_path / "3DAS_LD_Validate_xyz.csv", NAIRR_3D))
    assert locs["z_nm"][0] == pytest.approx(-193.86) and locs.frames[1] == 1
    assert {"sigmax_z0_nm", "sigmay_z0_nm"} <= set(locs.columns)
    old = tmp_path / "2DAiry_FFL_LD_Validate_xy.csv"
    old.write_text("Id,Frame,x (nm),y (nm),sigma (nm),Intensity (photons),Offset (photons),BkgSD (photons)\n"
                   "1,1,2607.1,312.1,97.97,3000,500,8\n2,2,2898.5,891.2,97.97,3000,500,8\n")
    locs = read_localizations(old)
    np.testing.assert_array_equal(locs.frames, [0, 1])
    np.testing.assert_array_equal(locs["id"], [1, 2])


def test_nairr_missing_y_names_it(tmp_path):
    p = tmp_path / "bad_xy.csv"
    p.write_text("No,Frame,Emitter,x (nm),Intensity (photons)\n1,1,1,50,3000\n")
    with pytest.raises(SMLMFileError) as ei:
        read_localizations(p)
    assert "y (nm)" in ei.value.problem and "x (nm)" in ei.value.problem and ei.value.path == str(p)


# ============================================================================ SMLM-2016 activations
def test_smlm2016_activations_with_and_without_header(tmp_path):
    for header in (True, False):
        p = activations_csv(tmp_path / f"activations_{header}.csv", header=header)
        assert detect_format(p) == "smlm2016"
        locs = read_localizations(p)
        np.testing.assert_array_equal(locs.frames, [0, 3])  # 1-based in the file
        np.testing.assert_allclose(locs["x_nm"], [X_C, 3000.125])
        np.testing.assert_allclose(locs["z_nm"], [-20.5, 300.0])
        np.testing.assert_allclose(locs["photons"], [2811.25, 1500.0])
        np.testing.assert_array_equal(locs["ground_truth"], [1, 2])


# ============================================================================ storm-analysis
def test_storm_analysis_h5(tmp_path):
    p = storm_analysis_h5(tmp_path / "movie_mlist.hdf5")
    assert detect_format(p) == "storm_analysis"
    locs = read_localizations(p)
    np.testing.assert_array_equal(locs.frames, [0, 3])
    # storm-analysis x runs along rows -> our y; pixel centres at integers -> +0.5 px
    np.testing.assert_allclose(locs["x_nm"], [X_C, 800.0])
    np.testing.assert_allclose(locs["y_nm"], [Y_C, 2075.0])
    np.testing.assert_allclose(locs["z_nm"], [100.0, -200.0])  # µm in the file
    np.testing.assert_allclose(locs["psf_sigma_y_nm"], [120.0, 120.0])
    np.testing.assert_allclose(locs["psf_sigma_x_nm"], [150.0, 150.0])
    np.testing.assert_allclose(locs["photons"], [2500.0, 2500.0])
    np.testing.assert_allclose(locs["bg"], [12.0, 12.0])
    assert locs.meta["pixel_size_nm"] == PX and locs.meta["image_shape"] == (32, 40) and locs.meta["n_frames"] == 10
    drift = FORMATS["storm_analysis"].read(p, drift_corrected=True)
    np.testing.assert_allclose(drift["y_nm"], [Y_C + 50.0, 2125.0])  # dx = 0.5 px along rows
    unswapped = FORMATS["storm_analysis"].read(p, swap_xy=False)
    np.testing.assert_allclose(unswapped["x_nm"], [Y_C, 2075.0])


def test_storm_analysis_needs_a_pixel_size(tmp_path):
    p = storm_analysis_h5(tmp_path / "bare.hdf5", with_attrs=False)
    assert detect_format(p) == "storm_analysis"
    with pytest.raises(SMLMFileError, match="pixel_size_nm"):
        read_localizations(p)
    assert read_localizations(p, pixel_size_nm=160.0)["x_nm"][0] == pytest.approx((COL + 0.5) * 160.0)


# ============================================================================ napari reader, evaluate
@pytest.mark.parametrize("kind", ["nairr", "smlm2016", "storm_analysis"])
def test_ground_truth_opens_as_points_on_the_movie_pixel(tmp_path, kind):
    path = {"nairr": lambda: nairr_csv(tmp_path / "m_xy.csv"),
            "smlm2016": lambda: activations_csv(tmp_path / "activations.csv", header=False),
            "storm_analysis": lambda: storm_analysis_h5(tmp_path / "sim.hdf5")}[kind]()
    reader = get_localization_reader(str(path))
    assert callable(reader)
    (data, kw, layer_type), = reader(str(path))
    assert layer_type == "points"
    if kind != "storm_analysis":
        assert kw["metadata"]["smlm_kind"] == "ground_truth"
    scale, translate = movie_scale_translate(PX, 3)
    world_of_pixel = (0.0, translate[1] + ROW * scale[1], translate[2] + COL * scale[2])
    first = data[np.argmin(np.hypot(data[:, 1] - Y_C, data[:, 2] - X_C))]
    np.testing.assert_allclose(first, world_of_pixel)


def test_evaluate_scores_predictions_against_nairr_ground_truth(tmp_path, capsys):
    gt_path = nairr_csv(tmp_path / "movie_xy.csv")
    gt = read_localizations(gt_path)
    pred = gt.copy()
    pred["x_nm"] = gt["x_nm"] + 30.0
    pred_path = write_thunderstorm_csv(tmp_path / "pred.csv", pred)
    out = tmp_path / "m.json"
    assert main(["evaluate", str(gt_path), str(pred_path), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert (m["tp"], m["fp"], m["fn"]) == (3, 0, 0)
    assert m["rmse_lateral_nm"] == pytest.approx(30.0)


# ============================================================================ errors, declining
def test_csv_without_localization_columns_names_them_and_the_reader_explains(tmp_path):
    broken = tmp_path / "table.csv"
    broken.write_text("frame,x [nm],intensity [photon]\n1,100,3000\n")
    with pytest.raises(SMLMFileError) as ei:
        read_localizations(broken)
    assert "y [nm]" in ei.value.problem and "intensity [photon]" in ei.value.problem
    assert claims_file(broken)
    reader = get_localization_reader(str(broken))
    assert callable(reader)  # taken, so that napari shows the error instead of "no reader"
    with pytest.raises(SMLMFileError, match=r"missing columns \['y \[nm\]'\]"):
        reader(str(broken))
    other = tmp_path / "inventory.csv"
    other.write_text("item,count,price\nbolts,3,0.5\n")
    assert not claims_file(other) and get_localization_reader(str(other)) is None
    with pytest.raises(SMLMFileError, match=r"missing columns \['frame', 'x \[nm\]', 'y \[nm\]'\]"):
        read_localizations(other)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\x00\x01garbage")
    assert claims_file(binary)
    other_h5 = tmp_path / "image.h5"
    with h5py.File(other_h5, "w") as f:
        f.create_dataset("image", data=np.zeros((4, 4)))
    assert not claims_file(other_h5)
    with pytest.raises(SMLMFileError, match="storm-analysis"):
        read_localizations(other_h5)


def test_writer_suffix_errors_list_the_registry(tmp_path):
    locs = Localizations({"frame": [0], "x_nm": [1.0], "y_nm": [2.0]}, {"pixel_size_nm": PX})
    with pytest.raises(SMLMFileError, match=r"\.csv \(ThunderSTORM CSV\)"):
        write_localizations(tmp_path / "a.txt", locs)
    with pytest.raises(SMLMFileError, match="cannot be written"):
        write_localizations(tmp_path / "a.csv", locs, fmt="nairr")


def test_picasso_in_memory_locs_use_the_same_convention_as_the_file_reader():
    """picasso.localize's record array -> our table: pixel centre at integer -> +0.5 px; failed fits dropped."""
    import pandas as pd

    from napari_smlm.core.io.formats.picasso import from_picasso_locs

    rec = np.rec.fromarrays(
        [np.array([0, 3, 5], np.uint32), np.array([12.0, np.nan, 0.0], np.float32), np.array([5.0, 1.0, 63.0], np.float32),
         np.array([900.0, 1.0, 50.0], np.float32), np.array([3.0, 1.0, 2.0], np.float32),
         np.array([0.1, 0.1, 0.2], np.float32), np.array([0.2, 0.1, 0.3], np.float32), np.array([5e3, 1.0, 7e3], np.float32)],
        names=["frame", "x", "y", "photons", "bg", "lpx", "lpy", "net_gradient"],
    )
    for locs in (rec, pd.DataFrame(rec), (rec, {"info": 1})):
        out = from_picasso_locs(locs, 100.0, {"source": "picasso mle"})
        assert len(out) == 2 and out.meta["pixel_size_nm"] == 100.0 and out.meta["source"] == "picasso mle"
        np.testing.assert_allclose(out["x_nm"], [1250.0, 50.0])  # centre of pixel 12 -> 1250 nm
        np.testing.assert_allclose(out["y_nm"], [550.0, 6350.0])
        np.testing.assert_allclose(out["sigma_x_nm"], [10.0, 20.0], rtol=1e-6)
        np.testing.assert_array_equal(out["frame"], [0, 5])
        np.testing.assert_allclose(out["net_gradient"], [5e3, 7e3])


def test_picasso_keeps_integer_columns_integer(tmp_path):
    """A merged table's frame counts (last_frame, n_merged) stay integers in the HDF5, as Picasso's len / n."""
    locs = Localizations(dict(frame=np.array([0, 3, 9]), x_nm=np.array([100.0, 250.0, 400.0]),
                              y_nm=np.array([120.0, 300.0, 90.0]), photons=np.array([900.0, 1500.0, 700.0]),
                              last_frame=np.array([2, 3, 12]), n_merged=np.array([3, 1, 4])),
                         meta={"pixel_size_nm": 100.0})
    p = write_picasso_hdf5(tmp_path / "m_locs.hdf5", locs)
    with h5py.File(p, "r") as f:
        rec = f["locs"][...]
    assert rec.dtype["last_frame"].kind == "i" and rec.dtype["n_merged"].kind == "i"
    np.testing.assert_array_equal(rec["last_frame"], [2, 3, 12])
    assert rec.dtype["photons"] == np.dtype("<f4")
