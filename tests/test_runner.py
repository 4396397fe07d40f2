"""Chunked and distributed localization (issue 12, part 2): identical tables to one serial run."""

import numpy as np
import pytest

pytest.importorskip("distributed")

from napari_smlm.cli import main  # noqa: E402
from napari_smlm.core.inference import predict, resolve_checkpoint  # noqa: E402
from napari_smlm.core.io.locs import read_localizations  # noqa: E402
from napari_smlm.core.io.stream import read_progress  # noqa: E402
from napari_smlm.core.io.tiff import open_movie  # noqa: E402
from napari_smlm.core.localizations import Localizations  # noqa: E402
from napari_smlm.core.runner import default_outputs, iter_localize_stream, localize_chunk, localize_many, plan_chunks  # noqa: E402


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    root = tmp_path_factory.mktemp("movies")
    paths = []
    for i, (n, seed) in enumerate([(40, 1), (27, 2), (33, 3)]):
        d = root / f"m{i}"
        assert main(["simulate", "-o", str(d), "--frames", str(n), "--size", "24", "24", "--density", "2", "--seed", str(seed)]) == 0
        paths.append(str(d / "movie.tif"))
    return paths


@pytest.fixture
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # workers run one torch thread: the serial reference must too (last bits of a conv)
    yield
    torch.set_num_threads(n)


def test_plan_chunks_covers_range_on_batch_grid():
    assert plan_chunks(0, 50, 16, 8) == [(0, 16), (16, 32), (32, 48), (48, 50)]
    assert plan_chunks(3, 50, 10, 8) == [(3, 19), (19, 35), (35, 50)]  # 10 → 16 (two batches), grid from 3
    assert plan_chunks(3, 50, 10, 8, first=11) == [(11, 19), (19, 35), (35, 50)]  # resume after a stopped batch
    with pytest.raises(ValueError, match="batch grid"):
        plan_chunks(0, 50, 16, 8, first=5)
    assert plan_chunks(0, 0, 16, 8) == []


def test_default_outputs_disambiguate_same_stems(tmp_path):
    outs = default_outputs([["a/x/movie.tif"], ["a/y/movie.tif"]], tmp_path)
    assert [o.name for o in outs] == ["x_movie_locs.hdf5", "y_movie_locs.hdf5"]
    assert default_outputs([["a/one.tif"]])[0].as_posix() == "a/one_locs.hdf5"


def test_chunks_with_context_equal_one_run(movies, one_thread):
    """3-frame model: chunks read one neighbour frame each side; concatenated they equal one run exactly."""
    ck = resolve_checkpoint("decode")
    assert ck.family().context == 1
    ref = predict(open_movie(movies[0]), ck, device="cpu", batch_size=4).localizations
    parts = [localize_chunk(movies[0], a, b, "decode", device="cpu", batch_size=4)[0] for a, b in plan_chunks(0, 40, 8, 4)]
    got = Localizations.concat(parts)
    assert len(got) == len(ref) > 50
    assert got.df.reset_index(drop=True).equals(ref.df.reset_index(drop=True))


def _serial(movies, tmp_path, **kw):
    outs = []
    for i, m in enumerate(movies):
        out = tmp_path / f"serial{i}_locs.hdf5"
        list(iter_localize_stream(open_movie(m), "decode", out, chunk_frames=10_000, device="cpu", batch_size=4, **kw))
        outs.append(read_localizations(out).df)
    return outs


def test_localize_many_threads_cluster_stop_and_resume(movies, tmp_path, one_thread):
    """Fast path of the suite: an in-process (threads) cluster; stop after 2 chunks, then resume."""
    from distributed import Client, LocalCluster

    ref = _serial(movies, tmp_path)
    out_dir = tmp_path / "many"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cl, Client(cl) as client:
        seen = []
        rep = localize_many(movies, "decode", out_dir, client=client, chunk_frames=8, device="cpu", batch_size=4,
                            threads_per_worker=1, should_stop=lambda: seen.append(1) or len(seen) >= 2)
        assert not all(r.complete for r in rep)
        for r in rep:  # every output a valid file with whole chunks only
            prog = read_progress(r.output)
            assert prog["last_frame_done"] % 8 == 0 or prog.complete
            assert len(read_localizations(r.output)) == prog["n_rows"]
        rep = localize_many(movies, "decode", out_dir, client=client, chunk_frames=8, device="cpu", batch_size=4,
                            threads_per_worker=1, resume=True)
    assert all(r.complete for r in rep)
    for r, want in zip(rep, ref):
        got = read_localizations(r.output).df
        assert len(got) == len(want) and got.equals(want)


@pytest.mark.slow
def test_localize_many_two_processes_equals_serial(movies, tmp_path, one_thread):
    """The acceptance test: LocalCluster of 2 worker processes, 3 movies, chunks of 8 frames."""
    ref = _serial(movies, tmp_path)
    rep = localize_many(movies, "decode", tmp_path / "dist", n_workers=2, threads_per_worker=1, processes=True,
                        chunk_frames=8, device="cpu", batch_size=4)
    assert [r.output.name for r in rep] == ["m0_movie_locs.hdf5", "m1_movie_locs.hdf5", "m2_movie_locs.hdf5"]
    for r, want in zip(rep, ref):
        got = read_localizations(r.output).df
        assert r.complete and r.n_localizations == len(want) > 20
        assert got.equals(want)
        # the model's image is accumulated too (sum of chunk images, order-independent up to rounding)
    import h5py

    with h5py.File(rep[0].output, "r") as f, h5py.File(tmp_path / "serial0_locs.hdf5", "r") as g:
        np.testing.assert_allclose(f["napari_smlm_sr"][()], g["napari_smlm_sr"][()], rtol=1e-5, atol=1e-4)


def test_localize_many_holds_a_bounded_number_of_chunks(movies, tmp_path, one_thread):
    """At most max_pending chunks are submitted and not yet written, whatever the number of chunks."""
    from distributed import Client, LocalCluster

    class Counting:  # the client, recording each chunk submitted
        def __init__(self, client):
            self.client, self.submitted = client, []

        def __getattr__(self, name):
            return getattr(self.client, name)

        def submit(self, fn, spec, a, b, *args, **kw):
            self.submitted.append(b - a)
            return self.client.submit(fn, spec, a, b, *args, **kw)

    ref = _serial(movies, tmp_path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cl, Client(cl) as client:
        counting, outstanding = Counting(client), []
        rep = localize_many(movies, "decode", tmp_path / "bounded", client=counting, chunk_frames=4, device="cpu", batch_size=4,
                            threads_per_worker=1, max_pending=2,
                            progress=lambda done, total: outstanding.append(sum(counting.submitted) - done))
    assert len(counting.submitted) == 10 + 7 + 9  # every chunk of 4 frames of the 40 + 27 + 33 frames, once
    assert max(outstanding) <= 2 * 4  # frames submitted but not written: at most 2 chunks of 4
    assert all(r.complete for r in rep)
    for r, want in zip(rep, ref):
        assert read_localizations(r.output).df.equals(want)
