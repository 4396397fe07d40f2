"""Astigmatic PSF calibration: the σx(z), σy(z) model and its YAML file.

A cylindrical lens makes the PSF elliptical; its widths along x (columns) and y (rows) change
with the emitter's axial position ``z`` in opposite directions, which encodes ``z``
(Huang et al., Science 319, 810 (2008)). Each axis follows the defocus model

.. math:: σ(z) = σ_0 \\sqrt{1 + u^2 + A u^3 + B u^4}, \\qquad u = (z - c) / d

(``c``: the axis's focal plane, ``d``: its depth of focus, ``A``, ``B``: higher-order terms):
:class:`DefocusCurve`. :class:`AstigmaticCalibration` holds the two curves and the usable z
range, turns measured widths into z, and saves to / loads from a small YAML file (read with
``yaml.safe_load`` only).

Where the other parts of the calibration live (their names are importable from here too):

* :mod:`napari_smlm.core.calibration_beads` — calibrating from a bead z-stack
  (:func:`~napari_smlm.core.calibration_beads.iter_calibrate`, ``calibrate_stack``,
  ``detect_beads``, ``fit_defocus_curve``, ``read_bead_stack``, ``simulate_bead_stack``);
* :mod:`napari_smlm.core.gaussian_fit` — the vectorised elliptical-Gaussian ROI fits
  (:func:`~napari_smlm.core.gaussian_fit.fit_elliptical_gaussians`) it and the astigmatic
  localizer use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .io.safe import atomic_path

__all__ = [
    "DefocusCurve",
    "AstigmaticCalibration",
    "CalibrationError",
]

CALIBRATION_FORMAT = "napari-smlm astigmatic calibration"
CALIBRATION_VERSION = 1


class CalibrationError(ValueError):
    """The bead stack cannot be calibrated (no beads, one slice, no step size ...)."""


# =========================================================================== defocus model
@dataclass(frozen=True)
class DefocusCurve:
    """One axis's PSF width versus z: ``σ(z) = s0·sqrt(1 + u² + A u³ + B u⁴)``, ``u = (z − c)/d``.

    Parameters
    ----------
    s0_nm : float
        Width at this axis's focal plane (nm).
    c_nm : float
        z of this axis's focal plane (nm).
    d_nm : float
        Depth of focus (nm): the width grows by √2 at ``c ± d`` (when A = B = 0).
    A, B : float
        Third- and fourth-order coefficients (dimensionless).
    """

    s0_nm: float
    c_nm: float
    d_nm: float
    A: float = 0.0
    B: float = 0.0

    def _q(self, z_nm: Any) -> tuple[np.ndarray, np.ndarray]:
        u = (np.asarray(z_nm, dtype=np.float64) - self.c_nm) / self.d_nm
        q = 1.0 + u**2 + self.A * u**3 + self.B * u**4
        # The polynomial could dip below 0 far outside the calibrated range for odd A, B.
        return u, np.maximum(q, 1e-6)

    def __call__(self, z_nm: Any) -> np.ndarray:
        """Width (nm) at ``z_nm`` (nm); any array shape."""
        _, q = self._q(z_nm)
        return self.s0_nm * np.sqrt(q)

    def derivative(self, z_nm: Any) -> np.ndarray:
        """dσ/dz (dimensionless, nm per nm) at ``z_nm``."""
        u, q = self._q(z_nm)
        dq = (2.0 * u + 3.0 * self.A * u**2 + 4.0 * self.B * u**3) / self.d_nm
        return self.s0_nm * dq / (2.0 * np.sqrt(q))

    def shifted(self, dz_nm: float) -> DefocusCurve:
        """The same curve with z measured from ``dz_nm`` (``c → c − dz``)."""
        return DefocusCurve(self.s0_nm, self.c_nm - dz_nm, self.d_nm, self.A, self.B)

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in ("s0_nm", "c_nm", "d_nm", "A", "B")}


def _curve_from(d: Any, where: str, axis: str) -> DefocusCurve:
    if not isinstance(d, dict):
        raise CalibrationError(f"{where}: '{axis}' must be a mapping of s0_nm, c_nm, d_nm, A, B")
    missing = {"s0_nm", "c_nm", "d_nm"} - set(d)
    unknown = set(d) - {"s0_nm", "c_nm", "d_nm", "A", "B"}
    if missing or unknown:
        raise CalibrationError(f"{where}: '{axis}' has missing {sorted(missing)} / unknown {sorted(unknown)} keys")
    vals = {}
    for k, v in d.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise CalibrationError(f"{where}: '{axis}.{k}' must be a finite number, got {v!r}")
        vals[k] = float(v)
    if vals["s0_nm"] <= 0 or vals["d_nm"] <= 0:
        raise CalibrationError(f"{where}: '{axis}.s0_nm' and '{axis}.d_nm' must be > 0")
    return DefocusCurve(**vals)


@dataclass(frozen=True)
class AstigmaticCalibration:
    """An astigmatic PSF calibration: σx(z), σy(z) and where they can be trusted.

    Parameters
    ----------
    sigma_x, sigma_y : DefocusCurve
        Width along x (image columns) and along y (image rows) versus z (nm).
    z_range_nm : (float, float)
        Usable z range (nm): inside it the ellipticity is monotonic in z and was sampled.
    pixel_size_nm : float
        Pixel size of the bead stack (nm); widths are stored in nm, so the calibration applies
        to any pixel size.
    residual_x_nm, residual_y_nm : float
        RMS of the width measurements about the fitted curves (nm), NaN if not measured.
    n_beads : int
        Beads used.
    step_nm : float
        z step of the stack (nm), NaN if not from a stack.
    z_offset_nm : float
        Stack z (first slice = 0) of the calibration's z = 0.
    source : str
        Where the calibration came from (a file name, "simulated", ...).
    """

    sigma_x: DefocusCurve
    sigma_y: DefocusCurve
    z_range_nm: tuple[float, float] = (-500.0, 500.0)
    pixel_size_nm: float = 100.0
    residual_x_nm: float = float("nan")
    residual_y_nm: float = float("nan")
    n_beads: int = 0
    step_nm: float = float("nan")
    z_offset_nm: float = 0.0
    source: str = ""

    def __post_init__(self):
        lo, hi = (float(v) for v in self.z_range_nm)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise CalibrationError(f"z_range_nm must be two finite numbers, low < high; got {self.z_range_nm}")
        object.__setattr__(self, "z_range_nm", (lo, hi))

    def sigmas_nm(self, z_nm: Any) -> tuple[np.ndarray, np.ndarray]:
        """(σx, σy) in nm at ``z_nm`` (nm)."""
        return self.sigma_x(z_nm), self.sigma_y(z_nm)

    def z_from_sigmas(self, sigma_x_nm: Any, sigma_y_nm: Any, step_nm: float = 1.0) -> np.ndarray:
        """z (nm) whose calibrated widths are closest to the measured ones.

        Minimises ``(√σx − √σx(z))² + (√σy − √σy(z))²`` over the usable range on a ``step_nm``
        grid (the distance of Huang et al. 2008). Measurements are broadcast together.
        """
        grid = np.arange(self.z_range_nm[0], self.z_range_nm[1] + step_nm, step_nm)
        gx, gy = np.sqrt(self.sigma_x(grid)), np.sqrt(self.sigma_y(grid))
        sx = np.sqrt(np.asarray(sigma_x_nm, dtype=np.float64))[..., None]
        sy = np.sqrt(np.asarray(sigma_y_nm, dtype=np.float64))[..., None]
        return grid[np.argmin((sx - gx) ** 2 + (sy - gy) ** 2, axis=-1)]

    # ----------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        """Plain-types dict (the YAML file's content)."""

        def num(v: float) -> float | None:
            return None if not math.isfinite(v) else float(v)

        return {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "model": "sigma(z) = s0*sqrt(1 + u^2 + A*u^3 + B*u^4), u = (z - c)/d; nm",
            "sigma_x": self.sigma_x.to_dict(),
            "sigma_y": self.sigma_y.to_dict(),
            "z_range_nm": [float(v) for v in self.z_range_nm],
            "pixel_size_nm": float(self.pixel_size_nm),
            "residual_x_nm": num(self.residual_x_nm),
            "residual_y_nm": num(self.residual_y_nm),
            "n_beads": int(self.n_beads),
            "step_nm": num(self.step_nm),
            "z_offset_nm": float(self.z_offset_nm),
            "source": str(self.source),
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "calibration") -> AstigmaticCalibration:
        """Inverse of :meth:`to_dict`; every field is checked (errors name ``where``)."""
        if not isinstance(d, dict):
            raise CalibrationError(f"{where}: expected a mapping, got {type(d).__name__}")
        if d.get("format", CALIBRATION_FORMAT) != CALIBRATION_FORMAT:
            raise CalibrationError(f"{where}: not a napari-smlm astigmatic calibration (format={d.get('format')!r})")
        if int(d.get("version", CALIBRATION_VERSION)) > CALIBRATION_VERSION:
            raise CalibrationError(f"{where}: calibration version {d.get('version')} is newer than this napari-smlm")
        known = {
            "format", "version", "model", "sigma_x", "sigma_y", "z_range_nm", "pixel_size_nm",
            "residual_x_nm", "residual_y_nm", "n_beads", "step_nm", "z_offset_nm", "source",
        }  # fmt: skip
        unknown = set(d) - known
        if unknown:
            raise CalibrationError(f"{where}: unknown keys {sorted(unknown)}")
        for k in ("sigma_x", "sigma_y"):
            if k not in d:
                raise CalibrationError(f"{where}: missing '{k}'")
        zr = d.get("z_range_nm", (-500.0, 500.0))
        if not isinstance(zr, (list, tuple)) or len(zr) != 2:
            raise CalibrationError(f"{where}: 'z_range_nm' must be [low, high] in nm, got {zr!r}")

        def num(key: str, default: float) -> float:
            v = d.get(key, default)
            if v is None:
                return float("nan")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise CalibrationError(f"{where}: '{key}' must be a number, got {v!r}")
            return float(v)

        px = num("pixel_size_nm", 100.0)
        if not px > 0:
            raise CalibrationError(f"{where}: 'pixel_size_nm' must be > 0, got {px}")
        try:
            return cls(
                sigma_x=_curve_from(d["sigma_x"], where, "sigma_x"),
                sigma_y=_curve_from(d["sigma_y"], where, "sigma_y"),
                z_range_nm=(float(zr[0]), float(zr[1])),
                pixel_size_nm=px,
                residual_x_nm=num("residual_x_nm", float("nan")),
                residual_y_nm=num("residual_y_nm", float("nan")),
                n_beads=int(d.get("n_beads", 0)),
                step_nm=num("step_nm", float("nan")),
                z_offset_nm=num("z_offset_nm", 0.0),
                source=str(d.get("source", "")),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError) and str(exc).startswith(where):
                raise
            raise CalibrationError(f"{where}: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        """Write the calibration as YAML (atomically; see :func:`~napari_smlm.core.io.safe.atomic_path`)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> AstigmaticCalibration:
        """Read a calibration YAML written by :meth:`save` (``yaml.safe_load``: never runs code)."""
        p = Path(path)
        if p.is_dir():
            raise CalibrationError(f"{p}: is a folder, not a calibration YAML (from `napari-smlm calibrate`)")
        if not p.is_file():
            raise CalibrationError(f"{p}: calibration file not found")
        try:
            data = yaml.safe_load(p.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{p}: not a readable YAML file ({exc})") from exc
        return cls.from_dict(data, where=str(p))

    @classmethod
    def coerce(cls, obj: Any) -> AstigmaticCalibration:
        """An :class:`AstigmaticCalibration` from itself, its dict, or a YAML path."""
        if isinstance(obj, AstigmaticCalibration):
            return obj
        if isinstance(obj, dict):
            return cls.from_dict(obj)
        if isinstance(obj, (str, Path)):
            return cls.load(obj)
        raise TypeError(f"cannot make an astigmatic calibration from {type(obj).__name__}")


# =========================================================================== moved: bead stacks, ROI fits
# Calibrating from a bead stack (calibration_beads.py) and the ROI fits (gaussian_fit.py) build on
# this module. Their names stay importable from here (`from napari_smlm.core.calibration import
# iter_calibrate`), looked up on first use (PEP 562), so that those modules can import this one
# at their top without an import cycle.
_MOVED = {
    "calibration_beads": [
        "CalibrationProgress", "detect_beads", "fit_defocus_curve", "iter_calibrate", "calibrate_stack",
        "read_bead_stack", "simulate_bead_stack", "_round_plane_and_range", "_z_step_from_tiff",
    ],
    "gaussian_fit": [
        "BeadFits", "fit_elliptical_gaussians", "_erf_mass", "_erf_mass_derivs", "_moments_guess", "_setup",
        "_model", "_finish", "_fit_block", "_fit_batch_lm",
    ],
}  # fmt: skip
_HOME = {name: module for module, names in _MOVED.items() for name in names}
__all__ += [name for name in _HOME if not name.startswith("_")]


def __getattr__(name: str) -> Any:
    if name in _HOME:
        from . import calibration_beads, gaussian_fit

        home = {"calibration_beads": calibration_beads, "gaussian_fit": gaussian_fit}[_HOME[name]]
        return getattr(home, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
