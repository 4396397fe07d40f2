"""npe2 readers: raw SMLM movies (lazy TIFF) and localization tables.

Both ``get_reader`` functions only sniff (suffix, magic bytes, a CSV header line or HDF5 keys)
and return ``None`` for files they do not own, so napari can offer other readers. Once a file
is ours, problems are raised as :class:`~napari_smlm.core.io.errors.SMLMFileError` with the
path and what is wrong; napari 0.9 wraps it in a ``ReaderPluginError`` whose message ends with
``Original error from plugin "napari-smlm": SMLMFileError: <path>: <problem>`` (raised by
``viewer.open``, shown in the reader dialog / as a notification in the GUI).

Nothing here imports torch or Qt; the core io modules are imported on first use.

Layers
------
* A camera movie (integer TIFF / OME-TIFF, a folder of TIFFs, or several files opened as a
  stack) becomes an image layer over a **dask array** (``Movie.to_dask()``): nothing is read
  at open time but the first frame (for contrast limits), so a 50 GB movie opens at once and
  scrolls frame by frame. The pixel size from the file's metadata sets ``scale`` (nm); a file
  without one is shown at the default 100 nm, with a warning that says so. A ``(3|4, H, W)``
  stack is 3 or 4 frames, not an RGB(A) image (:func:`~napari_smlm.core.io.tiff.tiff_kind`).
* A float TIFF written by our writer or the CLI (a super-resolved image) becomes a 2-D image
  on its nm grid (pixel size and origin from its metadata). Any other float 2-D TIFF is a grey
  image (``smlm_kind`` ``"image"``), not tagged super-resolved.
* A localization table becomes a 3-D points layer ``(frame, y_nm, x_nm)`` with features; see
  :mod:`napari_smlm._layers` for the coordinate conventions.
* A Picasso HDF5 of more than :data:`LAZY_ROWS` localizations (a long streamed run: 10 M rows)
  is opened lazily (:class:`~napari_smlm.core.io.lazy_table.LazyPicassoTable`, never all columns
  in pandas at once): a points layer that shows the localizations of the current frame (read
  from the file at each step of the time slider; its name says "current frame of N") or, with
  :data:`BIG_POINTS_MODE` / ``NAPARI_SMLM_BIG_POINTS=decimated``, every k-th row, at most
  :data:`DISPLAY_POINTS` ("1 in k of N"); and a super-resolved image rendered from **all** rows in
  chunks of a million (:func:`~napari_smlm.core.render.render_chunked`), so memory stays bounded.
  Tables read back from that points layer (Render, Evaluation, export) hold all N rows
  (:func:`napari_smlm._layers.frame_view_points`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

from . import _layers

__all__ = ["get_movie_reader", "get_localization_reader", "read_movie", "read_localization_file"]

log = logging.getLogger(__name__)

#: A Picasso table with more rows than this opens lazily (decimated points + chunked render).
LAZY_ROWS = 1_000_000
#: Most points the layer of a lazily opened table holds (napari stays responsive up to ~10^5).
DISPLAY_POINTS = 100_000
#: Points of a lazily opened table: "frame" (the slider's frame) or "decimated" (every k-th row);
#: None = the environment variable NAPARI_SMLM_BIG_POINTS, else "frame" (see :func:`big_points_mode`).
BIG_POINTS_MODE: str | None = None
#: Frame mode: also show this many frames either side of the current one.
FRAME_WINDOW = 0
#: Render of a lazily opened table: pixel size (nm), Gaussian blur (nm), most pixels per side.
BIG_RENDER_PIXEL_NM, BIG_RENDER_SIGMA_NM, BIG_RENDER_MAX_SIDE = 10.0, 15.0, 4096

_TIFF_SUFFIXES = (".tif", ".tiff")


def _loc_suffixes() -> tuple[str, ...]:
    """Localization suffixes, from the format registry (imported on first use: it pulls in pandas/h5py)."""
    from .core.io.formats import LOCALIZATION_SUFFIXES

    return LOCALIZATION_SUFFIXES


# ============================================================================ sniffing
def _paths(path: str | list[str]) -> list[str]:
    return [os.fspath(p) for p in path] if isinstance(path, (list, tuple)) else [os.fspath(path)]


def _looks_like_tiff(p: str) -> bool:
    """Suffix check plus magic bytes; directories qualify when they hold TIFF files."""
    if os.path.isdir(p):
        try:
            return any(f.lower().endswith(_TIFF_SUFFIXES) for f in os.listdir(p))
        except OSError:
            return False
    if not p.lower().endswith(_TIFF_SUFFIXES):
        return False
    if not os.path.isfile(p):
        return False
    # A file with a TIFF suffix is ours even when its bytes are not TIFF (the reader then says
    # what is wrong instead of napari answering "no reader"), except colour images: RGB(A)
    # pixels are never raw camera frames, so napari's own reader should have them.
    return _tiff_kind(p) != "colour"


def _tiff_kind(p: str) -> str:
    """:func:`napari_smlm.core.io.tiff.tiff_kind`: the one rule for what a TIFF holds (header only)."""
    from .core.io.tiff import tiff_kind

    return tiff_kind(p)


def get_movie_reader(path: str | list[str]) -> Callable | None:
    """npe2 ``get_reader`` for TIFF movies: the reader, or None when ``path`` is not ours."""
    paths = _paths(path)
    if not paths or not all(_looks_like_tiff(p) for p in paths):
        return None
    return read_movie


def get_localization_reader(path: str | list[str]) -> Callable | None:
    """npe2 ``get_reader`` for localization tables (every format in
    :mod:`napari_smlm.core.io.formats`: ThunderSTORM / SMLM-2016 / NAIRR-SMLM / DECODE CSV,
    Picasso / DECODE / storm-analysis HDF5): the reader, or None when ``path`` is not ours.

    A file that is clearly meant as a localization table but is broken (a CSV naming frame
    or x/y columns but missing some) is taken, so that reading it raises an error naming
    the missing columns instead of napari's silent "no reader"; a CSV with none of those
    column names is declined.
    """
    paths = _paths(path)
    if not paths or not all(p.lower().endswith(_loc_suffixes()) and os.path.isfile(p) for p in paths):
        return None
    from .core.io.formats import claims_file

    # claims_file reads a header line / the HDF5 keys only, never the whole file.
    if not all(claims_file(p) for p in paths):
        return None
    return read_localization_file


# ============================================================================ reading
def _assumed_pixel_size(path: str, what: str) -> float:
    """The pixel size to show a file without one at (:data:`~napari_smlm.core.io.tiff.DEFAULT_PIXEL_SIZE_NM`),
    said to the user: every layer of the plugin is in nm, so the movie must be too (one scale bar,
    results that overlay it)."""
    from .core.io.tiff import DEFAULT_PIXEL_SIZE_NM

    _tell_user(
        f"{Path(path).name}: the file gives no pixel size; showing the {what} with {DEFAULT_PIXEL_SIZE_NM:g} nm "
        "pixels (napari-smlm's default). Set the camera's real pixel size in the Reconstruction widget "
        "(Pixel size): the movie follows it when a run starts."
    )
    return DEFAULT_PIXEL_SIZE_NM


def _tell_user(message: str) -> None:
    """A warning in the log and, inside napari, a notification (no napari import otherwise)."""
    log.warning("%s", message)
    if "napari" in sys.modules:
        try:
            from napari.utils.notifications import show_warning

            show_warning(message)
        except Exception:  # noqa: BLE001 - the log line is the record; a notification is a courtesy
            log.debug("no napari notification", exc_info=True)


def _read_super_resolved(path: str) -> list[tuple]:
    """A float image written by napari-smlm (:func:`~napari_smlm.core.io.tiff.write_image`): on its nm grid."""
    from .core.io.errors import SMLMFileError
    from .core.io.tiff import read_image

    img, px, meta = read_image(path, return_metadata=True)
    if img.ndim != 2 or px is None:
        raise SMLMFileError(path, f"super-resolved image of shape {img.shape}, pixel size {px}: expected 2-D with a "
                            "pixel size (written by napari-smlm)")
    origin = tuple(meta.get("origin_nm", (0.0, 0.0)))
    return [_layers.super_resolved_layer_data(img, px, Path(path).stem, origin_nm=origin, metadata={"source": path})]


def _read_float_image(path: str) -> list[tuple]:
    """Any other float TIFF: a 2-D grey image on the camera grid (a processed frame, another program's image).

    Not tagged super-resolved (nothing says it is): ``smlm_kind`` is ``"image"``, and the widgets
    offer it as a movie of one frame. Its pixel size comes from its metadata, else the default.
    """
    from .core.io.errors import SMLMFileError
    from .core.io.tiff import read_image

    img, px, meta = read_image(path, return_metadata=True)
    if meta.get("pixel_size_source") == "default":  # saved by napari-smlm at a pixel size it had assumed
        px = None
    if img.ndim != 2:
        raise SMLMFileError(
            path, f"float TIFF of shape {img.shape}: napari-smlm reads float data as one 2-D image only; a raw movie "
            "is integer ADU (save it as 16-bit, e.g. Fiji: Image > Type > 16-bit), or open it with napari's own reader"
        )
    md: dict[str, Any] = {"source": path, "pixel_size_source": "file" if px else "default"}
    if px is None:
        px = _assumed_pixel_size(path, "image")
    clim = _layers.robust_contrast_limits(img)
    return [_layers.movie_layer_data(img, px, Path(path).stem, metadata=md, contrast_limits=clim, kind="image")]


def read_movie(path: str | list[str]) -> list[tuple]:
    """Open a TIFF movie lazily (or a float image) as layer data.

    Which layer a file becomes is :func:`~napari_smlm.core.io.tiff.tiff_kind`'s answer: integer
    frames -> a lazy movie (3 or 4 frames stay frames, see there); a float image written by
    napari-smlm -> a super-resolved image on its nm grid; any other float 2-D image -> a grey
    image (``smlm_kind`` ``"image"``). Without a pixel size in the file, movies and images are
    shown at :data:`~napari_smlm.core.io.tiff.DEFAULT_PIXEL_SIZE_NM` (said in a warning, and
    ``metadata["pixel_size_source"] == "default"``), so every layer is in nm.

    Raises
    ------
    SMLMFileError
        Not a TIFF, truncated/corrupt, RGB / multi-channel, empty, mismatched files ...
    """
    from .core.io.tiff import open_movie

    paths = _paths(path)
    if len(paths) == 1 and os.path.isfile(paths[0]):
        kind = _tiff_kind(paths[0])
        if kind == "super_resolved":
            return _read_super_resolved(paths[0])
        if kind == "float_image":
            return _read_float_image(paths[0])
    movie = open_movie(paths if len(paths) > 1 else paths[0])
    data = movie.to_dask()
    first = movie[0]
    clim = _layers.robust_contrast_limits(first)
    name = Path(paths[0]).stem if len(paths) == 1 else f"{Path(paths[0]).stem} (+{len(paths) - 1})"
    px = movie.pixel_size_nm
    md: dict[str, Any] = {
        "paths": list(movie.paths),
        "pixel_size_source": movie.pixel_size_source or "default",
        "source": paths[0],
        "n_frames": int(movie.shape[0]),
        "image_shape": tuple(int(v) for v in movie.shape[1:]),
    }
    if px is None:
        px = _assumed_pixel_size(paths[0], "movie")
    _show_scale_bar_in_current_viewer()
    return [_layers.movie_layer_data(data, px, name, metadata=md, contrast_limits=clim)]


def read_localization_file(path: str | list[str]) -> list[tuple]:
    """Read localization table(s) as 3-D points layer data (one layer per file).

    Raises
    ------
    SMLMFileError
        Missing columns (named), unparseable content, a Picasso HDF5 without its YAML ...
    """
    from .core.io.formats import detect_format, read_localizations

    out = []
    for p in _paths(path):
        if detect_format(p) == "picasso":
            big = _big_picasso_layers(p)
            if big is not None:
                out += big
                continue
        locs = read_localizations(p)
        kind = "ground_truth" if _is_ground_truth(p, locs) else "localizations"
        out.append(_layers.localizations_layer_data(locs, Path(p).stem, kind=kind, metadata={"source": p}))
    return out


def _is_ground_truth(path: str, locs) -> bool:
    """Heuristic for the colour and the Evaluation dock's first pick: ground-truth formats (SMLM-2016,
    NAIRR-SMLM) and files named like ground truth."""
    from .core.io.formats import FORMATS

    fmt = FORMATS.get(locs.meta.get("format"))
    stem = Path(path).stem.lower()
    return bool(fmt and fmt.ground_truth) or any(
        k in stem for k in ("ground_truth", "groundtruth", "positions", "activations")
    )


def big_points_mode() -> str:
    """How the points layer of a big table is shown: :data:`BIG_POINTS_MODE`, else the environment
    variable ``NAPARI_SMLM_BIG_POINTS`` (``frame`` or ``decimated``), else ``"frame"``."""
    mode = BIG_POINTS_MODE or os.environ.get("NAPARI_SMLM_BIG_POINTS", "").strip().lower() or "frame"
    if mode not in _layers.FRAME_VIEW_MODES:
        log.warning("NAPARI_SMLM_BIG_POINTS=%r is not one of %s; showing the current frame", mode, _layers.FRAME_VIEW_MODES)
        mode = "frame"
    return mode


def _current_viewer() -> Any:
    """The viewer that is opening the file, or None.

    A reader never sees the viewer; ``napari.current_viewer()`` (public API) is the one whose
    ``viewer.open`` / File > Open / drop is running. Only looked up when napari's Qt window is
    loaded (no Qt import otherwise); a headless ``ViewerModel`` caller gets None.
    """
    if "napari._qt.qt_main_window" not in sys.modules:
        return None
    try:
        import napari

        return napari.current_viewer()
    except Exception:  # noqa: BLE001 - no viewer: nothing to adjust
        log.debug("no current viewer", exc_info=True)
        return None


def _follow_in_current_viewer() -> None:
    """Let the viewer that is opening the file move the frame view with its slider.

    A headless ``ViewerModel`` caller uses :func:`napari_smlm._layers.install_frame_follow` itself.
    """
    viewer = _current_viewer()
    if viewer is not None:
        _layers.install_frame_follow(viewer)


def _show_scale_bar_in_current_viewer() -> None:
    """Movies are in nm (their own pixel size or the default): napari's scale bar then reads nm / µm."""
    viewer = _current_viewer()
    if viewer is not None:
        _layers.show_scale_bar(viewer)


def _big_picasso_layers(path: str) -> list[tuple] | None:
    """Layers of a Picasso table of more than :data:`LAZY_ROWS` rows (None for a smaller one).

    Image: all N rows rendered in chunks on the camera field of view (the same pass reads the
    ``frame`` column into the table's frame index). Points (:func:`big_points_mode`):

    * ``"frame"``: the localizations of the frame the time slider is on (± :data:`FRAME_WINDOW`),
      named ``<stem> (current frame of N)``; each slider step reads that frame's rows only;
    * ``"decimated"``: every k-th row (at most :data:`DISPLAY_POINTS`), named ``<stem> (1 in k of N)``;
      each frame shows about 1/k of its localizations.

    Either way the layer reads back (Render, Evaluation, export ...) as all N rows.
    """
    from .core.io.lazy_table import LazyPicassoTable
    from .core.render import render_chunked

    table = LazyPicassoTable(path)
    n = table.n_rows
    if n <= LAZY_ROWS:
        return None
    stem = Path(path).stem
    mode = big_points_mode()
    px = table.pixel_size_nm
    shape = table.image_shape
    if shape is None:  # no Height/Width in the YAML: the extent of a decimated set
        pts = table.decimated(DISPLAY_POINTS)
        shape = (int(pts["y_nm"].max() // px) + 1, int(pts["x_nm"].max() // px) + 1) if len(pts) else (1, 1)
    h_nm, w_nm = shape[0] * px, shape[1] * px
    rpx = max(BIG_RENDER_PIXEL_NM, max(h_nm, w_nm) / BIG_RENDER_MAX_SIDE)
    rshape = (max(int(-(-h_nm // rpx)), 1), max(int(-(-w_nm // rpx)), 1))
    img = render_chunked(table.iter_chunks(fields=("x", "y")), rpx, rshape, method="gaussian", sigma_nm=BIG_RENDER_SIGMA_NM)
    points = _layers.frame_view_points(table, stem, mode=mode, window=FRAME_WINDOW, max_points=DISPLAY_POINTS,
                                       metadata={"source": path, "lazy": True}, extent_nm=(h_nm, w_nm))
    log.info("%s: %d localizations; points layer shows %s, the image renders all", path, n,
             points[1]["metadata"][_layers.FRAME_VIEW_KEY].describe())
    image = _layers.super_resolved_layer_data(
        img.image, rpx, f"{stem} SR (all {n:,})", metadata={"source": path, "n_rendered": img.meta["n_rendered"]},
    )
    if mode == "frame":
        _follow_in_current_viewer()
    return [image, points]
