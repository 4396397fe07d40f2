"""A CSV converted by postprocess beside an input that has its own report keeps its run record.

``postprocess post.hdf5 -o post.csv`` (post.hdf5 itself a postprocess output, with post_postprocess.json)
writes its report as ``post_csv_postprocess.json``; reading post.csv back must find it (camera pixel
size and frame size), or converting it back to Picasso demands --camera-pixel-size again.
"""

import numpy as np

from napari_smlm import cli
from napari_smlm.core.io.locs import read_localizations, write_localizations
from napari_smlm.core.localizations import Localizations


def test_csv_converted_beside_a_postprocess_output_reads_its_pixel_size(tmp_path):
    rng = np.random.default_rng(0)
    n = 30
    locs = Localizations({"frame": np.arange(n) % 5, "x_nm": rng.uniform(0, 3000, n), "y_nm": rng.uniform(0, 3000, n)},
                         {"pixel_size_nm": 160.0, "image_shape": (24, 20)})
    write_localizations(tmp_path / "p0.hdf5", locs)
    assert cli.main(["postprocess", str(tmp_path / "p0.hdf5"), "-o", str(tmp_path / "post.hdf5")]) == 0
    assert (tmp_path / "post_postprocess.json").is_file()
    assert cli.main(["postprocess", str(tmp_path / "post.hdf5"), "-o", str(tmp_path / "post.csv")]) == 0
    assert (tmp_path / "post_csv_postprocess.json").is_file()  # the input's own report name was taken
    back = read_localizations(tmp_path / "post.csv")
    assert back.meta["pixel_size_nm"] == 160.0 and tuple(back.meta["image_shape"]) == (24, 20)
    assert back.meta["run_record"] == str(tmp_path / "post_csv_postprocess.json")
    # and it converts back to Picasso without --camera-pixel-size
    assert cli.main(["postprocess", str(tmp_path / "post.csv"), "-o", str(tmp_path / "back.hdf5")]) == 0
