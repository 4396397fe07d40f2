"""Numerical core of napari-smlm: numpy + torch + tifffile only, never Qt or napari.

Submodules are imported lazily so that light users (the napari reader, which must not import
torch) pay only for what they touch.
"""

import importlib

_LAZY = {
    "CAMERA_PRESETS": ".camera",
    "Camera": ".camera",
    "get_camera": ".camera",
    "SimulationConfig": ".config",
    "Localizations": ".localizations",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
