"""npe2 reader / writer / sample data through napari's own open and save paths (no Qt needed)."""

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.components import ViewerModel  # noqa: E402

from napari_smlm import _layers  # noqa: E402
from napari_smlm._reader import get_localization_reader, get_movie_reader  # noqa: E402
from napari_smlm.core.io.errors import SMLMFileError  # noqa: E402
from napari_smlm.core.io.locs import read_localizations, write_thunderstorm_csv  # noqa: E402
from napari_smlm.core.io.tiff import write_image, write_movie  # noqa: E402
from napari_smlm.core.localizations import Localizations  # noqa: E402

PLUGIN = "napari-smlm"


@pytest.fixture(scope="module", autouse=True)
def _plugins():
    import npe2

    npe2.PluginManager.instance().discover()


@pytest.fixture
def viewer():
    return ViewerModel()


def _open(viewer, path):
    return viewer.open(str(path), plugin=PLUGIN)


def _locs(n=50, seed=0, px=100.0):
    rng = np.random.default_rng(seed)
    return Localizations(
        {
            "frame": rng.integers(0, 10, n),
            "x_nm": rng.uniform(0, 3200, n),
            "y_nm": rng.uniform(0, 3200, n),
            "photons": rng.uniform(500, 3000, n),
            "bg": rng.uniform(10, 50, n),
            "sigma_x_nm": rng.uniform(5, 20, n),
            "sigma_y_nm": rng.uniform(5, 20, n),
            "prob": rng.uniform(0.5, 1, n),
        },
        {"pixel_size_nm": px, "image_shape": (32, 32), "n_frames": 10},
    )


# ----------------------------------------------------------------------------- movies
def test_tiff_movie_opens_lazily_with_nm_scale(viewer, tmp_path):
    frames = np.random.default_rng(0).integers(90, 400, (130, 24, 20)).astype(np.uint16)
    path = write_movie(tmp_path / "movie.tif", frames, pixel_size_nm=107.0)
    (layer,) = _open(viewer, path)
    import dask.array as da

    assert isinstance(layer.data, da.Array) and layer.data.shape == (130, 24, 20)
    assert layer.data.chunks[0][0] < 130  # chunked along time: frames are read on demand
    np.testing.assert_allclose(layer.scale, (1, 107, 107))
    np.testing.assert_allclose(layer.translate, (0, 53.5, 53.5))  # pixel centre at (i + 0.5) px
    assert layer.metadata["pixel_size_nm"] == pytest.approx(107.0)
    np.testing.assert_array_equal(np.asarray(layer.data[77]), frames[77])
    # camera pixel (row 3, col 5) centre is at (3.5 px, 5.5 px) in nm world coordinates
    np.testing.assert_allclose(layer.data_to_world((0, 3, 5)), (0, 3.5 * 107, 5.5 * 107))
    # the time slider is named "frame" (napari's default label would read "-3")
    assert tuple(layer.axis_labels) == ("frame", "y", "x") and viewer.dims.axis_labels[0] == "frame"


def test_folder_of_tiffs_is_one_movie(viewer, tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    for k in (2, 10, 1):  # natural order: 1, 2, 10
        write_movie(d / f"img_{k}.tif", np.full((3, 16, 16), k, np.uint16), pixel_size_nm=65.0)
    (layer,) = _open(viewer, d)
    assert layer.data.shape == (9, 16, 16)
    np.testing.assert_array_equal(np.asarray(layer.data[:, 0, 0]), [1, 1, 1, 2, 2, 2, 10, 10, 10])
    np.testing.assert_allclose(layer.scale, (1, 65, 65))


def test_real_tiff_movie(viewer, external_data):
    (layer,) = _open(viewer, external_data / "EliasNehme_Deep-STORM" / "testStack_SimulatedMicrotubules.tif")
    assert layer.data.shape == (361, 64, 64)
    assert layer.metadata["pixel_size_nm"] is None or layer.metadata["pixel_size_nm"] > 0


def test_corrupt_tiff_raises_clear_error(viewer, tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x07" * 200)
    with pytest.raises(SMLMFileError, match="broken.tif"):
        _open(viewer, bad)
    assert len(viewer.layers) == 0
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(SMLMFileError, match="empty"):
        _open(viewer, empty)


def test_reader_declines_files_it_does_not_own(tmp_path):
    import tifffile

    rgb = tmp_path / "photo.tif"
    tifffile.imwrite(rgb, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    assert get_movie_reader(str(rgb)) is None
    other = tmp_path / "table.csv"
    other.write_text("a,b,c\n1,2,3\n")
    assert get_localization_reader(str(other)) is None
    assert get_localization_reader(str(tmp_path / "missing.csv")) is None
    assert get_movie_reader(str(tmp_path / "notes.txt")) is None
    movie = write_movie(tmp_path / "m.tif", np.zeros((2, 8, 8), np.uint16))
    assert callable(get_movie_reader(str(movie)))


# ----------------------------------------------------------------------------- localizations
def test_thunderstorm_csv_becomes_3d_points_with_features(viewer, external_data):
    path = external_data / "EliasNehme_Deep-STORM" / "positions_demo1.csv"
    (layer,) = _open(viewer, path)
    ref = read_localizations(path)
    from napari.layers import Points

    assert isinstance(layer, Points) and layer.ndim == 3 and len(layer.data) == len(ref) == 4956
    np.testing.assert_allclose(layer.data[:, 0], ref.frames)  # 0-based frames, first axis
    np.testing.assert_allclose(layer.data[:, 1], ref["y_nm"])
    np.testing.assert_allclose(layer.data[:, 2], ref["x_nm"])
    for col in ("frame", "photons", "bg", "psf_sigma_nm"):
        assert col in layer.features
    assert layer.metadata["smlm_kind"] == "ground_truth"  # named "positions": drawn as ground truth
    # Locan's ThunderSTORM export with the older "uncertainty [nm]" column
    (loc2,) = _open(viewer, external_data / "super-resolution_Locan" / "Thunderstorm_dstorm_data.csv")
    assert len(loc2.data) == 19 and "uncertainty_nm" in loc2.features


def test_benchmark_ground_truth_opens_in_the_viewer_on_its_pixel(viewer, tmp_path):
    """NAIRR-SMLM *_xy.csv and a headerless SMLM-2016 activations.csv open as ground-truth points;
    an emitter at the centre of pixel (row 5, column 12) sits on that pixel of a 100 nm movie."""
    nairr = tmp_path / "2DGauss_LD_Validate_xy.csv"
    nairr.write_text(
        "No,Frame,Emitter,x (nm),y (nm),sigma (nm),Intensity (photons),Offset (photons),BkgSD (photons)\n"
        "1,1,4,1250,550,97.98,3000,500,8\n2,2,9,2607.1,312.1,97.98,3000,500,8\n"
    )
    act = tmp_path / "activations.csv"
    act.write_text("    1,     1, 1250.000, 550.000, -20.000, 2811.250 \n    2,     3, 10.5, 20.5, 0.0, 900.0 \n")
    movie = write_movie(tmp_path / "m.tif", np.zeros((3, 32, 32), np.uint16), pixel_size_nm=100.0)
    (mov,) = _open(viewer, movie)
    for path in (nairr, act):
        (layer,) = _open(viewer, path)
        assert layer.metadata["smlm_kind"] == "ground_truth" and len(layer.data) == 2
        np.testing.assert_allclose(layer.data[0], [0.0, 550.0, 1250.0])
        np.testing.assert_allclose(mov.data_to_world((0, 5, 12)), layer.data[0])


def test_csv_missing_localization_columns_is_an_error_not_a_silent_decline(viewer, tmp_path):
    p = tmp_path / "half.csv"
    p.write_text("frame,x [nm],intensity [photon]\n1,100,3000\n")
    with pytest.raises(Exception, match=r"missing columns \['y \[nm\]'\]"):
        _open(viewer, p)


def test_picasso_hdf5(viewer, external_data):
    path = external_data / "jungmannlab_picasso" / "testdata_locs.hdf5"
    (layer,) = _open(viewer, path)
    import h5py

    with h5py.File(path) as f:
        raw = f["locs"][()]
    assert len(layer.data) == len(raw) == 564
    assert layer.metadata["pixel_size_nm"] == 130
    np.testing.assert_allclose(layer.data[:, 2], (raw["x"] + 0.5) * 130, rtol=1e-6)  # Picasso centres at integers
    np.testing.assert_allclose(layer.data[:, 0], raw["frame"])
    assert "sigma_x_nm" in layer.features and "uncertainty_nm" in layer.features


def test_decode_h5(viewer, external_data):
    (layer,) = _open(viewer, external_data / "super-resolution_Locan" / "decode_dstorm_data.h5")
    assert len(layer.data) == 96 and "prob" in layer.features and "photons" in layer.features


def test_picasso_without_yaml_is_a_clear_error(viewer, tmp_path, external_data):
    import shutil

    lone = tmp_path / "lone_locs.hdf5"
    shutil.copy(external_data / "jungmannlab_picasso" / "testdata_locs.hdf5", lone)
    with pytest.raises(SMLMFileError, match="YAML"):
        _open(viewer, lone)


# ----------------------------------------------------------------------------- writers
def test_points_round_trip_thunderstorm_and_picasso(viewer, tmp_path):
    from napari.plugins.io import save_layers

    locs = _locs()
    layer = viewer.add_layer(__import__("napari").layers.Layer.create(*_tuple(locs)))
    csv = save_layers(str(tmp_path / "out.csv"), [layer], plugin=PLUGIN)
    h5 = save_layers(str(tmp_path / "out_locs.hdf5"), [layer], plugin=PLUGIN)
    assert (tmp_path / "out_locs.yaml").exists()
    for path in (csv[0], h5[0]):
        (back,) = _open(viewer, path)
        order = np.lexsort((back.data[:, 2], back.data[:, 0]))
        ref = np.lexsort((layer.data[:, 2], layer.data[:, 0]))
        np.testing.assert_allclose(back.data[order], layer.data[ref], atol=1e-3)  # float32 in Picasso
        np.testing.assert_allclose(back.features["photons"].to_numpy()[order], locs["photons"][ref], rtol=1e-5)


def test_moved_points_are_written_where_they_are_shown(tmp_path):
    from napari_smlm._writer import write_thunderstorm_csv as write

    locs = _locs(5)
    data, kw, _ = _tuple(locs)
    moved = data.copy()
    moved[0, 1:] += (10.0, -20.0)
    write(str(tmp_path / "m.csv"), moved, {**kw, "scale": (1, 1, 1), "translate": (0, 0, 0)})
    back = read_localizations(tmp_path / "m.csv")
    assert back["y_nm"][0] == pytest.approx(locs["y_nm"][0] + 10.0)
    assert back["x_nm"][0] == pytest.approx(locs["x_nm"][0] - 20.0)
    assert back.frames[0] == locs.frames[0]


def test_picasso_writer_needs_pixel_size(tmp_path):
    from napari_smlm._writer import write_picasso_hdf5 as write

    data, kw, _ = _tuple(_locs(5))
    kw["metadata"] = {**kw["metadata"], "pixel_size_nm": None, "localizations_meta": {}}
    with pytest.raises(SMLMFileError, match="pixel size"):
        write(str(tmp_path / "x.hdf5"), data, kw)


def test_super_resolved_image_round_trip(viewer, tmp_path):
    from napari.plugins.io import save_layers

    img = np.zeros((80, 64), np.float32)
    img[30, 20] = 5.0
    ldt = _layers.super_resolved_layer_data(img, 12.5, "sr", origin_nm=(100.0, 50.0))
    layer = viewer.add_layer(__import__("napari").layers.Layer.create(*ldt))
    (path,) = save_layers(str(tmp_path / "sr.tif"), [layer], plugin=PLUGIN)
    (back,) = _open(viewer, path)
    np.testing.assert_allclose(back.data, img)
    np.testing.assert_allclose(back.scale, layer.scale)
    np.testing.assert_allclose(back.translate, layer.translate)
    # pixel (30, 20) centre: x = 100 + 20.5 * 12.5, y = 50 + 30.5 * 12.5
    np.testing.assert_allclose(back.data_to_world((30, 20)), (50 + 30.5 * 12.5, 100 + 20.5 * 12.5))


def test_movie_layer_written_with_pixel_size(viewer, tmp_path):
    from napari.plugins.io import save_layers

    frames = np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16)
    layer = viewer.add_layer(__import__("napari").layers.Layer.create(*_layers.movie_layer_data(frames, 160.0, "mv")))
    (path,) = save_layers(str(tmp_path / "mv.tif"), [layer], plugin=PLUGIN)
    (back,) = _open(viewer, path)
    np.testing.assert_array_equal(np.asarray(back.data), frames)
    np.testing.assert_allclose(back.scale, (1, 160, 160))


def test_float_image_written_by_core_opens_on_its_grid(viewer, tmp_path):
    path = write_image(tmp_path / "core.tif", np.ones((10, 10)), 20.0)
    (layer,) = _open(viewer, path)
    np.testing.assert_allclose(layer.scale, (20, 20))
    np.testing.assert_allclose(layer.translate, (10, 10))


def test_csv_written_by_core_is_claimed(tmp_path):
    p = write_thunderstorm_csv(tmp_path / "t.csv", _locs(3))
    assert callable(get_localization_reader(str(p)))


# ----------------------------------------------------------------------------- sample data
def test_sample_data():
    from napari_smlm._sample_data import make_simulated_sample, make_thunderstorm_demo_sample

    movie, gt = make_thunderstorm_demo_sample()
    assert movie[2] == "image" and movie[0].shape == (20, 64, 64) and movie[1]["scale"] == (1.0, 100.0, 100.0)
    assert gt[2] == "points" and len(gt[0]) == 4956 and gt[1]["metadata"]["smlm_kind"] == "ground_truth"
    movie, gt = make_simulated_sample()
    assert movie[0].shape == (100, 64, 64) and movie[0].dtype == np.uint16
    assert len(gt[0]) > 100 and gt[0][:, 0].max() < 100
    assert ((gt[0][:, 1:] >= 0) & (gt[0][:, 1:] < 6400)).all()


def _tuple(locs):
    return _layers.localizations_layer_data(locs, "locs")
