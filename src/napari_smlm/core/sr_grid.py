"""The grid of the running super-resolved image that :func:`~napari_smlm.core.inference.iter_predict` makes.

It is known before a run starts (model, configuration, frame size), so a viewer can lay the
image's layer out once, on its final grid, instead of growing it when the first result arrives
(in napari a layer whose extent changes makes the viewer re-slice every layer).
"""

from __future__ import annotations

from typing import Any

__all__ = ["sr_grid"]


def sr_grid(checkpoint: Any, config: Any, image_shape: tuple[int, int], pixel_size_nm: float) -> tuple[tuple[int, int], float]:
    """``((rows, cols), sr_pixel_size_nm)`` of the running super-resolved image of a run.

    Parameters
    ----------
    checkpoint : Checkpoint
        The model that will run (its family's own grid, if any, decides the factor).
    config : InferenceConfig
        Its ``sr_upsampling`` is the factor of models without their own grid.
    image_shape : (int, int)
        Camera frame size ``(H, W)`` in pixels.
    pixel_size_nm : float
        Camera pixel size in the sample plane (nm).

    Returns
    -------
    ((int, int), float)
        Shape of the image (``H·u``, ``W·u``) and its pixel size ``pixel_size_nm / u`` (nm); the
        same as the ``sr_image`` / ``sr_pixel_size_nm`` of every update of ``iter_predict``.
    """
    from .inference import _sr_upsampling

    u_model = int(checkpoint.family().upsampling)
    h, w = (int(v) for v in image_shape)
    u = _sr_upsampling(u_model if u_model > 1 else int(config.sr_upsampling), u_model, h, w)
    return (h * u, w * u), float(pixel_size_nm) / u
