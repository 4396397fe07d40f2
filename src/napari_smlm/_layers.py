"""THE one adapter between the numerical core and napari layers.

Everything that turns core objects (movies, :class:`~napari_smlm.core.localizations.Localizations`,
super-resolved images, per-frame network output) into napari ``LayerDataTuple`` s, or napari
layers back into core objects, lives here. Nothing here imports torch or Qt.

World coordinates
-----------------
napari's world is in **nanometres** for the two spatial axes and in **frames** for time:

* A camera movie ``(T, H, W)`` gets ``scale = (1, px, px)`` and
  ``translate = (0, px/2, px/2)``: napari draws the centre of data pixel ``i`` at
  ``translate + i * scale``, and the centre of camera pixel ``i`` is at ``(i + 0.5) * px`` nm
  from the image's top-left edge (the package convention, DESIGN.md §6).
* A super-resolved image uses :meth:`RenderedImage.napari_scale_translate` (same rule on its
  own, finer grid), so a rendered peak and the localization that made it coincide.
* Localizations become a **3-D points layer** ``(frame, y_nm, x_nm)`` with unit scale. The
  frame coordinate makes each point appear only on its own frame, so points step with the
  movie's time slider; 2-D layers (super-resolved images) broadcast over time. ``z_nm``, when
  present, is kept as a feature, not as a dimension.
* Point ``size`` is a diameter in nm (default 0.75 camera pixel, or 75 nm when the pixel size is
  unknown): large enough to see at camera zoom, small enough not to hide neighbours.

Every table column becomes a points *feature* (``frame``, ``x_nm``, ``y_nm``, ``photons``,
``bg``, ``prob``, ``sigma_x_nm`` ...), plus ``uncertainty_nm`` (RMS of ``sigma_x_nm`` and
``sigma_y_nm``) when both exist. Layer ``metadata`` carries ``pixel_size_nm``, ``image_shape``,
``n_frames``, ``smlm_kind`` and the table's own ``meta`` under ``"localizations_meta"``.

The adapter is split by concept, and every name stays importable from here:
:mod:`._layer_images` (movies, super-resolved images, network output, their grids and contrast
limits), :mod:`._layer_points` (tables as points layers and back, live points),
:mod:`._layer_viewer` (layers updated in place, :class:`RunLayers`, scale bar, axis labels),
:mod:`._layer_render` (the Render widget's 3-D points and RGB renders) and
:mod:`._frame_view` (a big table's points that follow the frame).
"""

from __future__ import annotations

from typing import Any

from ._layer_images import (
    LayerDataTuple,
    image_contrast_limits,
    image_grid,
    layer_pixel_size_nm,
    movie_layer_data,
    movie_scale_translate,
    network_output_layer_data,
    robust_contrast_limits,
    super_resolved_layer_data,
    validate_movie_layer,
)
from ._layer_points import (
    DEFAULT_POINT_SIZE_NM,
    layer_to_localizations,
    live_points_layer_data,
    localizations_layer_data,
    pad_points,
    points_part,
    points_to_localizations,
)
from ._layer_render import (
    colored_render_layer_data,
    localizations_3d_layer_data,
    set_output_layer,
    show_points_3d,
    thick_frame_slice,
)
from ._layer_viewer import (
    RunLayers,
    add_or_update_layer,
    is_layer_type,
    label_axes,
    same_layer,
    show_scale_bar,
    update_layer,
)

# names outside __all__ (constants, private helpers that _frame_view and widgets use) stay importable from here
from ._layer_images import _plain_meta, _units  # noqa: F401
from ._layer_points import POINT_COLORS  # noqa: F401
from ._layer_points import _META_KEYS, _coords, _drop_empty, _feature_descriptions, _features, _point_size, _points_tuple  # noqa: F401
from ._layer_viewer import AUTO_CONTRAST_KEY  # noqa: F401
from ._layer_viewer import _GEOMETRY_KEYS, _add_unselected, _in_viewer, _unwrap, _user_changed_contrast  # noqa: F401


__all__ = [
    "LayerDataTuple",
    "DEFAULT_POINT_SIZE_NM",
    "movie_scale_translate",
    "movie_layer_data",
    "super_resolved_layer_data",
    "network_output_layer_data",
    "localizations_layer_data",
    "pad_points",
    "points_part",
    "live_points_layer_data",
    "points_to_localizations",
    "layer_to_localizations",
    "validate_movie_layer",
    "image_grid",
    "layer_pixel_size_nm",
    "add_or_update_layer",
    "update_layer",
    "is_layer_type",
    "same_layer",
    "RunLayers",
    "show_scale_bar",
    "label_axes",
    "robust_contrast_limits",
    "image_contrast_limits",
]


__all__ += ["localizations_3d_layer_data", "show_points_3d", "thick_frame_slice", "colored_render_layer_data", "set_output_layer"]


# ============================================================================ big tables (their home: _frame_view)
#: Names of :mod:`napari_smlm._frame_view` (points that follow the frame) also importable from here.
_FRAME_VIEW_NAMES = (
    "FRAME_VIEW_KEY", "FRAME_VIEW_MODES", "FrameView", "frame_view_points", "frame_view", "show_frame",
    "set_frame_view_mode", "follow_frame", "install_frame_follow", "deferred_localizations",
)
__all__ += list(_FRAME_VIEW_NAMES)


def __getattr__(name: str) -> Any:
    """The frame-view API (PEP 562), imported on first use: :mod:`._frame_view` imports this module."""
    if name in _FRAME_VIEW_NAMES:
        from . import _frame_view

        return getattr(_frame_view, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
