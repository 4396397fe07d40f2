"""Many movies on Dask from the command line, and a worker that dies (issue 12, part 2).

The README's LocalCluster commands run as written (3 movies, ``--workers 2``), an existing scheduler
is reached with ``--scheduler``, ``--resume`` after a partial run keeps the finished movies, and a
worker process killed in the middle of a task is replaced without duplicating a localization.
"""

import os
import sys

import numpy as np
import pytest

pytest.importorskip("distributed")

from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402
from napari_smlm.cli import main  # noqa: E402
from napari_smlm.core.io.locs import read_localizations  # noqa: E402
from napari_smlm.core.io.stream import read_progress  # noqa: E402
from napari_smlm.core.runner import localize_many  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three small simulated movies in one folder: data/movie0.tif ... movie2.tif."""
    root = tmp_path_factory.mktemp("dask_cli")
    folder = root / "data"
    folder.mkdir()
    for i, (n, seed) in enumerate([(24, 11), (17, 12), (21, 13)]):
        sim = root / f"sim{i}"
        assert main(["simulate", "-o", str(sim), "--frames", str(n), "--size", "24", "24", "--density", "2", "--seed", str(seed)]) == 0
        os.replace(sim / "movie.tif", folder / f"movie{i}.tif")
    return folder


@pytest.fixture(scope="module")
def serial(data, tmp_path_factory):
    """Each movie through the single-process streamed path (--threads 1, as each Dask worker runs)."""
    import torch

    n = torch.get_num_threads()
    out = tmp_path_factory.mktemp("serial")
    tables = []
    for i in range(3):
        o = out / f"movie{i}_locs.hdf5"
        assert main(["localize", str(data / f"movie{i}.tif"), "-o", str(o), "--threads", "1", "--chunk-frames", "8"]) == 0
        tables.append(read_localizations(o).df)
    torch.set_num_threads(n)
    return tables


def _assert_same(out_dir, serial):
    for i, want in enumerate(serial):
        got = read_localizations(out_dir / f"movie{i}_locs.hdf5").df
        assert len(got) == len(want) > 20
        assert got.equals(want)


@pytest.fixture
def restore_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_threads_conflicting_with_threads_per_worker_is_refused_before_any_work(data, tmp_path, capsys):
    rc = main(["localize", str(data), "-o", str(tmp_path / "out"), "--workers", "2", "--threads", "2"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "--threads = 2" in err and "--threads-per-worker" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="threads=2 conflicts with threads_per_worker=1"):
        localize_many([str(data / "movie0.tif")], "decode", tmp_path / "api", threads=2, threads_per_worker=1)


def test_scheduler_address_runs_the_folder_and_resume_keeps_finished_movies(data, serial, tmp_path, capsys, restore_threads):
    """--scheduler tcp://... (here an in-process cluster started by the test), then --resume after a lost output."""
    from distributed import LocalCluster

    out = tmp_path / "results"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cl:
        args = ["localize", str(data), "-o", str(out), "--scheduler", cl.scheduler_address, "--chunk-frames", "8"]
        assert main(args) == 0
        cap = capsys.readouterr()
        assert "dask dashboard: http" in cap.err
        assert "INFO distributed" not in cap.err  # dask's own start/stop chatter stays out without -v
        _assert_same(out, serial)
        # a run that lost one output: --resume redoes it and keeps the two finished ones untouched
        before = [(out / f"movie{i}_locs.hdf5").stat().st_mtime_ns for i in (0, 1)]
        (out / "movie2_locs.hdf5").unlink()
        assert main([*args, "--resume"]) == 0
        cap = capsys.readouterr().out
        assert cap.count("already complete, kept") == 2
        assert [(out / f"movie{i}_locs.hdf5").stat().st_mtime_ns for i in (0, 1)] == before
        _assert_same(out, serial)
        assert main([*args, "--resume"]) == 0  # nothing left to do is not an error
        assert "nothing to resume" in capsys.readouterr().out


@pytest.mark.slow
def test_readme_local_cluster_command(data, serial, tmp_path, capsys, monkeypatch):
    """README: napari-smlm localize "data/*.tif" -o results/ --workers 2 --threads-per-worker 1 (2 processes)."""
    monkeypatch.chdir(data.parent)
    assert main(["localize", "data/*.tif", "-o", "results/", "--workers", "2", "--threads-per-worker", "1", "--chunk-frames", "8"]) == 0
    out = data.parent / "results"
    assert sorted(p.name for p in out.glob("*.hdf5")) == ["movie0_locs.hdf5", "movie1_locs.hdf5", "movie2_locs.hdf5"]
    assert all(read_progress(p).complete for p in out.glob("*.hdf5"))
    assert "3 movies, 62 frames" in capsys.readouterr().out
    _assert_same(out, serial)


class _KillOnce(WorkerPlugin):
    """Worker plugin: the first worker to start a ``localize_chunk`` task dies at once (os._exit), once per marker file."""

    def __init__(self, marker: str):
        self.marker = marker
        self.name = "kill-once"

    def transition(self, key, start, finish, **kwargs):
        name = key[0] if isinstance(key, tuple) else str(key)
        if finish == "executing" and str(name).startswith("localize_chunk"):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(1)  # as a worker killed by the OOM killer or a lost node: no exception, no cleanup


@pytest.mark.slow
def test_a_worker_that_dies_is_replaced_without_duplicates(data, serial, tmp_path, restore_threads):
    """LocalCluster of 2 processes; the worker running the first task is killed; the table equals the serial one."""
    import cloudpickle
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the plugin class travels to the worker processes
    marker = tmp_path / "killed.pid"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cl, Client(cl) as client:
        client.register_plugin(_KillOnce(str(marker)))
        pids = set(client.run(os.getpid).values())
        rep = localize_many([str(data / f"movie{i}.tif") for i in range(3)], "decode", tmp_path / "out", client=client,
                            chunk_frames=8, threads_per_worker=1, device="cpu")
        pids_after = set(client.run(os.getpid).values())
    assert marker.exists(), "no worker was killed: the test did not test anything"
    killed = int(marker.read_text())
    assert killed in pids and killed not in pids_after  # that process is gone; the nanny started another
    assert all(r.complete for r in rep)
    _assert_same(tmp_path / "out", serial)
    for r in rep:  # no chunk written twice: frames ascend, and no localization appears twice
        df = read_localizations(r.output).df
        assert np.all(np.diff(df["frame"].to_numpy()) >= 0)
        assert not df.duplicated().any()
