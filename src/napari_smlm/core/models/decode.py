"""DECODE-like model family: per-pixel detection + sub-pixel regression with uncertainties.

Implemented from the description in Speiser et al., *Deep learning enables fast and dense
single-molecule localization with high accuracy*, Nat. Methods 18, 1082 (2021); no code of the
reference implementation is used.

Network (:class:`DecodeNet`)
    1. A **frame-analysis U-Net** with shared weights looks at each of the frames
       ``t-1, t, t+1`` separately and returns ``F`` feature maps per frame.
    2. A **temporal-context U-Net** takes the ``3·F`` concatenated maps and mixes them.
    3. **Heads** (a dict, so that e.g. a ``z`` head can be added) turn the context features into
       per-pixel maps on the camera grid (all values physical):

       ========== =========================================== ==================
       channel    meaning                                     activation
       ========== =========================================== ==================
       p          detection probability                       sigmoid
       dx, dy     emitter offset from the pixel centre (px)   tanh, in (-1, 1)
       photons    emitted photons                             sigmoid·photon_scale
       sigma_x/y  predicted localization uncertainty (px)     sigmoid·3 + 0.01
       sigma_ph   predicted photon uncertainty (photons)      (sigmoid + 1e-3)·photon_scale
       bg         background (photons / px)                   softplus·bg_scale
       ========== =========================================== ==================

    The forward pass returns one tensor ``(B, C, H, W)``; :func:`split_output` names the
    channels. In eval mode, when a batch holds *consecutive* windows of one movie (what
    :func:`~napari_smlm.core.inference.iter_predict` feeds), each frame goes through the
    frame-analysis net once instead of three times ("frame sharing"); the result is identical.

Input normalisation (``preprocess``)
    ``(photons - input_offset) / input_scale`` with fixed numbers chosen from the training
    simulation (:meth:`DecodeFamily.config_for_simulation`): the offset is the expected
    background and the scale the peak pixel of a typical emitter, so inputs are O(1). Like
    DECODE we use a *fixed* affine map, not a per-frame one: a per-frame normalisation would
    hide the absolute brightness the photon head must report, and would change with the
    density of a frame. Robustness across brightness / background / camera gain comes from
    training on per-sample randomised photons (0.3–2×), background (0.3–2×), PSF width (±15 %)
    and gain (±5 %) around the user's microscope.

    Out-of-range movies (``input_adapt="auto"``, the default): when a batch's background
    (median, photons/px) lies outside ``[input_offset · bg_range[0] / 2, input_offset ·
    bg_range[1] · 2]``, far beyond anything the network saw, the frames are first mapped
    affinely to the training conditions at the same signal-to-noise ratio: ``x' = b0 + (x −
    b̂)·σ0/σ̂`` with ``b̂`` the batch background, ``σ̂`` its noise (median absolute difference of
    horizontally adjacent pixels / (0.6745·√2), insensitive to spots and to gradients), ``b0 =
    input_offset`` and ``σ0 = input_noise`` the training camera's noise at that background.
    Photons, background and photon uncertainties are mapped back after the network, positions
    need nothing. Measured (issue 15's held-out low-SNR case: sCMOS, 500 photons/px background,
    3000-photon emitters, 1.3 /µm², true camera given): JI 13.5 % → 70.4 %, precision 13.6 % →
    92.4 % with the same weights (``benchmarks/camera_adapt.py``). Movies inside the trained
    range are untouched. "auto" also adapts a batch whose noise (of its background pixels, those at or
    below the lower quartile: the spots of a dense movie must not count as noise) is more than
    ``adapt_noise_tolerance`` (1.5×) off the training camera's at the batch's background (a
    read-noise-dominated sCMOS at 10 photons/px: JI 60.7 → 73.7 % at 2,000 photons), and
    ``k = σ̂/σ0`` is never below ``adapt_min_gain`` (1): a movie quieter than the training camera
    is shifted, not stretched. ``input_adapt="always"`` adapts every batch; a model trained on
    randomised microscopes (``microscopes`` config, :mod:`napari_smlm.core.microscopes`) is
    trained that way, each sample mapped on its own with its photon and background targets
    (:meth:`DecodeFamily.batch_from_data`).

Training data, loss and post-processing: see :meth:`DecodeFamily.simulate_batch`,
:meth:`DecodeFamily.batch_from_data` (targets from any frames + ground truth, e.g. a user's
movie and localization file), :mod:`.decode_loss` and :mod:`.decode_post`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..config import SimulationConfig
from . import register
from .base import Batch, ModelFamily, PostprocessResult
from .decode_adapt import DecodeInputAdaptation, _camera_noise_photons
from .decode_data import DecodeTrainingData
from .decode_loss import decode_loss
from .decode_net import CONTEXT, HEADS, DecodeNet, UNet, output_channels
from .decode_post import spatial_integration

# The network (decode_net), the input normalisation (decode_adapt) and the training data
# (decode_data) have modules of their own; what this module held stays importable from here.
from .decode_data import _log_uniform  # noqa: F401  (re-exported)
from .decode_net import _SIGMA_MAX_PX, _SIGMA_MIN_PX, _act, _Block  # noqa: F401  (re-exported)
from .decode_net import _head_bg, _head_p, _head_photons, _head_sigma_photons, _head_sigma_xy, _head_xy  # noqa: F401

__all__ = ["DecodeNet", "DecodeFamily", "HEADS", "split_output", "UNet"]


def split_output(output: torch.Tensor, heads=None) -> dict[str, torch.Tensor]:
    """Name the channels of a :class:`DecodeNet` output.

    Parameters
    ----------
    output : torch.Tensor
        (B, C, H, W) network output.
    heads : list of str, optional
        Head names in order; default: the default configuration's.

    Returns
    -------
    dict
        ``{channel name: (B, H, W) tensor}`` (views, no copies).
    """
    names = output_channels(heads or DecodeFamily.default_config()["heads"])
    if output.shape[1] != len(names):
        raise ValueError(f"output has {output.shape[1]} channels, heads {heads} give {len(names)}")
    return {n: output[:, k] for k, n in enumerate(names)}



@register
class DecodeFamily(DecodeTrainingData, DecodeInputAdaptation, ModelFamily):
    """DECODE-like model: 3-frame context, per-pixel p / offsets / photons / σ / background."""

    name = "decode"
    description = "DECODE-like: 3-frame temporal context, per-pixel detection + sub-pixel offsets + uncertainties"
    context = CONTEXT

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            # architecture
            "frame_features": [16, 32],
            "context_features": [24, 48, 96],
            "head_features": 24,
            "activation": "relu",
            "heads": ["p", "xy", "photons", "sigma_xy", "sigma_photons", "bg"],
            # normalisation / output scales (photons, photons per px): set for the user's
            # microscope by configure_for / config_for_simulation before training from scratch
            "input_offset": 50.0,
            "input_scale": 220.0,
            "photon_scale": 8000.0,
            "bg_scale": 50.0,
            # out-of-range input adaptation (see the module docstring): "auto" | "off" | "always"
            "input_adapt": "auto",
            # noise σ (photons/px) of the training camera at input_offset; None = the
            # smlm2016_emccd preset's, sqrt(2 · input_offset / 0.9)
            "input_noise": None,
            # the adaptation never amplifies: k = max(noise / input_noise, adapt_min_gain). A movie
            # quieter than the training camera (background ~0) is shifted, not stretched: its
            # spots' own shot noise is already what the network knows.
            "adapt_min_gain": 1.0,
            # "auto" also adapts a batch whose noise is more than this factor off the training
            # camera's at the batch's background (a read-noise-dominated sCMOS at 10 photons/px
            # has 3.7x the noise of the EMCCD at the same background); None: background only
            "adapt_noise_tolerance": 1.5,
            # loss
            "loss_window": 5,
            "count_weight": 1.0,
            "loc_weight": 1.0,
            "bg_weight": 1.0,
            "count_var_floor": 0.05,
            # training data randomisation (factors around the SimulationConfig)
            "density_range": [0.05, 5.0],  # emitters / µm² (log-uniform)
            "p_empty": 0.05,
            "photons_range": [0.3, 2.0],
            "bg_range": [0.3, 2.0],
            "psf_sigma_jitter": 0.15,
            "gain_jitter": 0.05,
            "p_filaments": 0.3,
            # clusters (Gaussian blobs, structure "image") among the default microscope's samples
            "p_clusters": 0.0,
            # randomised microscopes (core/microscopes.py MicroscopeRanges.to_dict()): when set,
            # training samples come from simulate_microscopes instead of the factors above
            "microscopes": None,
            # with "microscopes" set: the share of training batches drawn from the default
            # microscope (the factors above) instead, so the wide distribution does not cost the
            # microscope the model was first trained for
            "microscopes_default_fraction": 0.0,
            # training-time input adaptation with input_adapt="auto": None = none (only "always"
            # adapts training samples); "auto" = each randomised-microscope sample as inference's
            # "auto" rule would treat a movie like it (out-of-range background or noise mapped, the
            # rest as is); default-microscope samples are never mapped
            "train_adapt": None,
            # post-processing
            "threshold": 0.5,
            "split_threshold": 0.6,
            "candidate_threshold": 0.1,
            "position": "max",
            # px: neighbours belong to a detection only when their predicted positions agree
            # within this distance (decode_post.spatial_integration); None = plain 3x3 rule.
            # The shipped decode.pt stores its calibrated value (benchmarks/decode_postproc.py).
            "agree_radius": None,
        }

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        pf, pc = self.config.get("p_filaments"), self.config.get("p_clusters")
        pf = 0.0 if pf is None else float(pf)
        pc = 0.0 if pc is None else float(pc)
        if not (0.0 <= pf <= 1.0 and 0.0 <= pc <= 1.0 and pf + pc <= 1.0 + 1e-9):
            raise ValueError(
                f"{self.name}: p_filaments ({pf}) and p_clusters ({pc}) are the shares of training samples drawn as "
                "filaments and as clusters (the rest uniform): each must be in [0, 1] and their sum at most 1"
            )

    @classmethod
    def config_for_simulation(cls, sim: SimulationConfig) -> dict[str, float]:
        """Normalisation and output scales suited to a microscope.

        Parameters
        ----------
        sim : SimulationConfig
            Uses ``bg_photons`` (photons/px), ``photons_mean`` (photons) and the PSF width in
            pixels (``psf_sigma_nm / pixel_size_nm``).

        Returns
        -------
        dict
            ``input_offset`` = background (photons/px), ``input_scale`` = peak pixel of a mean
            emitter ``N/(2πσ²)`` (photons), ``photon_scale`` = 4 × mean photons (the largest
            photon count the head can report), ``bg_scale`` = background (photons/px, at
            least 1) and ``input_noise`` = the camera's noise at that background (photons/px).
        """
        s = sim.psf_sigma_px
        return {
            "input_offset": float(sim.bg_photons),
            "input_scale": float(max(sim.photons_mean / (2 * math.pi * s * s), 1.0)),
            "photon_scale": float(4.0 * sim.photons_mean),
            "bg_scale": float(max(sim.bg_photons, 1.0)),
            "input_noise": float(_camera_noise_photons(sim.camera, sim.bg_photons)),
        }

    def build(self) -> nn.Module:
        return DecodeNet(self.config)

    @property
    def channels(self) -> list[str]:
        return output_channels(self.config["heads"])

    def offset_channels(self) -> tuple[list[int], list[int]]:
        """The ``dx`` and ``dy`` channels (see :meth:`.ModelFamily.offset_channels`)."""
        names = self.channels
        return [k for k, c in enumerate(names) if c == "dx"], [k for k, c in enumerate(names) if c == "dy"]

    def split(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{channel: (B, H, W)}`` views of a network output."""
        return split_output(output, self.config["heads"])

    # ------------------------------------------------------------------ inference
    def postprocess(
        self,
        output: torch.Tensor,
        frame_indices,
        pixel_size_nm: float,
        threshold: float | None = None,
        want_images: bool = True,
    ) -> PostprocessResult:
        """Localizations by spatial integration of the p map (see :mod:`.decode_post`).

        ``images`` is None (the caller renders the localizations on its own grid);
        ``display`` is the p map.
        """
        o = self.split(output.float())
        th = self.default_threshold() if threshold is None else float(threshold)
        locs = spatial_integration(
            o,
            frame_indices,
            pixel_size_nm,
            threshold=th,
            split_threshold=float(self.config["split_threshold"]),
            candidate_threshold=float(self.config["candidate_threshold"]),
            position=str(self.config["position"]),
            agree_radius=self.config.get("agree_radius"),
        )
        ph = getattr(self, "_photometry", None)
        if ph is not None and len(locs):
            b_hat, k = ph
            b0 = float(self.config["input_offset"])
            for col in ("photons", "sigma_photons"):
                if col in locs:
                    locs[col] = locs[col] * k
            if "bg" in locs:
                locs["bg"] = b_hat + (locs["bg"] - b0) * k
        return PostprocessResult(localizations=locs, images=None, display=o["p"].detach())

    # ------------------------------------------------------------------ training
    #: The loss over the split outputs and targets (the 3-D family puts z in the mixture).
    mixture_loss = staticmethod(decode_loss)
    #: Ground-truth columns of a simulated batch's central frame (the 3-D family adds ``z_nm``).
    target_columns: tuple[str, ...] = ("x_nm", "y_nm", "photons", "bg", "psf_sigma_nm", "in_fov")

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """DECODE loss (count + Gaussian mixture + background), see :func:`.decode_loss.decode_loss`."""
        out = self.split(output)
        t = batch.targets
        if t.get("bg") is None:
            # Background unknown (data pairs without it): the background term is dropped.
            out = {k: v for k, v in out.items() if k != "bg"}
        if not t.get("has_photons", True):
            # Photons unknown: a constant photon dimension (zero error, unit σ) leaves the
            # mixture a 2-D (x, y) one up to a constant.
            ps = float(self.config["photon_scale"])
            out = {**out, "photons": torch.zeros_like(out["p"]), "sigma_photons": torch.full_like(out["p"], ps)}
        total, _ = type(self).mixture_loss(
            out,
            t,
            photon_scale=float(self.config["photon_scale"]),
            bg_scale=float(self.config["bg_scale"]),
            window=int(self.config["loss_window"]),
            count_weight=float(self.config["count_weight"]),
            loc_weight=float(self.config["loc_weight"]),
            bg_weight=float(self.config["bg_weight"]),
            count_var_floor=float(self.config["count_var_floor"]),
        )
        return total


    def recorded_training_ranges(self, sim: SimulationConfig) -> dict | None:
        """What a checkpoint trained on randomised microscopes records as its training ranges
        (:func:`~napari_smlm.core.microscopes.trained_ranges`); None otherwise."""
        if not self.config.get("microscopes"):
            return None
        from ..microscopes import MicroscopeRanges, trained_ranges

        return trained_ranges(MicroscopeRanges.from_dict(self.config["microscopes"]), sim.camera)
