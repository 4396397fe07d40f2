"""Detection of the density-map models before/after issue 15's fixes, on held-out simulated movies.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/thresholds.py [--models deep-storm] [--frames-sparse 60]

"before" = the shipped weights as they were on main: threshold 0.5, no test-time symmetrisation,
one background level per frame;
"after" = the shipped checkpoints now: local background (16 px blocks), calibrated threshold
(``scripts/calibrate_thresholds.py``,
chosen on the validation movies with seeds 7000-7005) and the 180° average. The movies here use
other seeds (9100+): 64×64 px of 100 nm, PSF σ 120 nm, background 50 photons/px, the models'
EMCCD; sparse 0.1 /µm² at 2000 ± 500 photons and at 4× that (bright), 2 /µm² uniform. Hungarian
matching at 250 nm.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from napari_smlm.core.checkpoint import resolve_checkpoint, shipped_models
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.inference import predict
from napari_smlm.core.metrics import match_localizations
from napari_smlm.core.models import get_family
from napari_smlm.core.models.density import DensityFamily
from napari_smlm.core.simulate import simulate


def movies(frames_sparse: int, frames_dense: int):
    base = dict(height=64, width=64, pixel_size_nm=100.0, psf_sigma_nm=120.0, photons_mean=2000.0, photons_std=500.0,
                bg_photons=50.0, camera="smlm2016_emccd", structure="uniform")
    return [
        ("0.1/µm²", SimulationConfig(n_frames=frames_sparse, density=0.1, seed=9101, **base)),
        ("0.1/µm² bright (8000 ph)", SimulationConfig(n_frames=frames_sparse, density=0.1, seed=9102,
                                                      **{**base, "photons_mean": 8000.0, "photons_std": 2000.0})),
        ("2/µm²", SimulationConfig(n_frames=frames_dense, density=2.0, seed=9103, **base)),
    ]


def _scores(gt, locs) -> tuple[float, float, float]:
    m = match_localizations(gt, locs, method="hungarian")
    p = m.tp / max(m.tp + m.fp, 1)
    r = m.tp / max(m.tp + m.fn, 1)
    return p, r, m.tp / max(m.tp + m.fp + m.fn, 1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--frames-sparse", type=int, default=60)
    ap.add_argument("--frames-dense", type=int, default=8)
    a = ap.parse_args(argv)
    names = a.models or [m for m in shipped_models() if isinstance(get_family(m), DensityFamily)]
    data = [(lab, *simulate(cfg)) for lab, cfg in movies(a.frames_sparse, a.frames_dense)]
    print(f"{'model':<11} {'movie':<25} {'n':>5} {'thr':>10}  {'precision %':>15} {'recall %':>15} {'JI %':>15}")
    for name in names:
        t0 = time.perf_counter()
        after = resolve_checkpoint(name)
        before = dataclasses.replace(
            after, model_config={**after.model_config, "threshold": 0.5, "symmetrize": False, "norm_local_block": 0}
        )
        thr_a = float(after.family().default_threshold())
        for lab, frames, gt in data:
            res = {}
            for tag, ck, thr in (("before", before, 0.5), ("after", after, thr_a)):
                locs = predict(frames, ck, pixel_size_nm=100.0, device="cpu", threshold=thr).localizations
                res[tag] = _scores(gt, locs)
            (pb, rb, jb), (pa, ra, ja) = res["before"], res["after"]
            print(f"{name:<11} {lab:<25} {len(gt):5d} {0.5:4.2f}→{thr_a:4.2f}  {100 * pb:6.1f} → {100 * pa:5.1f} "
                  f"{100 * rb:6.1f} → {100 * ra:5.1f} {100 * jb:6.1f} → {100 * ja:5.1f}")
        print(f"{'':<11} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
