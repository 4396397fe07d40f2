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
    range are untouched. "auto" also adapts a batch whose noise is more than
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

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import SimulationConfig
from ..localizations import Localizations
from ..simulate import simulate_crops
from . import register
from .base import Batch, ModelFamily, PostprocessResult, in_crop_mask
from .decode_loss import decode_loss
from .decode_post import spatial_integration

__all__ = ["DecodeNet", "DecodeFamily", "HEADS", "split_output", "UNet"]

log = logging.getLogger(__name__)

_SIGMA_MAX_PX = 3.0
_SIGMA_MIN_PX = 0.01


# --------------------------------------------------------------------------- heads
def _head_p(x, cfg):
    return torch.sigmoid(x)


def _head_xy(x, cfg):
    return torch.tanh(x)


def _head_photons(x, cfg):
    return torch.sigmoid(x) * cfg["photon_scale"]


def _head_sigma_xy(x, cfg):
    return torch.sigmoid(x) * _SIGMA_MAX_PX + _SIGMA_MIN_PX


def _head_sigma_photons(x, cfg):
    return (torch.sigmoid(x) + 1e-3) * cfg["photon_scale"]


def _head_bg(x, cfg):
    return F.softplus(x) * cfg["bg_scale"]


#: Available heads: name -> (output channel names, activation(raw, config), initial bias).
#: A future ``z`` head adds an entry here (e.g. ``("z",)``, tanh·z_range) and to ``config["heads"]``.
HEADS: dict[str, tuple[tuple[str, ...], Callable[[torch.Tensor, dict], torch.Tensor], float]] = {
    "p": (("p",), _head_p, -4.0),  # prior p ≈ 0.02 per pixel: a few emitters per crop at start
    "xy": (("dx", "dy"), _head_xy, 0.0),
    "photons": (("photons",), _head_photons, -1.0),
    "sigma_xy": (("sigma_x", "sigma_y"), _head_sigma_xy, -2.0),
    "sigma_photons": (("sigma_photons",), _head_sigma_photons, -2.0),
    "bg": (("bg",), _head_bg, 0.5),
}


def output_channels(heads) -> list[str]:
    """Channel names of the network output, in order, for a list of head names."""
    return [c for h in heads for c in HEADS[h][0]]


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


# --------------------------------------------------------------------------- network
def _act(name: str) -> nn.Module:
    try:
        return {"elu": nn.ELU, "relu": nn.ReLU, "silu": nn.SiLU}[name](inplace=True)
    except KeyError:
        raise ValueError(f"activation must be elu, relu or silu, not {name!r}") from None


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int, act: str):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1), _act(act), nn.Conv2d(cout, cout, 3, padding=1), _act(act)
        )


class UNet(nn.Module):
    """Plain U-Net: two 3×3 convs per level, max-pool down, nearest-upsample + 1×1 conv up.

    Parameters
    ----------
    in_channels : int
    features : list of int
        Channels per level, finest first; ``len(features)`` levels (``2**(len-1)``
        must divide the input size; :class:`DecodeNet` pads to ensure it).
    act : {"elu", "relu", "silu"}
    """

    def __init__(self, in_channels: int, features: list[int], act: str = "elu"):
        super().__init__()
        feats = [int(f) for f in features]
        self.down = nn.ModuleList()
        cin = in_channels
        for f in feats:
            self.down.append(_Block(cin, f, act))
            cin = f
        self.up_proj = nn.ModuleList()
        self.up = nn.ModuleList()
        for lvl in range(len(feats) - 1, 0, -1):
            self.up_proj.append(nn.Conv2d(feats[lvl], feats[lvl - 1], 1))
            self.up.append(_Block(2 * feats[lvl - 1], feats[lvl - 1], act))
        self.out_channels = feats[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for k, blk in enumerate(self.down):
            if k:
                x = F.max_pool2d(x, 2)
            x = blk(x)
            skips.append(x)
        skips.pop()
        for proj, blk in zip(self.up_proj, self.up):
            x = F.interpolate(proj(x), scale_factor=2.0, mode="nearest")
            x = blk(torch.cat([x, skips.pop()], dim=1))
        return x


class DecodeNet(nn.Module):
    """Frame-analysis U-Net (shared over the 3 frames) → temporal-context U-Net → heads.

    Parameters
    ----------
    config : dict
        A :class:`DecodeFamily` configuration (``frame_features``, ``context_features``,
        ``head_features``, ``activation``, ``heads``, ``photon_scale``, ``bg_scale``).

    Notes
    -----
    Input ``(B, 3, H, W)`` preprocessed frames ``t-1, t, t+1``; output ``(B, C, H, W)`` with
    the channels of :func:`output_channels` in physical units (see the module docstring).
    Any ``H, W`` works: the input is padded (replicate) to a multiple of the coarsest
    level's stride and the output cropped back.
    """

    def __init__(self, config: dict):
        super().__init__()
        self.cfg = {k: config[k] for k in ("photon_scale", "bg_scale")}
        self.heads_order = list(config["heads"])
        self.n_frames = 2 * DecodeFamily.context + 1
        act = config["activation"]
        self.frame_net = UNet(1, config["frame_features"], act)
        self.context_net = UNet(self.n_frames * self.frame_net.out_channels, config["context_features"], act)
        hf = int(config["head_features"])
        self.trunk = nn.Sequential(nn.Conv2d(self.context_net.out_channels, hf, 3, padding=1), _act(act))
        self.heads = nn.ModuleDict()
        for h in self.heads_order:
            names, _, bias = HEADS[h]
            conv = nn.Conv2d(hf, len(names), 1)
            nn.init.constant_(conv.bias, bias)
            self.heads[h] = conv
        self._init_weights(act)
        self.stride = 2 ** (max(len(config["frame_features"]), len(config["context_features"])) - 1)
        self.frame_sharing = True
        self.channels = output_channels(self.heads_order)

    def _init_weights(self, act: str) -> None:
        # He initialisation keeps the activation scale through the ~20 stacked convolutions
        # (PyTorch's default shrinks it by ~2.5x per ReLU layer), which speeds early training.
        heads = {id(m) for m in self.heads.values()}
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and id(m) not in heads:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu" if act == "relu" else "leaky_relu")
                nn.init.zeros_(m.bias)

    def _frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3·F, H, W) features of the three frames of every window."""
        B, T, H, W = x.shape
        if (
            not self.training
            and self.frame_sharing
            and B > 1
            and T == 3
            and torch.equal(x[1:, 0], x[:-1, 1])
            and torch.equal(x[1:, 1], x[:-1, 2])
        ):
            # Consecutive windows of one movie: B + 2 distinct frames instead of 3·B.
            frames = torch.cat([x[:, 0], x[-1:, 1], x[-1:, 2]], dim=0)[:, None]
            f = self.frame_net(frames)
            return torch.cat([f[0:B], f[1 : B + 1], f[2 : B + 2]], dim=1)
        f = self.frame_net(x.reshape(B * T, 1, H, W))
        return f.reshape(B, T * f.shape[1], H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        s = self.stride
        ph, pw = (-H) % s, (-W) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        feats = self.context_net(self._frame_features(x))
        t = self.trunk(feats)
        outs = [HEADS[h][1](self.heads[h](t), self.cfg) for h in self.heads_order]
        out = torch.cat(outs, dim=1)
        if ph or pw:
            out = out[..., :H, :W]
        return out


# --------------------------------------------------------------------------- family
def _camera_noise_photons(camera, bg_photons: float) -> float:
    """Noise σ (photons/px) of ``camera`` at a background of ``bg_photons``: shot noise with the
    EM excess factor plus read noise, referred to the input."""
    from ..camera import get_camera

    cam = get_camera(camera)
    qe = max(float(cam.qe), 1e-6)
    read = float(cam.read_noise) / (max(float(cam.em_gain), 1.0) * qe)
    return math.sqrt(cam.excess_noise * max(float(bg_photons), 0.0) / qe + read * read)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@register
class DecodeFamily(ModelFamily):
    """DECODE-like model: 3-frame context, per-pixel p / offsets / photons / σ / background."""

    name = "decode"
    description = "DECODE-like: 3-frame temporal context, per-pixel detection + sub-pixel offsets + uncertainties"
    context = 1

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
            # randomised microscopes (core/microscopes.py MicroscopeRanges.to_dict()): when set,
            # training samples come from simulate_microscopes instead of the factors above
            "microscopes": None,
            # with "microscopes" set: the share of training batches drawn from the default
            # microscope (the factors above) instead, so the wide distribution does not cost the
            # microscope the model was first trained for
            "microscopes_default_fraction": 0.0,
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

    def split(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{channel: (B, H, W)}`` views of a network output."""
        return split_output(output, self.config["heads"])

    # ------------------------------------------------------------------ inference
    def _adaptation(self, photons: torch.Tensor, per_sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Background ``b̂`` and noise ratio ``k = σ̂/σ0`` (≥ ``adapt_min_gain``) of the central frames.

        One value for the whole batch, or (``per_sample``) one per sample; (B, 1, 1, 1) tensors.
        """
        c = self.config
        b0 = float(c["input_offset"])
        centre = photons[:, photons.shape[1] // 2]
        z = 0.6744897501960817 * math.sqrt(2.0)  # median |difference| of two N(0, σ²) = z·σ
        if per_sample:
            d = (centre[..., :, 1:] - centre[..., :, :-1]).abs()
            b_hat = centre.flatten(1).median(1).values
            s_hat = d.flatten(1).median(1).values / z
        else:
            # every k-th image row, ~65k pixels: the medians of a big batch at a fraction of the cost
            rows = centre.reshape(-1, centre.shape[-1])
            rows = rows[:: max(1, rows.numel() // 65536)]
            b_hat = rows.median().reshape(1).expand(photons.shape[0])
            s_hat = ((rows[:, 1:] - rows[:, :-1]).abs().median() / z).reshape(1).expand(photons.shape[0])
        s0 = float(c["input_noise"]) if c.get("input_noise") else math.sqrt(2.0 * max(b0, 0.0) / 0.9)
        self._noise = float(s_hat.flatten()[0])  # the (first sample's) measured noise, photons/px
        k = (s_hat / max(s0, 1e-12)).clamp_min(float(c.get("adapt_min_gain") or 0.0))
        k = torch.where(k > 0, k, torch.ones_like(k))
        return b_hat.reshape(-1, 1, 1, 1), k.reshape(-1, 1, 1, 1)

    def preprocess(self, photons: torch.Tensor) -> torch.Tensor:
        """``(photons − input_offset) / input_scale`` for (B, 3, H, W) frames in photons.

        With ``input_adapt`` ("auto": only for a batch whose background is far outside the
        trained range; "always": every batch) the frames are first mapped to the training
        background and noise at the same SNR (module docstring); :meth:`postprocess` maps the
        photometry back.
        """
        c = self.config
        b0 = float(c["input_offset"])
        self._photometry = None
        mode = str(c.get("input_adapt", "off"))
        if mode != "off" and photons.numel():
            lo, hi = b0 * float(c["bg_range"][0]) / 2.0, b0 * float(c["bg_range"][1]) * 2.0
            b_hat, k = self._adaptation(photons, per_sample=False)
            b_med = float(b_hat.flatten()[0])
            adapt = mode == "always" or not lo <= b_med <= hi
            tol = c.get("adapt_noise_tolerance")
            if not adapt and tol:
                # noise of the training camera at this background (shot noise scales as √b)
                s0 = float(c["input_noise"]) if c.get("input_noise") else math.sqrt(2.0 * max(b0, 0.0) / 0.9)
                s_exp = s0 * math.sqrt(max(b_med, 1e-6) / max(b0, 1e-6))
                s_hat = self._noise
                adapt = not s_exp / float(tol) <= s_hat <= s_exp * float(tol)
            if adapt:
                photons = b0 + (photons - b_hat) / k
                self._photometry = (float(b_hat.flatten()[0]), float(k.flatten()[0]))
                log.debug("decode: batch background %.4g photons/px (trained %.4g-%.4g): adapted at equal SNR "
                          "(noise ratio %.4g)", b_med, lo, hi, self._photometry[1])
        return (photons - b0) / float(c["input_scale"])

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

    def training_factors(self) -> dict[str, tuple[float, float]]:
        """``photons_range``, ``bg_range`` and PSF σ × (1 ± ``psf_sigma_jitter``) (see :meth:`sample_simulation`)."""
        c = self.config
        j = float(c["psf_sigma_jitter"])
        return {"photons": tuple(c["photons_range"]), "bg": tuple(c["bg_range"]), "psf_sigma": (1.0 - j, 1.0 + j)}

    def sample_simulation(
        self, sim: SimulationConfig, rng: np.random.Generator, randomize: bool
    ) -> tuple[SimulationConfig, float]:
        """One training sample's simulation config (3 frames) and its gain factor.

        With ``randomize``: density log-uniform in ``density_range`` (or 0 with ``p_empty``),
        photons and background log-uniform factors, PSF σ × U(1 ± jitter), filaments with
        probability ``p_filaments``, gain factor U(1 ± gain_jitter). Otherwise ``sim`` itself.
        """
        c = self.config
        seed = int(rng.integers(0, 2**31 - 1))
        if not randomize:
            return sim.replace(n_frames=3, seed=seed), 1.0
        dens = 0.0 if rng.random() < c["p_empty"] else _log_uniform(rng, *c["density_range"])
        fp = _log_uniform(rng, *c["photons_range"])
        fb = _log_uniform(rng, *c["bg_range"])
        fs = 1.0 + rng.uniform(-c["psf_sigma_jitter"], c["psf_sigma_jitter"])
        structure = "filaments" if rng.random() < c["p_filaments"] else "uniform"
        gain = 1.0 + rng.uniform(-c["gain_jitter"], c["gain_jitter"])
        cfg = sim.replace(
            n_frames=3,
            density=dens,
            photons_mean=sim.photons_mean * fp,
            photons_std=sim.photons_std * fp,
            photons_min=sim.photons_min * fp,
            bg_photons=sim.bg_photons * fb,
            bg_variation=sim.bg_variation * rng.uniform(0.0, 1.5),
            psf_sigma_nm=sim.psf_sigma_nm * fs,
            psf_sigma_std_nm=sim.psf_sigma_std_nm * fs,
            structure=structure,
            n_filaments=int(rng.integers(1, 7)),
            t_on=sim.t_on * _log_uniform(rng, 0.5, 2.0),
            seed=seed,
        )
        return cfg, gain

    def simulate_batch(
        self,
        sim: SimulationConfig,
        batch_size: int,
        rng: np.random.Generator,
        device: torch.device | str = "cpu",
        randomize: bool = True,
    ) -> Batch:
        """A batch of 3-frame crops of ``sim.height × sim.width`` px.

        Each sample draws its own simulation (:meth:`sample_simulation`); the crops are made by
        :func:`~napari_smlm.core.simulate.simulate_crops` (the simulator's own pipeline per
        sample, so a sample's ground truth equals ``simulate(cfg_i, include_outside=True)``'s,
        with PSF rendering and camera noise batched), then multiplied by the sample's gain
        factor after the camera model (a miscalibrated gain). Fluorophores in the margin around
        the crop shine into it but are not targets. Inputs and targets are made by
        :meth:`batch_from_data`, as for training on a user's data.

        Returns
        -------
        Batch
            ``inputs`` (B, 3, H, W) preprocessed; ``targets``: ``xy_px`` (E, 2) central-frame
            in-crop emitter positions (px from the top-left edge), ``photons`` (E,),
            ``sample`` (E,) int64, ``count`` (B,), ``bg`` (B, H, W) photons/px;
            ``ground_truth``: the same emitters in nm with ``frame`` = sample index.
        """
        device = torch.device(device)
        px = float(sim.pixel_size_nm)
        default_share = float(self.config.get("microscopes_default_fraction") or 0.0)
        if randomize and self.config.get("microscopes") and (default_share <= 0 or rng.random() >= default_share):
            from ..microscopes import MicroscopeRanges, simulate_microscopes

            ranges = MicroscopeRanges.from_dict(self.config["microscopes"])
            px = float(ranges.pixel_size_nm)
            photons, crops, _ = simulate_microscopes(ranges, int(batch_size), rng, int(sim.height), int(sim.width),
                                                     2 * self.context + 1, device)
        else:
            drawn = [self.sample_simulation(sim, rng, randomize) for _ in range(int(batch_size))]
            crops = simulate_crops([c for c, _ in drawn], rng=rng, device=device, include_outside=True)
            gains = torch.tensor([g for _, g in drawn], dtype=torch.float32, device=device)
            photons = sim.camera.adu_to_photons(crops.frames) * gains[:, None, None, None]
        g = crops.ground_truth
        central = g.filter(g["frame"] == self.context)  # targets: the central frame's emitters
        cols = {k: (central[k] if k in central else np.zeros(len(central))) for k in self.target_columns}
        meta = {"pixel_size_nm": px, "image_shape": (int(sim.height), int(sim.width)), "source": "simulate_batch"}
        gt = Localizations({"frame": central["sample"], **cols}, meta=meta)
        return self.batch_from_data(photons, gt, px, crops.background)

    def batch_from_data(
        self,
        photons: torch.Tensor,
        ground_truth: Localizations,
        pixel_size_nm: float,
        bg: torch.Tensor | None = None,
    ) -> Batch:
        """DECODE targets for 3-frame windows with known central-frame emitters.

        The one target-making path: :meth:`simulate_batch` and training from a user's movie +
        localizations (:class:`~napari_smlm.core.pairs.PairSampler`) both end here.

        Parameters
        ----------
        photons : torch.Tensor
            (B, 3, h, w) frames ``t-1, t, t+1`` in photons.
        ground_truth : Localizations
            Emitters of each sample's central frame (``frame`` = sample index, nm from the crop's
            top-left edge). Only those inside the crop (:func:`~.base.in_crop_mask`) are
            targets: an emitter centred in the margin shines into the crop but is not counted,
            as in simulation. ``photons`` is optional: without it the photon dimension is left
            out of the mixture term (the photon head then gets no training signal).
        pixel_size_nm : float
            Camera pixel size (nm).
        bg : torch.Tensor, optional
            (B, h, w) true background, photons per pixel. When it is None the **background term
            of the loss is dropped** for the batch (no ``"bg"`` target) rather than estimated: a
            robust statistic of the frame (median, low percentile) is biased by the emitters
            themselves at the densities where training on data matters (on the bundled
            ThunderSTORM pair the median frame value is several times the true background),
            and a biased target would teach the background head a wrong level. Localization
            does not use the background head.

        Returns
        -------
        Batch
            ``inputs`` (B, 3, h, w) preprocessed; ``targets``: ``xy_px`` (E, 2) positions in px
            from the top-left edge, ``photons`` (E,), ``sample`` (E,) int64, ``count`` (B,),
            ``has_photons`` (bool) and, when ``bg`` is given, ``bg`` (B, h, w) photons/px;
            ``ground_truth``: the in-crop emitters in nm (a ``bg`` column = ``bg`` at their
            pixel when ``bg`` is given).
        """
        T = 2 * self.context + 1
        if photons.ndim != 4 or photons.shape[1] != T:
            raise ValueError(f"{self.name}: expected (B, {T}, h, w) frames, got {tuple(photons.shape)}")
        B, _, H, W = (int(v) for v in photons.shape)
        device = photons.device
        px = float(pixel_size_nm)
        gt = ground_truth.filter(in_crop_mask(ground_truth, (H, W), px)) if len(ground_truth) else ground_truth.copy()
        gt.meta.update({"pixel_size_nm": px, "image_shape": (H, W)})
        samp = gt["frame"].astype(np.int64)
        if samp.size and (samp.min() < 0 or samp.max() >= B):
            raise ValueError(f"ground-truth frame (sample index) outside 0..{B - 1}")
        has_photons = "photons" in gt and bool(np.all(np.isfinite(gt["photons"])))
        gn = gt["photons"] if has_photons else np.zeros(len(gt))
        targets: dict[str, Any] = {
            "xy_px": torch.from_numpy(np.stack([gt["x_nm"] / px, gt["y_nm"] / px], axis=1)).float().to(device),
            # torch.tensor copies: table columns may be read-only views (from_numpy would warn).
            "photons": torch.tensor(np.asarray(gn, dtype=np.float32), device=device),
            "sample": torch.from_numpy(samp).to(device),
            "count": torch.from_numpy(np.bincount(samp, minlength=B)).float().to(device),
            "has_photons": has_photons,
        }
        if bg is not None:
            bgt = torch.as_tensor(bg, dtype=torch.float32, device=device)
            if bgt.shape != (B, H, W):
                raise ValueError(f"bg must be (B, h, w) = {(B, H, W)}, got {tuple(bgt.shape)}")
            targets["bg"] = bgt
            if len(gt):
                col = np.clip((gt["x_nm"] / px).astype(np.int64), 0, W - 1)
                row = np.clip((gt["y_nm"] / px).astype(np.int64), 0, H - 1)
                gt["bg"] = bgt.cpu().numpy()[samp, row, col].astype(np.float64)
        if str(self.config.get("input_adapt")) == "always" and B:
            # Every sample is mapped to the training background / noise on its own (inference
            # maps each batch of one movie), and its photometric targets with it.
            b_hat, k = self._adaptation(photons, per_sample=True)
            b0 = float(self.config["input_offset"])
            photons = b0 + (photons - b_hat) / k
            targets["photons"] = targets["photons"] / k.flatten()[targets["sample"]]
            if "bg" in targets:
                targets["bg"] = b0 + (targets["bg"] - b_hat[:, 0]) / k[:, 0]
            self._photometry = None
            inputs = (photons - b0) / float(self.config["input_scale"])
        else:
            inputs = self.preprocess(photons)
        return Batch(inputs=inputs, targets=targets, ground_truth=gt)

    def recorded_training_ranges(self, sim: SimulationConfig) -> dict | None:
        """What a checkpoint trained on randomised microscopes records as its training ranges
        (:func:`~napari_smlm.core.microscopes.trained_ranges`); None otherwise."""
        if not self.config.get("microscopes"):
            return None
        from ..microscopes import MicroscopeRanges, trained_ranges

        return trained_ranges(MicroscopeRanges.from_dict(self.config["microscopes"]), sim.camera)
