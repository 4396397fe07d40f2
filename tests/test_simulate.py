import numpy as np
import pytest

from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.simulate import blinking_events, iter_simulate, simulate


def test_simulate_is_seeded_and_shaped():
    cfg = SimulationConfig(n_frames=20, height=32, width=40, density=1.0, seed=5)
    a, gta = simulate(cfg)
    b, gtb = simulate(cfg)
    assert a.shape == (20, 32, 40) and a.dtype == np.uint16
    assert np.array_equal(a, b) and gta.equals(gtb)
    c, _ = simulate(cfg.replace(seed=6))
    assert not np.array_equal(a, c)
    assert gta.meta["pixel_size_nm"] == 100 and gta.meta["simulation"]["seed"] == 5


@pytest.mark.parametrize("structure", ["uniform", "filaments"])
def test_density_is_ground_truth_emitters_per_frame(structure):
    cfg = SimulationConfig(n_frames=200, height=64, width=64, density=2.0, structure=structure, seed=1)
    _, gt = simulate(cfg)
    per_um2 = len(gt) / cfg.n_frames / cfg.area_um2
    assert per_um2 == pytest.approx(2.0, rel=0.15)
    assert gt["x_nm"].min() >= 0 and gt["x_nm"].max() < 6400
    assert gt["frame"].min() >= 0 and gt["frame"].max() < 200


def test_blinking_kinetics_statistics():
    rng = np.random.default_rng(0)
    fid, frame, frac = blinking_events(20_000, 200, t_on=2.0, t_off=20.0, t_bleach=None, rng=rng)
    # mean on-time per fluorophore per frame equals the duty cycle
    assert frac.sum() / (20_000 * 200) == pytest.approx(2.0 / 22.0, rel=0.03)
    assert frac.min() > 0 and frac.max() <= 1
    # emitters persist: a fluorophore on in frame f is often on in f + 1 (t_on = 2 frames)
    key = set(zip(fid.tolist(), frame.tolist()))
    cont = np.mean([(i, f + 1) in key for i, f in zip(fid[:5000].tolist(), frame[:5000].tolist())])
    assert cont > 0.4


def test_bleaching_reduces_density_over_time():
    rng = np.random.default_rng(0)
    fid, frame, frac = blinking_events(5000, 400, t_on=1.0, t_off=10.0, t_bleach=5.0, rng=rng)
    early = frac[frame < 50].sum()
    late = frac[frame >= 350].sum()
    assert late < 0.5 * early


def test_ground_truth_lands_on_bright_spots():
    """Simulated emitters sit where the frame is bright, within half a pixel (edge-origin nm)."""
    cfg = SimulationConfig(
        n_frames=30, height=48, width=48, density=0.3, photons_mean=5000, photons_std=0, bg_photons=20, seed=3
    )
    frames, gt = simulate(cfg)
    from napari_smlm.core.camera import get_camera

    ph = get_camera(cfg.camera).adu_to_photons(frames)
    xy = gt.xy_nm / 100.0
    errs = []
    for k in range(len(gt)):
        f = gt["frame"][k]
        same = (gt["frame"] == f) & (np.hypot(*(xy - xy[k]).T) < 8)
        if same.sum() > 1 or gt["on_fraction"][k] < 0.8:
            continue
        c, r = int(xy[k, 0]), int(xy[k, 1])
        if not (3 <= c < 45 and 3 <= r < 45):
            continue
        win = ph[f, r - 2 : r + 3, c - 2 : c + 3] - np.median(ph[f])
        win = np.clip(win, 0, None)
        jj, ii = np.meshgrid(np.arange(c - 2, c + 3) + 0.5, np.arange(r - 2, r + 3) + 0.5)
        errs.append(np.hypot((win * jj).sum() / win.sum() - xy[k, 0], (win * ii).sum() / win.sum() - xy[k, 1]))
    assert len(errs) > 20
    assert np.median(errs) < 0.5


def test_filaments_are_concentrated():
    cfg = SimulationConfig(n_frames=100, height=64, width=64, density=2.0, structure="filaments", n_filaments=3, seed=2)
    _, gt = simulate(cfg)
    h, _, _ = np.histogram2d(gt["x_nm"], gt["y_nm"], bins=32, range=[[0, 6400], [0, 6400]])
    assert (h == 0).mean() > 0.4  # most of the field is empty for 3 thin filaments


def test_image_structure_follows_density_image():
    img = np.zeros((8, 8))
    img[2, 5] = 1.0
    cfg = SimulationConfig(n_frames=40, height=32, width=32, density=1.0, structure="image", margin_px=0, seed=0)
    _, gt = simulate(cfg, density_image=img)
    assert len(gt) > 0
    assert np.all((gt["x_nm"] >= 5 * 400) & (gt["x_nm"] < 6 * 400))
    assert np.all((gt["y_nm"] >= 2 * 400) & (gt["y_nm"] < 3 * 400))


def test_iter_simulate_chunks_equal_whole():
    cfg = SimulationConfig(n_frames=25, height=16, width=16, seed=9)
    chunks = list(iter_simulate(cfg, chunk_frames=10))
    assert [c.start for c in chunks] == [0, 10, 20]
    assert chunks[-1].n_done == 25
    whole, gt = simulate(cfg)
    # The ground truth does not depend on the chunking.
    from napari_smlm.core.localizations import Localizations

    assert Localizations.concat([c.ground_truth for c in chunks]).equals(gt)
    # One noise generator is consumed chunk by chunk. Poisson noise alone (a photon-counting
    # camera) draws one number per pixel in order, so the movies are equal bit for bit.
    ideal = cfg.replace(camera="ideal")
    chunked = np.concatenate([c.frames for c in iter_simulate(ideal, chunk_frames=10)])
    assert chunked.shape == (25, 16, 16) and np.array_equal(chunked, simulate(ideal)[0])
    # The EMCCD's gamma sampler (rejection, per batch) draws differently per chunking, but the
    # expected image is the same: in electrons e = (ADU - baseline) * sensitivity / gain, both
    # movies have mean QE * photons and variance ~2 x mean (excess noise 2), so
    # (e_chunked - e_whole) / sqrt(2 (e_chunked + e_whole)) is ~N(0, 1) in every pixel. An
    # emitter drawn in the wrong frame or place (~200 photons at its peak over 50 of
    # background) gives |z| ~ 6 or more, and a frame off by one emitter ~15 in its frame sum.
    cam = cfg.camera
    chunked = np.concatenate([c.frames for c in chunks]).astype(float)
    assert chunked.shape == whole.shape and not np.array_equal(chunked, whole)
    ec = (chunked - cam.baseline) * cam.sensitivity / cam.em_gain
    ew = (whole.astype(float) - cam.baseline) * cam.sensitivity / cam.em_gain
    z = (ec - ew) / np.sqrt(2.0 * np.clip(ec + ew, 0, None) + 1.0)
    assert np.abs(z).max() < 6.0
    assert abs(z.mean()) < 0.1 and 0.8 < z.std() < 1.2
    sc, sw = ec.sum(axis=(1, 2)), ew.sum(axis=(1, 2))
    assert np.abs((sc - sw) / np.sqrt(2.0 * (sc + sw))).max() < 5.0


def test_config_yaml_round_trip(tmp_path):
    cfg = SimulationConfig(density=2.5, structure="filaments", camera="generic_scmos", t_bleach=50.0)
    p = tmp_path / "c.yaml"
    cfg.to_yaml(p)
    back = SimulationConfig.from_yaml(p)
    assert back == cfg
    with pytest.raises(ValueError):
        SimulationConfig(structure="spiral")


def test_blinking_with_nobody_switching_on():
    rng = np.random.default_rng(0)
    # 3 fluorophores, 1 frame, off for ~1e6 frames: nobody is on
    fid, frame, frac = blinking_events(3, 1, t_on=1.0, t_off=1e6, t_bleach=None, rng=rng)
    assert len(fid) == len(frame) == len(frac) == 0
