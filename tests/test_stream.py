"""Localizations streamed to a resumable Picasso HDF5 (issue 12, part 1)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from napari_smlm.cli import main
from napari_smlm.core.inference import predict, resolve_checkpoint
from napari_smlm.core.io.errors import SMLMFileError
from napari_smlm.core.io.formats.picasso import write_picasso_hdf5
from napari_smlm.core.io.locs import read_localizations
from napari_smlm.core.io.stream import SR_DATASET, partial_path, read_progress
from napari_smlm.core.io.tiff import open_movie
from napari_smlm.core.runner import iter_localize_stream


@pytest.fixture(scope="module")
def movie_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", "-o", str(out), "--frames", "56", "--size", "32", "32", "--density", "2", "--seed", "7"]) == 0
    return out / "movie.tif"


@pytest.fixture(scope="module")
def ckpt():
    return resolve_checkpoint("decode")


@pytest.fixture(scope="module")
def reference(movie_path, ckpt, tmp_path_factory):
    """One uninterrupted in-memory run, written by the ordinary Picasso writer."""
    done = predict(open_movie(movie_path), ckpt, device="cpu", batch_size=8)
    p = tmp_path_factory.mktemp("ref") / "ref_locs.hdf5"
    write_picasso_hdf5(p, done.localizations)
    return read_localizations(p), done


def _run(movie_path, ckpt, out, **kw):
    kw = {"chunk_frames": 16, "device": "cpu", "batch_size": 8, **kw}
    return list(iter_localize_stream(open_movie(movie_path), ckpt, out, **kw))


def test_streamed_file_equals_single_run(movie_path, ckpt, reference, tmp_path):
    out = tmp_path / "a_locs.hdf5"
    ups = _run(movie_path, ckpt, out)
    kinds = [u.kind for u in ups]
    assert kinds.count("chunk") == 4 and kinds[-1] == "done"  # 56 frames / 16 → 4 chunks
    ref, done = reference
    got = read_localizations(out)
    assert len(got) == len(ref) > 100
    assert got.df.equals(ref.df)
    assert not partial_path(out).exists()
    prog = read_progress(out)
    assert prog.complete and prog["last_frame_done"] == 56 and prog["n_rows"] == len(ref)
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f[SR_DATASET][()], done.sr_image, rtol=1e-5, atol=1e-4)
    info = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert info["Frames"] == 56 and info["napari-smlm complete"] is True and info["Pixelsize"] == 100.0


def test_stop_keeps_valid_file_and_resume_equals_uninterrupted(movie_path, ckpt, reference, tmp_path):
    out = tmp_path / "b_locs.hdf5"
    calls = []
    ups = _run(movie_path, ckpt, out, should_stop=lambda: calls.append(1) or len(calls) == 3)
    assert ups[-1].kind == "stopped" and ups[-1].frames_done == 24  # 3 batches of 8
    part = read_localizations(out)  # a valid Picasso file with the frames done
    prog = read_progress(out)
    assert prog["last_frame_done"] == 24 and not prog.complete and prog["n_rows"] == len(part)
    ref, _ = reference
    assert part.df.equals(ref.df[ref.df["frame"] < 24].reset_index(drop=True))
    ups = _run(movie_path, ckpt, out, resume=True)
    assert ups[-1].kind == "done" and ups[0].frames_done > 24
    assert read_localizations(out).df.equals(ref.df)


def test_resume_refuses_other_parameters(movie_path, ckpt, tmp_path):
    out = tmp_path / "c_locs.hdf5"
    calls = []
    _run(movie_path, ckpt, out, should_stop=lambda: calls.append(1) or len(calls) == 2)
    with pytest.raises(SMLMFileError, match="threshold"):
        _run(movie_path, ckpt, out, resume=True, threshold=0.9)


def test_unrecorded_rows_are_dropped_on_resume(movie_path, ckpt, reference, tmp_path):
    """A kill between writing a chunk's rows and its progress record: the rows are redone once."""
    out = tmp_path / "d_locs.hdf5"
    calls = []
    _run(movie_path, ckpt, out, should_stop=lambda: calls.append(1) or len(calls) == 2)
    with h5py.File(out, "a") as f:  # simulate the rows of the next chunk written, record not
        ds = f["locs"]
        n = ds.shape[0]
        ds.resize((n + 5,))
        ds[n:] = ds[:5]
    ups = _run(movie_path, ckpt, out, resume=True)
    assert ups[-1].kind == "done"
    assert read_localizations(out).df.equals(reference[0].df)


def test_sigkill_mid_run_then_resume(movie_path, tmp_path):
    """A localize process killed with SIGKILL leaves a valid file; --resume finishes it exactly."""
    out = tmp_path / "k_locs.hdf5"
    # a longer movie: the same frames four times
    import tifffile

    long = tmp_path / "long.tif"
    frames = np.asarray(open_movie(movie_path)[:])
    tifffile.imwrite(long, np.concatenate([frames] * 3))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "napari_smlm.cli", "localize", str(long), "-o", str(out), "--chunk-frames", "8",
           "--batch-size", "8", "--device", "cpu", "--threads", "1", "--pixel-size", "100"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    yml = partial_path(out).with_suffix(".yaml")
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = yaml.safe_load(yml.read_text())["napari-smlm frames done"][1]
        except (OSError, TypeError, KeyError, yaml.YAMLError):
            done = 0
        if done >= 24:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    part = partial_path(out)
    assert part.exists() and not out.exists()
    prog = read_progress(part)
    kept = read_localizations(part)  # valid Picasso file: every completed chunk
    assert 24 <= prog["last_frame_done"] < 168 and prog["last_frame_done"] % 8 == 0
    assert len(kept) >= prog["n_rows"] > 0
    # resume in-process, then an uninterrupted run to compare with; all with one torch thread like the
    # killed process (the thread count changes the last bits of a convolution)
    import torch

    threads = torch.get_num_threads()
    try:
        assert main(["localize", str(long), "-o", str(out), "--resume", "--chunk-frames", "8", "--batch-size", "8",
                     "--device", "cpu", "--pixel-size", "100", "--threads", "1"]) == 0
        full = tmp_path / "full_locs.hdf5"
        assert main(["localize", str(long), "-o", str(full), "--chunk-frames", "64", "--batch-size", "8",
                     "--device", "cpu", "--pixel-size", "100", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    a, b = read_localizations(out).df, read_localizations(full).df
    assert len(a) == len(b) and a.equals(b)
    assert read_progress(out).complete and not part.exists()


def test_cli_refuses_existing_partial_without_resume(movie_path, ckpt, tmp_path, capsys):
    out = tmp_path / "e_locs.hdf5"
    calls = []
    _run(movie_path, ckpt, out, should_stop=lambda: calls.append(1) or len(calls) == 2)
    os.replace(out, partial_path(out))  # as a killed run leaves it
    os.replace(out.with_suffix(".yaml"), partial_path(out).with_suffix(".yaml"))
    rc = main(["localize", str(movie_path), "-o", str(out), "--device", "cpu"])
    assert rc != 0 and "--resume" in capsys.readouterr().err


def test_resume_of_a_complete_run_changes_nothing(movie_path, ckpt, reference, tmp_path):
    out = tmp_path / "f_locs.hdf5"
    _run(movie_path, ckpt, out)
    os.replace(out, partial_path(out))  # killed after the last chunk, before the rename
    os.replace(out.with_suffix(".yaml"), partial_path(out).with_suffix(".yaml"))
    ups = _run(movie_path, ckpt, out, resume=True)
    assert [u.kind for u in ups] == ["done"] and ups[0].n_localizations == len(reference[0])
    assert read_localizations(out).df.equals(reference[0].df) and not partial_path(out).exists()


class _FailingMovie:
    """A movie whose reads past frame ``fail_at`` raise (a disk or network-share error mid-run)."""

    def __init__(self, movie, fail_at):
        self.movie, self.fail_at = movie, fail_at
        self.shape, self.dtype, self.pixel_size_nm = movie.shape, movie.dtype, movie.pixel_size_nm

    def __len__(self):
        return len(self.movie)

    def __getitem__(self, key):
        stop = key.stop if isinstance(key, slice) else int(key) + 1
        if stop is not None and stop > self.fail_at:
            raise OSError(f"read error past frame {self.fail_at} (simulated)")
        return self.movie[key]


def test_crash_mid_run_keeps_completed_chunks_and_resume_equals_uninterrupted(movie_path, ckpt, reference, tmp_path):
    """An exception inside the run (here a read error at frame 41): every completed chunk is on disk, resumable."""
    out = tmp_path / "crash_locs.hdf5"
    with pytest.raises(OSError, match="simulated"):
        list(iter_localize_stream(_FailingMovie(open_movie(movie_path), 41), ckpt, out, chunk_frames=16, device="cpu", batch_size=8))
    part = partial_path(out)
    assert part.exists() and not out.exists()  # not given the final name: the run did not end
    prog = read_progress(part)
    assert prog["last_frame_done"] == 32 and not prog.complete  # chunks 0-16 and 16-32 done, 32-48 lost
    ref, _ = reference
    assert read_localizations(part).df.equals(ref.df[ref.df["frame"] < 32].reset_index(drop=True))
    ups = _run(movie_path, ckpt, out, resume=True)
    assert ups[-1].kind == "done" and ups[0].frames_done > 32
    assert read_localizations(out).df.equals(ref.df)
