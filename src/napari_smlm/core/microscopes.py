"""Randomised microscopes: a training distribution that covers the microscopes users have.

A model trained around one microscope (one PSF width, one camera, one brightness) fails on the
others (issue 15: decode given the true sCMOS camera of a 500 photons/px movie fired
everywhere). :class:`MicroscopeRanges` describes what varies between microscopes and
:func:`sample_microscope` draws one microscope per training sample, seeded and pure (same
generator state → same draw). Per sample:

==================  =====================================================================
PSF σ               uniform in ``psf_sigma_px`` (camera pixels; 0.7–2.0 px covers 100–160 nm
                    pixels with 1.2–1.5 NA objectives), ±``psf_sigma_spread`` per emitter
photons             mean log-uniform in ``photons`` (per emitter on for a whole frame),
                    ±``photons_spread`` (relative σ) per emitter
background          log-uniform in ``[max(bg_photons[0], 1), bg_photons[1]]`` photons/px, or
                    uniform in ``[bg_photons[0], 1]`` with probability ``p_low_bg``; a smooth
                    random variation (``bg_variation``) and a linear gradient whose change
                    across the crop is up to ``bg_gradient`` × the background
density             log-uniform in ``density`` emitters/µm² (0 with probability ``p_empty``)
structure           uniform, filaments or clusters (Gaussian blobs, 30–150 nm) with
                    probabilities ``structures``
camera              EMCCD (probability ``p_emccd``) or sCMOS with randomised EM gain,
                    e⁻/ADU, read noise, QE and baseline (ranges below); the sensitivity is
                    raised when the brightest expected pixel would saturate 16 bits
blinking            mean on-time log-uniform in ``t_on`` frames
gain                the photon conversion is off by a factor U(1 ± ``gain_jitter``)
                    (a miscalibrated camera)
==================  =====================================================================

:func:`simulate_microscopes` renders a batch of short crops (3 frames for decode) through
:func:`~napari_smlm.core.simulate.simulate_crops` with one camera, density image and
background gradient per crop, and returns them in photons as the user's camera settings would
give them. :func:`trained_ranges` is what a checkpoint trained this way records, in the form
:func:`napari_smlm.core.models.domain.training_ranges` reads.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from .camera import Camera
from .config import SimulationConfig
from .simulate import SimulatedCrops, simulate_crops

__all__ = ["MicroscopeRanges", "MicroscopeSample", "sample_microscope", "simulate_microscopes", "trained_ranges"]

log = logging.getLogger(__name__)

_PAIRS = (
    "psf_sigma_px", "photons", "bg_photons", "bg_variation", "density", "t_on", "emccd_gain", "emccd_e_per_adu",
    "emccd_read_noise_e", "scmos_e_per_adu", "scmos_read_noise_e", "qe", "baseline_adu",
)


@dataclass(frozen=True)
class MicroscopeRanges:
    """What varies between training samples (see the module docstring).

    Ranges are ``(lo, hi)``; units: PSF σ in camera pixels, photons per emitter, background in
    photons/px/frame, density in emitters/µm², on-time in frames, read noise in RMS e⁻ (EMCCD:
    after multiplication), baseline in ADU.
    """

    pixel_size_nm: float = 100.0
    psf_sigma_px: tuple = (0.7, 2.0)
    psf_sigma_spread: float = 0.05
    photons: tuple = (300.0, 20000.0)
    photons_spread: float = 0.2
    bg_photons: tuple = (0.0, 1000.0)
    p_low_bg: float = 0.1
    bg_variation: tuple = (0.0, 0.3)
    bg_gradient: float = 0.5
    density: tuple = (0.05, 8.0)
    p_empty: float = 0.05
    structures: tuple = (("uniform", 0.5), ("filaments", 0.3), ("clusters", 0.2))
    t_on: tuple = (0.5, 5.0)
    p_emccd: float = 0.5
    emccd_gain: tuple = (30.0, 500.0)
    emccd_e_per_adu: tuple = (3.0, 50.0)
    emccd_read_noise_e: tuple = (20.0, 100.0)
    scmos_e_per_adu: tuple = (0.2, 2.5)
    scmos_read_noise_e: tuple = (0.8, 20.0)
    qe: tuple = (0.6, 1.0)
    baseline_adu: tuple = (0.0, 1000.0)
    gain_jitter: float = 0.05

    def __post_init__(self):
        for name in _PAIRS:
            lo, hi = (float(v) for v in getattr(self, name))
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
                raise ValueError(
                    f"MicroscopeRanges.{name} must be a finite (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}"
                )
            object.__setattr__(self, name, (lo, hi))
        if self.photons[0] <= 0 or self.psf_sigma_px[0] <= 0 or self.t_on[0] <= 0 or self.density[0] <= 0:
            raise ValueError("MicroscopeRanges: photons, psf_sigma_px, t_on and density must have lo > 0")
        if self.qe[1] > 1:
            raise ValueError(f"MicroscopeRanges.qe must lie in (0, 1], got {self.qe}")
        st = tuple((str(k), float(w)) for k, w in self.structures)
        bad = [k for k, w in st if k not in ("uniform", "filaments", "clusters") or w < 0]
        if bad or not st or sum(w for _, w in st) <= 0:
            raise ValueError(
                f"MicroscopeRanges.structures: (name, weight) with names uniform/filaments/clusters, got {st}"
            )
        object.__setattr__(self, "structures", st)
        scalars = ("psf_sigma_spread", "photons_spread", "p_low_bg", "bg_gradient", "p_empty", "p_emccd", "gain_jitter")
        for name in scalars:
            v = float(getattr(self, name))
            if not (math.isfinite(v) and 0 <= v <= (1 if name.startswith("p_") else 2)):
                raise ValueError(f"MicroscopeRanges.{name} out of range: {v}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {
            k: ([list(x) for x in v] if k == "structures" else list(v) if isinstance(v, tuple) else v)
            for k, v in d.items()
        }

    @classmethod
    def from_dict(cls, d: dict) -> MicroscopeRanges:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"MicroscopeRanges: unknown fields {sorted(unknown)}")
        return cls(**{k: (tuple(tuple(x) for x in v) if k == "structures" else tuple(v) if isinstance(v, list) else v)
                      for k, v in d.items()})


@dataclass(frozen=True)
class MicroscopeSample:
    """One drawn microscope: the crop's simulation config and what ``SimulationConfig`` cannot hold."""

    config: SimulationConfig
    camera: Camera
    gain_factor: float  # photons as converted / photons as simulated (miscalibration)
    bg_gradient: tuple  # (gx, gy) photons/px per px
    density_image: np.ndarray | None  # clusters


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


def _cluster_image(rng: np.random.Generator, height: int, width: int, pixel_size_nm: float) -> np.ndarray:
    """Density image (4× the camera grid): 1 + Poisson(area / 2 µm²) clusters of 30–150 nm on a 5 % floor."""
    up = 4
    h, w = height * up, width * up
    area_um2 = height * width * (pixel_size_nm / 1000.0) ** 2
    k = 1 + int(rng.poisson(area_um2 / 2.0))
    cy, cx = rng.uniform(0, h, k), rng.uniform(0, w, k)
    r = rng.uniform(30.0, 150.0, k) / (pixel_size_nm / up)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    img = np.full((h, w), 0.05 / (h * w))
    weights = rng.uniform(0.3, 1.0, k)
    for i in range(k):
        g = np.exp(-0.5 * ((yy - cy[i]) ** 2 + (xx - cx[i]) ** 2) / r[i] ** 2)
        img += weights[i] * g / max(g.sum(), 1e-12)
    return img


def _camera(rng: np.random.Generator, r: MicroscopeRanges, max_photons_px: float) -> Camera:
    qe = rng.uniform(*r.qe)
    baseline = float(np.round(rng.uniform(*r.baseline_adu)))
    if rng.random() < r.p_emccd:
        gain = _log_uniform(rng, *r.emccd_gain)
        sens = _log_uniform(rng, *r.emccd_e_per_adu)
        cam = Camera(kind="emccd", baseline=baseline, sensitivity=sens, em_gain=gain, qe=qe,
                     read_noise=rng.uniform(*r.emccd_read_noise_e), spurious_charge=rng.uniform(0.0, 0.005))
        headroom = 6.0  # the EM register's output has a long tail
    else:
        cam = Camera(kind="scmos", baseline=baseline, sensitivity=_log_uniform(rng, *r.scmos_e_per_adu), em_gain=1.0,
                     qe=qe, read_noise=_log_uniform(rng, *r.scmos_read_noise_e), spurious_charge=0.0)
        headroom = 1.5
    top = baseline + headroom * max_photons_px * cam.adu_per_photon
    if top > 60000:  # a user sets the gain so the brightest pixels do not saturate
        cam = cam.replace(sensitivity=cam.sensitivity * (top - baseline) / (60000 - baseline))
    return cam


def sample_microscope(
    ranges: MicroscopeRanges, rng: np.random.Generator, height: int, width: int, n_frames: int = 3
) -> MicroscopeSample:
    """Draw one training sample's microscope.

    Parameters
    ----------
    ranges : MicroscopeRanges
    rng : numpy.random.Generator
        All draws come from it (the sample's simulation seed too): seeded and reproducible.
    height, width : int
        Crop size (camera pixels).
    n_frames : int
        Frames per crop.

    Returns
    -------
    MicroscopeSample
    """
    r = ranges
    px = float(r.pixel_size_nm)
    sig_px = rng.uniform(*r.psf_sigma_px)
    ph = _log_uniform(rng, *r.photons)
    if rng.random() < r.p_low_bg:
        bg = rng.uniform(r.bg_photons[0], max(min(1.0, r.bg_photons[1]), r.bg_photons[0]))
    else:
        bg = _log_uniform(rng, max(r.bg_photons[0], 1.0), max(r.bg_photons[1], 1.0))
    bgv = rng.uniform(*r.bg_variation)
    ang = rng.uniform(0, 2 * np.pi)
    g = rng.uniform(0, r.bg_gradient) * bg / max(height, width)  # photons/px per px
    grad = (float(g * np.cos(ang)), float(g * np.sin(ang)))
    dens = 0.0 if rng.random() < r.p_empty else _log_uniform(rng, *r.density)
    names = [k for k, _ in r.structures]
    w = np.array([v for _, v in r.structures], dtype=float)
    structure = names[int(rng.choice(len(names), p=w / w.sum()))]
    t_on = _log_uniform(rng, *r.t_on)
    # brightest expected pixel: background (+ its variation and gradient) + a bright emitter's peak
    peak = (1.0 + 3.0 * r.photons_spread) * ph / (2 * math.pi * sig_px**2)
    cam = _camera(rng, r, bg * (1 + bgv + r.bg_gradient) + peak)
    gain = 1.0 + rng.uniform(-r.gain_jitter, r.gain_jitter)
    image = _cluster_image(rng, height, width, px) if structure == "clusters" else None
    cfg = SimulationConfig(
        n_frames=int(n_frames),
        height=int(height),
        width=int(width),
        pixel_size_nm=px,
        psf_sigma_nm=sig_px * px,
        psf_sigma_std_nm=r.psf_sigma_spread * sig_px * px,
        density=dens,
        structure="image" if structure == "clusters" else structure,
        n_filaments=int(rng.integers(1, 7)),
        photons_mean=ph,
        photons_std=r.photons_spread * ph,
        photons_min=0.3 * ph,
        bg_photons=float(bg),
        bg_variation=float(bgv),
        t_on=t_on,
        camera=cam,
        margin_px=float(max(3.0, math.ceil(3.0 * sig_px))),
        seed=int(rng.integers(0, 2**31 - 1)),
    )
    return MicroscopeSample(cfg, cam, float(gain), grad, image)


def simulate_microscopes(
    ranges: MicroscopeRanges,
    n: int,
    rng: np.random.Generator,
    height: int,
    width: int,
    n_frames: int = 3,
    device: str | torch.device = "cpu",
    include_outside: bool = True,
) -> tuple[torch.Tensor, SimulatedCrops, list[MicroscopeSample]]:
    """A batch of crops, each from its own randomised microscope, in photons.

    Parameters
    ----------
    ranges : MicroscopeRanges
    n : int
        Number of crops.
    rng : numpy.random.Generator
        Draws the microscopes and the batch's noise (seeded, reproducible).
    height, width, n_frames : int
        Crop size (camera pixels) and frames per crop.
    device : str or torch.device
    include_outside : bool
        See :func:`~napari_smlm.core.simulate.simulate_crops`.

    Returns
    -------
    photons : torch.Tensor
        (n, n_frames, height, width) frames converted back to photons with each crop's camera,
        times its gain factor (what a user's camera settings give).
    crops : SimulatedCrops
        Ground truth (nm, photons) and the expected background (photons/px) of each crop.
    samples : list of MicroscopeSample
    """
    samples = [sample_microscope(ranges, rng, height, width, n_frames) for _ in range(int(n))]
    crops = simulate_crops(
        [s.config for s in samples],
        rng=rng,
        device=device,
        include_outside=include_outside,
        density_image=[s.density_image for s in samples],
        cameras=[s.camera for s in samples],
        bg_gradients=[s.bg_gradient for s in samples],
    )
    photons = torch.stack([s.camera.adu_to_photons(crops.frames[i]) * s.gain_factor for i, s in enumerate(samples)])
    return photons, crops, samples


def trained_ranges(ranges: MicroscopeRanges, camera: Camera | dict | None = None) -> dict:
    """The ranges a model trained on ``ranges`` has seen, as :func:`~.models.domain.training_ranges` returns them.

    Emitter photons span the mean range widened by two per-emitter σ; the background the drawn
    range (gradients and variations ride on it); PSF σ in pixels and in nm at the training
    pixel size. ``camera`` is the camera inference assumes by default (the checkpoint's).
    """
    r = ranges
    px = float(r.pixel_size_nm)
    s_lo, s_hi = r.psf_sigma_px[0] * (1 - 2 * r.psf_sigma_spread), r.psf_sigma_px[1] * (1 + 2 * r.psf_sigma_spread)
    cam = camera.to_dict() if isinstance(camera, Camera) else (dict(camera) if camera else Camera().to_dict())
    return {
        "photons": [
            float(r.photons[0] * max(1 - 2 * r.photons_spread, 0.3)),
            float(r.photons[1] * (1 + 2 * r.photons_spread)),
        ],
        "bg_photons": [float(r.bg_photons[0]), float(r.bg_photons[1])],
        "psf_sigma_nm": [float(s_lo * px), float(s_hi * px)],
        "psf_sigma_px": [float(s_lo), float(s_hi)],
        "pixel_size_nm": px,
        "camera": cam,
        "density": [float(r.density[0]), float(r.density[1])],
        "randomized_microscopes": r.to_dict(),
    }
