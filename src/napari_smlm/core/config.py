"""Configuration dataclasses with a dict / YAML round trip.

Every long-running task takes one of these; checkpoints and exported tables carry them so
that a result can be reproduced (DESIGN.md, convention 10).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .camera import Camera, get_camera
from .io.safe import atomic_path
from .validate import check_fields

__all__ = ["ConfigMixin", "SimulationConfig"]

T = TypeVar("T", bound="ConfigMixin")


class ConfigMixin:
    """``to_dict`` / ``from_dict`` / YAML for flat dataclasses (nested Camera allowed)."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, Camera):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, float) and math.isinf(v):
                v = None if f.name.startswith("t_bleach") else v
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - set(names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        kw = {}
        for k, v in d.items():
            if isinstance(v, list):
                v = tuple(v)
            kw[k] = v
        return cls(**kw)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
        return text

    @classmethod
    def from_yaml(cls: type[T], path_or_text: str | Path) -> T:
        """From a YAML file, or YAML text (a string containing a newline)."""
        if isinstance(path_or_text, str) and "\n" in path_or_text:
            text, where = path_or_text, "YAML text"
        else:
            p = Path(path_or_text)
            if not p.is_file():
                raise FileNotFoundError(f"{p}: configuration file not found")
            text, where = p.read_text(), str(p)
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:  # syntax errors, and python/object tags (never executed)
            first = " ".join(str(exc).split())
            raise ValueError(f"{where}: not valid YAML for {cls.__name__} ({first})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from exc

    def replace(self: T, **kw) -> T:
        return dataclasses.replace(self, **kw)  # type: ignore[type-var]


@dataclass(frozen=True)
class SimulationConfig(ConfigMixin):
    """Parameters of a simulated SMLM movie.

    Parameters
    ----------
    n_frames, height, width : int
        Movie shape (frames, rows, columns); rows/columns in camera pixels.
    pixel_size_nm : float
        Camera pixel size in the sample plane (nm).
    psf_sigma_nm : float
        Mean standard deviation of the Gaussian PSF (nm).
    psf_sigma_std_nm : float
        Spread of the PSF width across emitters (nm), e.g. for slight defocus.
    density : float
        Mean number of ground-truth emitters per frame per µm² of field of view (fluorophores
        on for any part of the frame), as in the SMLM-2016 challenge.
    structure : {"uniform", "filaments", "image"}
        Where fluorophores sit: uniformly random, on smooth filament-like curves, or drawn from
        a user density image (passed to :func:`~napari_smlm.core.simulate.simulate`).
    n_filaments : int
        Number of curves for ``structure="filaments"``.
    filament_persistence_nm : float
        Persistence length of the curves (nm): larger is straighter.
    filament_width_nm : float
        Standard deviation of fluorophore positions across a filament (nm).
    photons_mean, photons_std : float
        Photons emitted by a fluorophore during a whole frame spent on (normal, clipped at
        ``photons_min``); a frame partly on gets the on-fraction of it.
    photons_min : float
        Lower clip of the per-fluorophore brightness.
    bg_photons : float
        Mean background, photons per pixel per frame.
    bg_variation : float
        Relative amplitude of the smooth spatial background variation (0 = flat).
    bg_length_nm : float
        Length scale of that variation (nm).
    t_on, t_off : float
        Mean on / off durations in frames (exponential, continuous time: sub-frame on-fractions
        scale the photons).
    t_bleach : float or None
        Mean total on-time before bleaching, in frames; ``None`` = no bleaching.
    camera : str, dict or Camera
        A preset name (``"smlm2016_emccd"``, ``"generic_scmos"``, ``"ideal"``) or parameters.
    margin_px : float
        Fluorophores are placed this far outside the field of view too, so that edges look like
        the middle of a bigger sample. Only emitters centred inside the frame are ground truth.
    seed : int
        Random seed: the same config gives the same movie.
    drift_nm : float
        Stage drift, smooth random part: its largest distance from the start position (nm);
        0 = none. Drawn from its own random stream, so the same config with and without drift
        gives the same fluorophores, blinking and noise.
    drift_timescale_frames : float
        Correlation time of the random part (frames between the knots of its spline);
        0 = a fifth of the movie.
    drift_linear_nm : (float, float)
        Linear part: total (x, y) displacement over the movie (nm).
    drift_sine_nm, drift_sine_period_frames : float
        Sinusoidal part: amplitude (nm) and period (frames); x follows A·sin(2πt/P) and y
        A·(1 − cos(2πt/P)), so it starts at 0.
    psf_calibration : dict, str, AstigmaticCalibration or None
        3-D: an astigmatic PSF calibration (or the path of its YAML file, read once and stored
        as a dict so the config stays self-contained). Emitters then get a z, the PSF is
        :class:`~napari_smlm.core.psf.Astigmatic` and ``psf_sigma_nm``/``psf_sigma_std_nm``
        are not used for rendering. ``None`` (default): 2-D, Gaussian PSF.
    z_min_nm, z_max_nm : float or None
        z range of the fluorophores (nm) in 3-D; default the calibration's usable range.
    z_length_nm : float
        Lateral length scale (nm) over which filaments change depth in 3-D.
    """

    n_frames: int = 100
    height: int = 64
    width: int = 64
    pixel_size_nm: float = 100.0
    psf_sigma_nm: float = 120.0
    psf_sigma_std_nm: float = 0.0
    density: float = 1.0
    structure: str = "uniform"
    n_filaments: int = 8
    filament_persistence_nm: float = 3000.0
    filament_width_nm: float = 12.5
    photons_mean: float = 2000.0
    photons_std: float = 500.0
    photons_min: float = 200.0
    bg_photons: float = 50.0
    bg_variation: float = 0.2
    bg_length_nm: float = 3000.0
    t_on: float = 1.5
    t_off: float = 300.0
    t_bleach: float | None = None
    camera: Any = field(default="smlm2016_emccd")
    margin_px: float = 3.0
    seed: int = 0
    drift_nm: float = 0.0
    drift_timescale_frames: float = 0.0
    drift_linear_nm: tuple = (0.0, 0.0)
    drift_sine_nm: float = 0.0
    drift_sine_period_frames: float = 1000.0
    psf_calibration: Any = None
    z_min_nm: float | None = None
    z_max_nm: float | None = None
    z_length_nm: float = 2000.0

    def __post_init__(self):
        check_fields(self, where="SimulationConfig")  # ranges and finiteness, named (core/validate.py)
        if self.n_frames < 1 or self.height < 1 or self.width < 1:
            raise ValueError("n_frames, height and width must be >= 1")
        if self.pixel_size_nm <= 0 or self.psf_sigma_nm <= 0:
            raise ValueError("pixel_size_nm and psf_sigma_nm must be > 0")
        if self.density < 0:
            raise ValueError("density must be >= 0")
        if self.structure not in ("uniform", "filaments", "image"):
            raise ValueError(f"structure must be uniform, filaments or image, not {self.structure!r}")
        if self.t_on <= 0 or self.t_off <= 0:
            raise ValueError("t_on and t_off must be > 0")
        if self.drift_nm < 0 or self.drift_sine_nm < 0 or self.drift_timescale_frames < 0:
            raise ValueError("drift_nm, drift_sine_nm and drift_timescale_frames must be >= 0")
        if self.drift_sine_period_frames <= 0:
            raise ValueError("drift_sine_period_frames must be > 0")
        if len(tuple(self.drift_linear_nm)) != 2:
            raise ValueError("drift_linear_nm must be two numbers (x, y) in nm")
        object.__setattr__(self, "drift_linear_nm", tuple(float(v) for v in self.drift_linear_nm))
        object.__setattr__(self, "camera", get_camera(self.camera))
        self._check_3d()

    def _check_3d(self) -> None:
        """Load the calibration (stored as a dict) and check the z range."""
        if self.psf_calibration is None:
            if self.z_min_nm is not None or self.z_max_nm is not None:
                raise ValueError("z_min_nm / z_max_nm need a psf_calibration (3-D simulation)")
            return
        from .calibration import AstigmaticCalibration

        object.__setattr__(self, "psf_calibration", AstigmaticCalibration.coerce(self.psf_calibration).to_dict())
        lo, hi = self.z_range_nm
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"z_min_nm must be <= z_max_nm, both finite; got {lo}, {hi}")
        if not self.z_length_nm > 0:
            raise ValueError(f"z_length_nm must be > 0, got {self.z_length_nm}")

    @property
    def is_3d(self) -> bool:
        """Whether emitters have z (an astigmatic calibration is set)."""
        return self.psf_calibration is not None

    @property
    def z_range_nm(self) -> tuple[float, float]:
        """(z_min, z_max) in nm: the given values, else the calibration's usable range."""
        if self.psf_calibration is None:
            return (0.0, 0.0)
        zr = self.psf_calibration["z_range_nm"]
        lo = float(zr[0]) if self.z_min_nm is None else float(self.z_min_nm)
        hi = float(zr[1]) if self.z_max_nm is None else float(self.z_max_nm)
        return lo, hi

    @property
    def duty_cycle(self) -> float:
        """Fraction of time a (non-bleached) fluorophore is on."""
        return self.t_on / (self.t_on + self.t_off)

    @property
    def area_um2(self) -> float:
        return self.height * self.width * (self.pixel_size_nm / 1000.0) ** 2

    @property
    def psf_sigma_px(self) -> float:
        return self.psf_sigma_nm / self.pixel_size_nm

    @property
    def has_drift(self) -> bool:
        """True when any stage-drift term is non-zero."""
        return bool(self.drift_nm > 0 or self.drift_sine_nm > 0 or any(self.drift_linear_nm))
