"""Camera estimate from the movie itself (issue 10.5): true vs estimated offset, ADU per photo-electron, background.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/camera_estimate.py [--frames 400] [--seeds 3] [--quick]

Simulated movies (``core.simulate``, 64×64 px of 100 nm, PSF σ 120 nm, 2000 ± 500 photons,
background with the simulator's default ±20 % smooth spatial variation) with known cameras:

* ``EMCCD``: the SMLM-2016 preset (offset 100 ADU, EM gain 300, 45 e⁻/ADU, QE 0.9: 6.67 ADU/e⁻);
* ``EMCCD b500``: offset 500 ADU, EM gain 100, 12 e⁻/ADU (8.33 ADU/e⁻);
* ``sCMOS``: the generic preset (offset 100 ADU, 0.46 e⁻/ADU: 2.17 ADU/e⁻, read noise 1.6 e⁻);
* ``sCMOS b400``: offset 400 ADU, 2 e⁻/ADU (0.5 ADU/e⁻), read noise 1.6 e⁻;

at 10 and 50 background photons/px and emitter densities 0.1, 0.5, 2 /µm²/frame on filaments
(8 filaments) and 0.5 /µm² uniform. :func:`~napari_smlm.core.camera_estimate.estimate_camera` is
given the camera *kind* and, as its prior (for the QE, the EM gain split and the read noise),
the kind's preset — never the true camera. Each row: median over seeds of the error, and in
brackets the spread (max − min) over seeds. "old offset" is what the former "Match movie" /
"Estimate offset" gave (1st percentile of 8 frames). "fallback" counts seeds where the offset
could not be separated from the gain and the prior's offset was used; "failed" counts seeds
where the estimator refused (too dense). "skew ratio" (median) is κ3/(κ2 − σ₀²)/slope of the
emitter-free noise, 1.5 for an EMCCD and 1 for sCMOS in theory; "notes" counts seeds where it
contradicted the given (true) kind. CPU time is per estimate (1 thread). With the shared external data present
(``NAPARI_SMLM_EXTERNAL_DATA``), a last line gives the EPFL Bundled Tubes movie, the issue's
"118 ADU for a true 100" case.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from napari_smlm.core.camera import estimate_baseline_adu, get_camera
from napari_smlm.core.camera_estimate import CameraEstimateError, estimate_camera
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.simulate import _draw_events, simulate

CAMERAS = {
    "EMCCD": ("emccd", get_camera("smlm2016_emccd")),
    "EMCCD b500": ("emccd", get_camera("smlm2016_emccd").replace(baseline=500.0, em_gain=100.0, sensitivity=12.0)),
    "sCMOS": ("scmos", get_camera("generic_scmos")),
    "sCMOS b400": ("scmos", get_camera("generic_scmos").replace(baseline=400.0, sensitivity=2.0)),
}
SAMPLES = [("filaments", 0.1), ("filaments", 0.5), ("filaments", 2.0), ("uniform", 0.5)]


def true_background(cfg: SimulationConfig) -> float:
    """Median of the simulated background field (photons/px), drawn exactly as the simulator does."""
    bg = _draw_events(cfg, np.random.default_rng(cfg.seed), None)[4]
    return float(np.median(bg))


def run_case(cam_name: str, bg: float, structure: str, density: float, frames: int, seeds: list[int]) -> dict:
    kind, cam = CAMERAS[cam_name]
    g_true = cam.em_gain / cam.sensitivity
    err_b, err_g, err_bg, old_b, cpu, skew, kind_notes = [], [], [], [], [], [], 0
    fallback = failed = 0
    for seed in seeds:
        cfg = SimulationConfig(
            n_frames=frames, height=64, width=64, pixel_size_nm=100.0, psf_sigma_nm=120.0, photons_mean=2000.0,
            photons_std=500.0, bg_photons=bg, density=density, structure=structure, n_filaments=8, camera=cam, seed=seed,
        )
        movie, _ = simulate(cfg)
        idx = np.unique(np.linspace(0, frames - 1, 8).astype(int))
        old_b.append(estimate_baseline_adu(movie[idx]) - cam.baseline)
        t0 = time.process_time()
        try:
            est = estimate_camera(movie, prior=kind, kind=kind, seed=seed)
        except CameraEstimateError:
            failed += 1
            continue
        cpu.append(time.process_time() - t0)
        fallback += "baseline" in est.guessed
        err_b.append(est.baseline - cam.baseline)
        err_g.append(100 * (est.adu_per_electron / g_true - 1))
        err_bg.append(100 * (est.background_photons / true_background(cfg) - 1))
        skew.append(est.skew_ratio)
        kind_notes += any("skewed" in n for n in est.notes)
    return dict(err_b=err_b, err_g=err_g, err_bg=err_bg, old_b=old_b, cpu=cpu, fallback=fallback, failed=failed, g_true=g_true,
                skew=skew, kind_notes=kind_notes)


def _fmt(values: list[float], unit: str = "") -> str:
    if not values:
        return "—"
    v = np.asarray(values, dtype=float)
    return f"{np.median(v):+.1f}{unit} ({np.ptp(v):.1f})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400, help="frames per movie")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per case")
    ap.add_argument("--quick", action="store_true", help="one background, two samples, two seeds")
    a = ap.parse_args(argv)
    seeds = list(range(1, a.seeds + 1)) if not a.quick else [1, 2]
    bgs = [10.0, 50.0] if not a.quick else [50.0]
    samples = SAMPLES if not a.quick else SAMPLES[1:3]
    print(f"{a.frames} frames of 64×64 px per movie, {len(seeds)} seeds; errors: median (max − min) over seeds\n")
    print("| camera | ADU/e⁻ | bg ph/px | sample | offset error ADU | ADU/e⁻ error % | background error % | old offset error ADU "
          "| skew ratio | fallback | failed | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cam_name in CAMERAS:
        for bg in bgs:
            for structure, density in samples:
                r = run_case(cam_name, bg, structure, density, a.frames, seeds)
                cpu = f"{np.median(r['cpu']):.2f}" if r["cpu"] else "—"
                sk = f"{np.median(r['skew']):.2f}" + (f" ({r['kind_notes']} notes)" if r["kind_notes"] else "") if r["skew"] else "—"
                print(
                    f"| {cam_name} | {r['g_true']:.3g} | {bg:g} | {structure} {density:g}/µm² | {_fmt(r['err_b'])} | "
                    f"{_fmt(r['err_g'])} | {_fmt(r['err_bg'])} | {_fmt(r['old_b'])} | {sk} | {r['fallback']} | {r['failed']} | {cpu} |",
                    flush=True,
                )
    # the sample movie of the plugin (File > Open Sample), the case of the "118 ADU for a true 100"
    from napari_smlm._sample_data import SAMPLE_SIMULATION

    cfg = SimulationConfig(**SAMPLE_SIMULATION)
    movie, _ = simulate(cfg)
    idx = np.unique(np.linspace(0, cfg.n_frames - 1, 8).astype(int))
    est = estimate_camera(movie, prior="emccd", kind="emccd")
    sd = "" if math.isnan(est.baseline_sd) else f" ± {est.baseline_sd:.1f}"
    print(
        f"\nsample movie ({cfg.n_frames} frames, EMCCD preset, offset 100 ADU, {cfg.bg_photons:g} bg photons/px): "
        f"old estimate {estimate_baseline_adu(movie[idx]):.0f} ADU; new {est.baseline:.1f}{sd} ADU, "
        f"{est.adu_per_electron:.2f} ± {est.adu_per_electron_sd:.2f} ADU/e⁻ (true 6.67), background "
        f"{est.background_photons:.1f} photons/px (true median {true_background(cfg):.1f}); guessed: {', '.join(est.guessed)}"
    )

    epfl = _epfl_movie()
    if epfl is not None:
        from napari_smlm.core.io.tiff import open_movie

        movie = open_movie(epfl)
        idx = np.unique(np.linspace(0, movie.shape[0] - 1, 8).astype(int))
        old = estimate_baseline_adu(np.stack([movie[int(i)] for i in idx]))
        est = estimate_camera(movie, prior="generic_scmos", kind="ccd")
        print(
            f"\nEPFL 2013 Bundled Tubes HD ({movie.shape[0]} frames; camera: offset 100 ADU, 3.8 ADU/photon, no EM gain): "
            f"old estimate {old:.0f} ADU; new: {est.summary()}"
        )


def _epfl_movie():
    """The EPFL Bundled Tubes movie of the shared external data, if present."""
    import os
    from pathlib import Path

    root = Path(os.environ.get("NAPARI_SMLM_EXTERNAL_DATA", Path(__file__).resolve().parents[1] / "../shared/data/external"))
    p = root / "EliasNehme_Deep-STORM" / "testStack_SimulatedMicrotubules.tif"
    return p if p.is_file() else None


if __name__ == "__main__":
    main()
