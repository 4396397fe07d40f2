"""Estimate the camera (offset, ADU per photo-electron) and the background from the movie itself.

The estimator is a *photon-transfer* (mean–variance) fit on the pixels and frames where no
emitter is on, the method of "calibration on the spot" (Mortensen & Flyvbjerg, Sci. Rep. 6,
28680, 2016) and of the classical photon-transfer curve (Janesick, *Photon Transfer*, SPIE
2007). For a pixel that sees a constant expected signal, the camera model of
:mod:`napari_smlm.core.camera` gives, in ADU,

    mean     μ  = b + g · n̄
    variance σ² = F² · g · (μ − b) + σ₀²

with ``b`` the offset (baseline, ADU), ``g = G / s`` the ADU per photo-electron (EM gain over
e⁻/ADU), ``n̄`` the mean photo-electrons, ``F²`` the excess-noise factor (2 for an EMCCD, 1 for
sCMOS / CCD) and ``σ₀² = (read noise in ADU)² + 1/12`` (rounding). Across pixels with different
background levels the points (μ, σ²) lie on one line of slope ``F²·g`` that crosses
``σ² = σ₀²`` at ``μ = b``.

Steps (:func:`estimate_camera`):

1. Read at most ``max_frames`` frames, in blocks of ``block`` consecutive frames spread over
   the movie (a lazy movie reads only those). Statistics are per pixel *per block*, so a slow
   background drift (bleaching) does not count as noise.
2. Mask emitters, per block: the reference is each pixel's temporal median, then the median of
   its 8×8 px tile (a pixel on a structure, under an emitter most of the time, does not set its
   own reference); the noise scale comes from the negative residuals only (emitters only add
   signal). A frame/pixel is an emitter when its 3×3-box-filtered residual exceeds 4.5 robust
   SDs or its own residual 5.5; masks are dilated by ±3 px and ±1 frame (the PSF's tails and
   blinks that straddle frames). Pixels masked in more than 3/4 of the frames are dropped.
3. Per pixel and block: mean ``m`` and unbiased variance ``v`` of the unmasked frames, and an
   *instrument* ``z``, the pixel's mean over the other blocks. Points far off a first robust
   line (per-bin medians) are dropped; the rest are averaged in quantile bins of ``z`` and the
   bin means of ``v`` against ``m`` are fitted by weighted least squares. Grouping by ``z``
   rather than by ``m`` avoids two biases of a mean–variance fit binned on the same samples:
   errors in the variable (a flatter slope) and, for the skewed EMCCD noise, the correlation of a
   sample's mean with its variance (a steeper one). ``g = slope / F²``;
   ``b = (σ₀² − intercept) / slope`` with ``σ₀ = read noise (e⁻ before EM gain, assumed) · g``.
   Uncertainties: robust SD (1.4826 MAD) of a bootstrap over the points.
4. If the fit is implausible (a non-positive slope, an offset above the darkest pixels' means)
   the offset is taken from the prior camera (flagged as a guess) and ``g`` solves the variance
   equation on the mean of the quietest quarter of the points (lowest ``z``). An imprecise offset (nearly uniform background) is kept
   and noted (:attr:`CameraEstimate.notes`).
5. Background (photons / px / frame, *before* QE, as ``SimulationConfig.bg_photons``) =
   (median over points of ``m`` − b) / (g · QE).

What the movie cannot tell (listed in :attr:`CameraEstimate.guessed`): the camera kind (hence
F²), the QE (only photo-electrons are counted), how ``g`` splits into EM gain and e⁻/ADU, and
the read noise (it only shifts the offset by σ₀²/(F² g), < 0.5 ADU for an EMCCD).
These come from the prior camera (a preset, a profile or the model's camera).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .camera import Camera, get_camera

__all__ = ["CameraEstimate", "CameraEstimateError", "estimate_camera", "movie_name"]

log = logging.getLogger(__name__)

#: Excess-noise factor F² of the variance, per camera kind.
EXCESS_FACTOR = {"emccd": 2.0, "scmos": 1.0, "ccd": 1.0}
MIN_FRAMES = 10
#: Emitter thresholds (robust SDs): the 3×3-box-filtered residual, and a single pixel's.
T_BOX, T_PIX = 4.5, 5.5
#: Mask around a detection: ±1 frame, ±3 px (the PSF's tails).
DILATE = (3, 7, 7)
#: Side of the tiles of the spatial reference (px).
TILE = 8
#: Above this fraction of masked pixel-frames the movie is refused as too dense; above
#: ``DENSE`` it is refused when the offset cannot be fitted (the fallback needs quiet pixels: a
#: 20-frame stack at 6 emitters/µm², 89 % masked, gave 25x the true gain).
MAX_MASKED, DENSE = 0.9, 0.8
#: Refuse an integer (ADU) movie whose quietest pixels vary by less than this variance over time
#: (ADU², rounding included): 1/3 = 0.5² + 1/12, a noise SD of 0.5 ADU before rounding. Below it the
#: rounding to whole ADU is not the independent 1/12 ADU² the model adds (Sheppard's correction fails:
#: its error term grows as exp(−2π²σ²), ~2 % of the variance at σ = 0.5 ADU, ~20 % at 0.4), so the
#: variance no longer follows the photon noise: a coarse camera (many e⁻ per ADU, e.g. an sCMOS at
#: 8 e⁻/ADU and 10 photons/px gave 0.000 ADU/e⁻ and 800,000 photons/px of background; at 20 e⁻/ADU
#: "100 % under emitters"). Decided from the theory before measuring the cases.
MIN_QUIET_VAR = 0.5**2 + 1.0 / 12.0
#: Refuse when the gain's bootstrap SD exceeds this fraction of it (a sea of emitters can hide
#: from the mask: at 20 emitters/µm² only 29 % was masked and the fit was noise).
MAX_REL_SD = 0.25


class CameraEstimateError(ValueError):
    """The movie cannot give a camera estimate; ``movie`` names it, ``problem`` says why."""

    def __init__(self, movie: str, problem: str):
        self.movie, self.problem = str(movie), str(problem)
        super().__init__(f"{self.movie}: {self.problem}")

    def __str__(self) -> str:
        return f"{self.movie}: {self.problem}"


def movie_name(movie: Any, name: str | None = None) -> str:
    """A name for messages: ``name``, else the movie's file, else ``"movie"``."""
    if name:
        return str(name)
    paths = getattr(movie, "paths", None)
    if paths:
        return str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} files)"
    return "movie"


@dataclass(frozen=True)
class CameraEstimate:
    """What :func:`estimate_camera` measured, with uncertainties and what it had to assume.

    Attributes
    ----------
    baseline : float
        Camera offset (ADU).
    baseline_sd : float
        Its bootstrap standard deviation (ADU); NaN when ``"baseline"`` is guessed.
    adu_per_electron : float
        ``g``: ADU per photo-electron (EM gain / e⁻ per ADU). The excess noise is *not* in it.
    adu_per_electron_sd : float
        Its bootstrap standard deviation.
    excess_factor : float
        F² assumed: 2 (EMCCD) or 1 (sCMOS, CCD). The fitted photon-transfer slope is
        ``excess_factor · adu_per_electron`` (:attr:`ptc_slope`).
    kind : str
        Camera kind assumed (``emccd``, ``scmos``, ``ccd``).
    qe : float
        Quantum efficiency assumed (from the prior camera).
    read_noise_adu : float
        Read noise (ADU RMS): the prior camera's, referred to the input (e⁻ before EM gain), times ``g``.
    background_photons : float
        Median background, photons / pixel / frame before QE (``SimulationConfig.bg_photons``).
    background_photons_sd : float
        Its bootstrap standard deviation.
    n_frames : int
        Frames read.
    n_points : int
        (pixel, block) points used in the fit.
    masked_fraction : float
        Fraction of the pixel-frames masked as emitters.
    guessed : tuple of str
        Camera fields not measured on the movie (taken from the prior camera).
    movie : str
        The movie's name.
    prior : dict
        The prior camera (:meth:`Camera.to_dict`).
    notes : tuple of str
        Warnings: a dense movie, an imprecise offset, an offset that had to be assumed, a camera
        kind the noise's skewness contradicts.
    skew_ratio : float
        ``κ3 / (κ2 − σ₀²) / (F² g)`` of the emitter-free noise: about 1.5 for an EMCCD (Gamma-
        distributed EM output, κ3/κ2 = 3g) and 1 for sCMOS / CCD (Poisson, κ3/κ2 = g), whatever the
        offset and the assumed kind. Biased up by undetected emitters (dense movies).
    """

    baseline: float
    baseline_sd: float
    adu_per_electron: float
    adu_per_electron_sd: float
    excess_factor: float
    kind: str
    qe: float
    read_noise_adu: float
    background_photons: float
    background_photons_sd: float
    n_frames: int
    n_points: int
    masked_fraction: float
    guessed: tuple = ()
    movie: str = "movie"
    prior: dict = field(default_factory=dict)
    notes: tuple = ()
    skew_ratio: float = math.nan

    @property
    def ptc_slope(self) -> float:
        """Slope of variance vs mean (ADU): F² · ADU per photo-electron."""
        return self.excess_factor * self.adu_per_electron

    @property
    def adu_per_photon(self) -> float:
        """Mean ADU per photon reaching the pixel (QE · g; QE assumed)."""
        return self.qe * self.adu_per_electron

    def camera(self) -> Camera:
        """The prior camera with the measured offset and ``g``.

        ``g = G / s`` keeps the prior's EM gain ``G`` (an EMCCD) and sets e⁻/ADU ``s = G / g``;
        the read noise keeps its value in ADU.
        """
        prior = get_camera(self.prior) if self.prior else get_camera(self.kind)
        em_gain = prior.em_gain if self.kind == "emccd" else 1.0
        if self.kind == "emccd" and em_gain <= 1:
            em_gain = 300.0
        sens = em_gain / self.adu_per_electron
        return prior.replace(
            kind=self.kind, baseline=float(self.baseline), sensitivity=float(sens), em_gain=float(em_gain),
            qe=float(self.qe), read_noise=float(self.read_noise_adu * sens),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["guessed"] = list(self.guessed)
        d["notes"] = list(self.notes)
        d["ptc_slope"] = self.ptc_slope
        d["adu_per_photon"] = self.adu_per_photon
        return d

    def summary(self) -> str:
        """One line for a status bar or a log."""
        b = f"{self.baseline:.1f} ± {self.baseline_sd:.1f}" if "baseline" not in self.guessed else f"{self.baseline:.1f} (guessed)"
        return (
            f"offset {b} ADU, {self.adu_per_electron:.3g} ± {self.adu_per_electron_sd:.2g} ADU/e⁻ "
            f"(F² = {self.excess_factor:g}, {self.kind}), background {self.background_photons:.1f} photons/px; "
            f"guessed: {', '.join(self.guessed) or 'nothing'}" + "".join(f"; {n}" for n in self.notes)
        )


# --------------------------------------------------------------------------- frame sampling
def _blocks(n_frames: int, max_frames: int, block: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) blocks, at most ``max_frames`` frames in all, spread over the movie."""
    block = max(min(block, n_frames // 2, max_frames // 2), MIN_FRAMES // 2)  # at least two blocks: see _points
    if n_frames <= max_frames:
        starts = list(range(0, n_frames, block))
        out = [(s, min(s + block, n_frames)) for s in starts]
        if len(out) > 1 and out[-1][1] - out[-1][0] < block // 2:  # a short tail joins the previous block
            out[-2] = (out[-2][0], out[-1][1])
            out.pop()
        return out
    n_blocks = max(2, max_frames // block)
    starts = np.unique(np.linspace(0, n_frames - block, n_blocks).astype(int))
    return [(int(s), int(s) + block) for s in starts]


def _read_block(movie: Any, start: int, stop: int) -> np.ndarray:
    return np.asarray(movie[start:stop], dtype=np.float32)


# --------------------------------------------------------------------------- masking + stats
def _tile_median(a: np.ndarray, tile: int = TILE) -> np.ndarray:
    """A robust spatial reference: every pixel gets the median of its ``tile``×``tile`` px tile.

    Fast (one reshape; a 9×9 median filter took ~0.2 s per 256×256 frame); a structure
    covering less than half a tile does not move it. Not smoothed across tiles: smoothing
    spread a tile on a dense structure into its clean neighbours (worse estimates in
    ``benchmarks/camera_estimate.py``).
    """
    H, W = a.shape
    th, tw = -(-H // tile), -(-W // tile)
    pad = np.pad(a, ((0, th * tile - H), (0, tw * tile - W)), mode="edge")
    med = np.median(pad.reshape(th, tile, tw, tile).transpose(0, 2, 1, 3).reshape(th, tw, tile * tile), axis=2)
    return np.repeat(np.repeat(med, tile, axis=0), tile, axis=1)[:H, :W]


def _block_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Per-pixel count, sum, sum of squares and third cumulant of the emitter-free frames of one block ``(K, H, W)``.

    Also returns the masked fraction of the block's pixel-frames.
    """
    from scipy import ndimage

    # Background per pixel: the temporal median, then a spatial (tile) median so that pixels
    # under an emitter most of the time (on a structure) do not set their own reference.
    med = _tile_median(np.median(x, axis=0))
    r = x - med
    s = ndimage.uniform_filter(r, size=(1, 3, 3), mode="nearest")

    def robust_sd(a: np.ndarray) -> np.ndarray:
        # emitters only add signal: the negative side is noise (half-normal: E[min(a, 0)²] = σ²/2;
        # it is narrower than σ for the skewed EMCCD noise, which the thresholds allow for)
        sd = np.sqrt(2.0 * np.mean(np.minimum(a, 0.0) ** 2, axis=0))
        sd = _tile_median(sd)  # pixels on a structure borrow their neighbours'
        return np.maximum(sd, 1e-6)

    hot = (s > T_BOX * robust_sd(s)) | (r > T_PIX * robust_sd(r))
    mask = ndimage.maximum_filter(hot.view(np.uint8), size=DILATE, mode="constant").astype(bool) if hot.any() else hot
    valid = ~mask
    d = np.where(valid, r, 0.0).astype(np.float64)  # shifted by the median: no cancellation in Σx²
    n = valid.sum(axis=0).astype(np.float64)
    s1 = d.sum(axis=0) + n * med
    s2 = (d * d).sum(axis=0) + 2 * med * d.sum(axis=0) + n * med.astype(np.float64) ** 2
    # third cumulant (unbiased k-statistic) of the unmasked frames: the noise's skewness tells
    # an EM register (κ3/κ2 = 3g) from plain shot noise (κ3/κ2 = g); see CameraEstimate.skew_ratio
    c = np.where(valid, d - d.sum(axis=0) / np.maximum(n, 1), 0.0)
    k3 = (c**3).sum(axis=0) * n / np.maximum((n - 1) * (n - 2), 1)
    return n, s1, s2, k3, float(mask.mean())


def _points(sums: list[tuple[np.ndarray, ...]], lengths: list[int]):
    """(instrument z, mean m, variance v, third cumulant k3) per pixel and block.

    ``m`` and ``v`` come from the block's emitter-free frames; ``z``, the pixel's mean over the
    *other* blocks, has noise independent of them. Grouping by ``z`` (not by ``m``) avoids the
    two biases of a mean–variance fit binned by the same samples: errors in the variable
    (a flatter slope) and, for the skewed EMCCD noise, the correlation of a sample's mean with
    its variance (a steeper one). With one block, even and odd frames play the two roles.
    """
    N = sum(s[0] for s in sums)
    S1 = sum(s[1] for s in sums)
    # Pixels under an emitter most of the time (on a structure) are where undetected dim
    # emitters hide: drop those masked in more than three quarters of the frames.
    frac = 1.0 - N / float(sum(lengths))
    clean = frac <= 0.75
    zs, ms, vs, ks = [], [], [], []
    for (n, s1, s2, k3), length in zip(sums, lengths):
        mv = max(4, length // 2)  # a block's pixel needs half its frames emitter-free
        n_other = N - n
        ok = clean & (n >= mv) & (n_other >= 2)
        m = s1[ok] / n[ok]
        v = (s2[ok] - n[ok] * m * m) / (n[ok] - 1)
        zs.append((S1 - s1)[ok] / n_other[ok])
        ms.append(m)
        vs.append(v)
        ks.append(k3[ok])
    return np.concatenate(zs), np.concatenate(ms), np.concatenate(vs), np.concatenate(ks)


def _bin_index(z: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, z, side="right") - 1, 0, len(edges) - 2)


def _bin_means(idx: np.ndarray, m: np.ndarray, v: np.ndarray, nb: int, robust: bool = False):
    """Per bin (``idx``, ``nb`` bins): mean (or median) of ``m`` and ``v``, and the weight of the bin's ``v``."""
    cnt = np.bincount(idx, minlength=nb).astype(float)
    keep = cnt >= 3
    if robust:
        order = np.argsort(idx, kind="stable")
        groups = np.split(order, np.cumsum(np.bincount(idx, minlength=nb))[:-1])
        bm = np.array([np.median(m[g]) if len(g) >= 3 else np.nan for g in groups])
        bv = np.array([np.median(v[g]) if len(g) >= 3 else np.nan for g in groups])
        w = cnt
    else:
        c = np.maximum(cnt, 1)
        bm = np.bincount(idx, weights=m, minlength=nb) / c
        bv = np.bincount(idx, weights=v, minlength=nb) / c
        bv2 = np.bincount(idx, weights=v * v, minlength=nb) / c
        w = c / np.maximum(bv2 - bv * bv, 1e-12)  # 1 / variance of the bin's mean v
    return bm[keep], bv[keep], w[keep]


def _robust_sd(values: np.ndarray) -> float:
    """1.4826 × MAD of the finite values (bootstrap replicates with a near-flat slope do not dominate)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return math.nan
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least-squares line ``y = a + b x``; (nan, nan) when x does not vary."""
    if len(x) < 2 or np.ptp(x) <= 0:
        return math.nan, math.nan
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(np.stack([sw, x * sw], axis=1), y * sw, rcond=None)
    return float(coef[0]), float(coef[1])


def estimate_camera(
    movie: Any,
    prior: str | dict | Camera | None = None,
    kind: str | None = None,
    *,
    max_frames: int = 400,
    block: int = 20,
    max_samples: int = 20_000_000,
    n_bins: int = 20,
    n_boot: int = 64,
    seed: int = 0,
    name: str | None = None,
) -> CameraEstimate:
    """Estimate the camera offset, ADU per photo-electron and background from a movie.

    See the module docstring for the method. Reads at most ``max_frames`` frames (fewer for
    large frames: ``frames × pixels ≤ max_samples``), so it is cheap on a lazy movie.

    Parameters
    ----------
    movie : array-like ``(T, H, W)``
        Raw camera frames in ADU: a lazy :class:`~napari_smlm.core.io.tiff.Movie`, a numpy or
        dask array. At least 10 frames.
    prior : str, dict or Camera, optional
        The camera assumed for what the movie cannot tell (kind, QE, EM gain, read noise) and
        the fallback offset; a preset name or a profile YAML (default: ``smlm2016_emccd``).
    kind : {"emccd", "scmos", "ccd"}, optional
        Camera kind (sets F²: 2 for EMCCD, else 1); default: the prior's.
    max_frames : int
        Most frames read (frames).
    block : int
        Consecutive frames per block (frames); statistics are per pixel and block.
    max_samples : int
        Most pixel-frames read (bounds memory: 4 bytes each).
    n_bins : int
        Bins of the mean for the fit.
    n_boot : int
        Bootstrap replicates for the uncertainties.
    seed : int
        Seed of the bootstrap.
    name : str, optional
        The movie's name in messages (default: its file).

    Returns
    -------
    CameraEstimate

    Raises
    ------
    CameraEstimateError
        Too few frames, a constant movie, a noise too small next to the 1-ADU steps (a coarse
        camera, :data:`MIN_QUIET_VAR`), too few emitter-free pixels, or a movie too dense for
        the noise to follow one photon-transfer line; the message names the movie.
    ValueError
        An unknown ``kind``.
    """
    label = movie_name(movie, name)
    prior_cam = get_camera(prior if prior is not None else "smlm2016_emccd")
    kind = (kind or prior_cam.kind).strip().lower()
    if kind not in EXCESS_FACTOR:
        raise ValueError(f"camera kind {kind!r} is not one of {sorted(EXCESS_FACTOR)}")
    shape = tuple(getattr(movie, "shape", np.shape(movie)))
    if len(shape) != 3:
        raise CameraEstimateError(label, f"needs a movie (frames, rows, columns), got an array of shape {shape}")
    T, H, W = (int(s) for s in shape)
    if T < MIN_FRAMES:
        raise CameraEstimateError(
            label, f"only {T} frame{'s' if T != 1 else ''}; estimating the camera needs at least {MIN_FRAMES} frames "
            "(it uses the noise of each pixel over time)"
        )
    if H * W < 64:
        raise CameraEstimateError(label, f"frames of {H}×{W} px are too small; estimating the camera needs at least 64 pixels")
    max_frames = int(max(MIN_FRAMES, min(max_frames, max_samples // max(H * W, 1))))
    blocks = _blocks(T, max_frames, block)
    F2 = EXCESS_FACTOR[kind]
    # read noise referred to the input (e⁻ before EM gain): in ADU it is rho · g, g measured below
    rho = prior_cam.read_noise / max(prior_cam.em_gain, 1.0)
    guessed = ["kind", "qe", "read_noise"] + (["em_gain (only em_gain / sensitivity is measured)"] if kind == "emccd" else [])

    sums, lengths, masked, n_read = [], [], 0.0, 0
    lo, hi = math.inf, -math.inf
    # the coarse-ADU check (MIN_QUIET_VAR), on the raw frames, before any mask; pixels that never change over the
    # frames read (a black border of a registered/cropped movie, a masked region) are no camera noise: left out
    var_maps, integer, pmin, pmax = [], True, None, None
    for start, stop in blocks:
        x = _read_block(movie, start, stop)
        lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        var_maps.append(np.var(x, axis=0, ddof=1).astype(np.float32))
        bmin, bmax = x.min(axis=0), x.max(axis=0)
        pmin = bmin if pmin is None else np.minimum(pmin, bmin)
        pmax = bmax if pmax is None else np.maximum(pmax, bmax)
        integer = integer and bool(np.all(x == np.rint(x)))
        n, s1, s2, k3, mk = _block_sums(x)
        sums.append((n, s1, s2, k3))
        lengths.append(stop - start)
        masked += mk * (stop - start)
        n_read += stop - start
    if hi <= lo:
        raise CameraEstimateError(
            label, f"every pixel of the {n_read} frames read is {lo:g} ADU: a constant movie has no noise to estimate a camera from"
        )
    varying = pmax > pmin  # not empty: the movie is not constant (above)
    qv = float(np.median([np.percentile(v[varying], 25) for v in var_maps]))
    del var_maps
    if integer and qv < MIN_QUIET_VAR:
        p5, p95 = np.percentile(x, [5, 95])
        raise CameraEstimateError(
            label, f"its quietest pixels vary by only {math.sqrt(qv):.2f} ADU (SD over time; pixel values take "
            f"{int(p95 - p5) + 1} whole-ADU levels between the 5th and 95th percentile): the camera's 1-ADU steps, not the "
            "photon noise, set the noise, so the gain cannot be measured from it (a coarse camera: many e⁻ per ADU, "
            "or a very low background). Give the camera's offset and sensitivity (e⁻/ADU) from its data sheet, or a profile"
        )
    masked_fraction = float(masked / n_read)
    if masked_fraction > MAX_MASKED:
        raise CameraEstimateError(
            label, f"{masked_fraction:.0%} of the pixel-frames of the {n_read} frames read are under emitters: the movie is "
            "too dense to estimate the camera from its noise (use the camera's data sheet or a profile)"
        )
    z, m, v, k3 = _points(sums, lengths)
    if len(m) < 50:
        raise CameraEstimateError(
            label, f"only {len(m)} pixel-blocks without emitters in {n_read} frames ({masked_fraction:.0%} of the pixels masked "
            "as emitters); the movie is too dense or too short to estimate the camera (give more frames, or use the "
            "camera's data sheet)"
        )
    if not np.any(v > 0):
        raise CameraEstimateError(label, "no pixel varies over time: a movie without noise cannot give a camera estimate")

    edges = np.unique(np.quantile(z, np.linspace(0, 1, n_bins + 1)))
    if len(edges) < 2:
        edges = np.array([z.min(), z.max() + 1.0])
    # 1) a robust line (bin medians) to drop points far off it (residual emitters, hot pixels)
    nb = len(edges) - 1
    a0, b0 = _wls(*_bin_means(_bin_index(z, edges), m, v, nb, robust=True))
    pred = np.maximum(a0 + b0 * m, 1e-6) if (math.isfinite(b0) and b0 > 0) else np.full_like(m, np.median(v))
    dof = max(float(np.median(lengths)) / 2 - 1, 3.0)  # the fewest frames a point may have
    ratio = v / pred
    keep = (ratio < 1 + 6 * math.sqrt(2.0 / dof)) & (ratio > max(0.0, 1 - 4 * math.sqrt(2.0 / dof)))
    z, m, v, k3 = z[keep], m[keep], v[keep], k3[keep]
    idx = _bin_index(z, edges)
    # 2) the fit, with bootstrap uncertainties (on at most 200,000 points, the SD rescaled)
    rng = np.random.default_rng(seed)
    n_b = min(len(m), 200_000)
    boot_scale = math.sqrt(n_b / len(m))
    bg_level = float(np.median(m))

    def sigma0_sq(g: float) -> float:
        """Variance at zero signal (ADU²): read noise plus rounding (1/12)."""
        return (rho * g) ** 2 + 1.0 / 12.0

    def solve(ii) -> tuple[float, float]:
        a, s = _wls(*_bin_means(idx[ii], m[ii], v[ii], nb))
        if not (math.isfinite(s) and s > 0):
            return math.nan, math.nan
        return (sigma0_sq(s / F2) - a) / s, s / F2

    def resamples():
        return (rng.integers(0, len(m), n_b) for _ in range(n_boot))

    base, g = solve(slice(None))
    boots = np.array([solve(i) for i in resamples()]) if n_boot > 1 else np.full((1, 2), np.nan)
    base_sd, g_sd = _robust_sd(boots[:, 0]) * boot_scale, _robust_sd(boots[:, 1]) * boot_scale
    notes = []
    if masked_fraction > DENSE:
        notes.append(f"dense movie: {masked_fraction:.0%} of the pixel-frames masked as emitters")
    plausible = math.isfinite(base) and math.isfinite(g) and g > 0 and base < float(np.quantile(m, 0.01))
    if plausible and math.isfinite(g_sd) and g_sd > MAX_REL_SD * g:
        raise CameraEstimateError(
            label, f"the pixels' noise does not follow one photon-transfer line (gain {g:.3g} ± {g_sd:.2g} ADU/e⁻ over "
            f"{n_read} frames, {masked_fraction:.0%} of the pixel-frames under emitters): the movie is too dense or too "
            "short to estimate the camera (use the camera's data sheet or a profile)"
        )
    if plausible and not base_sd <= max(2.0, 0.2 * (bg_level - base)):
        notes.append(f"imprecise offset (± {base_sd:.1f} ADU): the background is nearly uniform; more frames or a larger field help")
    if not plausible:
        log.info(
            "estimate_camera(%s): offset and gain not separable (fit: offset %.4g ± %.3g ADU, %.3g ADU/e-); "
            "offset from the prior camera (%g ADU)", label, base, base_sd, g, prior_cam.baseline,
        )
        if masked_fraction > DENSE:
            raise CameraEstimateError(
                label, f"{masked_fraction:.0%} of the pixel-frames of the {n_read} frames read are under emitters and the "
                "offset cannot be fitted: the movie is too dense to estimate the camera from its noise (use the camera's "
                "data sheet or a profile)"
            )
        if prior_cam.baseline >= float(np.quantile(m, 0.01)):
            raise CameraEstimateError(
                label, f"the offset cannot be separated from the gain on this movie, and the assumed offset "
                f"({prior_cam.baseline:g} ADU) is not below its background ({bg_level:.1f} ADU): give the camera's offset "
                "(baseline) or a camera profile"
            )
        notes.append(f"offset not measurable on this movie: the assumed camera's {prior_cam.baseline:g} ADU is used")
        base, base_sd = float(prior_cam.baseline), math.nan
        guessed.insert(0, "baseline")

        # the quietest quarter of the pixels (lowest mean over the other blocks): a dense movie's
        # structure, under emitters all the time, would otherwise dominate
        quiet = np.flatnonzero(z <= np.quantile(z, 0.25))

        def ratio_gain(ii) -> float:
            # v = F² g (m − b) + (rho g)² + 1/12, solved for g > 0
            ii = quiet[ii]
            mm, vv = float(np.mean(m[ii]) - base), float(np.mean(v[ii])) - 1.0 / 12.0
            if rho == 0:
                return vv / (F2 * mm) if mm > 0 else math.nan
            disc = (F2 * mm) ** 2 + 4 * rho**2 * vv
            return (-F2 * mm + math.sqrt(disc)) / (2 * rho**2) if disc >= 0 else math.nan

        g = ratio_gain(slice(None))
        if not (g > 0 and math.isfinite(g)):
            raise CameraEstimateError(
                label, f"the movie's mean ({bg_level:.1f} ADU) is not above the assumed offset ({base:g} ADU): cannot "
                "estimate the gain; give the offset (baseline) of the camera"
            )
        gb = np.array([ratio_gain(rng.integers(0, len(quiet), len(quiet))) for _ in range(n_boot)])  # small: no subsample
        g_sd = _robust_sd(gb)
        boot_scale = 1.0
        boots = np.stack([np.full(len(gb), base), gb], axis=1)
    # κ3 / (κ2 − σ₀²) = 3g for an EM register, g for shot noise: relative to the F²·g slope,
    # 1.5 (EMCCD) or 1 (sCMOS / CCD) whatever the offset (1.30-1.49 and 0.97-1.03 on the benchmark's
    # movies). Undetected emitters push it up, so it is only a check of the assumed kind.
    sel = quiet if "baseline" in guessed else slice(None)  # the points g was measured on
    skew_ratio = float(np.mean(k3[sel]) / max(float(np.mean(v[sel])) - sigma0_sq(g), 1e-12) / (F2 * g)) if len(k3) else math.nan
    if "baseline" not in guessed and math.isfinite(skew_ratio):  # (the quiet points of a fallback are too few and too dense)
        if kind == "emccd" and skew_ratio < 1.15:
            notes.append(f"the noise is less skewed than an EMCCD's (skew ratio {skew_ratio:.2f}; 1.5 EMCCD, 1 sCMOS): is this an sCMOS/CCD? (then the gain is 2x this)")
        elif kind != "emccd" and skew_ratio > 1.25:
            notes.append(f"the noise is as skewed as an EMCCD's (skew ratio {skew_ratio:.2f}; 1.5 EMCCD, 1 sCMOS): is this an EMCCD? (then the gain is half this)")
    qe = float(prior_cam.qe)
    bg = (bg_level - base) / (g * qe)
    bgs = (bg_level - boots[:, 0]) / (boots[:, 1] * qe)
    est = CameraEstimate(
        baseline=float(base), baseline_sd=base_sd, adu_per_electron=float(g), adu_per_electron_sd=g_sd,
        excess_factor=F2, kind=kind, qe=qe, read_noise_adu=float(rho * g), background_photons=float(bg),
        background_photons_sd=_robust_sd(bgs) * boot_scale, n_frames=n_read, n_points=int(len(m)),
        masked_fraction=masked_fraction, guessed=tuple(guessed), movie=label, prior=prior_cam.to_dict(), notes=tuple(notes),
        skew_ratio=skew_ratio,
    )
    log.info("estimate_camera(%s): %s", label, est.summary())
    return est
