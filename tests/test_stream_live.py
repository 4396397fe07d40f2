"""iter_predict_streamed: iter_predict's live updates while the table goes to disk (issue 12, widget path)."""

import numpy as np
import pytest

from napari_smlm.cli import main
from napari_smlm.core.inference import predict, resolve_checkpoint
from napari_smlm.core.io.locs import read_localizations
from napari_smlm.core.io.stream import partial_path, read_progress
from napari_smlm.core.io.tiff import open_movie
from napari_smlm.core.progress import UpdateKind
from napari_smlm.core.runner import StreamedCollector, iter_predict_streamed


@pytest.fixture(scope="module")
def movie_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", "-o", str(out), "--frames", "40", "--size", "32", "32", "--density", "2", "--seed", "3"]) == 0
    return out / "movie.tif"


@pytest.fixture(scope="module")
def ckpt():
    return resolve_checkpoint("decode")


def test_live_updates_and_file_equal_the_in_memory_run(movie_path, ckpt, tmp_path):
    ref = predict(open_movie(movie_path), ckpt, device="cpu", batch_size=8)
    out = tmp_path / "live_locs.hdf5"
    col = StreamedCollector(keep_rows=60)
    ups = []
    for u in iter_predict_streamed(open_movie(movie_path), ckpt, out, display_rows=100, chunk_frames=16, device="cpu",
                                   batch_size=8, per_frame_outputs=True):
        col.add(u)
        ups.append(u)
        assert len(col._col._parts) == 1 or col._kept - len(col._col._parts[0]) < 60  # bounded: latest rows only
    batches = [u for u in ups if u.kind == UpdateKind.BATCH]
    assert len(batches) == 5 and ups[-1].kind == UpdateKind.DONE
    assert [u.n_done for u in batches] == [8, 16, 24, 32, 40] and batches[-1].n_total == 40
    assert batches[0].display is not None and batches[0].display.shape[0] == 8  # network output for the live layer
    # the running image spans chunks (16 frames each): the last equals the in-memory run's
    np.testing.assert_allclose(batches[-1].sr_image, ref.sr_image, rtol=1e-5, atol=1e-4)
    got = read_localizations(out)
    assert len(got) == len(ref.localizations) == col.n_found > 100
    np.testing.assert_allclose(got["x_nm"], ref.localizations["x_nm"], atol=1e-3)  # float32 on disk
    view = col.localizations()  # the file's bounded view: every k-th row
    k = ups[-1].meta["decimation"]
    assert k > 1 and len(view) <= 100 and ups[-1].meta["n_rows_total"] == len(got)
    np.testing.assert_array_equal(view["frame"], got["frame"][::k])


def test_closing_early_keeps_every_batch_done_under_the_final_name(movie_path, ckpt, tmp_path):
    out = tmp_path / "stop_locs.hdf5"
    gen = iter_predict_streamed(open_movie(movie_path), ckpt, out, chunk_frames=16, device="cpu", batch_size=8)
    col = StreamedCollector()
    for u in gen:
        col.add(u)
        if u.n_done == 24:  # mid-chunk (chunk 2 = frames 16-31): what a GUI Stop does
            break
    gen.close()
    assert out.exists() and not partial_path(out).exists()
    prog = read_progress(out)
    assert prog["last_frame_done"] == 24 and not prog.complete
    assert prog["n_rows"] == col.n_found == len(read_localizations(out))
    col.load_view(10)
    assert len(col.localizations()) <= 10 and col.n_found == prog["n_rows"]
