"""The one interface every model family implements.

A *family* bundles what differs between methods — the network, how training pairs are made
from the simulator, the loss, and how network output becomes localizations — so that the
training loop (:mod:`..training`), the streaming inference (:mod:`..inference`), checkpoints,
the CLI and the widgets are written once.

Data flow at inference::

    movie (ADU, uint16) --camera.adu_to_photons--> photons (B, 2c+1, H, W)
        --family.preprocess--> network input --net--> output
        --family.postprocess--> (Localizations, super-resolved image tile or None)

``c = family.context`` is the number of neighbouring frames on each side the network sees
(0 for the Deep-STORM family, 1 for the DECODE-like model); the inference loop pads the movie
at both ends by repeating the edge frame.

Before a new network is trained, ``family.configure_for(sim)`` adapts the config to the user's
microscope (``config_for_simulation``: e.g. input normalisation and output scales); how to add a
family is described in :mod:`napari_smlm.core.models`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ..config import SimulationConfig
from ..localizations import Localizations

__all__ = ["Batch", "ModelFamily", "PostprocessResult", "in_crop_mask"]

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """A training / validation batch.

    Attributes
    ----------
    inputs : torch.Tensor
        Network input, already preprocessed (what ``family.preprocess`` returns).
    targets : dict
        Whatever the family's loss needs (tensors on the same device).
    ground_truth : Localizations or None
        Emitters of the batch's central frames in nm, with ``frame`` = sample index within the
        batch and positions relative to the sample's crop; used for validation metrics (JI).
    """

    inputs: torch.Tensor
    targets: dict[str, Any] = field(default_factory=dict)
    ground_truth: Localizations | None = None


@dataclass
class PostprocessResult:
    """What ``family.postprocess`` returns for a batch of frames.

    Attributes
    ----------
    localizations : Localizations
        Frames numbered by the caller's ``frame_indices``; positions in nm from the frame's
        top-left edge.
    images : torch.Tensor or None
        (B, H·u, W·u) super-resolved image per frame (density map for the Deep-STORM family, a
        rendering of the detections for others) on the ``upsampling`` grid, or None.
    display : torch.Tensor or None
        (B, H', W') the per-frame network output worth showing live (e.g. detection probability).
    """

    localizations: Localizations
    images: torch.Tensor | None = None
    display: torch.Tensor | None = None


def in_crop_mask(ground_truth: Localizations, shape_px: tuple[int, int], pixel_size_nm: float) -> np.ndarray:
    """Which rows of a per-crop ground truth are ground truth *of the crop*.

    Parameters
    ----------
    ground_truth : Localizations
        Positions in nm from the crop's top-left edge; an ``in_fov`` column, when present,
        must be non-zero too (the simulator marks its margin emitters with 0).
    shape_px : (h, w)
        Crop size in camera pixels.
    pixel_size_nm : float

    Returns
    -------
    numpy.ndarray
        Boolean mask: ``0 <= x < w·px`` and ``0 <= y < h·px`` (and ``in_fov``).
    """
    if not len(ground_truth):
        return np.zeros(0, dtype=bool)
    x, y = ground_truth["x_nm"], ground_truth["y_nm"]
    h, w = (float(v) * float(pixel_size_nm) for v in shape_px)
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    if "in_fov" in ground_truth:
        ok &= ground_truth["in_fov"] > 0
    return ok


class ModelFamily(ABC):
    """Base class of model families. Subclasses register themselves in :data:`..models.REGISTRY`.

    Parameters
    ----------
    config : dict
        Architecture / target / post-processing settings; merged over ``default_config()``.
        Everything needed to rebuild the network must be in it (it goes into checkpoints).
    """

    #: Registry name, e.g. ``"deep-storm"``.
    name: ClassVar[str] = ""
    #: One-line description for ``napari-smlm models``.
    description: ClassVar[str] = ""
    #: Frames of temporal context on each side.
    context: ClassVar[int] = 0

    def __init__(self, config: dict | None = None):
        cfg = dict(self.default_config())
        unknown = set(config or {}) - set(cfg)
        if unknown:
            raise ValueError(f"{self.name}: unknown config keys {sorted(unknown)}")
        cfg.update(config or {})
        self.config: dict[str, Any] = cfg
        #: Keys given explicitly to the constructor: :meth:`configure_for` leaves them alone.
        self.explicit_keys: frozenset[str] = frozenset(config or {})

    # ------------------------------------------------------------------ architecture
    @classmethod
    @abstractmethod
    def default_config(cls) -> dict[str, Any]:
        """Default architecture / training-target / post-processing settings."""

    @abstractmethod
    def build(self) -> torch.nn.Module:
        """A freshly initialised network for ``self.config``."""

    # ------------------------------------------------------------------ microscope
    @classmethod
    @abstractmethod
    def config_for_simulation(cls, sim: SimulationConfig) -> dict[str, Any]:
        """The config settings that depend on the microscope, for ``sim``.

        What a family must know about the camera, PSF, photon and background levels and pixel
        size before it is trained from scratch (input normalisation, output scales, reference
        levels); ``{}`` for a family whose settings are independent of them. Only keys of
        :meth:`default_config` may appear.

        Parameters
        ----------
        sim : SimulationConfig
            The microscope: ``camera``, ``psf_sigma_nm`` (nm), ``photons_mean`` (photons per
            emitter per frame), ``bg_photons`` (photons per pixel per frame), ``pixel_size_nm``.

        Returns
        -------
        dict
            Config updates (a subset of the keys of :meth:`default_config`).
        """

    def configure_for(self, sim: SimulationConfig) -> ModelFamily:
        """Adapt ``self.config`` to a microscope, in place, and return ``self``.

        The settings of :meth:`config_for_simulation` replace the current ones, except keys the
        user gave explicitly to the constructor (:attr:`explicit_keys`), which always win.
        :func:`~napari_smlm.core.training.iter_train` calls it before training a network from
        scratch; a fine-tuned checkpoint keeps its settings (its weights were trained with them).

        Parameters
        ----------
        sim : SimulationConfig
            The microscope (see :meth:`config_for_simulation`).

        Returns
        -------
        ModelFamily
            ``self``, so that ``get_family(name, overrides).configure_for(sim)`` reads well.
        """
        updates = dict(self.config_for_simulation(sim))
        unknown = set(updates) - set(self.config)
        if unknown:
            raise ValueError(f"{self.name}: config_for_simulation returned unknown keys {sorted(unknown)}")
        applied = {k: v for k, v in updates.items() if k not in self.explicit_keys}
        self.config.update(applied)
        if applied:
            log.info("%s configured for the microscope: %s", self.name, applied)
        kept = sorted(set(updates) - set(applied))
        if kept:
            log.info("%s: keeping the explicitly set %s", self.name, kept)
        return self

    @property
    def upsampling(self) -> int:
        """Super-resolved grid = camera grid × this."""
        return int(self.config.get("upsampling", 1))

    # ------------------------------------------------------------------ training
    @abstractmethod
    def simulate_batch(
        self,
        sim: SimulationConfig,
        batch_size: int,
        rng,
        device: torch.device,
        randomize: bool = True,
    ) -> Batch:
        """Make a training batch with the simulator.

        Parameters
        ----------
        sim : SimulationConfig
            The user's microscope; ``height``/``width`` give the crop size.
        batch_size : int
        rng : numpy.random.Generator
            Source of all randomness (seeded validation sets rely on it).
        device : torch.device
            Where rendering and the returned tensors live.
        randomize : bool
            Draw camera / PSF / photon / background / density parameters around ``sim``
            (training), or keep ``sim`` as it is (a fixed validation set may use either).
        """

    def batch_from_data(
        self,
        photons: torch.Tensor,
        ground_truth: Localizations,
        pixel_size_nm: float,
        bg: torch.Tensor | None = None,
    ) -> Batch:
        """Make a training batch from frames and their ground truth (real or simulated).

        The one place where a family turns ground truth into its training targets:
        ``simulate_batch`` renders frames with the simulator and calls this, and training from a
        user's movie + localization file (:class:`~napari_smlm.core.pairs.PairSampler`) calls it
        with crops of the movie.

        Parameters
        ----------
        photons : torch.Tensor
            (B, 2·context+1, h, w) frames in photons (camera model already applied), central
            frame at index ``context``; the returned tensors live on its device.
        ground_truth : Localizations
            Emitters of each sample's **central** frame: ``frame`` = sample index (0..B-1),
            ``x_nm``/``y_nm`` in nm from the crop's top-left edge (pixel ``(i, j)`` centred at
            ``((j+0.5)·px, (i+0.5)·px)``). ``photons`` is optional; an ``in_fov`` column (1
            inside the crop, 0 for emitters in a margin around it) is optional too and, when
            absent, is derived from the positions.
        pixel_size_nm : float
            Camera pixel size (nm).
        bg : torch.Tensor, optional
            (B, h, w) background in photons per pixel, when known.

        Returns
        -------
        Batch
            ``ground_truth`` keeps only the emitters inside the crops.

        Raises
        ------
        NotImplementedError
            For families that can only train on their own simulator.
        """
        raise NotImplementedError(f"{self.name or type(self).__name__}: training from data pairs is not supported")

    @abstractmethod
    def loss(self, output: Any, batch: Batch) -> torch.Tensor:
        """Scalar training loss."""

    # ------------------------------------------------------------------ inference
    @abstractmethod
    def preprocess(self, photons: torch.Tensor) -> torch.Tensor:
        """Network input from frames in photons, shape (B, 2·context+1, H, W)."""

    @abstractmethod
    def postprocess(
        self,
        output: Any,
        frame_indices: torch.Tensor | Any,
        pixel_size_nm: float,
        threshold: float | None = None,
        want_images: bool = True,
    ) -> PostprocessResult:
        """Localizations (and images) from network output for a batch of frames."""

    def default_threshold(self) -> float:
        return float(self.config.get("threshold", 0.5))

    def offset_channels(self) -> tuple[list[int], list[int]]:
        """Output channels holding x and y sub-pixel offsets (negated when a flipped view is
        mirrored back, :mod:`napari_smlm.core.tta`); none for image-like outputs."""
        return [], []

    def training_factors(self) -> dict[str, tuple[float, float]]:
        """How far training randomises the microscope around its simulation config.

        Returns
        -------
        dict
            ``{"photons": (lo, hi), "bg": (lo, hi), "psf_sigma": (lo, hi)}``: factors applied to
            ``photons_mean``, ``bg_photons`` and ``psf_sigma_nm`` of the training
            :class:`SimulationConfig` (1, 1 = not randomised). Used by
            :func:`~napari_smlm.core.models.domain.training_ranges`.
        """
        return {"photons": (1.0, 1.0), "bg": (1.0, 1.0), "psf_sigma": (1.0, 1.0)}
