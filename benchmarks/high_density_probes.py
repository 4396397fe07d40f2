"""Probes (issue 15.3, session 13): can decode's high-density accuracy be raised without training? Measured on tuning
seeds only; the answers were no (docs/benchmarks.md, "Session 13: high density without training"), so nothing here
is part of the package.

Usage::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/high_density_probes.py refit --densities 0.1,2,4
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/high_density_probes.py sigma-filter --densities 0.1,1,2,4

``refit``: a multi-emitter maximum-likelihood refit on the raw frames (below). ``sigma-filter``: drop the
localizations with the largest predicted uncertainty (√(σx² + σy²) above its 95th … 70th percentile), the trade
of JI for RMSE that the efficiency measures.

``refit``, for each tuning movie (seeds 8000 + 10 × density and 8500 + 10 × density, the accuracy benchmark's microscope) it
prints decode's Hungarian JI, efficiency, RMSE and RMSE*/CRLB as it is, after the refit below, and after an
inverse-variance average of the two (the network's predicted σ against the fit's Fisher bound).

The refit:

A network places each emitter to within a fraction of a pixel, but where spots overlap its
offsets are pulled by the neighbours (issue 15: decode's RMSE at 2–4 emitters/µm² is 2.3–3.3×
the single-emitter CRLB while it is at the bound on sparse data). This module refits every
detection on the frame it came from with a pixel-integrated Gaussian PSF and the camera's noise
model, **with every other detection of the same frame in the model** — the classical
multi-emitter fit (as in DAOSTORM or ThunderSTORM's multi-emitter fitting), started from the
network's positions, photons and background instead of a peak finder.

Model of the pixels of emitter ``k``'s window (``2R+1`` px square around its start position)::

    mu = b_k + N_k · PSF(x_k, y_k) + sum over the frame's other detections j of N_j · PSF(x_j, y_j)

``PSF`` is the Gaussian of width ``sigma_px`` integrated over each pixel (erf differences).
Each iteration updates ``(x_k, y_k, N_k, b_k)`` of all emitters at once by a damped Fisher-scoring
(Gauss–Newton) step on emitter ``k``'s window, with the neighbours held at their current
values (a Jacobi sweep: every emitter's step uses the same snapshot of the others). The noise
is Poisson on photons with the camera's excess-noise factor ``F`` and read noise ``r``
(photons): ``d + r²/F`` is treated as Poisson with mean ``mu + r²/F`` (scaled by ``1/F``), which
gives the right mean and variance for EMCCD (F = 2), sCMOS / CCD (F = 1) and their read noise.

A refit is kept only when it stays within ``max_shift_px`` of the start, its photons are
positive and everything is finite; otherwise the network's values stay. Works on any device
torch runs on; all emitters of a batch of frames are fitted together (no Python loop over
emitters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["RefineResult", "refine_emitters", "window_radius"]


def window_radius(sigma_px: float) -> int:
    """Half-width (px) of the fit window: 3 σ, at least 3 px."""
    return max(3, int(math.ceil(3.0 * float(sigma_px))))


@dataclass
class RefineResult:
    """Refitted parameters (tensors of shape (K,), pixels from the frame's top-left edge).

    ``ok`` marks emitters whose refit was kept (the others hold their start values);
    ``crlb_x_px`` / ``crlb_y_px`` are the square roots of the Fisher information's inverse at the
    fit (with the neighbours known), NaN where not ``ok``.
    """

    x_px: torch.Tensor
    y_px: torch.Tensor
    photons: torch.Tensor
    bg: torch.Tensor
    ok: torch.Tensor
    crlb_x_px: torch.Tensor
    crlb_y_px: torch.Tensor
    iterations: int


def _pixel_mass(edges: torch.Tensor, mu: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mass of a unit Gaussian in pixels ``[e, e+1)`` and its derivative with respect to ``mu``.

    edges : (K, P) left edges; mu : (K,) centres. Returns (K, P) mass and d mass / d mu.
    """
    s2 = math.sqrt(2.0) * sigma
    a = (edges - mu[:, None]) / s2
    b = a + 1.0 / s2
    mass = 0.5 * (torch.erf(b) - torch.erf(a))
    k = 1.0 / (math.sqrt(2.0 * math.pi) * sigma)
    dmass = -k * (torch.exp(-b * b) - torch.exp(-a * a))
    return mass, dmass


def refine_emitters(
    frames: torch.Tensor,
    index: torch.Tensor,
    x_px: torch.Tensor,
    y_px: torch.Tensor,
    photons: torch.Tensor,
    bg: torch.Tensor,
    sigma_px: float,
    excess_noise: float = 1.0,
    read_noise_photons: float = 0.0,
    iterations: int = 8,
    max_shift_px: float = 1.0,
) -> RefineResult:
    """Refit emitters jointly on their frames (see the module docstring).

    Parameters
    ----------
    frames : (B, H, W) tensor
        Frames in photons (``Camera.adu_to_photons``).
    index : (K,) int tensor
        Frame (0 … B−1) of each emitter.
    x_px, y_px : (K,) tensors
        Start positions (px from the frame's top-left edge, pixel centres at ``i + 0.5``).
    photons, bg : (K,) tensors
        Start photons and local background (photons / px); non-finite or non-positive values are
        replaced by a start from the data.
    sigma_px : float
        PSF width (px).
    excess_noise : float
        The camera's excess-noise factor (2 with EM gain, else 1).
    read_noise_photons : float
        Read noise referred to the input (photons r.m.s.).
    iterations : int
        Fisher-scoring sweeps.
    max_shift_px : float
        A refit that moved farther than this from the start is not kept.

    Returns
    -------
    RefineResult
    """
    if frames.ndim != 3:
        raise ValueError(f"frames must be (B, H, W), got shape {tuple(frames.shape)}")
    if not sigma_px > 0:
        raise ValueError(f"sigma_px must be positive, not {sigma_px!r}")
    dev = frames.device
    K = int(index.numel())
    B, H, W = frames.shape
    f32 = torch.float32
    empty = torch.zeros(0, device=dev, dtype=f32)
    if K == 0:
        return RefineResult(empty, empty, empty, empty, torch.zeros(0, dtype=torch.bool, device=dev), empty, empty, 0)
    R = window_radius(sigma_px)
    P = 2 * R + 1
    F = max(float(excess_noise), 1.0)
    v = float(read_noise_photons) ** 2 / F  # the read-noise offset in Poisson units
    data = frames.to(f32)
    # zero-padded frames and a validity mask: windows may reach past the edge
    F_pad = torch.nn.functional.pad
    dpad = F_pad(data, (R, R, R, R))
    mpad = F_pad(torch.ones_like(data), (R, R, R, R))
    Hp, Wp = H + 2 * R, W + 2 * R
    idx = index.to(device=dev, dtype=torch.long)
    x0 = x_px.to(device=dev, dtype=f32).clone()
    y0 = y_px.to(device=dev, dtype=f32).clone()
    # fixed windows: around the start position (in padded coordinates the window starts at floor(x))
    cx = torch.clamp(torch.floor(x0), 0, W - 1).long()
    cy = torch.clamp(torch.floor(y0), 0, H - 1).long()
    ar = torch.arange(P, device=dev)
    cols = cx[:, None] + ar[None, :]  # padded column index of each window column
    rows = cy[:, None] + ar[None, :]
    flat = (idx[:, None, None] * Hp + rows[:, :, None]) * Wp + cols[:, None, :]  # (K, P, P)
    d = dpad.reshape(-1)[flat] + v
    m = mpad.reshape(-1)[flat]
    # left edges of the window's pixels in frame coordinates
    ex = (cx - R).to(f32)[:, None] + ar[None, :].to(f32)
    ey = (cy - R).to(f32)[:, None] + ar[None, :].to(f32)

    x, y = x0.clone(), y0.clone()
    n = photons.to(device=dev, dtype=f32).clone()
    b = bg.to(device=dev, dtype=f32).clone()
    # starts from the data where the network gave none
    dmin = torch.where(m > 0, d - v, torch.full_like(d, float("inf"))).amin(dim=(1, 2)).clamp(min=0.0)
    bad_b = ~torch.isfinite(b) | (b < 0)
    b = torch.where(bad_b, dmin, b)
    bad_n = ~torch.isfinite(n) | (n <= 0)
    n = torch.where(bad_n, ((d - v - b[:, None, None]) * m).sum(dim=(1, 2)).clamp(min=1.0), n)
    lam = torch.full((K,), 1e-3, device=dev, dtype=f32)
    eye = torch.eye(4, device=dev, dtype=f32)
    total = torch.zeros(B * Hp * Wp, device=dev, dtype=f32)
    for _ in range(int(iterations)):
        mx, dmx = _pixel_mass(ex, x, sigma_px)
        my, dmy = _pixel_mass(ey, y, sigma_px)
        own = n[:, None, None] * my[:, :, None] * mx[:, None, :]  # (K, P, P)
        total.zero_()
        total.index_add_(0, flat.reshape(-1), own.reshape(-1))
        others = total[flat] - own
        mu = (b[:, None, None] + own + others).clamp(min=1e-3) + v
        w = m * (1.0 - d / mu)  # dNLL/dmu
        fi = m / mu  # Fisher weight
        jx = n[:, None, None] * my[:, :, None] * dmx[:, None, :]
        jy = n[:, None, None] * dmy[:, :, None] * mx[:, None, :]
        jn = my[:, :, None] * mx[:, None, :]
        jb = torch.ones_like(jn)
        J = torch.stack((jx, jy, jn, jb), dim=-1).reshape(K, P * P, 4)  # (K, P², 4)
        g = torch.einsum("kp,kpi->ki", w.reshape(K, -1), J)
        I = torch.einsum("kp,kpi,kpj->kij", fi.reshape(K, -1), J, J)
        diag = torch.diagonal(I, dim1=1, dim2=2)
        A = I + lam[:, None, None] * torch.diag_embed(diag) + 1e-9 * eye
        step = torch.linalg.solve(A, -g[..., None])[..., 0]
        step = torch.nan_to_num(step)
        # trust region: at most 0.5 px per sweep, photons and background within a factor of 2
        sx = step[:, 0].clamp(-0.5, 0.5)
        sy = step[:, 1].clamp(-0.5, 0.5)
        x = x + sx
        y = y + sy
        n = torch.maximum(n + step[:, 2], 0.5 * n).clamp(max=1e9)
        b = torch.maximum(b + step[:, 3], torch.zeros_like(b))
    # final Fisher information for the uncertainties (neighbours known)
    mx, dmx = _pixel_mass(ex, x, sigma_px)
    my, dmy = _pixel_mass(ey, y, sigma_px)
    own = n[:, None, None] * my[:, :, None] * mx[:, None, :]
    total.zero_()
    total.index_add_(0, flat.reshape(-1), own.reshape(-1))
    mu = (b[:, None, None] + total[flat]).clamp(min=1e-3) + v
    fi = m / mu / F
    jx = n[:, None, None] * my[:, :, None] * dmx[:, None, :]
    jy = n[:, None, None] * dmy[:, :, None] * mx[:, None, :]
    jn = my[:, :, None] * mx[:, None, :]
    J = torch.stack((jx, jy, jn, torch.ones_like(jn)), dim=-1).reshape(K, P * P, 4)
    I = torch.einsum("kp,kpi,kpj->kij", fi.reshape(K, -1), J, J)
    cov = torch.linalg.pinv(I)
    cx_ = torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2)[:, 0].clamp(min=0))
    cy_ = torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2)[:, 1].clamp(min=0))
    shift = torch.hypot(x - x0, y - y0)
    ok = torch.isfinite(x) & torch.isfinite(y) & torch.isfinite(n) & (n > 0) & (shift <= max_shift_px)
    ok &= (x >= 0) & (x < W) & (y >= 0) & (y < H)
    nan = torch.full_like(x, float("nan"))
    return RefineResult(
        x_px=torch.where(ok, x, x0),
        y_px=torch.where(ok, y, y0),
        photons=torch.where(ok, n, photons.to(device=dev, dtype=f32)),
        bg=torch.where(ok, b, bg.to(device=dev, dtype=f32)),
        ok=ok,
        crlb_x_px=torch.where(ok, cx_, nan),
        crlb_y_px=torch.where(ok, cy_, nan),
        iterations=int(iterations),
    )


# ------------------------------------------------------------------------------------------------ the probe
def _refit(frames, locs, cam, px, sigma_px, combine):
    import numpy as np

    ph = torch.from_numpy(np.asarray(cam.adu_to_photons(frames)))
    rn = cam.read_noise / (max(cam.em_gain, 1.0) * cam.qe)
    r = refine_emitters(ph, torch.from_numpy(locs["frame"].astype(np.int64)),
                        torch.from_numpy(locs["x_nm"] / px).float(), torch.from_numpy(locs["y_nm"] / px).float(),
                        torch.from_numpy(locs["photons"]).float(), torch.from_numpy(locs["bg"]).float(), sigma_px,
                        cam.excess_noise, rn)
    out = locs.copy()
    fx, fy = r.x_px.double().numpy(), r.y_px.double().numpy()
    if combine:  # inverse-variance average of the network's position (its σ head) and the fit (its Fisher bound)
        cx = np.nan_to_num(r.crlb_x_px.double().numpy(), nan=1e6)
        cy = np.nan_to_num(r.crlb_y_px.double().numpy(), nan=1e6)
        wx = 1 / (1 + cx**2 / (locs["sigma_x_nm"] / px) ** 2)
        wy = 1 / (1 + cy**2 / (locs["sigma_y_nm"] / px) ** 2)
        fx = wx * fx + (1 - wx) * locs["x_nm"] / px
        fy = wy * fy + (1 - wy) * locs["y_nm"] / px
    out["x_nm"] = fx * px
    out["y_nm"] = fy * px
    return out, float(r.ok.float().mean())


def _movies(a):
    from napari_smlm.core.camera import get_camera
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.simulate import simulate

    for cam_name in a.cameras.split(","):
        cam = get_camera(cam_name)
        for structure in a.structures.split(","):
            for d in (float(v) for v in a.densities.split(",")):
                for base in (int(b) for b in a.seed_bases.split(",")):
                    cfg = SimulationConfig(n_frames=a.frames, height=64, width=64, density=d, structure=structure,
                                           camera=cam_name, psf_sigma_nm=120.0, photons_mean=2000, photons_std=500,
                                           bg_photons=50, seed=base + int(d * 10))
                    frames, gt = simulate(cfg)
                    yield cam_name, cam, structure, d, cfg.seed, frames, gt


def main(argv=None) -> int:
    import argparse
    import sys

    import numpy as np

    from napari_smlm.core.inference import predict
    from napari_smlm.core.metrics import evaluation_report

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probe", choices=["refit", "sigma-filter"])
    ap.add_argument("--densities", default="0.1,1,2,4,6")
    ap.add_argument("--cameras", default="smlm2016_emccd,generic_scmos")
    ap.add_argument("--structures", default="uniform,filaments")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--seed-bases", default="8000,8500", help="tuning seeds: base + 10 x density")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)

    def cell(gt, locs, cam):
        r = evaluation_report(gt, locs, camera=cam, pixel_size_nm=100.0, psf_sigma_nm=120.0, method="hungarian").as_dict()
        return (f"{100 * r['jaccard']:.1f} / {r['efficiency_lateral']:.1f} / {r['rmse_lateral_nm']:.1f} / "
                f"{r['crlb_ratio']:.2f}")

    quantiles = (0.95, 0.9, 0.8, 0.7)
    if a.probe == "refit":
        print("| camera | structure | density /µm² | seed | decode JI / E / RMSE / RMSE*/CRLB | refit | average | refits kept |")
        print("|---|---|---:|---:|---|---|---|---:|")
    else:
        print("| camera | structure | density /µm² | seed | all: JI / E / RMSE / RMSE*/CRLB | "
              + " | ".join(f"σ ≤ {int(100 * q)}th pct" for q in quantiles) + " |")
        print("|---|---|---:|---:|---|" + "---|" * len(quantiles))
    for cam_name, cam, structure, d, seed, frames, gt in _movies(a):
        net = predict(frames, "decode", camera=cam, pixel_size_nm=100.0, device="cpu").localizations
        cells = [cell(gt, net, cam)]
        if a.probe == "refit":
            ok = 0.0
            for combine in (False, True):
                locs, ok = _refit(frames, net, cam, 100.0, 1.2, combine)
                cells.append(cell(gt, locs, cam))
            cells.append(f"{ok:.2f}")
        else:
            s = np.hypot(net["sigma_x_nm"], net["sigma_y_nm"])
            cells += [cell(gt, net.filter(s <= np.quantile(s, q)), cam) for q in quantiles]
        print(f"| {cam_name} | {structure} | {d:g} | {seed} | " + " | ".join(cells) + " |", flush=True)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
