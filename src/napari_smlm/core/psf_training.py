"""Training a 3-D model for a PSF calibration: what the CLI (``train --psf``) and the Training widget share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .calibration import AstigmaticCalibration
from .config import SimulationConfig

__all__ = ["setup_psf_training"]


def setup_psf_training(
    model: str,
    sim: SimulationConfig,
    calibration: AstigmaticCalibration | dict | str | Path,
    fine_tune: bool,
    model_config: dict | None = None,
) -> tuple[SimulationConfig, dict | None]:
    """The simulation and model config that train ``model`` for an astigmatic ``calibration``.

    Parameters
    ----------
    model : str
        Registry name; the family must be 3-D (have ``calibration_overrides``, e.g. ``"decode3d"``).
    sim : SimulationConfig
        The training microscope (2-D or 3-D); its PSF is replaced by the calibration's.
    calibration : AstigmaticCalibration, dict or path of its YAML
        Read with ``yaml.safe_load``; a bad file is a :class:`~napari_smlm.core.calibration.CalibrationError`
        naming it.
    fine_tune : bool
        Starting from a checkpoint: its config must be retargeted to the calibration (the PSF
        and the z range stored in the model). From scratch, ``configure_for`` takes both from
        the simulation.
    model_config : dict, optional
        The user's model settings; they win over the calibration's.

    Returns
    -------
    sim : SimulationConfig
        ``sim`` with ``psf_calibration`` set (z over the calibration's usable range).
    model_config : dict or None

    Raises
    ------
    ValueError
        When ``model`` is a 2-D family.
    """
    from .models import get_family

    family = type(get_family(model))
    if not hasattr(family, "calibration_overrides"):
        raise ValueError(f"a PSF calibration needs a 3-D model (e.g. decode3d); {model!r} is 2-D")
    cal = AstigmaticCalibration.coerce(calibration)
    sim = sim.replace(psf_calibration=cal.to_dict(), z_min_nm=None, z_max_nm=None)
    if fine_tune:
        model_config = {**family.calibration_overrides(cal), **(model_config or {})}
    return sim, model_config
