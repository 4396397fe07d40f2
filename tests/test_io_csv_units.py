"""ThunderSTORM CSV headers carry units for every column that has one ([nm], [photon])."""

import numpy as np

from napari_smlm.core.io import read_localizations, write_thunderstorm_csv
from napari_smlm.core.localizations import Localizations


def _header(path):
    return path.read_text().splitlines()[0].replace('"', "").split(",")


def test_model_columns_have_units_and_round_trip(tmp_path):
    n = 5
    rng = np.random.default_rng(0)
    data = {
        "frame": np.arange(n), "x_nm": rng.uniform(0, 5000, n), "y_nm": rng.uniform(0, 5000, n),
        "photons": rng.uniform(500, 3000, n), "bg": rng.uniform(10, 50, n), "sigma_x_nm": rng.uniform(5, 20, n),
        "sigma_y_nm": rng.uniform(5, 20, n), "sigma_photons": rng.uniform(50, 300, n), "prob": rng.uniform(0.5, 1, n),
        "drift_x_nm": rng.normal(0, 30, n), "n_merged": np.arange(1, n + 1),
    }
    p = write_thunderstorm_csv(tmp_path / "t.csv", Localizations(data))
    header = _header(p)
    assert "uncertainty_intensity [photon]" in header and "sigma_photons" not in header
    assert "drift_x [nm]" in header
    assert "prob" in header and "n_merged" in header  # no unit: probability, count
    # every column measured in nm or photons says so in its header
    unitless = [h for h in header if "[" not in h]
    assert set(unitless) == {"id", "frame", "prob", "n_merged"}
    back = read_localizations(p)
    for name in ("sigma_photons", "drift_x_nm", "prob"):
        np.testing.assert_allclose(back[name], data[name], rtol=1e-12, err_msg=name)


def test_an_earlier_file_with_a_bare_sigma_photons_column_still_reads(tmp_path):
    p = tmp_path / "old.csv"
    p.write_text('"id","frame","x [nm]","y [nm]","intensity [photon]","sigma_photons","prob"\n1,1,10.0,20.0,1000,150.5,0.9\n')
    locs = read_localizations(p)
    assert locs["sigma_photons"][0] == 150.5 and locs["photons"][0] == 1000


def test_a_free_column_that_would_read_back_as_another_keeps_its_name(tmp_path):
    data = {"frame": [0], "x_nm": [1.0], "y_nm": [2.0], "uncertainty_nm": [7.0], "Weird_nm": [3.0]}
    p = write_thunderstorm_csv(tmp_path / "u.csv", Localizations(data))
    header = _header(p)
    assert "uncertainty_nm" in header and "uncertainty [nm]" not in header  # would read as uncertainty_xy
    assert "Weird_nm" in header  # read back lower-cased: not renamed
    back = read_localizations(p)
    assert "sigma_x_nm" not in back.columns and back["uncertainty_nm"][0] == 7.0
