"""Point-spread functions.

:class:`Gaussian2D` is the pixel-integrated symmetric (or elliptic) 2-D Gaussian: the
fraction of an emitter's photons that falls in pixel ``[j, j+1) × [i, i+1)`` is

.. math:: \\tfrac14 [\\operatorname{erf}(\\tfrac{j+1-x}{\\sqrt2 σ}) - \\operatorname{erf}(\\tfrac{j-x}{\\sqrt2 σ})]
          [\\operatorname{erf}(\\tfrac{i+1-y}{\\sqrt2 σ}) - \\operatorname{erf}(\\tfrac{i-y}{\\sqrt2 σ})]

with ``x, y`` in pixel units measured from the image's top-left edge (pixel centres at
``j + 0.5``). Rendering is vectorised in torch (CPU or GPU): every emitter contributes a
``k × k`` window, scattered into the frames with one ``index_put_(accumulate=True)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Gaussian2D", "integrated_gaussian_1d"]


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
