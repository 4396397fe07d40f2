"""The benchmark suite's --quick mode, checked number by number against an independent computation.

``benchmarks/run_all.py --quick`` is run as a user would run it; then every number it reports
that does not depend on timing is recomputed here from the parameters the report states (its
headings and ``docs/benchmarks.md``), with a matcher, a CRLB and an image comparison written in
this file (plain loops, numerical quadrature, ``numpy.histogram2d``), not the package's
``metrics`` module. Any numeric change in ``benchmarks/`` — a simulation parameter, a seed, a
camera value, a tolerance, a grid, a blur, a formatting factor — makes one of them disagree.
Timings (frames/s) are never asserted.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, ndimage
from scipy.spatial.distance import cdist

ROOT = Path(__file__).resolve().parents[1]

# What the quick run promises (run_all.py --quick; the report's headings say the same).
QUICK_DENSITIES = (0.5, 2.0)
QUICK_FRAMES = 20
SPEED_FRAMES = 64
EPFL_FRAMES = 40
TOL_NM = 250.0
# The EPFL movie's camera as docs/benchmarks.md states it: baseline 100 ADU, 3.8 ADU per photon,
# no EM gain; PSF sigma 110 nm, 100 nm pixels; images on Deep-STORM's 12.5 nm grid (512 x 512),
# blurred by one SR pixel.
EPFL_BASELINE, EPFL_ADU_PER_PHOTON = 100.0, 3.8
SR_PX, SR_SHAPE = 12.5, (512, 512)


# ------------------------------------------------------------------ independent reference code
def greedy_match(gt_f, gt_xy, pr_f, pr_xy, tol=TOL_NM):
    """Per frame: all pairs within ``tol``, accepted by increasing distance (ties: gt row, then pred row)."""
    gi_all, pj_all = [], []
    for f in np.intersect1d(gt_f, pr_f):
        gi = np.flatnonzero(gt_f == f)
        pj = np.flatnonzero(pr_f == f)
        d = cdist(gt_xy[gi], pr_xy[pj])
        a, b = np.nonzero(d <= tol)
        order = sorted(range(len(a)), key=lambda k: (d[a[k], b[k]], gi[a[k]], pj[b[k]]))
        used_g, used_p = set(), set()
        for k in order:
            if a[k] not in used_g and b[k] not in used_p:
                used_g.add(a[k])
                used_p.add(b[k])
                gi_all.append(gi[a[k]])
                pj_all.append(pj[b[k]])
    return np.asarray(gi_all, dtype=int), np.asarray(pj_all, dtype=int)


def mortensen_sd(n, b, s, a, f):
    """Mortensen et al. 2010 eq. 6, the integral by quadrature (nm per axis)."""
    sa2 = s**2 + a**2 / 12.0
    tau = 2 * np.pi * sa2 * b / (n * a**2)
    integral = integrate.quad(lambda t: np.log(t) / (1 + t / tau), 0, 1, limit=200)[0] if tau > 0 else 0.0
    return math.sqrt(f * sa2 / n / (1 + integral))


def reference_metrics(gt, pred, *, px=None, f=None, qe=None):
    gxy = np.column_stack([np.asarray(gt["x_nm"]), np.asarray(gt["y_nm"])])
    pxy = np.column_stack([np.asarray(pred["x_nm"]), np.asarray(pred["y_nm"])])
    gi, pj = greedy_match(np.asarray(gt["frame"]), gxy, np.asarray(pred["frame"]), pxy)
    tp, n_gt, n_pred = len(gi), len(gxy), len(pxy)
    d = pxy[pj] - gxy[gi]
    ji = tp / (n_gt + n_pred - tp)
    rmse = math.sqrt(np.mean(np.sum(d**2, axis=1)))
    out = {
        "n_gt": n_gt, "n_pred": n_pred, "tp": tp, "jaccard": ji, "rmse_lateral_nm": rmse,
        "bias_x_nm": float(np.mean(d[:, 0])), "bias_y_nm": float(np.mean(d[:, 1])),
        "efficiency_lateral": 100 - math.sqrt((100 - 100 * ji) ** 2 + rmse**2),
        "recall": tp / n_gt, "precision": tp / n_pred,
    }
    if f is not None:
        full = np.asarray(gt["on_fraction"])[gi] >= 0.99
        sd = [
            mortensen_sd(qe * gt["photons"][g], qe * gt["bg"][g], gt["psf_sigma_nm"][g], px, f) for g in gi[full]
        ]
        out["n_full_frame"] = int(full.sum())
        out["rmse_full_frame_nm"] = math.sqrt(np.mean(np.sum(d[full] ** 2, axis=1)))
        out["crlb_lateral_nm"] = math.sqrt(2 * np.mean(np.square(sd)))
    return out


def gt_image(gt):
    h, _, _ = np.histogram2d(
        np.asarray(gt["y_nm"]), np.asarray(gt["x_nm"]),
        bins=SR_SHAPE, range=[[0, SR_SHAPE[0] * SR_PX], [0, SR_SHAPE[1] * SR_PX]],
    )
    return ndimage.gaussian_filter(h, 1.0)


def image_scores(img, ref, authors):
    from skimage.metrics import structural_similarity

    x, y = img / img.max(), ref / ref.max()
    xs, ys = img / img.sum(), ref / ref.sum()
    return {
        "ssim": structural_similarity(x, y, data_range=1.0),
        "nmse": float(np.sum((xs - ys) ** 2) / np.sum(ys**2)),
        "pearson_vs_authors": float(np.corrcoef(img.ravel(), authors.ravel())[0, 1]),
    }


def close(a, b, rel=1e-6, abs_=1e-9):
    return a == pytest.approx(b, rel=rel, abs=abs_)


def sha256_of_shipped(model: str) -> str:
    import hashlib

    from napari_smlm.core.checkpoint import shipped_checkpoint_path

    return hashlib.sha256(Path(shipped_checkpoint_path(model)).read_bytes()).hexdigest()


def md_rows(md: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines() if line.startswith(f"| {first_cell}")]


# ------------------------------------------------------------------ the test
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, external_data):
    import os

    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "NAPARI_SMLM_EXTERNAL_DATA": str(external_data)}
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--models", "decode", "--no-picasso",
         "--skip", "memory,foundation", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    text = (out / "benchmarks" / "results.json").read_text()

    def no_constants(c):
        raise AssertionError(f"results.json is not strict JSON: {c}")

    results = json.loads(text, parse_constant=no_constants)
    return out, results, (out / "benchmarks.md").read_text()


@pytest.mark.slow
def test_quick_accuracy_numbers_match_an_independent_computation(quick_run):
    from napari_smlm.core.camera import get_camera
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.inference import predict
    from napari_smlm.core.simulate import simulate

    out, results, md = quick_run
    rows = results["accuracy"]
    assert [(r["camera"], r["structure"], r["density"], r["method"], r["frames"]) for r in rows] == [
        ("smlm2016_emccd", "uniform", d, "decode", QUICK_FRAMES) for d in QUICK_DENSITIES
    ]
    assert f"simulated 64×64 movies of {QUICK_FRAMES} frames, 100 nm pixels, PSF σ 120 nm, 2000 ± 500 photons, 50 bg photons/px" in md
    cam = get_camera("smlm2016_emccd")
    assert cam.em_gain > 1  # F = 2 below
    table = md_rows(md, "smlm2016_emccd")
    assert len(table) == len(rows)
    for r, cells in zip(rows, table):
        d = r["density"]
        cfg = SimulationConfig(
            n_frames=QUICK_FRAMES, height=64, width=64, pixel_size_nm=100.0, density=d, structure="uniform",
            camera="smlm2016_emccd", psf_sigma_nm=120.0, photons_mean=2000, photons_std=500, bg_photons=50,
            seed=1000 + int(round(10 * d)),
        )
        frames, gt = simulate(cfg)
        pred = predict(frames, "decode", camera=cam, pixel_size_nm=100.0, device="cpu", batch_size=32).localizations
        ref = reference_metrics(gt, pred, px=100.0, f=2.0, qe=cam.qe)
        assert r["matching"] == "greedy" and r["tol_lateral_nm"] == TOL_NM
        for k, v in ref.items():
            assert close(r[k], v, rel=1e-5), (d, k, r[k], v)
        assert r["crlb_ratio"] == pytest.approx(ref["rmse_full_frame_nm"] / ref["crlb_lateral_nm"], rel=1e-5)
        assert 0 < r["crlb_ratio_se"] < 0.5 * r["crlb_ratio"]  # its error bar (issue 15.5)
        # the Markdown table shows the same numbers
        expect = [f"{100 * ref['jaccard']:.1f}", f"{ref['rmse_lateral_nm']:.1f}", f"{ref['rmse_full_frame_nm']:.1f}",
                  f"{ref['crlb_lateral_nm']:.1f}",
                  f"{ref['rmse_full_frame_nm'] / ref['crlb_lateral_nm']:.2f} ± {r['crlb_ratio_se']:.2f}",
                  f"{ref['efficiency_lateral']:.1f}", f"{ref['recall']:.3f}", f"{ref['precision']:.3f}"]
        assert cells[:4] == ["smlm2016_emccd", "uniform", str(d), "decode"] and cells[4:12] == expect, (cells, expect)
        # Hungarian columns: the row's own Hungarian metrics (at most as many matches as pairs within 250 nm)
        hu = r["hungarian"]
        assert cells[12:] == [f"{100 * hu['jaccard']:.1f}", f"{hu['efficiency_lateral']:.1f}"], cells
        assert hu["jaccard"] >= ref["jaccard"] - 1e-12  # Hungarian maximises the number of matches
        # the checkpoint's hash, as results.json records it
        assert r["checkpoint_sha256"] == results["checkpoints"]["decode"]["sha256"] == sha256_of_shipped("decode")


@pytest.mark.slow
def test_quick_epfl_numbers_match_an_independent_computation(quick_run, external_data):
    from scipy.io import loadmat

    from napari_smlm.core.camera import Camera
    from napari_smlm.core.inference import predict
    from napari_smlm.core.io import open_movie, read_localizations

    out, results, md = quick_run
    ep = results["epfl"]
    d = external_data / "EliasNehme_Deep-STORM"
    frames = np.asarray(open_movie(d / "testStack_SimulatedMicrotubules.tif")[:EPFL_FRAMES])
    gt = read_localizations(d / "Positions_Bundeld_Tubulin_Recreated.derived.csv").frame_range(0, EPFL_FRAMES)
    assert ep["frames"] == EPFL_FRAMES and ep["n_gt"] == len(gt)
    cam = Camera(kind="ccd", baseline=EPFL_BASELINE, sensitivity=1 / EPFL_ADU_PER_PHOTON, em_gain=1.0, qe=1.0,
                 read_noise=0.0, spurious_charge=0.0)
    res = predict(frames, "decode", camera=cam, pixel_size_nm=100.0, device="cpu", batch_size=32)
    ref = reference_metrics(gt, res.localizations)
    gimg = gt_image(gt)
    authors = loadmat(d / "Recovery_SimulatedMicrotubules.mat")["Recovery"].astype(np.float64)
    img = np.asarray(res.sr_image, dtype=np.float64)
    if img.shape != SR_SHAPE:
        img = gt_image(res.localizations)
    ref.update(image_scores(img, gimg, authors))
    (row,) = ep["methods"]
    assert row["method"] == "decode"
    for k, v in ref.items():
        assert close(row[k], v, rel=1e-4), (k, row[k], v)
    a = ep["authors_vs_gt"]
    auth = image_scores(authors, gimg, gimg)
    assert close(a["ssim"], auth["ssim"], rel=1e-4) and close(a["nmse"], auth["nmse"], rel=1e-4)
    assert close(a["pearson"], float(np.corrcoef(authors.ravel(), gimg.ravel())[0, 1]), rel=1e-6)
    epfl_md = md.split("## EPFL", 1)[1].split("\n## ", 1)[0]
    epfl_md = epfl_md.split("**This run**", 1)[-1]  # after the current figures copied from public_benchmarks.md
    (cells,) = md_rows(epfl_md, "decode |")
    assert cells[1:7] == [f"{100 * ref['jaccard']:.1f}", f"{ref['rmse_lateral_nm']:.1f}", f"{ref['efficiency_lateral']:.1f}",
                          f"{ref['ssim']:.3f}", f"{ref['nmse']:.3f}", f"{ref['pearson_vs_authors']:.3f}"], cells
    assert f"({EPFL_FRAMES} frames, {len(gt)} ground-truth positions" in md


@pytest.mark.slow
def test_quick_speed_and_time_to_train_numbers(quick_run):
    from napari_smlm.core.checkpoint import shipped_checkpoint_path
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.inference import predict
    from napari_smlm.core.simulate import simulate

    out, results, md = quick_run
    (sp,) = results["speed"]
    assert sp["method"] == "decode" and sp["device"] == "cpu" and sp["frames"] == SPEED_FRAMES
    # localizations per frame does not depend on timing: locs_per_s / frames_per_s
    frames, _ = simulate(SimulationConfig(n_frames=SPEED_FRAMES, height=64, width=64, density=1.0, seed=5))
    n = len(predict(frames, "decode", device="cpu", batch_size=32).localizations)
    assert sp["locs_per_s"] / sp["frames_per_s"] == pytest.approx(n / SPEED_FRAMES, rel=1e-9)
    # time to train: the shipped checkpoint's own validation history, unchanged
    import torch

    ck = torch.load(shipped_checkpoint_path("decode"), map_location="cpu", weights_only=True)
    hist = [h for h in ck["training"]["history"] if "jaccard" in h]
    def strict(v):  # what strict JSON keeps of a value
        return None if isinstance(v, float) and not math.isfinite(v) else v

    assert results["time_to_train"]["decode"] == [{k: strict(v) for k, v in h.items()} for h in hist]
    last = hist[-1]
    assert f"| {last['minutes']:.1f} | {last['step']} | {100 * last['jaccard']:.1f} | {last['rmse_lateral_nm']:.1f} |" in md
    assert (out / "benchmarks" / "accuracy_vs_density.png").stat().st_size > 10_000
    assert (out / "benchmarks" / "epfl_side_by_side.png").stat().st_size > 10_000
