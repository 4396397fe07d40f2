"""Big tables in napari: a points layer that shows the current frame (or every k-th row) of a table.

Issue 12.4. A points layer of a big table (10 M localizations) holds only what napari can draw
at once: the localizations of the frame the time slider is on (``"frame"`` mode; optionally
±window frames), or every k-th row (``"decimated"`` mode). The layer's metadata keeps a
:class:`FrameView` with the full table, so everything that reads the layer back as a table
(:func:`points_to_localizations` / :func:`layer_to_localizations`: Render, Evaluation,
post-processing, Training, the writers) gets ALL rows, not the shown ones.

How it follows the slider (the napari side): napari readers return layer data and never see the
viewer, and a Points layer has no public "re-sliced" event, so the viewer's dims events are the
hook (``dims.events.current_step``). :func:`follow_frame` connects one layer to it (weak
references: a removed or deleted layer is let go); :func:`install_frame_follow` makes a viewer
follow every frame-view layer inserted into it (``viewer.layers.events.inserted``) and those
already there. The reader calls :func:`install_frame_follow` on ``napari.current_viewer()`` (the
public API; only when napari's Qt window is loaded), which covers File > Open, drag and drop and
``viewer.open``; code that holds the viewer (widgets) calls :func:`follow_frame` directly. A
layer nobody follows still shows its frame and still reads back as the whole table.
Edits made to the shown points (moving, deleting, adding) are not kept: once the layer's data is
not what the view last set, the view stops updating it and the layer reads back as its points.

The names are also importable from :mod:`napari_smlm._layers` (their first home).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import weakref
from typing import Any

import numpy as np
import pandas as pd

from ._layers import LayerDataTuple, _coords, _points_tuple, _unwrap, layer_to_localizations, localizations_layer_data
from .core.localizations import Localizations

__all__ = [
    "FRAME_VIEW_KEY",
    "FRAME_VIEW_MODES",
    "FrameView",
    "frame_view_points",
    "frame_view",
    "show_frame",
    "set_frame_view_mode",
    "follow_frame",
    "install_frame_follow",
    "deferred_localizations",
]

log = logging.getLogger(__name__)

#: Layer-metadata key of a points layer that views a big table (a :class:`FrameView`).
FRAME_VIEW_KEY = "frame_view"
#: What a frame view shows: the current frame (± window), or every k-th row.
FRAME_VIEW_MODES = ("frame", "decimated")
#: Default most rows of a decimated view.
FRAME_VIEW_MAX_POINTS = 100_000


class FrameView:
    """What a points layer of a big table shows, and the full table behind it.

    Stored in the layer's ``metadata[FRAME_VIEW_KEY]``; copies (``copy.deepcopy`` of the metadata)
    return the same object, so the table is never duplicated.

    Parameters
    ----------
    table : frame table
        :class:`~napari_smlm.core.io.lazy_table.LazyPicassoTable` or
        :class:`~napari_smlm.core.frame_index.IndexedLocalizations` (see
        :func:`~napari_smlm.core.frame_index.as_frame_table`).
    mode : {"frame", "decimated"}
    window : int
        Frame mode: also show the frames ``f - window .. f + window`` (drawn on frame ``f``).
    max_points : int
        Decimated mode: at most this many rows (every k-th).
    extent_nm : (float, float), optional
        ``(height, width)`` in nm of the field: two hidden anchor points keep the layer's extent
        (and so napari's slider range) fixed while the shown frame changes.
    """

    def __init__(self, table: Any, mode: str = "frame", window: int = 0, max_points: int = FRAME_VIEW_MAX_POINTS,
                 extent_nm: tuple[float, float] | None = None):
        if mode not in FRAME_VIEW_MODES:
            raise ValueError(f"frame view mode must be one of {FRAME_VIEW_MODES}, got {mode!r}")
        if int(window) < 0:
            raise ValueError(f"frame view window must be >= 0 frames, got {window}")
        self.table = table
        self.mode = mode
        self.window = int(window)
        self.max_points = max(int(max_points), 1)
        self.extent_nm = None if extent_nm is None else (float(extent_nm[0]), float(extent_nm[1]))
        self.frame: int | None = None  # the frame shown (frame mode)
        self.data: np.ndarray | None = None  # the coordinates last given to the layer
        self._decimated: Localizations | None = None
        self.columns = self._feature_columns()

    def __deepcopy__(self, memo: dict) -> FrameView:
        return self

    def __copy__(self) -> FrameView:
        return self

    def __repr__(self) -> str:
        return f"FrameView({self.describe()}, table={self.table!r})"

    @property
    def n_rows(self) -> int:
        return int(self.table.n_rows)

    @property
    def n_frames(self) -> int:
        return int(self.table.n_frames)

    def _feature_columns(self) -> list[str]:
        """Feature columns, fixed for the view's life (an all-NaN column of an in-memory table is hidden)."""
        locs = getattr(self.table, "locs", None)
        if locs is not None:
            cols = [c for c in locs.columns if c in ("frame", "x_nm", "y_nm") or not (len(locs) and locs.df[c].isna().all())]
        else:
            cols = list(self.table.columns)
        if "sigma_x_nm" in cols and "sigma_y_nm" in cols and "uncertainty_nm" not in cols:
            cols.append("uncertainty_nm")
        return cols

    def decimation(self) -> int:
        return max(1, math.ceil(self.n_rows / self.max_points))

    def describe(self) -> str:
        """What the layer shows, for its name: ``current frame of N`` / ``frame ±w of N`` / ``1 in k of N``."""
        n = self.n_rows
        if self.mode == "decimated":
            k = self.decimation()
            return f"1 in {k} of {n:,}" if k > 1 else f"all {n:,}"
        return f"current frame of {n:,}" if self.window == 0 else f"frame ±{self.window} of {n:,}"

    def shown_table(self, frame: int = 0) -> Localizations:
        """The rows the layer shows: those of frames ``frame ± window``, or the decimated rows."""
        if self.mode == "decimated":
            if self._decimated is None:
                self._decimated = self.table.decimated(self.max_points)
            return self._decimated
        f = int(frame)
        return self.table.frames(f - self.window, f + self.window + 1)

    def layer_arrays(self, frame: int = 0) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
        """``(coords, features, shown)`` of the layer for ``frame``.

        Frame mode: every row is drawn on ``frame`` (its real frame is the ``frame`` feature), then
        hidden rows (``shown`` False): padding to a power of two, and two anchors at frames 0 and
        ``n_frames - 1`` (last rows) that keep the layer's extent over the whole movie (else
        napari's slider would shrink to the shown frame).
        """
        locs = self.shown_table(frame)
        if self.mode == "decimated":
            return _coords(locs), self._feature_frame(locs, ()), np.ones(len(locs), bool)
        coords = _coords(locs)
        coords[:, 0] = float(int(frame))
        h, w = self.extent_nm or (0.0, 0.0)
        last = max(self.n_frames - 1, 0)
        n = len(coords)
        # hidden rows: padding up to a power of two (napari's Points does O(N) Python work when its
        # number of points changes; steps between frames of similar size then keep it), then the
        # two anchors. Padding sits on the first anchor.
        n_pad = max(16, 1 << int(n + 2 - 1).bit_length()) - n - 2
        hidden = np.zeros((n_pad + 2, 3))
        hidden[-1] = (float(last), h, w)
        shown = np.concatenate([np.ones(n, bool), np.zeros(n_pad + 2, bool)])
        return np.concatenate([coords, hidden]), self._feature_frame(locs, (0,) * (n_pad + 1) + (last,)), shown

    def _feature_frame(self, locs: Localizations, anchor_frames: tuple) -> pd.DataFrame:
        """The fixed feature columns of ``locs`` (+ one NaN row per anchor), built once from numpy
        columns (a slider step should not pay for several DataFrame copies)."""
        df, n, k = locs.df, len(locs), len(anchor_frames)
        cols: dict[str, np.ndarray] = {}
        for c in self.columns:
            if c in df.columns:
                v = df[c].to_numpy()
            elif c == "uncertainty_nm" and "sigma_x_nm" in df.columns and "sigma_y_nm" in df.columns:
                v = np.sqrt(0.5 * (df["sigma_x_nm"].to_numpy() ** 2 + df["sigma_y_nm"].to_numpy() ** 2))
            else:
                v = np.full(n, np.nan)
            if k:
                if c == "frame":
                    pad = np.asarray(anchor_frames, dtype=v.dtype)
                elif v.dtype.kind == "f":
                    pad = np.full(k, np.nan, v.dtype)
                else:
                    v, pad = v.astype(object), np.full(k, None, object)
                v = np.concatenate([v, pad])
            cols[c] = v
        return pd.DataFrame(cols, copy=False)

    def owns(self, data: Any) -> bool:
        """Whether ``data`` is what this view last gave its layer (not edited since)."""
        if self.data is None or data is None:
            return False
        if data is self.data:
            return True
        d = np.asarray(data)
        return d.shape == self.data.shape and np.array_equal(d, self.data)

    def full_table(self) -> Localizations:
        """Every row of the table (a copy; a file is read in chunks)."""
        return self.table.read_all()


def frame_view_points(
    table: Any,
    name: str,
    *,
    mode: str = "frame",
    window: int = 0,
    frame: int = 0,
    max_points: int = FRAME_VIEW_MAX_POINTS,
    kind: str = "localizations",
    pixel_size_nm: float | None = None,
    metadata: dict | None = None,
    size_nm: float | None = None,
    describe: bool = True,
    extent_nm: tuple[float, float] | None = None,
) -> LayerDataTuple:
    """A points ``LayerDataTuple`` of a big table that shows one frame (or a decimated set).

    The layer holds only the localizations of ``frame`` (± ``window``) in ``"frame"`` mode, or
    every k-th row (at most ``max_points``) in ``"decimated"`` mode; its metadata keeps a
    :class:`FrameView` with the whole table, so :func:`layer_to_localizations` (Render,
    Evaluation, post-processing, export) returns **all** rows. To make the layer follow napari's
    time slider, call :func:`follow_frame` (viewer, layer) once it is in the viewer, or
    :func:`install_frame_follow` (viewer) before adding it.

    Parameters
    ----------
    table : Localizations, LazyPicassoTable, IndexedLocalizations or path
        The table (an in-memory one is indexed by frame once, O(N log N) only if unsorted; it is
        held, not copied). A path opens a Picasso HDF5 lazily.
    name : str
        Layer name; `` (<what it shows>)`` is appended when ``describe`` (e.g.
        ``"run (current frame of 612,000)"``).
    mode : {"frame", "decimated"}
    window : int
        Frame mode: also show ``window`` frames either side.
    frame : int
        Frame shown at first (0-based).
    max_points : int
        Decimated mode: most rows shown.
    kind, pixel_size_nm, metadata, size_nm
        As :func:`localizations_layer_data`.
    extent_nm : (float, float), optional
        Field ``(height, width)`` in nm; default from ``image_shape`` and the pixel size, else the
        largest y / x of an in-memory table.

    Returns
    -------
    LayerDataTuple
        ``(coords, kwargs, "points")``; ``kwargs["metadata"]`` has ``FRAME_VIEW_KEY``,
        ``n_rows_total`` and ``points_shown`` (a sentence for tooltips).
    """
    from .core.frame_index import as_frame_table

    tab = as_frame_table(table)
    meta = dict(getattr(tab, "meta", {}) or {})
    px = pixel_size_nm if pixel_size_nm is not None else meta.get("pixel_size_nm")
    if extent_nm is None:
        shape = meta.get("image_shape")
        if shape is not None and px:
            extent_nm = (float(shape[0]) * float(px), float(shape[1]) * float(px))
        elif getattr(tab, "locs", None) is not None and len(tab.locs):
            extent_nm = (float(np.nanmax(tab.locs["y_nm"])), float(np.nanmax(tab.locs["x_nm"])))
    fv = FrameView(tab, mode, window, max_points, extent_nm)
    coords, feats, shown = fv.layer_arrays(frame)
    fv.frame = int(frame) if mode == "frame" else None
    fv.data = coords
    shows = ("the localizations of the current frame" + (f" ±{fv.window}" if fv.window else "")
             if mode == "frame" else f"every {fv.decimation()}-th localization")
    md = {**(metadata or {}), FRAME_VIEW_KEY: fv, "n_rows_total": fv.n_rows,
          "points_shown": f"{shows} of {fv.n_rows:,}; tables read from this layer (render, export ...) have all of them"}
    meta = {k: v for k, v in meta.items() if k not in ("rows", "picasso_info")}
    label = f"{name} ({fv.describe()})" if describe else name
    data, kw, kind_ = _points_tuple(coords, feats, meta, label, kind, px, md, size_nm)
    kw["shown"] = shown
    return (data, kw, kind_)


def frame_view(layer: Any) -> FrameView | None:
    """The :class:`FrameView` of a points layer whose data is still the view's, else None."""
    fv = (getattr(layer, "metadata", None) or {}).get(FRAME_VIEW_KEY)
    return fv if isinstance(fv, FrameView) and fv.owns(layer.data) else None


def _frame_view_table(data: Any, metadata: dict | None, scale: Any = None, translate: Any = None) -> Localizations | None:
    """All rows behind points ``data`` that a :class:`FrameView` made (None otherwise), in world coordinates."""
    fv = (metadata or {}).get(FRAME_VIEW_KEY)
    if not isinstance(fv, FrameView) or not fv.owns(data):
        return None
    return _view_table(fv, metadata, scale, translate)


def _view_table(fv: FrameView, metadata: dict | None, scale: Any = None, translate: Any = None) -> Localizations:
    """Every row of ``fv``'s table in world coordinates (the layer's ``scale`` / ``translate``)."""
    locs = fv.full_table()
    sc = np.ones(3) if scale is None else np.asarray(scale, dtype=np.float64)[-3:]
    tr = np.zeros(3) if translate is None else np.asarray(translate, dtype=np.float64)[-3:]
    if len(sc) == 3 and len(tr) == 3 and not (np.allclose(sc, 1.0) and np.allclose(tr, 0.0)):
        locs["frame"] = np.rint(locs.frames * sc[0] + tr[0]).astype(np.int64)
        locs["y_nm"] = locs["y_nm"] * sc[1] + tr[1]
        locs["x_nm"] = locs["x_nm"] * sc[2] + tr[2]
    md = dict(metadata or {})
    for k in ("pixel_size_nm", "image_shape", "n_frames"):
        if md.get(k) is not None:
            locs.meta[k] = md[k]
    locs.meta.pop("rows", None)
    return locs


def _layer_frame(viewer: Any, layer: Any) -> int | None:
    """The frame (layer data coordinate) napari's slider is on for ``layer``; None if the frame axis is displayed."""
    dims = viewer.dims
    ax = int(dims.ndim) - int(layer.ndim)  # napari aligns the trailing axes
    if ax < 0 or ax in tuple(dims.displayed):
        return None
    p = float(dims.point[ax])
    s, t = float(layer.scale[0]), float(layer.translate[0])
    return int(math.floor((p - t) / (s or 1.0) + 0.5))


def show_frame(layer: Any, frame: int) -> bool:
    """Make a frame-view layer show ``frame`` (GUI thread). False when it is not a frame-view
    layer in frame mode (or was edited); O(rows of that frame)."""
    raw = _unwrap(layer)
    fv = frame_view(raw)
    if fv is None or fv.mode != "frame":
        return False
    if fv.frame == int(frame):
        return True
    _set_points(raw, fv, *fv.layer_arrays(int(frame)))
    fv.frame = int(frame)
    return True


def _set_points(raw: Any, fv: FrameView, coords: np.ndarray, feats: pd.DataFrame, shown: np.ndarray,
                quiet: bool = True) -> None:
    """Data, features and shown mask of a frame-view layer, then one re-slice.

    ``quiet`` (a slider step): the table behind the layer did not change, only the rows shown, so
    the layer's ``data`` / ``features`` events are blocked (napari's public ``blocker``): nothing
    that watches a layer's data (the viewer's extent bookkeeping, the Evaluation widget clearing
    its metrics) reacts to a slider step, and the hidden anchors keep the extent as it was. napari
    re-slices on each of the three setters; its (private) ``_block_refresh`` defers that to the
    one :meth:`refresh` at the end (without it: three, same result).
    """
    block = getattr(raw, "_block_refresh", None)
    with contextlib.ExitStack() as stack:
        if block is not None:
            stack.enter_context(block())
        if quiet:
            stack.enter_context(raw.events.data.blocker())
            stack.enter_context(raw.events.features.blocker())
        raw.data = coords
        raw.features = feats
        raw.shown = shown
    fv.data = raw.data
    raw.refresh(extent=not quiet)


def set_frame_view_mode(layer: Any, mode: str, window: int | None = None, viewer: Any = None) -> None:
    """Switch a frame-view layer between ``"frame"`` and ``"decimated"`` (GUI thread).

    The layer keeps its identity and the user's display settings; its name's description changes
    when it still ends with the old one. In frame mode it shows the viewer's current frame (frame 0
    without ``viewer``). Raises ``ValueError`` for a layer that is not a frame view.
    """
    raw = _unwrap(layer)
    fv = frame_view(raw)
    if fv is None:
        raise ValueError(f"layer {getattr(layer, 'name', layer)!r} is not a frame view of a big table (or was edited)")
    if mode not in FRAME_VIEW_MODES:
        raise ValueError(f"frame view mode must be one of {FRAME_VIEW_MODES}, got {mode!r}")
    old = f" ({fv.describe()})"
    fv.mode = mode
    if window is not None:
        if int(window) < 0:
            raise ValueError(f"frame view window must be >= 0 frames, got {window}")
        fv.window = int(window)
    f = (_layer_frame(_unwrap(viewer), raw) if viewer is not None else None) or 0
    _set_points(raw, fv, *fv.layer_arrays(f), quiet=False)
    fv.frame = f if mode == "frame" else None
    if raw.name.endswith(old):
        raw.name = raw.name[: -len(old)] + f" ({fv.describe()})"


class _FrameFollower:
    """Keeps one frame-view layer on the viewer's current frame (weak references both ways)."""

    def __init__(self, viewer: Any, layer: Any):
        self.viewer = weakref.ref(viewer)
        self.layer = weakref.ref(layer)
        # napari calls its own callbacks first (it slices the layers for the new step), then
        # this one: the rows are swapped and the layer re-sliced once more (O(rows shown)).
        viewer.dims.events.current_step.connect(self.on_step)
        viewer.layers.events.removed.connect(self.on_removed)

    def on_step(self, event: Any = None) -> None:
        viewer, layer = self.viewer(), self.layer()
        if viewer is None or layer is None:
            self.detach()
            return
        fv = (layer.metadata or {}).get(FRAME_VIEW_KEY)
        if isinstance(fv, FrameView) and not fv.owns(layer.data):  # new data from elsewhere: let the table go
            layer.metadata.pop(FRAME_VIEW_KEY, None)
            self.detach()
            return
        f = _layer_frame(viewer, layer)
        if f is not None:
            show_frame(layer, f)

    def on_removed(self, event: Any) -> None:
        if _unwrap(getattr(event, "value", None)) is self.layer():
            self.detach()

    def detach(self) -> None:
        viewer, layer = self.viewer(), self.layer()
        if viewer is not None:
            viewer.dims.events.current_step.disconnect(self.on_step)
            viewer.layers.events.removed.disconnect(self.on_removed)
        if layer is not None:
            _FOLLOWERS.pop(layer, None)


#: Followers by (raw) layer; a follower dies with its layer.
_FOLLOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Viewers whose inserted layers are followed (raw viewer -> handler).
_FOLLOWING_VIEWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def follow_frame(viewer: Any, layer: Any) -> bool:
    """Make a frame-view points layer follow ``viewer``'s time slider (GUI thread).

    Connects ``viewer.dims.events.current_step``; each step shows the rows of the new frame
    (:func:`show_frame`, O(rows of that frame)). Shows the current frame at once. Idempotent;
    undone when the layer leaves the viewer. Returns False (and does nothing) for other layers.
    """
    raw_v, raw_l = _unwrap(viewer), _unwrap(layer)
    fv = (getattr(raw_l, "metadata", None) or {}).get(FRAME_VIEW_KEY)
    if not isinstance(fv, FrameView):
        return False
    if raw_l not in _FOLLOWERS:
        _FOLLOWERS[raw_l] = _FrameFollower(raw_v, raw_l)
    if fv.owns(raw_l.data):  # the whole view state now (a layer updated in place kept its old shown mask)
        f = _layer_frame(raw_v, raw_l) if fv.mode == "frame" else None
        f = f if f is not None else (fv.frame or 0)
        _set_points(raw_l, fv, *fv.layer_arrays(f), quiet=False)
        fv.frame = f if fv.mode == "frame" else None
    return True


class _InsertHandler:
    def __init__(self, viewer: Any):
        self.viewer = weakref.ref(viewer)

    def on_inserted(self, event: Any) -> None:
        viewer = self.viewer()
        if viewer is not None:
            follow_frame(viewer, event.value)


def install_frame_follow(viewer: Any) -> None:
    """Make every frame-view layer of ``viewer`` follow its time slider: those there now and
    those inserted later (``viewer.layers.events.inserted``). Idempotent; GUI thread."""
    raw = _unwrap(viewer)
    if raw not in _FOLLOWING_VIEWERS:
        h = _InsertHandler(raw)
        raw.layers.events.inserted.connect(h.on_inserted)
        _FOLLOWING_VIEWERS[raw] = h
    for la in list(raw.layers):
        follow_frame(raw, la)




def deferred_localizations(layer: Any) -> tuple[Any, list[str], int] | None:
    """For a frame-view layer: ``(read, columns, n_rows)``, reading its whole table later (on a worker).

    :func:`layer_to_localizations` of a frame-view layer reads every row of the table behind it
    (10 M rows: seconds of I/O and ~2 GB) — on the GUI thread that freezes napari. This snapshot
    (taken on the GUI thread: the view, metadata, scale and translate)
    gives a ``read()`` that returns exactly what :func:`layer_to_localizations` would have at
    snapshot time (whatever frame the slider shows meanwhile), meant to run inside the job's
    generator. ``columns`` are the table's feature columns, for
    checking settings before the job starts. None for any other layer (read it as usual).
    """
    fv = frame_view(layer)
    if fv is None:
        return None
    md = dict(layer.metadata)
    scale, translate = np.asarray(layer.scale, dtype=np.float64), np.asarray(layer.translate, dtype=np.float64)

    def read() -> Localizations:  # the view, not the layer's data: the slider may move meanwhile
        return _view_table(fv, md, scale, translate)

    return read, list(fv.columns), fv.n_rows
