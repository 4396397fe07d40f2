"""Training pairs from a user's data: a movie and its ground-truth localizations.

A *pair* is a camera movie (ADU) and a localization table that lists, for every frame, the
emitters that are really there, e.g. the output of another simulator (ThunderSTORM's
"Generator of simulated data" writes ``ArtificialDataset_demo1.tif`` + ``positions_demo1.csv``),
or a bead / DNA-origami sample whose positions are known. :class:`PairSampler` cuts random
training crops out of it; every model family turns them into its own inputs and targets with
:meth:`~napari_smlm.core.models.base.ModelFamily.batch_from_data`, the same code path its
simulator uses, so anything :func:`~napari_smlm.core.training.iter_train` can do with simulated
data it can do with pairs (``iter_train(..., pairs=sampler)``).

Geometry
    A sample is a random central frame ``t``, its ``context`` neighbours on each side
    (``t-c .. t+c``, clamped at the ends of the allowed frame range by repeating the edge frame,
    as the inference loop pads a movie) and a random ``h × w`` crop position. Ground-truth
    positions are shifted to the crop's top-left edge (package convention: pixel ``(i, j)``
    spans ``[j·px, (j+1)·px) × [i·px, (i+1)·px)``). Emitters within ``margin_px`` outside the
    crop are returned too, flagged ``in_fov = 0``: they shine into the crop, the density targets
    include the part of their blur that falls inside, and no family counts them as ground truth.

Augmentation
    With ``augment=True`` every sample gets one of the 8 symmetries of the square (0–3
    quarter turns, then an optional left-right flip), applied to all its frames and, with the
    same formulas, to the coordinates. For a quarter turn of an ``H × W`` region
    (``numpy.rot90``, rows towards columns), ``(x, y) → (y, W·px − x)``; for a left-right flip,
    ``x → w·px − x``. The PSF must then be isotropic (no astigmatism), which it is for every
    model here.

Frames held out for validation
    :meth:`PairSampler.split` cuts the frame range into a training block and a validation
    block at its end. Context frames are clamped to each block, so no pixel of a validation
    frame reaches a training sample. Without a split, validation crops come from the frames the
    model trains on and measure fit rather than generalisation.

Camera
    Frames are converted to photons with a :class:`~napari_smlm.core.camera.Camera` (a preset
    name, a dict, a Camera, or ``"fit"``: :func:`fit_camera` estimates a linear ADU → photon
    conversion from the pair itself). :data:`DEMO1_CAMERA` is the conversion measured on the
    bundled ThunderSTORM pair (see there).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, NamedTuple

import numpy as np
import torch

from .camera import Camera, get_camera
from .config import SimulationConfig
from .localizations import Localizations

__all__ = ["PairSample", "PairSampler", "fit_camera", "DEMO1_CAMERA", "bundled_pair"]

log = logging.getLogger(__name__)

#: Linear ADU → photon conversion of the bundled ThunderSTORM pair
#: (``data/ArtificialDataset_demo1.tif`` + ``positions_demo1.csv``), measured with
#: :func:`fit_camera`: a least-squares fit of all 20 × 64 × 64 pixels against the ground truth
#: rendered with the pixel-integrated Gaussian PSF (each emitter's own ``sigma [nm]`` and
#: ``intensity [photon]``) gives ``ADU = 2.065 · photons + 131.6`` (residual 36 ADU RMS; scaling
#: every σ by 0.9 or 1.1 fits worse, 39 / 49 ADU). The CSV's ``offset`` column says the
#: background is 50 photons/px, so the baseline is ``131.6 − 2.065 · 50 = 28.3`` ADU. Camera:
#: 1/2.065 = 0.484 photons per ADU (``sensitivity``), no EM gain, QE 1, no read noise. The
#: movie's median ADU (307) is *not* the background: at 6 emitters/µm² most pixels see
#: emitters (the 1st percentile, 124 ADU, is close to the fitted background of 131.6 ADU).
DEMO1_CAMERA = Camera(
    kind="ccd", baseline=28.34, sensitivity=1.0 / 2.0647, em_gain=1.0, qe=1.0, read_noise=0.0, spurious_charge=0.0
)


class PairSample(NamedTuple):
    """What :meth:`PairSampler.sample` returns; unpacks into ``family.batch_from_data(*sample)``.

    Attributes
    ----------
    photons : torch.Tensor
        (B, 2·context+1, h, w) float32 frames in photons, central frame at index ``context``.
    ground_truth : Localizations
        Central-frame emitters: ``frame`` = sample index, ``x_nm``/``y_nm`` from the crop's
        top-left edge, ``in_fov`` (1 inside the crop, 0 in the margin), other columns of the
        source table (``photons``, ``psf_sigma_nm``, ``bg`` ...) carried along.
    pixel_size_nm : float
    bg : torch.Tensor or None
        (B, h, w) background in photons per pixel when known (see ``PairSampler(bg=...)``).
    """

    photons: torch.Tensor
    ground_truth: Localizations
    pixel_size_nm: float
    bg: torch.Tensor | None


def bundled_pair() -> tuple[str, str]:
    """Paths of the bundled ThunderSTORM pair (movie, ground truth); use with :data:`DEMO1_CAMERA`."""
    from importlib.resources import files

    d = files("napari_smlm") / "data"
    return str(d / "ArtificialDataset_demo1.tif"), str(d / "positions_demo1.csv")


# ----------------------------------------------------------------------------- inputs
def _as_movie(movie: Any, pixel_size_nm: float | None) -> tuple[Any, str | None]:
    if isinstance(movie, (str, os.PathLike)):
        from .io.tiff import open_movie

        return open_movie(movie, pixel_size_nm=pixel_size_nm), os.fspath(movie)
    if not hasattr(movie, "shape") or len(movie.shape) != 3:
        raise ValueError("movie must be a path or a (T, H, W) array-like")
    return movie, None


def _as_locs(gt: Any, pixel_size_nm: float | None) -> tuple[Localizations, str | None]:
    if isinstance(gt, Localizations):
        return gt, gt.meta.get("source")
    if isinstance(gt, (str, os.PathLike)):
        from .io.locs import read_localizations

        return read_localizations(gt, pixel_size_nm=pixel_size_nm), os.fspath(gt)
    raise TypeError("ground_truth must be a Localizations table or a path to a localization file")


def _render_expected(gt: Localizations, frames: np.ndarray, shape_hw: tuple[int, int], px: float, psf_sigma_nm):
    """Noise-free signal photons per pixel of ``frames`` from the ground truth (no background)."""
    from .psf import Gaussian2D

    sel = gt.filter(np.isin(gt.frames, frames))
    pos = np.searchsorted(frames, sel.frames)
    if "psf_sigma_nm" in sel and np.all(np.isfinite(sel["psf_sigma_nm"])):
        sig = sel["psf_sigma_nm"] / px
    elif psf_sigma_nm is not None:
        sig = np.full(len(sel), float(psf_sigma_nm) / px)
    else:
        raise ValueError("fitting a camera needs the PSF width: a psf_sigma_nm column or psf_sigma_nm=")
    if "photons" not in sel:
        raise ValueError("fitting a camera needs a photons column in the ground truth")
    def t(a, dt=torch.float32):
        return torch.tensor(np.asarray(a), dtype=dt)  # a copy: table columns may be read-only

    return Gaussian2D(float(np.median(sig)) if len(sig) else 1.0).render(
        t(pos, torch.int64), t(sel["x_nm"] / px), t(sel["y_nm"] / px), t(sel["photons"]),
        (len(frames), *shape_hw), sigma_x_px=t(sig),
    ).double().numpy()


def fit_camera(
    movie: Any,
    ground_truth: Localizations | str | os.PathLike,
    pixel_size_nm: float | None = None,
    bg_photons: float | None = None,
    psf_sigma_nm: float | None = None,
    max_frames: int = 50,
) -> Camera:
    """A linear ADU → photon conversion estimated from a movie and its ground truth.

    The ground truth (positions, ``photons``, per-emitter ``psf_sigma_nm`` or ``psf_sigma_nm=``)
    is rendered with the pixel-integrated Gaussian PSF into signal photons ``S`` per pixel, and
    ``ADU = g·S + c`` is fitted by least squares over all pixels of up to ``max_frames`` frames.
    ``c`` is the baseline plus the background, ``c = baseline + g·b``; ``b`` is ``bg_photons``
    when given, else the median of the ground truth's ``bg`` column (ThunderSTORM's ``offset``),
    else estimated from the shot noise of the darkest 20 % of pixels (``Var(ADU) = g²·(b + S)``
    for a photon-counting camera).

    Parameters
    ----------
    movie : path or (T, H, W) array-like
        Raw frames (ADU).
    ground_truth : Localizations or path
    pixel_size_nm : float, optional
        Default: the movie's or the table's metadata.
    bg_photons : float, optional
        Background (photons/px).
    psf_sigma_nm : float, optional
        PSF standard deviation (nm) when the table has no ``psf_sigma_nm`` column.
    max_frames : int
        Frames used (the first ones with ground truth).

    Returns
    -------
    Camera
        ``kind="ccd"``, ``sensitivity = 1/g`` (photons per ADU), ``baseline = c − g·b``, no EM
        gain, QE 1, no read noise. Everything the conversion needs; the noise model of this
        camera (pure shot noise) is an idealisation.
    """
    mv, _ = _as_movie(movie, pixel_size_nm)
    gt, _ = _as_locs(ground_truth, pixel_size_nm)
    px = _pixel_size(pixel_size_nm, mv, gt)
    T = mv.shape[0]
    frames = np.unique(gt.frames[(gt.frames >= 0) & (gt.frames < T)])[: int(max_frames)]
    if frames.size == 0:
        raise ValueError("no ground-truth emitters in the movie's frames")
    adu = np.stack([np.asarray(mv[int(f)], dtype=np.float64) for f in frames])
    S = _render_expected(gt, frames, adu.shape[1:], px, psf_sigma_nm)
    X = np.stack([S.ravel(), np.ones(S.size)], axis=1)
    (g, c), *_ = np.linalg.lstsq(X, adu.ravel(), rcond=None)
    if not (math.isfinite(g) and g > 0):
        raise ValueError(f"camera fit failed (slope {g}): do the movie and the ground truth match?")
    resid = adu.ravel() - X @ np.array([g, c])
    if bg_photons is None and "bg" in gt and np.isfinite(gt["bg"]).any():
        bg_photons = float(np.nanmedian(gt["bg"]))
        how = "ground truth's bg column"
    elif bg_photons is None:
        dark = S.ravel() <= np.quantile(S, 0.2)
        bg_photons = max(float(resid[dark].var() / g**2 - S.ravel()[dark].mean()), 0.0)
        how = "shot noise of the darkest pixels"
    else:
        how = "given"
    cam = Camera(
        kind="ccd", baseline=float(c - g * bg_photons), sensitivity=float(1.0 / g), em_gain=1.0, qe=1.0,
        read_noise=0.0, spurious_charge=0.0,
    )
    log.info(
        "fit_camera: ADU = %.4g·photons + %.4g over %d frames (residual %.3g ADU RMS); background %.3g photons/px (%s)"
        " -> baseline %.4g ADU, %.4g photons/ADU",
        g, c, frames.size, float(resid.std()), bg_photons, how, cam.baseline, cam.sensitivity,
    )
    return cam


def _pixel_size(pixel_size_nm: float | None, movie: Any, gt: Localizations) -> float:
    for v in (pixel_size_nm, getattr(movie, "pixel_size_nm", None), gt.meta.get("pixel_size_nm")):
        if v is not None and float(v) > 0:
            return float(v)
    raise ValueError("pixel size unknown: pass pixel_size_nm (nm)")


# ----------------------------------------------------------------------------- sampler
class PairSampler:
    """Random training crops from a movie and its ground-truth localizations.

    Parameters
    ----------
    movie : path or (T, H, W) array-like
        Raw camera frames (ADU): a TIFF path (opened lazily with
        :func:`~napari_smlm.core.io.tiff.open_movie`), a :class:`~napari_smlm.core.io.tiff.Movie`
        or an array. Movies up to ``cache_mb`` are read into memory once.
    ground_truth : Localizations or path
        Emitters per frame (0-based ``frame``, nm from the image's top-left edge); any format
        :func:`~napari_smlm.core.io.locs.read_localizations` reads. ``photons``,
        ``psf_sigma_nm`` and ``bg`` columns are used when present.
    camera : str, dict, Camera or "fit"
        ADU → photons conversion; ``"fit"`` estimates it with :func:`fit_camera`.
    pixel_size_nm : float, optional
        Default: the movie's metadata, then the table's.
    crop : int or (h, w)
        Crop size in camera pixels.
    context : int
        Frames on each side of the central one (the family's ``context``; ``iter_train`` adapts
        it).
    frames : (start, stop), optional
        Central frames are drawn from ``start <= t < stop`` and context frames are clamped to
        it. Default: from 0 to the last frame that has ground truth (frames past the end of the
        table are assumed unannotated, not empty).
    augment : bool
        Random quarter turns and flips (see the module docstring).
    bg : "auto", float or None
        Background for the targets (photons/px): ``"auto"`` uses the median of the central
        frame's ``bg`` column (ThunderSTORM's ``offset``) when the table has one, else None;
        a number is a constant; None never gives one (DECODE then drops its background term).
    margin_px : float
        Emitters this far outside a crop are returned with ``in_fov = 0``.
    cache_mb : float
        Largest movie (as uint16/float32 in memory) read at once; larger ones are read frame by
        frame.
    """

    def __init__(
        self,
        movie: Any,
        ground_truth: Localizations | str | os.PathLike,
        camera: str | dict | Camera = "ideal",
        pixel_size_nm: float | None = None,
        crop: int | tuple[int, int] = 32,
        context: int = 0,
        frames: tuple[int, int] | None = None,
        augment: bool = True,
        bg: str | float | None = "auto",
        margin_px: float = 3.0,
        cache_mb: float = 1024.0,
    ):
        self._movie, self.movie_path = _as_movie(movie, pixel_size_nm)
        gt, self.ground_truth_path = _as_locs(ground_truth, pixel_size_nm)
        self.pixel_size_nm = _pixel_size(pixel_size_nm, self._movie, gt)
        T, H, W = (int(v) for v in self._movie.shape)
        self.movie_shape = (T, H, W)
        self.camera = fit_camera(self._movie, gt, self.pixel_size_nm) if camera == "fit" else get_camera(camera)
        h, w = (int(crop), int(crop)) if np.isscalar(crop) else (int(crop[0]), int(crop[1]))
        if not (1 <= h <= H and 1 <= w <= W):
            raise ValueError(f"crop {h}×{w} px does not fit the {H}×{W} px movie")
        self.crop = (h, w)
        self.context = int(context)
        if self.context < 0:
            raise ValueError("context must be >= 0")
        self.augment = bool(augment)
        self.margin_px = float(margin_px)
        self.cache_mb = float(cache_mb)
        if isinstance(bg, str) and bg != "auto":
            raise ValueError(f"bg must be 'auto', a number or None, not {bg!r}")
        self.bg = bg

        gt = gt.sort_by_frame()
        if frames is None:
            last = int(gt.frames.max()) + 1 if len(gt) else T
            frames = (0, min(T, max(last, 1)))
        start, stop = int(frames[0]), int(frames[1])
        if not (0 <= start < stop <= T):
            raise ValueError(f"frame range {frames} is not inside 0..{T}")
        self.frames = (start, stop)
        self._gt = gt
        uniq, off = gt.frame_offsets()
        self._rows = {int(f): (int(off[k]), int(off[k + 1])) for k, f in enumerate(uniq)}
        self._bg_by_frame: dict[int, float] = {}
        self._bg_default: float | None = None
        if bg == "auto" and "bg" in gt and np.isfinite(gt["bg"]).any():
            v = gt["bg"]
            self._bg_default = float(np.nanmedian(v))
            for f, (a, b) in self._rows.items():
                m = v[a:b][np.isfinite(v[a:b])]
                if m.size:
                    self._bg_by_frame[f] = float(np.median(m))
        elif bg is not None and bg != "auto":
            self._bg_default = float(bg)
        ph = gt.get("photons")
        self._photons_mean = float(np.mean(ph)) if ph is not None and len(ph) and np.all(np.isfinite(ph)) else None
        self._cache: np.ndarray | None = None
        nbytes = T * H * W * 4
        if nbytes <= self.cache_mb * 2**20:
            self._cache = np.asarray(self._movie[:] if not isinstance(self._movie, np.ndarray) else self._movie)
        log.debug(
            "PairSampler: movie %s, %d emitters, frames %s, crop %s, context %d, camera %s",
            self.movie_shape, len(gt), self.frames, self.crop, self.context, self.camera,
        )

    # ------------------------------------------------------------------ info
    def __len__(self) -> int:
        """Number of central frames to draw from."""
        return self.frames[1] - self.frames[0]

    def __repr__(self) -> str:
        return (
            f"PairSampler(movie={self.movie_shape}, frames={self.frames}, crop={self.crop}, "
            f"context={self.context}, pixel_size_nm={self.pixel_size_nm}, emitters={self.n_emitters})"
        )

    @property
    def n_emitters(self) -> int:
        """Ground-truth emitters in the sampler's frame range."""
        f = self._gt.frames
        return int(np.count_nonzero((f >= self.frames[0]) & (f < self.frames[1])))

    @property
    def ground_truth(self) -> Localizations:
        """The whole ground-truth table (sorted by frame; treat as read-only)."""
        return self._gt

    def describe(self) -> dict:
        """Plain-data description (for checkpoints and logs)."""
        return {
            "movie": self.movie_path,
            "ground_truth": self.ground_truth_path,
            "movie_shape": list(self.movie_shape),
            "frames": list(self.frames),
            "crop": list(self.crop),
            "context": self.context,
            "augment": self.augment,
            "pixel_size_nm": self.pixel_size_nm,
            "camera": self.camera.to_dict(),
            "n_emitters": self.n_emitters,
        }

    def with_options(self, **kw: Any) -> PairSampler:
        """A sampler over the same data with some settings changed (``frames``, ``crop``,
        ``context``, ``augment``, ``bg``, ``margin_px``); the movie cache is shared."""
        new = object.__new__(PairSampler)
        new.__dict__.update(self.__dict__)
        unknown = set(kw) - {"frames", "crop", "context", "augment", "bg", "margin_px"}
        if unknown:
            raise ValueError(f"with_options: unknown settings {sorted(unknown)}")
        if "crop" in kw:
            c = kw.pop("crop")
            h, w = (int(c), int(c)) if np.isscalar(c) else (int(c[0]), int(c[1]))
            if not (1 <= h <= self.movie_shape[1] and 1 <= w <= self.movie_shape[2]):
                raise ValueError(f"crop {h}×{w} px does not fit the movie")
            new.crop = (h, w)
        if "frames" in kw:
            a, b = (int(v) for v in kw.pop("frames"))
            if not (0 <= a < b <= self.movie_shape[0]):
                raise ValueError(f"frame range {(a, b)} is not inside 0..{self.movie_shape[0]}")
            new.frames = (a, b)
        if "bg" in kw and kw["bg"] != self.bg:
            raise ValueError("with_options cannot change bg; make a new PairSampler")
        kw.pop("bg", None)
        for k, v in kw.items():
            setattr(new, k, type(getattr(self, k))(v))
        return new

    def split(self, frac: float = 0.2) -> tuple[PairSampler, PairSampler]:
        """Hold out the last ``frac`` of the frame range for validation.

        Parameters
        ----------
        frac : float
            Fraction of the frames (rounded up, at least one, and at least one frame stays for
            training) that go to validation; 0 returns ``(self, self without augmentation)``,
            whose validation crops overlap the training frames.

        Returns
        -------
        train, val : PairSampler
            Contiguous frame blocks (context clamped inside each); ``val`` has augmentation off.
        """
        if frac <= 0:
            log.warning("PairSampler.split(0): validation crops come from the training frames")
            return self, self.with_options(augment=False)
        a, b = self.frames
        n = b - a
        if n < 2:
            raise ValueError("need at least 2 frames to hold some out for validation")
        n_val = min(max(int(math.ceil(frac * n)), 1), n - 1)
        cut = b - n_val
        return self.with_options(frames=(a, cut)), self.with_options(frames=(cut, b), augment=False)

    def simulation_config(self, base: SimulationConfig | None = None) -> SimulationConfig:
        """A :class:`SimulationConfig` describing the pair (what checkpoints record).

        ``height``/``width`` = the crop, ``pixel_size_nm``, ``camera``, and, where the ground
        truth has them, ``photons_mean``/``photons_std``, ``psf_sigma_nm`` (median),
        ``bg_photons`` and ``density`` (emitters per frame per µm²); the rest from ``base``.
        Useful e.g. for :meth:`DecodeFamily.config_for_simulation
        <napari_smlm.core.models.decode.DecodeFamily.config_for_simulation>`.
        """
        base = base or SimulationConfig()
        gt = self._gt
        f = gt.frames
        sel = (f >= self.frames[0]) & (f < self.frames[1])
        kw: dict[str, Any] = {
            "n_frames": 1,
            "height": self.crop[0],
            "width": self.crop[1],
            "pixel_size_nm": self.pixel_size_nm,
            "camera": self.camera,
        }
        if "photons" in gt and sel.any():
            ph = gt["photons"][sel]
            kw["photons_mean"] = float(np.nanmean(ph))
            kw["photons_std"] = float(np.nanstd(ph))
        if "psf_sigma_nm" in gt and sel.any() and np.isfinite(gt["psf_sigma_nm"][sel]).any():
            kw["psf_sigma_nm"] = float(np.nanmedian(gt["psf_sigma_nm"][sel]))
        if self._bg_default is not None:
            kw["bg_photons"] = self._bg_default
        area = self.movie_shape[1] * self.movie_shape[2] * (self.pixel_size_nm / 1000.0) ** 2
        kw["density"] = float(np.count_nonzero(sel)) / (len(self) * area)
        return base.replace(**kw)

    # ------------------------------------------------------------------ sampling
    def _frame(self, t: int) -> np.ndarray:
        if self._cache is not None:
            return self._cache[t]
        return np.asarray(self._movie[t])

    def _emitters(self, t: int) -> Localizations:
        a, b = self._rows.get(int(t), (0, 0))
        return Localizations(self._gt.df.iloc[a:b], self._gt.meta)

    def sample(
        self, batch_size: int, rng: np.random.Generator, device: torch.device | str = "cpu"
    ) -> PairSample:
        """Draw ``batch_size`` random crops.

        Parameters
        ----------
        batch_size : int
        rng : numpy.random.Generator
            The only source of randomness (frame, position, symmetry).
        device : torch.device or str
            Where the returned tensors live.

        Returns
        -------
        PairSample
            ``(photons, ground_truth, pixel_size_nm, bg)``, ready for
            ``family.batch_from_data(*sample)``.
        """
        B = int(batch_size)
        h, w = self.crop
        c = self.context
        T, H, W = self.movie_shape
        a, b = self.frames
        px = self.pixel_size_nm
        m_nm = self.margin_px * px
        rot_ok = w <= H and h <= W  # a quarter turn needs a w × h region
        out = np.empty((B, 2 * c + 1, h, w), dtype=np.float32)
        bgs = np.empty(B, dtype=np.float32)
        parts = []
        for s in range(B):
            t = int(rng.integers(a, b))
            k = int(rng.integers(0, 4)) if self.augment else 0
            if k % 2 and not rot_ok:
                k = (k + 1) % 4
            flip = bool(self.augment and rng.random() < 0.5)
            rh, rw = (w, h) if k % 2 else (h, w)
            r0 = int(rng.integers(0, H - rh + 1))
            c0 = int(rng.integers(0, W - rw + 1))
            idx = np.clip(np.arange(t - c, t + c + 1), a, b - 1)
            region = np.stack([self._frame(int(i))[r0 : r0 + rh, c0 : c0 + rw] for i in idx])
            em = self._emitters(t)
            x = em["x_nm"] - c0 * px
            y = em["y_nm"] - r0 * px
            keep = (x >= -m_nm) & (x < rw * px + m_nm) & (y >= -m_nm) & (y < rh * px + m_nm)
            em = em.filter(keep)
            x, y = x[keep], y[keep]
            img = region
            for _ in range(k):
                width_nm = img.shape[-1] * px
                img = np.rot90(img, 1, axes=(-2, -1))
                x, y = y, width_nm - x
            if flip:
                img = img[..., ::-1]
                x = img.shape[-1] * px - x
            out[s] = self.camera.adu_to_photons(np.ascontiguousarray(img))
            inside = (x >= 0) & (x < w * px) & (y >= 0) & (y < h * px)
            em = em.with_columns(
                frame=np.full(len(em), s, dtype=np.int64), x_nm=x, y_nm=y, in_fov=inside.astype(np.float64)
            )
            parts.append(em)
            if self._bg_default is not None:
                bgs[s] = self._bg_by_frame.get(t, self._bg_default)
        gt = Localizations.concat(parts, meta=dict(self._gt.meta))
        gt.meta.update({"pixel_size_nm": px, "image_shape": (h, w), "source": "PairSampler"})
        if self._photons_mean is not None:
            gt.meta["photons_mean"] = self._photons_mean
        dev = torch.device(device)
        bg = None
        if self._bg_default is not None:
            bg = torch.from_numpy(bgs)[:, None, None].expand(B, h, w).contiguous().to(dev)
        return PairSample(torch.from_numpy(out).to(dev), gt, px, bg)
