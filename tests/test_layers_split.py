"""_layers.py, THE one adapter core <-> napari, split by concept into _layer_images, _layer_points,
_layer_viewer and _layer_render: every name it held still imports from napari_smlm._layers, as the
very object of its new home, and importing the adapter still costs no torch, Qt or napari."""

from __future__ import annotations

import subprocess
import sys

from napari_smlm import _layer_images, _layer_points, _layer_render, _layer_viewer, _layers

HOMES = {
    _layer_images: (
        "LayerDataTuple", "_plain_meta", "_units", "movie_scale_translate", "robust_contrast_limits",
        "image_contrast_limits", "movie_layer_data", "super_resolved_layer_data", "network_output_layer_data",
        "image_grid", "layer_pixel_size_nm", "validate_movie_layer",
    ),
    _layer_points: (
        "DEFAULT_POINT_SIZE_NM", "POINT_COLORS", "_META_KEYS", "_point_size", "_drop_empty", "_features",
        "_feature_descriptions", "localizations_layer_data", "_coords", "_points_tuple", "pad_points", "points_part",
        "live_points_layer_data", "points_to_localizations", "layer_to_localizations",
    ),
    _layer_viewer: (
        "AUTO_CONTRAST_KEY", "_GEOMETRY_KEYS", "_unwrap", "same_layer", "is_layer_type", "_in_viewer",
        "_user_changed_contrast", "update_layer", "add_or_update_layer", "show_scale_bar", "label_axes",
        "_add_unselected", "RunLayers",
    ),
    _layer_render: (
        "localizations_3d_layer_data", "show_points_3d", "thick_frame_slice", "colored_render_layer_data",
        "set_output_layer",
    ),
}


def test_every_name_of_the_adapter_still_imports_from_layers():
    for home, names in HOMES.items():
        for name in names:
            assert getattr(_layers, name) is getattr(home, name), f"{home.__name__}.{name}"
    assert all(hasattr(_layers, n) for n in _layers.__all__)
    moved = {n for names in HOMES.values() for n in names}
    assert {n for n in _layers.__all__ if n not in _layers._FRAME_VIEW_NAMES} <= moved
    assert _layers.FrameView.__module__ == "napari_smlm._frame_view"  # the lazy frame-view names too


def test_importing_the_adapter_imports_no_torch_qt_or_napari():
    code = (
        "import sys, napari_smlm._layers\n"
        "print(sorted(m for m in ('torch', 'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
