"""What a TIFF becomes (session-12 review of the walk-through): short movies, no pixel size, float images.

* A ``(3|4, H, W)`` integer stack is 3 or 4 frames, in the core (``open_movie``, the CLI) and in
  napari's reader, however tifffile stored it (planar "RGB", ImageJ grayscale "channels", OME channels that nothing
  describes); an OME-TIFF along T (or Z) is frames;
  interleaved RGB stays colour, an ImageJ colour composite or any C-stack Fiji saved stays multi-channel (an error).
* A movie without a pixel size is shown at the default 100 nm, says so, and every layer is in nm.
* A float 2-D TIFF is a super-resolved image only when napari-smlm wrote it; any other is an image.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import tifffile

from napari_smlm.core.io import SMLMFileError, open_movie
from napari_smlm.core.io.tiff import DEFAULT_PIXEL_SIZE_NM, tiff_kind, write_image, write_movie


def _frames(n, dtype=np.uint16, shape=(24, 20), seed=0):
    hi = 250 if np.dtype(dtype).itemsize == 1 else 4000
    return np.random.default_rng(seed).integers(1, hi, (n, *shape)).astype(dtype)


def _imwrite(path, data, **kw):
    with warnings.catch_warnings():  # tifffile's DeprecationWarning on its planar-RGB default
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(path, data, **kw)
    return path


# ============================================================================ core: short movies
@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tifffile_default_3_or_4_frame_stack_is_frames(tmp_path, n, dtype, compression):
    frames = _frames(n, dtype)
    p = _imwrite(tmp_path / "short.tif", frames, compression=compression)
    with tifffile.TiffFile(p) as tif:  # the layout tifffile chose: one page of n planar "RGB" samples
        assert tif.series[0].axes == "SYX" and tif.pages[0].samplesperpixel == n
    assert tiff_kind(p) == "movie"
    m = open_movie(p)
    assert m.shape == (n, 24, 20) and m.dtype == np.dtype(dtype)
    assert m.metadata["storage"] == ("memmap" if compression is None else "pages")
    np.testing.assert_array_equal(np.asarray(m), frames)
    np.testing.assert_array_equal(m[n - 1], frames[n - 1])
    np.testing.assert_array_equal(m[[2, 0], 3:7, 5], frames[[2, 0], 3:7, 5])
    np.testing.assert_array_equal(np.asarray(m.to_dask(chunk_frames=2)), frames)


@pytest.mark.parametrize("n", [3, 4])
def test_imagej_grayscale_channels_of_a_short_stack_are_frames(tmp_path, n):
    frames = _frames(n)
    p = _imwrite(tmp_path / "ij.tif", frames, imagej=True)  # tifffile labels it channels=n, mode=grayscale
    m = open_movie(p)
    assert m.shape == (n, 24, 20)
    np.testing.assert_array_equal(np.asarray(m), frames)


@pytest.mark.parametrize("mode", ["grayscale", None])
def test_channels_that_fiji_saved_stay_channels(tmp_path, mode):
    """Fiji (ImageJ 1.4x/1.5x) saves a C-stack only when the user made one: real channels, whatever the display
    mode. Only tifffile's own ImageJ labelling of a plain 3-D stack (``ImageJ=1.11a``, tifffile's version
    string) is frames."""
    md = {"axes": "CYX", "ImageJ": "1.54f", **({"mode": mode} if mode else {})}
    p = _imwrite(tmp_path / "fiji_channels.tif", _frames(3), imagej=True, metadata=md)
    with tifffile.TiffFile(p) as tif:
        assert tif.imagej_metadata["ImageJ"] == "1.54f" and tif.imagej_metadata["channels"] == 3
    with pytest.raises(SMLMFileError, match="multi-channel"):
        open_movie(p)


def test_real_colour_stays_colour(tmp_path):
    rgb = _imwrite(tmp_path / "photo.tif", np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    assert tiff_kind(rgb) == "colour"
    with pytest.raises(SMLMFileError, match="RGB"):
        open_movie(rgb)
    comp = _imwrite(tmp_path / "composite.tif", _frames(3), imagej=True, metadata={"axes": "CYX", "mode": "composite"})
    with pytest.raises(SMLMFileError, match=r"multi-channel.*mode=composite") as ei:
        open_movie(comp)
    assert ei.value.path == str(comp)


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize(
    "metadata",
    [None, {"axes": "TYX"}, {"axes": "ZYX"}, {"PhysicalSizeX": 0.16, "PhysicalSizeY": 0.16},
     {"axes": "TYX", "PhysicalSizeX": 0.16, "PhysicalSizeY": 0.16}],
    ids=["unlabelled", "T", "Z", "unlabelled-px", "T-px"],
)
def test_short_ome_tiff_is_frames(tmp_path, n, metadata):
    """tifffile labels an OME stack without axes as ``SizeC=n`` channels that nothing describes: frames
    (was "multi-channel image"); T, and Z used as time, stay frames."""
    frames = _frames(n)
    p = _imwrite(tmp_path / "short.ome.tif", frames, ome=True, **({"metadata": metadata} if metadata else {}))
    with tifffile.TiffFile(p) as tif:
        assert tif.is_ome and tif.series[0].shape == (n, 24, 20)
        assert tif.series[0].axes == ("CYX" if not metadata or "axes" not in metadata else metadata["axes"])
    assert tiff_kind(p) == "movie"
    m = open_movie(p)
    assert m.shape == (n, 24, 20)
    np.testing.assert_array_equal(np.asarray(m), frames)
    if metadata and "PhysicalSizeX" in metadata:
        assert m.pixel_size_nm == pytest.approx(160.0) and m.pixel_size_source == "ome"
    else:
        assert m.pixel_size_nm is None


def test_ome_tiff_with_real_channels_stays_channels(tmp_path):
    import re

    frames = _frames(3)
    # channels that say what they are (a name): real channels
    named = _imwrite(tmp_path / "named.ome.tif", frames, ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP", "RFP"]}})
    with pytest.raises(SMLMFileError, match=r"multi-channel image \(axes CYX") as ei:
        open_movie(named)
    assert ei.value.path == str(named)
    # the same unnamed channels written by another program (Bio-Formats): real channels
    with tifffile.TiffFile(_imwrite(tmp_path / "t.ome.tif", frames, ome=True)) as tif:
        xml = re.sub(r'Creator="[^"]*"', 'Creator="OME Bio-Formats 6.11.1"', tif.ome_metadata)
    bf = _imwrite(tmp_path / "bioformats.ome.tif", frames, photometric="minisblack", description=xml, metadata=None)
    with tifffile.TiffFile(bf) as tif:
        assert tif.is_ome and tif.series[0].axes == "CYX"
    with pytest.raises(SMLMFileError, match="multi-channel"):
        open_movie(bf)
    # interleaved RGB in an OME-TIFF: colour
    rgb = _imwrite(tmp_path / "rgb.ome.tif", np.zeros((16, 16, 3), np.uint8), ome=True, photometric="rgb")
    assert tiff_kind(rgb) == "colour"
    with pytest.raises(SMLMFileError, match="RGB"):
        open_movie(rgb)


def test_cli_localize_reads_a_3_frame_movie(tmp_path):
    from napari_smlm.cli import main
    from napari_smlm.core.checkpoint import shipped_models
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.io.locs import read_localizations
    from napari_smlm.core.simulate import simulate

    if "decode" not in shipped_models():
        pytest.skip("no shipped decode weights")
    frames, _ = simulate(SimulationConfig(n_frames=3, height=32, width=32, density=1.0, seed=11))
    p = _imwrite(tmp_path / "three.tif", np.asarray(frames, np.uint16))
    out = tmp_path / "locs.csv"
    rc = main(["localize", str(p), "--model", "decode", "-o", str(out), "--device", "cpu", "--pixel-size", "100"])
    assert rc == 0
    locs = read_localizations(out)
    assert len(locs) > 0 and set(np.unique(locs["frame"])) <= {0, 1, 2}


# ============================================================================ core: float kinds
def test_tiff_kind_of_float_files(tmp_path):
    assert tiff_kind(write_image(tmp_path / "sr.tif", np.ones((8, 8)), 10.0)) == "super_resolved"
    assert tiff_kind(_imwrite(tmp_path / "f.tif", np.ones((8, 8), np.float32))) == "float_image"
    # a Fiji 32-bit image with a calibration: still not marked as a render
    fiji = _imwrite(tmp_path / "fiji.tif", np.ones((8, 8), np.float32), imagej=True, resolution=(10.0, 10.0),
                    metadata={"unit": "um"})
    assert tiff_kind(fiji) == "float_image"
    assert tiff_kind(write_movie(tmp_path / "m.tif", _frames(2))) == "movie"
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + bytes(16))
    assert tiff_kind(bad) == "movie"  # open_movie explains what is wrong


# ============================================================================ napari reader
napari = pytest.importorskip("napari")

# the plugin-IO tests' fixtures and helper: plugins discovered once per module, a headless viewer, open with ours
from test_plugin_io import _open, _plugins, viewer  # noqa: E402,F401


@pytest.mark.parametrize("n", [3, 4])
def test_napari_reader_opens_a_short_stack_as_frames(viewer, tmp_path, n):
    from napari_smlm._reader import get_movie_reader

    frames = _frames(n)
    p = _imwrite(tmp_path / "short.tif", frames)
    assert callable(get_movie_reader(str(p)))  # was None: declined as a colour image
    (layer,) = _open(viewer, p)
    assert not layer.rgb and layer.data.shape == (n, 24, 20)
    assert layer.metadata["smlm_kind"] == "movie" and layer.metadata["n_frames"] == n
    np.testing.assert_array_equal(np.asarray(layer.data), frames)


def test_napari_reader_opens_a_short_ome_tiff_as_frames(viewer, tmp_path):
    from napari_smlm._reader import get_movie_reader

    frames = _frames(3)
    p = _imwrite(tmp_path / "short.ome.tif", frames, ome=True, metadata={"PhysicalSizeX": 0.16, "PhysicalSizeY": 0.16})
    assert callable(get_movie_reader(str(p)))
    (layer,) = _open(viewer, p)  # was "multi-channel image"
    assert not layer.rgb and layer.data.shape == (3, 24, 20) and layer.metadata["n_frames"] == 3
    np.testing.assert_allclose(layer.scale, (1, 160, 160))
    np.testing.assert_array_equal(np.asarray(layer.data), frames)


def test_movie_without_pixel_size_is_in_nm_at_the_default_and_says_so(viewer, tmp_path, caplog):
    from napari_smlm import _layers
    from napari_smlm.core.localizations import Localizations

    p = write_movie(tmp_path / "nopx.tif", _frames(5))
    with caplog.at_level(logging.WARNING, logger="napari_smlm._reader"):
        (movie,) = _open(viewer, p)
    px = DEFAULT_PIXEL_SIZE_NM
    np.testing.assert_allclose(movie.scale, (1, px, px))
    np.testing.assert_allclose(movie.translate, (0, px / 2, px / 2))  # pixel centres at (i + 0.5) px
    assert [str(u) for u in movie.units[-2:]] == ["nanometer", "nanometer"]
    assert movie.metadata["pixel_size_nm"] == px and movie.metadata["pixel_size_source"] == "default"
    said = [r.getMessage() for r in caplog.records if "nopx.tif" in r.getMessage()]
    assert said and "no pixel size" in said[0] and f"{px:g} nm" in said[0]
    # a table in nm on top: one set of units for the whole viewer (napari's scale bar needs it)
    locs = Localizations({"frame": [0, 1], "x_nm": [150.0, 950.0], "y_nm": [250.0, 50.0]}, {})
    viewer.add_layer(napari.layers.Layer.create(*_layers.localizations_layer_data(locs, "locs")))
    assert viewer.layers.units is not None and str(viewer.layers.units[-1]) == "nanometer"
    # camera pixel (2, 9) of the movie and a localization at its centre share world coordinates
    np.testing.assert_allclose(movie.data_to_world((0, 2, 9))[1:], (2.5 * px, 9.5 * px))


def test_movie_with_pixel_size_keeps_it_and_says_nothing(viewer, tmp_path, caplog):
    p = write_movie(tmp_path / "px.tif", _frames(5), pixel_size_nm=160.0)
    with caplog.at_level(logging.WARNING, logger="napari_smlm._reader"):
        (movie,) = _open(viewer, p)
    np.testing.assert_allclose(movie.scale, (1, 160, 160))
    assert movie.metadata["pixel_size_source"] == "description"
    assert not [r for r in caplog.records if "no pixel size" in r.getMessage()]


def test_assumed_pixel_size_is_not_saved_as_measured(viewer, tmp_path):
    from napari.plugins.io import save_layers

    frames = _frames(4)
    (movie,) = _open(viewer, write_movie(tmp_path / "nopx.tif", frames))
    (out,) = save_layers(str(tmp_path / "saved.tif"), [movie], plugin="napari-smlm")
    assert open_movie(out).pixel_size_nm is None
    (back,) = _open(viewer, out)
    assert back.metadata["pixel_size_source"] == "default"
    np.testing.assert_array_equal(np.asarray(back.data), frames)


def test_float_2d_tiff_is_an_image_not_a_render(viewer, tmp_path):
    img = np.random.default_rng(3).normal(100, 5, (20, 30)).astype(np.float32)
    (layer,) = _open(viewer, _imwrite(tmp_path / "processed.tif", img))
    assert layer.metadata["smlm_kind"] == "image"  # was "super_resolved", with pixel units
    assert layer.colormap.name == "gray"
    np.testing.assert_allclose(layer.scale, (DEFAULT_PIXEL_SIZE_NM,) * 2)
    assert layer.metadata["pixel_size_source"] == "default"
    np.testing.assert_allclose(layer.data, img)
    # with a calibration (Fiji 32-bit, 0.16 µm pixels): that pixel size
    cal = _imwrite(tmp_path / "cal.tif", img, imagej=True, resolution=(1 / 0.16, 1 / 0.16), metadata={"unit": "um"})
    (layer,) = _open(viewer, cal)
    np.testing.assert_allclose(layer.scale, (160.0, 160.0))
    assert layer.metadata["smlm_kind"] == "image" and layer.metadata["pixel_size_source"] == "file"
    # a float stack is no movie (raw frames are integer ADU): a clear error naming the file
    stack = _imwrite(tmp_path / "stack32.tif", np.zeros((3, 8, 8), np.float32), photometric="minisblack")
    with pytest.raises(SMLMFileError, match=r"stack32\.tif.*16-bit"):
        _open(viewer, stack)


def test_render_written_by_napari_smlm_is_still_super_resolved(viewer, tmp_path):
    (layer,) = _open(viewer, write_image(tmp_path / "sr.tif", np.ones((10, 12)), 12.5, origin_nm=(50.0, 25.0)))
    assert layer.metadata["smlm_kind"] == "super_resolved"
    np.testing.assert_allclose(layer.scale, (12.5, 12.5))


def test_an_image_layer_saved_and_reopened_stays_an_image(viewer, tmp_path):
    from napari.plugins.io import save_layers

    img = np.arange(64, dtype=np.float32).reshape(8, 8)
    (layer,) = _open(viewer, _imwrite(tmp_path / "frame.tif", img))
    (out,) = save_layers(str(tmp_path / "frame_saved.tif"), [layer], plugin="napari-smlm")
    (back,) = _open(viewer, out)
    assert back.metadata["smlm_kind"] == "image" and back.metadata["pixel_size_source"] == "default"
