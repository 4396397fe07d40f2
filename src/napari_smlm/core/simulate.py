"""Seeded SMLM movie simulator: structure → blinking → PSF → background → camera.

The pipeline:

1. **Structure.** Fluorophore positions (nm), fixed over the movie: uniform, filament-like
   smooth curves (persistent random walks), or drawn from a user density image.
2. **Blinking.** A continuous-time on/off model with exponential dwell times (mean ``t_on``,
   ``t_off`` frames) and optional bleaching after an exponential on-time budget (mean
   ``t_bleach``) — the on/dark/bleached states of the SMLM-2016 model. Fluorophores start in
   the steady state. Each (fluorophore, frame) overlap becomes one ground-truth emitter whose
   photons are the fluorophore's brightness times the fraction of the frame it was on.
3. **Image.** Pixel-integrated Gaussian PSF (:mod:`.psf`) plus a smooth background.
4. **Camera.** :meth:`Camera.forward` turns expected photons into uint16 ADU.

The number of fluorophores is chosen so that, in the steady state, a frame holds ``density``
ground-truth emitters (fluorophores on for any part of it) per µm². Steps 3–4 run in torch on the requested device; the movie is produced
in chunks by :func:`iter_simulate`, so arbitrarily long movies stream in bounded memory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .config import SimulationConfig
from .localizations import Localizations
from .psf import make_psf

__all__ = [
    "SimulationChunk",
    "Fluorophores",
    "make_fluorophores",
    "blinking_events",
    "background_field",
    "drift_trajectory",
    "iter_simulate",
    "simulate",
    "simulate_ground_truth",
]

log = logging.getLogger(__name__)


@dataclass
class Fluorophores:
    """Static fluorophores: positions (nm), brightness (photons/frame), PSF width (nm)."""

    x_nm: np.ndarray
    y_nm: np.ndarray
    brightness: np.ndarray
    psf_sigma_nm: np.ndarray
    z_nm: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x_nm)


@dataclass
class SimulationChunk:
    """One piece of a simulated movie, yielded by :func:`iter_simulate`.

    Attributes
    ----------
    start : int
        Index of the first frame of ``frames``.
    frames : np.ndarray
        (n, H, W) uint16 ADU.
    ground_truth : Localizations
        Emitters of these frames (absolute 0-based frame numbers).
    n_done, n_total : int
        Frames produced so far / in all.
    """

    start: int
    frames: np.ndarray
    ground_truth: Localizations
    n_done: int
    n_total: int


# --------------------------------------------------------------------------- structure
def _n_fluorophores(cfg: SimulationConfig, rng: np.random.Generator) -> int:
    m = cfg.margin_px * cfg.pixel_size_nm / 1000.0
    area_ext = (cfg.height * cfg.pixel_size_nm / 1000.0 + 2 * m) * (cfg.width * cfg.pixel_size_nm / 1000.0 + 2 * m)
    # In the steady state a fluorophore overlaps a given frame with probability
    # duty · (1 + 1/t_on) (its on-interval may start inside the frame or before it), so this many
    # fluorophores give ``density`` ground-truth emitters per frame per µm².
    expected = cfg.density * area_ext / (cfg.duty_cycle * (1.0 + 1.0 / cfg.t_on))
    return int(rng.poisson(expected))


def _filament_positions(cfg: SimulationConfig, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Points on smooth random curves crossing the (extended) field of view."""
    px = cfg.pixel_size_nm
    m = cfg.margin_px * px
    w, h = cfg.width * px + 2 * m, cfg.height * px + 2 * m
    step = 20.0
    n_steps = int(math.ceil(1.5 * math.hypot(w, h) / step))
    k = max(1, int(cfg.n_filaments))
    # Start anywhere in the field, walk both ways from the start so the curve crosses it.
    x0 = rng.uniform(0, w, k) - m
    y0 = rng.uniform(0, h, k) - m
    theta0 = rng.uniform(0, 2 * np.pi, k)
    dtheta = rng.normal(0, math.sqrt(step / cfg.filament_persistence_nm), (k, n_steps))
    half = n_steps // 2
    theta = theta0[:, None] + np.cumsum(dtheta, axis=1)
    dx, dy = step * np.cos(theta), step * np.sin(theta)
    # Forward half from the start point, backward half by reversing the other walk.
    fx = np.cumsum(dx[:, :half], axis=1)
    fy = np.cumsum(dy[:, :half], axis=1)
    bx = -np.cumsum(dx[:, half:], axis=1)[:, ::-1]
    by = -np.cumsum(dy[:, half:], axis=1)[:, ::-1]
    xs = x0[:, None] + np.concatenate([bx, np.zeros((k, 1)), fx], axis=1)
    ys = y0[:, None] + np.concatenate([by, np.zeros((k, 1)), fy], axis=1)
    # Keep vertices within the extended field; sample fluorophores uniformly on kept vertices.
    keep = (xs >= -m) & (xs < w - m) & (ys >= -m) & (ys < h - m)
    vx, vy = xs[keep], ys[keep]
    if len(vx) == 0:
        vx, vy = x0, y0
    idx = rng.integers(0, len(vx), n)
    t = rng.uniform(0, step, n)
    ang = rng.uniform(0, 2 * np.pi, n)  # small along-curve smear within one step
    x = vx[idx] + t * np.cos(ang) * 0.5 + rng.normal(0, cfg.filament_width_nm, n)
    y = vy[idx] + t * np.sin(ang) * 0.5 + rng.normal(0, cfg.filament_width_nm, n)
    return x, y


def _image_positions(
    cfg: SimulationConfig, n: int, image: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Positions drawn with probability proportional to ``image`` stretched over the field."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or img.size == 0:
        raise ValueError("density image must be a non-empty 2-D array")
    img = np.clip(np.nan_to_num(img), 0, None)
    total = img.sum()
    if total <= 0:
        raise ValueError("density image has no positive pixel")
    p = (img / total).ravel()
    idx = rng.choice(p.size, size=n, p=p)
    r, c = np.unravel_index(idx, img.shape)
    fy = cfg.height * cfg.pixel_size_nm / img.shape[0]
    fx = cfg.width * cfg.pixel_size_nm / img.shape[1]
    x = (c + rng.uniform(0, 1, n)) * fx
    y = (r + rng.uniform(0, 1, n)) * fy
    return x, y


def make_fluorophores(
    cfg: SimulationConfig, rng: np.random.Generator, density_image: np.ndarray | None = None
) -> Fluorophores:
    """Draw the static fluorophores of a movie."""
    n = _n_fluorophores(cfg, rng)
    px = cfg.pixel_size_nm
    m = cfg.margin_px * px
    if cfg.structure == "uniform":
        x = rng.uniform(-m, cfg.width * px + m, n)
        y = rng.uniform(-m, cfg.height * px + m, n)
    elif cfg.structure == "filaments":
        x, y = _filament_positions(cfg, n, rng)
    else:
        if density_image is None:
            raise ValueError("structure='image' needs a density_image")
        x, y = _image_positions(cfg, n, density_image, rng)
    bright = np.clip(rng.normal(cfg.photons_mean, cfg.photons_std, n), cfg.photons_min, None)
    sig = np.full(n, cfg.psf_sigma_nm)
    if cfg.psf_sigma_std_nm > 0:
        sig = np.clip(rng.normal(cfg.psf_sigma_nm, cfg.psf_sigma_std_nm, n), 0.3 * cfg.psf_sigma_nm, None)
    fl = Fluorophores(x, y, bright, sig)
    if cfg.is_3d:
        # z from a child generator: spawning does not advance ``rng``, so the 2-D part of a 3-D
        # movie (positions, blinking, background, noise) is the 2-D movie of the same seed.
        fl.z_nm = _z_positions(cfg, x, y, _child_rng(rng))
        # The PSF width column becomes the geometric mean of the calibrated σx, σy at each z.
        from .calibration import AstigmaticCalibration

        sx, sy = AstigmaticCalibration.from_dict(cfg.psf_calibration).sigmas_nm(fl.z_nm)
        fl.psf_sigma_nm = np.sqrt(sx * sy)
    return fl


def _child_rng(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator derived from ``rng`` without advancing it."""
    if hasattr(rng, "spawn"):  # numpy >= 1.25
        return rng.spawn(1)[0]
    return np.random.default_rng(rng.bit_generator._seed_seq.spawn(1)[0])


def _z_positions(cfg: SimulationConfig, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Axial positions (nm) in ``cfg.z_range_nm``: a uniform slab, or smooth depth for filaments.

    Filaments (and density images) take their depth from a smooth random field over the plane
    (a sum of four plane waves of wavelength ~``z_length_nm``), so each curve changes depth
    gradually along its length, plus ``filament_width_nm`` of jitter.
    """
    lo, hi = cfg.z_range_nm
    n = len(x)
    if cfg.structure == "uniform":
        return rng.uniform(lo, hi, n)
    k = 4
    ang = rng.uniform(0, 2 * np.pi, k)
    kmag = 2 * np.pi / (cfg.z_length_nm * rng.uniform(0.7, 1.5, k))
    phase = rng.uniform(0, 2 * np.pi, k)
    amp = rng.uniform(0.5, 1.0, k)
    f = sum(amp[i] * np.cos(kmag[i] * (np.cos(ang[i]) * x + np.sin(ang[i]) * y) + phase[i]) for i in range(k))
    f = f / amp.sum()  # in [-1, 1]
    z = 0.5 * (lo + hi) + 0.5 * (hi - lo) * f + rng.normal(0, cfg.filament_width_nm, n)
    return np.clip(z, lo, hi)


# --------------------------------------------------------------------------- blinking
def blinking_events(
    n_fluorophores: int,
    n_frames: int,
    t_on: float,
    t_off: float,
    t_bleach: float | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """On-intervals of every fluorophore, cut into frames.

    Returns
    -------
    fluor, frame, on_fraction : arrays
        One row per (fluorophore, frame) with a non-zero on-time; ``on_fraction`` in (0, 1].
    """
    if n_fluorophores == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0)
    duty = t_on / (t_on + t_off)
    ids = np.arange(n_fluorophores)
    # Steady state: on with probability duty; memoryless residual dwell time.
    on = rng.random(n_fluorophores) < duty
    t = np.zeros(n_fluorophores)
    budget = np.full(n_fluorophores, np.inf) if not t_bleach else rng.exponential(t_bleach, n_fluorophores)
    starts, ends, owners = [], [], []
    # Off-first fluorophores: wait out the residual off time.
    t[~on] = rng.exponential(t_off, int((~on).sum()))
    active = ids[t < n_frames]
    while active.size:
        a = t[active]
        d = rng.exponential(t_on, active.size)
        d = np.minimum(d, budget[active])
        budget[active] -= d
        starts.append(a)
        ends.append(a + d)
        owners.append(active)
        t[active] = a + d + rng.exponential(t_off, active.size)
        active = active[(t[active] < n_frames) & (budget[active] > 0)]
    if not starts:  # nobody switches on during the movie
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0)
    s = np.concatenate(starts)
    e = np.minimum(np.concatenate(ends), n_frames)
    o = np.concatenate(owners)
    ok = e > s
    s, e, o = s[ok], e[ok], o[ok]
    f0 = np.floor(s).astype(np.int64)
    f1 = np.minimum(np.ceil(e).astype(np.int64), n_frames) - 1
    f1 = np.maximum(f1, f0)
    counts = f1 - f0 + 1
    rep = np.repeat(np.arange(len(s)), counts)
    within = np.arange(rep.size) - np.repeat(np.cumsum(counts) - counts, counts)
    frame = f0[rep] + within
    frac = np.minimum(e[rep], frame + 1) - np.maximum(s[rep], frame)
    keep = frac > 1e-6
    return o[rep][keep], frame[keep], np.clip(frac[keep], 0, 1)


# --------------------------------------------------------------------------- background
def background_field(cfg: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """Smooth background (photons / pixel), constant over time, mean ``bg_photons``."""
    h, w = cfg.height, cfg.width
    bg = np.full((h, w), cfg.bg_photons, dtype=np.float32)
    if cfg.bg_variation <= 0 or cfg.bg_photons <= 0:
        return bg
    scale_px = max(cfg.bg_length_nm / cfg.pixel_size_nm, 1.0)
    gh, gw = int(math.ceil(h / scale_px)) + 2, int(math.ceil(w / scale_px)) + 2
    coarse = torch.from_numpy(rng.uniform(-1, 1, (1, 1, gh, gw)).astype(np.float32))
    fine = torch.nn.functional.interpolate(coarse, size=(gh * int(scale_px + 1), gw * int(scale_px + 1)), mode="bicubic")
    fine = fine[0, 0, :h, :w].numpy()
    fine = fine / max(float(np.abs(fine).max()), 1e-6)
    return np.clip(bg * (1 + cfg.bg_variation * fine), 0, None).astype(np.float32)


# --------------------------------------------------------------------------- drift
def drift_trajectory(cfg: SimulationConfig) -> np.ndarray:
    """Per-frame stage drift of a simulated movie.

    The sum of a smooth random trajectory (a cubic spline through a Gaussian random walk with
    knots every ``drift_timescale_frames``, scaled so that its largest distance from the start
    is ``drift_nm``), a linear term (``drift_linear_nm`` over the whole movie) and a sinusoid
    (``drift_sine_nm``, ``drift_sine_period_frames``). The random part has its own random
    stream (seeded by ``cfg.seed``), so it does not change anything else in the movie.

    Parameters
    ----------
    cfg : SimulationConfig

    Returns
    -------
    np.ndarray
        ``(n_frames, 2)`` displacement ``(dx, dy)`` in nm of the sample at each frame; 0 at
        frame 0. An emitter at sample position ``p`` appears at ``p + drift[frame]``.
    """
    n = cfg.n_frames
    t = np.arange(n, dtype=np.float64)
    d = np.zeros((n, 2))
    if cfg.drift_nm > 0 and n > 1:
        from scipy.interpolate import CubicSpline

        rng = np.random.default_rng([int(cfg.seed), 0x0D1F7])
        step = cfg.drift_timescale_frames or max(n / 5.0, 1.0)
        k = int(math.ceil((n - 1) / step)) + 1
        knots_t = np.linspace(0, n - 1, max(k, 2))
        walk = np.cumsum(rng.normal(0, 1, (len(knots_t), 2)), axis=0)
        walk -= walk[0]
        r = CubicSpline(knots_t, walk, axis=0, bc_type="natural")(t)
        r -= r[0]
        peak = float(np.max(np.hypot(r[:, 0], r[:, 1])))
        if peak > 0:
            d += r * (cfg.drift_nm / peak)
    lx, ly = cfg.drift_linear_nm
    if (lx or ly) and n > 1:
        d += np.outer(t / (n - 1), [lx, ly])
    if cfg.drift_sine_nm > 0:
        w = 2 * np.pi * t / cfg.drift_sine_period_frames
        d[:, 0] += cfg.drift_sine_nm * np.sin(w)
        d[:, 1] += cfg.drift_sine_nm * (1 - np.cos(w))
    return d


# --------------------------------------------------------------------------- movie
def _draw_events(cfg, rng: np.random.Generator, density_image=None, with_drift: bool = True):
    """Fluorophores, their on-events sorted by frame, the background field and the stage drift.

    The one place that draws them, in this order from ``rng``: :func:`iter_simulate` (the movie),
    :func:`simulate_ground_truth` (its ground truth alone) and :func:`simulate_crops` (per crop,
    ``with_drift=False``: crops have no stage drift) must make the same draws. The drift has its
    own random stream and is None without drift.
    """
    fl = make_fluorophores(cfg, rng, density_image)
    fid, frame, frac = blinking_events(len(fl), cfg.n_frames, cfg.t_on, cfg.t_off, cfg.t_bleach, rng)
    order = np.argsort(frame, kind="stable")
    bg = background_field(cfg, rng)
    drift = drift_trajectory(cfg) if with_drift and cfg.has_drift else None
    return fl, fid[order], frame[order], frac[order], bg, drift


def _ground_truth_columns(cfg, fl: Fluorophores, fid, frame, frac, bg, drift=None) -> dict[str, np.ndarray]:
    """The ground-truth columns of the on-events ``(fid, frame, frac)``, ``z_nm`` last (3-D only).

    One definition for the movie's table (:func:`_ground_truth`) and the crops' (:func:`simulate_crops`).
    """
    px = cfg.pixel_size_nm
    x, y = fl.x_nm[fid], fl.y_nm[fid]
    extra = {}
    if drift is not None:  # where the drifting stage puts the emitter in the image
        dx, dy = drift[frame, 0], drift[frame, 1]
        x, y = x + dx, y + dy
        extra = {"drift_x_nm": dx, "drift_y_nm": dy}
    inside = (x >= 0) & (x < cfg.width * px) & (y >= 0) & (y < cfg.height * px)
    col = np.clip((x / px).astype(np.int64), 0, cfg.width - 1)
    row = np.clip((y / px).astype(np.int64), 0, cfg.height - 1)
    cols = {
        "frame": frame,
        "x_nm": x,
        "y_nm": y,
        "photons": fl.brightness[fid] * frac,
        "bg": bg[row, col],
        "psf_sigma_nm": fl.psf_sigma_nm[fid],
        "on_fraction": frac,
        "emitter_id": fid.astype(np.float64),
        "in_fov": inside.astype(np.float64),
        **extra,
    }
    if fl.z_nm is not None:
        cols["z_nm"] = fl.z_nm[fid]
    return cols


def _ground_truth(cfg, fl: Fluorophores, fid, frame, frac, bg, drift=None) -> Localizations:
    meta = {
        "pixel_size_nm": cfg.pixel_size_nm,
        "image_shape": (cfg.height, cfg.width),
        "n_frames": cfg.n_frames,
        "source": "napari-smlm simulate",
    }
    return Localizations(_ground_truth_columns(cfg, fl, fid, frame, frac, bg, drift), meta=meta)


def iter_simulate(
    cfg: SimulationConfig,
    chunk_frames: int = 256,
    device: str | torch.device = "cpu",
    density_image: np.ndarray | None = None,
    include_outside: bool = False,
) -> Iterator[SimulationChunk]:
    """Simulate a movie chunk by chunk (bounded memory for any length).

    Parameters
    ----------
    cfg : SimulationConfig
    chunk_frames : int
        Frames rendered per chunk.
    device : str or torch.device
        Where the PSF rendering and camera noise run.
    density_image : array, optional
        For ``structure="image"``.
    include_outside : bool
        Keep emitters centred outside the field of view (in the margin) in the ground truth,
        flagged by ``in_fov == 0`` (training targets want them; evaluation does not).

    Yields
    ------
    SimulationChunk
    """
    from .validate import check

    check("chunk_frames", chunk_frames, "chunk")  # 0 would be "range() arg 3 must not be zero"
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(device)
    fl, fid, frame, frac, bg, drift = _draw_events(cfg, rng, density_image)
    gt_all = _ground_truth(cfg, fl, fid, frame, frac, bg, drift)
    # image positions (nm): the sample's, moved by the stage drift of each frame
    ex, ey = gt_all["x_nm"], gt_all["y_nm"]
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(0, 2**62)))
    bg_t = torch.from_numpy(bg).to(device)
    psf = make_psf(cfg.psf_calibration, cfg.pixel_size_nm, cfg.psf_sigma_px)
    px = cfg.pixel_size_nm
    bounds = np.searchsorted(frame, np.arange(0, cfg.n_frames + chunk_frames, chunk_frames).clip(max=cfg.n_frames))
    for k, start in enumerate(range(0, cfg.n_frames, chunk_frames)):
        stop = min(start + chunk_frames, cfg.n_frames)
        a, b = bounds[k], bounds[k + 1]
        sl = slice(a, b)
        f_ = fid[sl]
        expected = bg_t.expand(stop - start, -1, -1).clone()
        psf.render(
            torch.from_numpy(frame[sl] - start).to(device),
            torch.from_numpy(ex[sl] / px).float().to(device),
            torch.from_numpy(ey[sl] / px).float().to(device),
            torch.from_numpy(fl.brightness[f_] * frac[sl]).float().to(device),
            (stop - start, cfg.height, cfg.width),
            sigma_x_px=torch.from_numpy(fl.psf_sigma_nm[f_] / px).float().to(device),
            out=expected,
            z_nm=None if fl.z_nm is None else torch.from_numpy(fl.z_nm[f_]).float().to(device),
        )
        adu = cfg.camera.forward(expected, generator=gen)
        frames = adu.to(torch.int32).cpu().numpy().astype(np.uint16)
        gt = gt_all.filter(np.arange(a, b))
        if not include_outside:
            gt = gt.filter(gt["in_fov"] > 0)
        yield SimulationChunk(start, frames, gt, stop, cfg.n_frames)


def simulate(
    cfg: SimulationConfig,
    device: str | torch.device = "cpu",
    density_image: np.ndarray | None = None,
    include_outside: bool = False,
) -> tuple[np.ndarray, Localizations]:
    """Simulate a whole movie in memory.

    Returns
    -------
    frames : np.ndarray
        (n_frames, height, width) uint16 ADU.
    ground_truth : Localizations
        0-based frames, nm, with ``photons`` (emitted in that frame), ``bg`` (photons/px),
        ``psf_sigma_nm``, ``on_fraction`` and ``emitter_id`` columns; ``meta`` holds
        ``pixel_size_nm``, ``image_shape``, ``n_frames`` and the config. With stage drift,
        ``x_nm``/``y_nm`` are image positions, the ``drift_x_nm``/``drift_y_nm`` columns
        hold the drift of each row's frame (sample position = image position − drift) and
        ``meta["drift_nm"]`` the ``(n_frames, 2)`` trajectory.
    """
    frames, gts = [], []
    for ch in iter_simulate(cfg, device=device, density_image=density_image, include_outside=include_outside):
        frames.append(ch.frames)
        gts.append(ch.ground_truth)
    gt = Localizations.concat(gts)
    gt.meta["simulation"] = cfg.to_dict()
    if cfg.has_drift:
        gt.meta["drift_nm"] = drift_trajectory(cfg)
    return np.concatenate(frames, axis=0), gt


def simulate_ground_truth(
    cfg: SimulationConfig, density_image: np.ndarray | None = None, include_outside: bool = False
) -> Localizations:
    """The ground truth of :func:`simulate` without rendering a single frame.

    Same fluorophores, blinking, background values and drift as the movie of the same config
    (same random draws), at a fraction of the cost: long movies (10⁴–10⁵ frames) for testing
    post-processing (drift, merging, resolution) in seconds.

    Returns
    -------
    Localizations
        As the ground truth of :func:`simulate`.
    """
    rng = np.random.default_rng(cfg.seed)
    fl, fid, frame, frac, bg, drift = _draw_events(cfg, rng, density_image)
    gt = _ground_truth(cfg, fl, fid, frame, frac, bg, drift)
    if not include_outside:
        gt = gt.filter(gt["in_fov"] > 0)
    gt.meta["simulation"] = cfg.to_dict()
    if drift is not None:
        gt.meta["drift_nm"] = drift
    return gt


# --------------------------------------------------------------------------- batched crops
__all__ += ["SimulatedCrops", "simulate_crops"]


@dataclass
class SimulatedCrops:
    """A batch of short, independent simulated movies ("crops"), from :func:`simulate_crops`.

    Attributes
    ----------
    frames : torch.Tensor
        (n, T, H, W) float32 ADU (rounded and clipped to the uint16 range, as
        :meth:`Camera.forward <napari_smlm.core.camera.Camera.forward>` returns them), on the
        requested device. ``T`` = ``n_frames`` and ``H × W`` = ``height × width`` of the configs.
    background : torch.Tensor
        (n, H, W) float32 expected background of each crop, photons per pixel.
    ground_truth : Localizations
        The emitters of every frame of every crop, with the columns of :func:`simulate`'s ground
        truth (``frame`` is the frame *within* the crop, 0..T-1; nm from the crop's top-left
        edge) plus ``sample``, the crop index; sorted by sample, then frame. The rows of crop
        ``i`` equal ``simulate(configs[i], include_outside=...)``'s ground truth.
    configs : tuple of SimulationConfig
        The configuration (and seed) of each crop.
    """

    frames: torch.Tensor
    background: torch.Tensor
    ground_truth: Localizations
    configs: tuple[SimulationConfig, ...]


def simulate_crops(
    config: SimulationConfig | list[SimulationConfig] | tuple[SimulationConfig, ...],
    n: int | None = None,
    rng: np.random.Generator | None = None,
    device: str | torch.device = "cpu",
    include_outside: bool = True,
    density_image: np.ndarray | list | tuple | None = None,
    cameras: list | tuple | None = None,
    bg_gradients: np.ndarray | list | tuple | None = None,
) -> SimulatedCrops:
    """Simulate many short movies at once: the simulator for training batches.

    Each crop runs :func:`simulate`'s own pipeline (structure, blinking, background, ground
    truth) from ``numpy.random.default_rng(crop_config.seed)``, so its ground truth is exactly
    the ground truth of ``simulate(crop_config)``; the PSF rendering and the camera noise then run
    once for the whole batch, on ``device``, which is what makes it fast for many small crops.
    The noise is drawn from one generator for the batch, so the frames are a different noise
    realisation of the same expected images as :func:`simulate`'s (same statistics).

    Parameters
    ----------
    config : SimulationConfig or sequence of SimulationConfig
        One config: ``n`` crops of it, each with its own seed drawn from ``rng``. A sequence:
        one crop per config, as given (e.g. per-sample randomised photons, background, PSF
        width or density). ``height``/``width`` are the crop size (camera pixels) and
        ``n_frames`` the frames per crop; these, ``pixel_size_nm`` and ``camera`` must be the
        same for all configs.
    n : int, optional
        Number of crops; required with a single config, must match a sequence's length if given.
    rng : numpy.random.Generator, optional
        Draws the crops' seeds (single config) and the seed of the batch's camera noise. Default
        ``numpy.random.default_rng`` seeded from the configs' seeds (reproducible).
    device : str or torch.device
        Where the PSF rendering and camera noise run and the returned tensors live.
    include_outside : bool
        Keep emitters centred in the margin around the crop (``in_fov == 0``) in the ground
        truth. They are always rendered (they shine into the crop); training targets usually
        want them, evaluation does not.
    density_image : array or sequence of arrays, optional
        For ``structure="image"`` (see :func:`simulate`); a sequence gives one image (or None)
        per crop.
    cameras : sequence of Camera, optional
        One camera per crop (e.g. a randomised microscope per training sample); default: every
        crop uses its config's camera, which must then be the same for all.
    bg_gradients : (n, 2) array-like, optional
        Linear background gradient of each crop, ``(gx, gy)`` in photons/px per px, added to
        the background field around the crop's centre (clipped at 0); the ground truth's
        ``bg`` column and ``background`` include it.

    Returns
    -------
    SimulatedCrops

    Raises
    ------
    ValueError
        When ``n`` is missing or inconsistent, or the configs differ in crop size, frames,
        pixel size or camera.
    """
    if isinstance(config, SimulationConfig):
        if n is None or int(n) < 1:
            raise ValueError(f"simulate_crops: n (number of crops) must be >= 1 with a single config, got {n}")
        if rng is None:
            rng = np.random.default_rng(config.seed)
        configs = tuple(config.replace(seed=int(rng.integers(0, 2**31 - 1))) for _ in range(int(n)))
    else:
        configs = tuple(config)
        if not configs:
            raise ValueError("simulate_crops: empty list of configs")
        if n is not None and int(n) != len(configs):
            raise ValueError(f"simulate_crops: n={n} but {len(configs)} configs were given")
        if rng is None:
            rng = np.random.default_rng([int(c.seed) for c in configs])
    first = configs[0]
    same = ("height", "width", "n_frames", "pixel_size_nm", "psf_calibration") + (() if cameras else ("camera",))
    if cameras is not None and len(cameras) != len(configs):
        raise ValueError(f"simulate_crops: {len(cameras)} cameras for {len(configs)} crops")
    images = list(density_image) if isinstance(density_image, (list, tuple)) else [density_image] * len(configs)
    if len(images) != len(configs):
        raise ValueError(f"simulate_crops: {len(images)} density images for {len(configs)} crops")
    grads = None if bg_gradients is None else np.asarray(bg_gradients, dtype=np.float64).reshape(len(configs), 2)
    for name in same:
        values = {repr(getattr(c, name)) for c in configs}
        if len(values) > 1:
            raise ValueError(f"simulate_crops: all configs must have the same {name}, got {sorted(values)}")
    device = torch.device(device)
    B, T, H, W = len(configs), int(first.n_frames), int(first.height), int(first.width)
    px = float(first.pixel_size_nm)

    names = ("frame", "x_nm", "y_nm", "photons", "bg", "psf_sigma_nm", "on_fraction", "emitter_id", "in_fov", "sample")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
    bgs = np.empty((B, H, W), dtype=np.float32)
    for i, cfg in enumerate(configs):
        # The per-movie steps of iter_simulate, in the same order on the same generator (no stage
        # drift), and the columns of _ground_truth (kept as arrays: one table per crop would cost
        # more than the simulation itself).
        fl, fid, frame, frac, bg, _ = _draw_events(cfg, np.random.default_rng(cfg.seed), images[i], with_drift=False)
        bgs[i] = bg  # float32, as the frames' background
        if grads is not None and (grads[i] != 0).any():
            ramp = (grads[i, 0] * (np.arange(W) - (W - 1) / 2.0)[None, :]
                    + grads[i, 1] * (np.arange(H) - (H - 1) / 2.0)[:, None])
            bgs[i] = np.clip(bgs[i] + ramp, 0, None)
        cols = _ground_truth_columns(cfg, fl, fid, frame, frac, bgs[i])
        cols["sample"] = np.full(len(fid), i, dtype=np.int64)
        for k, v in cols.items():
            parts.setdefault(k, []).append(v)  # z_nm (3-D) after sample, as before
    meta = {
        "pixel_size_nm": px,
        "image_shape": (H, W),
        "n_frames": T,
        "n_crops": B,
        "source": "napari-smlm simulate_crops",
    }
    gt_all = Localizations({k: np.concatenate(v) for k, v in parts.items()}, meta=meta)

    background = torch.from_numpy(bgs).to(device)
    expected = background.repeat_interleave(T, dim=0)  # (B·T, H, W)
    if len(gt_all):

        def f32(values: np.ndarray) -> torch.Tensor:
            # float64 arithmetic then float32, as iter_simulate; a copy (columns may be read-only)
            return torch.from_numpy(np.array(values, dtype=np.float64)).float().to(device)

        make_psf(first.psf_calibration, px, first.psf_sigma_px).render(
            torch.from_numpy(gt_all["sample"].astype(np.int64) * T + gt_all["frame"].astype(np.int64)).to(device),
            f32(gt_all["x_nm"] / px),
            f32(gt_all["y_nm"] / px),
            f32(gt_all["photons"]),
            (B * T, H, W),
            sigma_x_px=f32(gt_all["psf_sigma_nm"] / px),
            out=expected,
            z_nm=f32(gt_all["z_nm"]) if "z_nm" in gt_all else None,
        )
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(0, 2**62)))
    if cameras is None:
        frames = first.camera.forward(expected, generator=gen).view(B, T, H, W)
    else:
        ex = expected.view(B, T, H, W)
        frames = torch.stack([cam.forward(ex[i], generator=gen) for i, cam in enumerate(cameras)])
    if not include_outside and len(gt_all):
        gt_all = gt_all.filter(gt_all["in_fov"] > 0)
    return SimulatedCrops(frames, background, gt_all, configs)
