"""Image metrics (NMSE, PSNR, SSIM, Pearson) of two renders **on the same pixel grid**.

They are sensitive to intensity scaling, so each takes a ``normalize`` option.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NORMALIZATIONS", "nmse", "psnr", "ssim", "pearson"]

NORMALIZATIONS = (None, "sum", "max")


def _prepare(estimate: Any, reference: Any, normalize: str | None) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(estimate, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images must share a grid: shapes {x.shape} and {y.shape}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if normalize == "sum":
        x, y = x / x.sum(), y / y.sum()
    elif normalize == "max":
        x, y = x / x.max(), y / y.max()
    return x, y


def nmse(estimate: Any, reference: Any, normalize: str | None = None) -> float:
    """Normalised mean squared error ``||x_hat - x||^2 / ||x||^2``.

    Parameters
    ----------
    estimate, reference : array_like
        Images on the **same pixel grid** (same shape, pixel size and origin).
    normalize : {None, "sum", "max"}
        Rescale both images first: ``"sum"`` to unit sum (compares distributions of
        localizations), ``"max"`` to unit maximum. ``None`` compares raw values, which only
        makes sense when both are on the same intensity scale.

    Returns
    -------
    float
        Dimensionless; 0 for a perfect estimate, 1 for an all-zero estimate (un-normalised).
    """
    x, y = _prepare(estimate, reference, normalize)
    return float(np.sum((x - y) ** 2) / np.sum(y**2))


def _data_range(y: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        return float(data_range)
    r = float(y.max() - y.min())
    return r if r > 0 else 1.0


def psnr(estimate: Any, reference: Any, data_range: float | None = None, normalize: str | None = None) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range**2 / MSE)`` (dB).

    Parameters
    ----------
    estimate, reference : array_like
        Images on the same grid.
    data_range : float, optional
        Defaults to ``reference.max() - reference.min()`` (after ``normalize``).
    normalize : {None, "sum", "max"}
        See :func:`nmse`.

    Returns
    -------
    float
        dB; ``inf`` for identical images.
    """
    x, y = _prepare(estimate, reference, normalize)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(_data_range(y, data_range) ** 2 / mse))


def ssim(
    estimate: Any, reference: Any, data_range: float | None = None, normalize: str | None = None, **kwargs: Any
) -> float:
    """Structural similarity index (``skimage.metrics.structural_similarity``).

    Parameters
    ----------
    estimate, reference : array_like
        2-D images on the same grid.
    data_range : float, optional
        Defaults to ``reference.max() - reference.min()`` (after ``normalize``).
    normalize : {None, "sum", "max"}
        See :func:`nmse`. SSIM is sensitive to scale, so renders with different total
        intensity should be normalised.
    **kwargs
        Passed to :func:`skimage.metrics.structural_similarity` (e.g. ``win_size``,
        ``gaussian_weights``).

    Returns
    -------
    float
        Mean SSIM in [-1, 1].
    """
    from skimage.metrics import structural_similarity

    x, y = _prepare(estimate, reference, normalize)
    return float(structural_similarity(x, y, data_range=_data_range(y, data_range), **kwargs))


def pearson(a: Any, b: Any) -> float:
    """Pearson correlation coefficient of two images (or arrays) of the same shape.

    Scale- and offset-invariant, so no normalisation is needed. NaN if either is constant.
    """
    x, y = _prepare(a, b, None)
    x = x.ravel() - x.mean()
    y = y.ravel() - y.mean()
    den = np.sqrt(np.sum(x**2) * np.sum(y**2))
    return float(np.sum(x * y) / den) if den > 0 else float("nan")
