"""Review of session 9's merges (h9-ux, h9-lead): regressions found and fixed."""

import json

import numpy as np

from napari_smlm.cli import main
from napari_smlm.core.io.locs import read_localizations, write_localizations
from napari_smlm.core.io.run_record import localize_record, write_localize_record
from napari_smlm.core.localizations import Localizations


def _locs(n, seed=1, px=130.0):
    rng = np.random.default_rng(seed)
    return Localizations({"frame": np.arange(n) % 4, "x_nm": rng.uniform(0, 800, n), "y_nm": rng.uniform(0, 800, n),
                          "photons": rng.uniform(500, 900, n)},
                         {"pixel_size_nm": px, "image_shape": (8, 8), "model": "toy", "frame_range": [0, 4]})


def test_postprocess_does_not_carry_a_record_that_is_not_its_inputs(tmp_path):
    """locs_localize.json was written for another locs.csv (since replaced): the reader refuses it for locs.csv,
    so postprocess must not copy it into post_postprocess.json, from where its pixel size reached post.csv."""
    csv = tmp_path / "locs.csv"
    write_localizations(csv, _locs(12))
    write_localize_record(tmp_path / "locs_localize.json", localize_record(_locs(12), csv))
    csv.unlink()
    write_localizations(csv, _locs(12, seed=2))  # another table, same name
    assert read_localizations(csv).meta.get("pixel_size_nm") is None  # refused for the input itself
    out = tmp_path / "post.csv"
    assert main(["postprocess", str(csv), "-o", str(out), "-q"]) == 0
    rep = json.loads((tmp_path / "post_postprocess.json").read_text())
    assert read_localizations(out).meta.get("pixel_size_nm") is None  # not the stale record's 130 nm
    assert "input_localize_record" not in rep


def test_postprocess_still_carries_the_record_of_its_input(tmp_path):
    csv = tmp_path / "locs.csv"
    write_localizations(csv, _locs(12))
    write_localize_record(tmp_path / "locs_localize.json", localize_record(_locs(12), csv))
    out = tmp_path / "post.csv"
    assert main(["postprocess", str(csv), "-o", str(out), "-q"]) == 0
    rep = json.loads((tmp_path / "post_postprocess.json").read_text())
    assert rep["input_localize_record"]["model"] == "toy"
    assert read_localizations(out).meta["pixel_size_nm"] == 130.0


def test_camera_estimate_is_not_refused_as_coarse_for_a_black_border():
    """A movie whose left third never changes (a black border of a registered or cropped movie: 30 % of the
    pixels at 0 ADU) was refused as 'its quietest pixels vary by only 0.00 ADU' (a coarse camera), though its
    other pixels measure the gain as well as without the border."""
    from napari_smlm.core.camera import get_camera
    from napari_smlm.core.camera_estimate import estimate_camera
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.simulate import simulate

    cam = get_camera("generic_scmos")
    cfg = SimulationConfig(n_frames=200, height=64, width=64, bg_photons=20.0, density=0.5, structure="filaments",
                           n_filaments=8, camera=cam, seed=3)
    movie = np.array(simulate(cfg)[0])
    movie[:, :, :20] = 0
    est = estimate_camera(movie, prior="generic_scmos", kind="scmos")
    assert abs(est.adu_per_electron / (cam.em_gain / cam.sensitivity) - 1) <= 0.25
    assert abs(est.baseline - cam.baseline) <= 10


def test_a_stale_record_beside_a_valid_one_is_not_reported_as_unused(tmp_path, capsys):
    """`localize -o p.csv` then `postprocess other.csv -o p.csv --overwrite`: p_localize.json is stale, p_postprocess.json
    is p.csv's record and its pixel size is applied; the CLI still said 'its camera pixel size ... were not used (give
    them yourself, e.g. --camera-pixel-size)' next to 'camera pixel size 130 nm from p_postprocess.json'."""
    p = tmp_path / "p.csv"
    write_localizations(p, _locs(12))
    write_localize_record(tmp_path / "p_localize.json", localize_record(_locs(12), p))
    other = tmp_path / "other.csv"
    write_localizations(other, _locs(9, seed=4))
    write_localize_record(tmp_path / "other_localize.json", localize_record(_locs(9, seed=4), other))
    assert main(["postprocess", str(other), "-o", str(p), "--overwrite", "-q"]) == 0
    capsys.readouterr()
    locs = read_localizations(p)
    assert locs.meta["pixel_size_nm"] == 130.0 and locs.meta["run_record"].endswith("p_postprocess.json")
    assert "run_record_refused" not in locs.meta
    assert main(["render", str(p), "-o", str(tmp_path / "r.tif")]) == 0
    err = capsys.readouterr().err
    assert "not used" not in err and "from p_postprocess.json" in err


def test_postprocess_does_not_carry_the_record_of_another_table(tmp_path):
    """locs_localize.json names old.csv (written with --record, or renamed): not locs.csv's record, not carried."""
    csv = tmp_path / "locs.csv"
    write_localizations(csv, _locs(12))
    rec = localize_record(_locs(12), tmp_path / "old.csv")
    (tmp_path / "locs_localize.json").write_text(json.dumps(rec))
    assert main(["postprocess", str(csv), "-o", str(tmp_path / "post.csv"), "-q"]) == 0
    rep = json.loads((tmp_path / "post_postprocess.json").read_text())
    assert "input_localize_record" not in rep
    assert read_localizations(tmp_path / "post.csv").meta.get("pixel_size_nm") is None
