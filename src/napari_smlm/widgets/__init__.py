"""Dock widgets of napari-smlm (exports only).

Widgets are thin: layout, value -> config binding, worker signal -> progress / layer wiring.
Numerics live in :mod:`napari_smlm.core`, layer conversion in :mod:`napari_smlm._layers`,
threading in :mod:`napari_smlm._workers`; the base class and its run cycle in ``_base.py``, the
forms several widgets use in ``_forms.py``. No widget imports another widget.

The widget classes are imported lazily (``from napari_smlm.widgets import ReconstructionWidget``)
so that importing this package costs no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._base import LayerPicker, SmlmDockWidget, dspin, notify_error, notify_info, notify_warning, spin, wrap_label

__all__ = [
    "ReconstructionWidget",
    "TrainingWidget",
    "SimulationWidget",
    "EvaluationWidget",
    "RenderWidget",
    "CalibrationWidget",
    "LayerPicker",
    "SmlmDockWidget",
    "spin",
    "dspin",
    "wrap_label",
    "notify_error",
    "notify_info",
    "notify_warning",
]

_LAZY = {
    "ReconstructionWidget": "._reconstruction",
    "TrainingWidget": "._training",
    "SimulationWidget": "._simulation",
    "EvaluationWidget": "._evaluation",
    "RenderWidget": "._render",
    "CalibrationWidget": "._calibration",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
