"""Point-spread functions.

:class:`Gaussian2D` is the pixel-integrated symmetric (or elliptic) 2-D Gaussian: the
fraction of an emitter's photons that falls in pixel ``[j, j+1) × [i, i+1)`` is

.. math:: \\tfrac14 [\\operatorname{erf}(\\tfrac{j+1-x}{\\sqrt2 σ}) - \\operatorname{erf}(\\tfrac{j-x}{\\sqrt2 σ})]
          [\\operatorname{erf}(\\tfrac{i+1-y}{\\sqrt2 σ}) - \\operatorname{erf}(\\tfrac{i-y}{\\sqrt2 σ})]

with ``x, y`` in pixel units measured from the image's top-left edge (pixel centres at
``j + 0.5``). Rendering is vectorised in torch (CPU or GPU): every emitter contributes a
``k × k`` window, scattered into the frames with one ``index_put_(accumulate=True)``.

:class:`Astigmatic` is the same elliptical Gaussian with σx, σy taken at each emitter's ``z``
from an :class:`~napari_smlm.core.calibration.AstigmaticCalibration` (3-D SMLM with a
cylindrical lens). Both follow the small :class:`PSF` protocol (``is_3d``, ``render`` into
frames in torch, ``unit_image`` in float64 numpy for Fisher information), which is what a
measured spline PSF will implement later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["PSF", "Gaussian2D", "Astigmatic", "integrated_gaussian_1d", "make_psf"]


@runtime_checkable
class PSF(Protocol):
    """What the simulator and the Fisher-information CRLB need from a PSF model.

    Positions are in camera pixels from the image's top-left edge (x ↔ columns), ``z`` in nm.
    """

    #: Whether the image depends on z (``render``/``unit_image`` then need ``z_nm``).
    is_3d: bool

    def render(
        self,
        frame_idx: torch.Tensor,
        x_px: torch.Tensor,
        y_px: torch.Tensor,
        photons: torch.Tensor,
        shape: tuple[int, int, int],
        *,
        z_nm: torch.Tensor | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Accumulate emitters into a (T, H, W) float32 stack of expected photons."""
        ...

    def unit_image(self, x_px: Any, y_px: Any, z_nm: Any, shape: tuple[int, int]) -> np.ndarray:
        """(n, H, W) float64 fraction of one photon per pixel for emitters at (x, y, z)."""
        ...


def _erf_image(x_px: Any, y_px: Any, sx_px: Any, sy_px: Any, shape: tuple[int, int]) -> np.ndarray:
    """(n, H, W) float64 pixel-integrated elliptical Gaussian of unit mass."""
    from scipy import special  # here, not at import: inference (models -> simulate -> psf) never needs scipy

    x = np.atleast_1d(np.asarray(x_px, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y_px, dtype=np.float64))
    x, y, sx, sy = np.broadcast_arrays(x, y, np.asarray(sx_px, dtype=np.float64), np.asarray(sy_px, dtype=np.float64))
    h, w = shape
    ex = np.arange(w)[None, :] - x[:, None]
    ey = np.arange(h)[None, :] - y[:, None]
    rx = math.sqrt(2.0) * sx[:, None]
    ry = math.sqrt(2.0) * sy[:, None]
    px_ = 0.5 * (special.erf((ex + 1.0) / rx) - special.erf(ex / rx))
    py_ = 0.5 * (special.erf((ey + 1.0) / ry) - special.erf(ey / ry))
    return py_[:, :, None] * px_[:, None, :]


def integrated_gaussian_1d(edges_minus_mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian mass per unit bin whose left edge is ``edges_minus_mu`` (all in px).

    ``edges_minus_mu`` has the bin's left edge minus the centre along its last axis;
    ``sigma`` broadcasts against it.
    """
    s = sigma * math.sqrt(2.0)
    return 0.5 * (torch.erf((edges_minus_mu + 1.0) / s) - torch.erf(edges_minus_mu / s))


@dataclass(frozen=True)
class Gaussian2D:
    """Pixel-integrated 2-D Gaussian PSF.

    Parameters
    ----------
    sigma_px : float
        Default PSF standard deviation in camera pixels (used when no per-emitter σ is given).
    radius : int, optional
        Half-width of the window rendered around each emitter, in pixels. Default
        ``ceil(4 σ_max) + 1``, which keeps > 99.99 % of the mass.
    """

    sigma_px: float = 1.0
    radius: int | None = None

    is_3d = False

    def unit_image(self, x_px: Any, y_px: Any, z_nm: Any = None, shape: tuple[int, int] = (15, 15)) -> np.ndarray:
        """(n, H, W) float64 photon fraction per pixel of emitters at ``(x_px, y_px)`` (z ignored)."""
        return _erf_image(x_px, y_px, self.sigma_px, self.sigma_px, shape)

    def window_radius(self, sigma_max: float) -> int:
        return int(self.radius) if self.radius is not None else int(math.ceil(4.0 * sigma_max)) + 1

    def render(
        self,
        frame_idx: torch.Tensor,
        x_px: torch.Tensor,
        y_px: torch.Tensor,
        photons: torch.Tensor,
        shape: tuple[int, int, int],
        sigma_x_px: torch.Tensor | float | None = None,
        sigma_y_px: torch.Tensor | float | None = None,
        out: torch.Tensor | None = None,
        z_nm: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Render emitters into a stack of expected-photon images.

        Parameters
        ----------
        frame_idx : int tensor (n,)
            Frame of each emitter, ``0 <= frame < shape[0]``.
        x_px, y_px : float tensors (n,)
            Positions in pixels from the top-left edge (x ↔ columns).
        photons : float tensor (n,)
            Total photons of each emitter (the integral over the infinite plane).
        shape : (T, H, W)
            Output shape.
        sigma_x_px, sigma_y_px : tensor (n,) or float, optional
            Per-emitter PSF width in pixels; default ``self.sigma_px``.
        out : tensor (T, H, W), optional
            Accumulate into this tensor instead of a new zero one.
        z_nm : tensor (n,), optional
            Ignored: this PSF does not depend on z (accepted for the :class:`PSF` protocol).

        Returns
        -------
        torch.Tensor
            (T, H, W) float32 expected photons per pixel, on the device of ``x_px``.
        """
        dev = x_px.device
        T, H, W = (int(v) for v in shape)
        if out is None:
            out = torch.zeros((T, H, W), dtype=torch.float32, device=dev)
        n = x_px.numel()
        if n == 0:
            return out
        sx = torch.as_tensor(self.sigma_px if sigma_x_px is None else sigma_x_px, dtype=torch.float32, device=dev)
        sy = torch.as_tensor(sx if sigma_y_px is None else sigma_y_px, dtype=torch.float32, device=dev)
        sx = sx.expand(n) if sx.ndim == 0 else sx
        sy = sy.expand(n) if sy.ndim == 0 else sy
        r = self.window_radius(float(torch.maximum(sx.max(), sy.max())))
        k = 2 * r + 1
        offs = torch.arange(-r, r + 1, device=dev)
        # Window's left pixel index per emitter, centred on the pixel containing the emitter.
        cx = torch.floor(x_px).long()
        cy = torch.floor(y_px).long()
        cols = cx[:, None] + offs[None, :]  # (n, k)
        rows = cy[:, None] + offs[None, :]
        px_ = integrated_gaussian_1d(cols.float() - x_px[:, None].float(), sx[:, None])  # (n, k)
        py_ = integrated_gaussian_1d(rows.float() - y_px[:, None].float(), sy[:, None])
        vals = photons.float()[:, None, None] * py_[:, :, None] * px_[:, None, :]  # (n, k, k)
        rr = rows[:, :, None].expand(n, k, k)
        cc = cols[:, None, :].expand(n, k, k)
        ff = frame_idx.long()[:, None, None].expand(n, k, k)
        inside = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W) & (ff >= 0) & (ff < T)
        flat = (ff * H + rr) * W + cc
        out.view(-1).index_put_((flat[inside],), vals[inside], accumulate=True)
        return out


@dataclass(frozen=True)
class Astigmatic:
    """Pixel-integrated elliptical Gaussian whose σx, σy follow an astigmatic calibration.

    Parameters
    ----------
    calibration : AstigmaticCalibration, dict or path
        σx(z) (along image columns) and σy(z) (along rows) in nm; see
        :mod:`napari_smlm.core.calibration`.
    pixel_size_nm : float
        Camera pixel size of the images rendered (nm).
    radius : int, optional
        Half-width of the rendered window (pixels); default from the largest σ.
    """

    calibration: Any
    pixel_size_nm: float = 100.0
    radius: int | None = None

    is_3d = True

    def __post_init__(self):
        from .calibration import AstigmaticCalibration

        object.__setattr__(self, "calibration", AstigmaticCalibration.coerce(self.calibration))
        if not self.pixel_size_nm > 0:
            raise ValueError(f"Astigmatic: pixel_size_nm must be > 0, got {self.pixel_size_nm}")

    def sigmas_px(self, z_nm: Any) -> tuple[np.ndarray, np.ndarray]:
        """(σx, σy) in camera pixels at ``z_nm`` (float64 arrays)."""
        sx, sy = self.calibration.sigmas_nm(z_nm)
        return sx / self.pixel_size_nm, sy / self.pixel_size_nm

    def unit_image(self, x_px: Any, y_px: Any, z_nm: Any, shape: tuple[int, int] = (15, 15)) -> np.ndarray:
        """(n, H, W) float64 photon fraction per pixel of emitters at ``(x_px, y_px, z_nm)``."""
        if z_nm is None:
            raise ValueError("Astigmatic.unit_image needs z_nm")
        sx, sy = self.sigmas_px(np.atleast_1d(np.asarray(z_nm, dtype=np.float64)))
        return _erf_image(x_px, y_px, sx, sy, shape)

    def render(
        self,
        frame_idx: torch.Tensor,
        x_px: torch.Tensor,
        y_px: torch.Tensor,
        photons: torch.Tensor,
        shape: tuple[int, int, int],
        *,
        z_nm: torch.Tensor | None = None,
        out: torch.Tensor | None = None,
        sigma_x_px: Any = None,
        sigma_y_px: Any = None,
    ) -> torch.Tensor:
        """Render emitters at ``z_nm`` (nm, tensor (n,)); see :meth:`Gaussian2D.render`.

        ``sigma_x_px``/``sigma_y_px`` are ignored (the widths come from z).
        """
        if z_nm is None:
            raise ValueError("Astigmatic.render needs z_nm (the emitters' axial positions, nm)")
        dev = x_px.device
        z = torch.as_tensor(z_nm).detach().cpu().numpy().astype(np.float64)
        sx, sy = self.sigmas_px(z)
        sx_t = torch.from_numpy(sx).float().to(dev)
        sy_t = torch.from_numpy(sy).float().to(dev)
        return Gaussian2D(1.0, self.radius).render(
            frame_idx, x_px, y_px, photons, shape, sigma_x_px=sx_t, sigma_y_px=sy_t, out=out
        )


def make_psf(calibration: Any = None, pixel_size_nm: float = 100.0, sigma_px: float = 1.0) -> Gaussian2D | Astigmatic:
    """The PSF for a simulation: :class:`Astigmatic` with a calibration, else :class:`Gaussian2D`."""
    if calibration is None:
        return Gaussian2D(sigma_px)
    return Astigmatic(calibration, pixel_size_nm)
