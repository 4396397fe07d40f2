"""Out-of-distribution check: is a movie like the data a model was trained on?

A network trained on simulated frames only knows the photon, background and PSF-width range it
saw. :func:`training_ranges` reads that range from a checkpoint (its simulation config and the
family's randomisation, :meth:`~.base.ModelFamily.training_factors`);
:func:`estimate_movie_statistics` measures a movie's background level and spot brightness on a
few frames (a fraction of a second); :func:`check_movie` compares the two and returns plain-text
warnings. ``napari-smlm localize`` prints them before it starts; a widget can call the same
function on the layer's data and show them.

Estimates (:func:`estimate_movie_statistics`)
    On ``n_frames`` frames spread over the movie, converted to photons with the given camera:
    background = the frame median; noise = ``(p50 − p10) / 1.2816`` (a Gaussian's σ from those
    percentiles, robust to the spots); spot amplitude = matched filter, the least-squares photon
    count of a centred pixel-integrated Gaussian PSF (σ given) at every pixel of the
    background-subtracted frame, ``Σ g·d / Σ g²``; spots = its local maxima at least
    ``2·ceil(3σ) + 1`` px apart that exceed ``snr`` (6) times its noise. The 75th percentile
    over spots is reported: emitters that blink on for part of a frame make many dim spots, so
    the median would sit well below the brightness of an emitter on for a whole frame (the
    quantity the training ranges describe), while the upper quartile tracks it. Measured on
    simulated movies (``tests/test_domain.py``): background within 5 %; spot
    brightness 0.99-1.09 × the whole-frame emitters' median on sparse movies, 1.3-1.4 × at
    1.3-2 emitters/µm² (overlapping spots) and 2 × at 500 photons on 200 background photons/px
    (only upward fluctuations are detected). Hence the generous :data:`TOLERANCE`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..camera import Camera, get_camera

__all__ = ["MovieStatistics", "DomainCheck", "training_ranges", "estimate_movie_statistics", "check_movie"]

log = logging.getLogger(__name__)

_Z_50_10 = 1.2815515655446004

#: How far outside the trained range (multiplicative) a statistic may lie before a warning:
#: the estimates are ±25 % and the networks degrade gracefully near the edges.
TOLERANCE = 1.5
#: The same for the PSF width in pixels, which is computed from given numbers, not estimated.
PSF_TOLERANCE = 1.1
#: A movie whose pixel noise is below this fraction of what the camera implies at its background
#: (shot noise with the excess factor + read noise) is not converted right: a baseline set too low
#: turns the camera offset into "background", a gain too high inflates the photons. Only the low side
#: is checked: sample structure and uneven illumination widen the percentile spread, never narrow it.
#: Measured: right camera 1.1 (simulated EMCCD movie), the simulated movie with its offset 334 ADU above
#: the camera's 0.77, Locan's images.tif with the default EMCCD camera (dark level ~434 ADU) 0.28.
NOISE_RATIO_MIN = 0.5


@dataclass(frozen=True)
class MovieStatistics:
    """What :func:`estimate_movie_statistics` measured.

    Attributes
    ----------
    bg_photons : float
        Median background (photons per pixel per frame).
    noise_photons : float
        Robust standard deviation of the background (photons per pixel).
    spot_photons : float
        75th percentile of the detected spots' brightness (photons per spot); NaN without spots.
    n_spots : int
        Spots found on the frames used.
    frames : list of int
        Frames used.
    """

    bg_photons: float
    noise_photons: float
    spot_photons: float
    n_spots: int
    frames: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DomainCheck:
    """Result of :func:`check_movie`: statistics, the model's ranges and the warnings."""

    statistics: MovieStatistics
    ranges: dict
    warnings: list

    @property
    def ok(self) -> bool:
        return not self.warnings


def training_ranges(ckpt: Any) -> dict[str, Any]:
    """The photon, background, PSF and pixel-size range a checkpoint was trained on.

    A range recorded in ``ckpt.training["training_ranges"]`` wins; otherwise it is derived from
    the checkpoint's simulation config and its family's randomisation
    (:meth:`~.base.ModelFamily.training_factors`): emitter brightness ``photons_mean ± 2·photons_std``
    (not below ``photons_min``) times the photon factors, background ``bg_photons ·
    (1 ± bg_variation)`` times the background factors, PSF σ ``psf_sigma_nm ± 2·psf_sigma_std_nm``
    times the PSF factors, both in nm and in camera pixels.

    Parameters
    ----------
    ckpt : Checkpoint, str or path

    Returns
    -------
    dict
        ``photons`` (per emitter), ``bg_photons`` (per pixel), ``psf_sigma_nm``,
        ``psf_sigma_px``: ``[lo, hi]`` lists; ``pixel_size_nm`` (float); ``camera`` (dict).
    """
    from ..checkpoint import resolve_checkpoint

    ck = resolve_checkpoint(ckpt)
    rec = (ck.training or {}).get("training_ranges")
    if rec:
        return dict(rec)
    sim = ck.simulation_config
    f = ck.family().training_factors()
    p_lo = max(sim.photons_mean - 2 * sim.photons_std, sim.photons_min, 1.0) * f["photons"][0]
    p_hi = (sim.photons_mean + 2 * sim.photons_std) * f["photons"][1]
    bv = min(max(float(sim.bg_variation), 0.0), 0.9)
    b_lo, b_hi = sim.bg_photons * (1 - bv) * f["bg"][0], sim.bg_photons * (1 + bv) * f["bg"][1]
    s_lo = max(sim.psf_sigma_nm - 2 * sim.psf_sigma_std_nm, 1.0) * f["psf_sigma"][0]
    s_hi = (sim.psf_sigma_nm + 2 * sim.psf_sigma_std_nm) * f["psf_sigma"][1]
    px = float(sim.pixel_size_nm)
    return {
        "photons": [float(p_lo), float(p_hi)],
        "bg_photons": [float(b_lo), float(b_hi)],
        "psf_sigma_nm": [float(s_lo), float(s_hi)],
        "psf_sigma_px": [float(s_lo / px), float(s_hi / px)],
        "pixel_size_nm": px,
        "camera": sim.camera.to_dict(),
    }


def estimate_movie_statistics(
    movie: Any,
    camera: Camera | str | dict,
    psf_sigma_px: float = 1.2,
    n_frames: int = 8,
    start: int = 0,
    stop: int | None = None,
    snr: float = 6.0,
) -> MovieStatistics:
    """Background level and spot brightness of a movie, from a few frames.

    Parameters
    ----------
    movie : array-like (T, H, W) or (H, W)
        Raw frames (ADU); lazy movies are read only at the frames used.
    camera : Camera, preset name or dict
        ADU → photons conversion.
    psf_sigma_px : float
        Expected PSF σ (camera pixels): the matched filter's width.
    n_frames : int
        Frames used, evenly spread over ``[start, stop)``.
    start, stop : int
        Frame range (0-based, ``stop`` exclusive; default the whole movie).
    snr : float
        Detection level of a spot, in noise σ of the box sum.

    Returns
    -------
    MovieStatistics
    """
    cam = get_camera(camera)
    shape = tuple(movie.shape)
    if len(shape) == 2:
        movie, shape = np.asarray(movie)[None], (1, *shape)
    T = int(shape[0])
    stop = T if stop is None else min(int(stop), T)
    start = max(int(start), 0)
    if stop <= start:
        raise ValueError(f"empty frame range {start}:{stop} for a movie of {T} frames")
    idx = np.unique(np.linspace(start, stop - 1, max(1, min(int(n_frames), stop - start))).round().astype(int))
    frames = np.stack([np.asarray(movie[int(i)], dtype=np.float32) for i in idx])
    ph = torch.from_numpy(np.asarray(cam.adu_to_photons(frames), dtype=np.float32))
    B, H, W = ph.shape
    flat = ph.reshape(B, -1)
    bg = flat.median(dim=1).values
    p10 = torch.quantile(flat, 0.1, dim=1)
    noise = ((bg - p10) / _Z_50_10).clamp_min(1e-3)
    # Matched filter: least-squares amplitude of a centred Gaussian PSF at every pixel.
    sig = max(float(psf_sigma_px), 0.3)
    r = max(1, int(math.ceil(3.0 * sig)))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    e = torch.special.erf((t + 0.5) / (sig * math.sqrt(2.0))) - torch.special.erf((t - 0.5) / (sig * math.sqrt(2.0)))
    g1 = e / 2.0
    g = (g1[:, None] * g1[None, :]).float()  # pixel-integrated, sums to ≈ 1
    g2 = float((g * g).sum())
    d = (ph - bg[:, None, None])[:, None]
    amp = F.conv2d(F.pad(d, (r, r, r, r), mode="replicate"), g[None, None])[:, 0] / g2
    peaks = amp == F.max_pool2d(amp[:, None], 2 * r + 1, stride=1, padding=r)[:, 0]
    inner = torch.zeros_like(peaks)
    inner[:, r : H - r, r : W - r] = True
    strong = peaks & inner & (amp > snr * noise[:, None, None] / math.sqrt(g2))
    vals = amp[strong]
    n = int(vals.numel())
    return MovieStatistics(
        bg_photons=float(bg.median()),
        noise_photons=float(noise.median()),
        spot_photons=float(torch.quantile(vals, 0.75)) if n else math.nan,
        n_spots=n,
        frames=[int(i) for i in idx],
    )


def check_movie(
    ckpt: Any,
    movie: Any,
    camera: Camera | str | dict | None = None,
    pixel_size_nm: float | None = None,
    psf_sigma_nm: float | None = None,
    n_frames: int = 8,
    tolerance: float = TOLERANCE,
) -> DomainCheck:
    """Warnings when a movie's statistics fall outside what a model was trained on.

    Parameters
    ----------
    ckpt : Checkpoint, str or path
    movie : array-like (T, H, W)
        Raw frames (ADU).
    camera : Camera, preset or dict, optional
        The camera the movie will be converted with (default: the model's, as in inference).
    pixel_size_nm : float, optional
        The movie's pixel size (default ``movie.pixel_size_nm``, else the model's).
    psf_sigma_nm : float, optional
        The microscope's PSF σ (default: the model's, i.e. same optics).
    n_frames : int
        Frames used for the estimates.
    tolerance : float
        A statistic warns when below ``lo / tolerance`` or above ``hi · tolerance``
        (:data:`PSF_TOLERANCE` for the PSF width in pixels).

    Returns
    -------
    DomainCheck
        ``warnings`` is a list of sentences, empty when the movie looks in-distribution.
    """
    from ..checkpoint import resolve_checkpoint

    ck = resolve_checkpoint(ckpt)
    rng = training_ranges(ck)
    cam = get_camera(camera) if camera is not None else get_camera(rng["camera"])
    px = float(pixel_size_nm or getattr(movie, "pixel_size_nm", None) or rng["pixel_size_nm"])
    sig_nm = float(psf_sigma_nm) if psf_sigma_nm else 0.5 * sum(rng["psf_sigma_nm"])
    st = estimate_movie_statistics(movie, cam, psf_sigma_px=sig_nm / px, n_frames=n_frames)
    warn = []

    def _out(name: str, value: float, lo: float, hi: float, unit: str, what: str, tol: float = tolerance) -> None:
        if not math.isfinite(value):
            return
        if value < lo / tol or value > hi * tol:
            side = "below" if value < lo / tol else "above"
            warn.append(
                f"{what} {value:.4g} {unit} is {side} the range model {ck.model!r} was trained on "
                f"({lo:.4g}–{hi:.4g} {unit}); expect degraded results, or train/fine-tune for this microscope"
            )

    _out("bg", st.bg_photons, *rng["bg_photons"], "photons/px", "background")
    if st.n_spots >= 5:
        _out("photons", st.spot_photons, *rng["photons"], "photons", "median spot brightness")
    expected = cam.noise_photons(st.bg_photons)
    # below ~3 photons/px the percentile estimate of a skewed (EM) distribution is biased low: not used
    if st.bg_photons >= 3 and math.isfinite(st.noise_photons) and expected > 0 and st.noise_photons < NOISE_RATIO_MIN * expected:
        warn.append(
            f"pixel noise {st.noise_photons:.3g} photons is {st.noise_photons / expected:.2f}× what the camera implies "
            f"at the movie's background of {st.bg_photons:.4g} photons/px ({expected:.3g} photons): the camera's "
            f"baseline or gain probably does not match this movie; estimate them with `napari-smlm camera estimate` "
            f"(or 'Estimate from movie' in the Reconstruction widget)"
        )
    # The PSF width in pixels is known (not estimated): a tighter margin.
    _out("psf", sig_nm / px, *rng["psf_sigma_px"], "px", f"PSF σ at {px:g} nm pixels", PSF_TOLERANCE)
    if warn:
        warn.append(
            f"(camera used for the conversion: {cam.kind}, baseline {cam.baseline:g} ADU, "
            f"{cam.adu_per_photon:.4g} ADU/photon; a wrong camera also shows up here)"
        )
    for w in warn:
        log.info(w)
    return DomainCheck(statistics=st, ranges=rng, warnings=warn)
