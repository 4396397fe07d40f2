"""Numerical core of napari-smlm: numpy + torch + tifffile only, never Qt or napari."""

from .camera import CAMERA_PRESETS, Camera, get_camera
from .config import SimulationConfig
from .localizations import Localizations

__all__ = ["CAMERA_PRESETS", "Camera", "Localizations", "SimulationConfig", "get_camera"]
