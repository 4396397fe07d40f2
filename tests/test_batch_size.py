"""An explicit batch size wins over the automatic GPU plan; Dask workers on one GPU share its memory.

No CUDA here: the decision is a pure function of the device type and the free-memory figure
(:func:`napari_smlm.core.inference.choose_batch`), checked with given figures, as in test_gpu.py.
"""

import json

import numpy as np
import pytest
import torch

from napari_smlm.core.device import GPU_MEMORY_FRACTION, MAX_GPU_BATCH
from napari_smlm.core.inference import DEFAULT_BATCH, InferenceConfig, capped_batch_size, choose_batch, gpu_batch_plan, predict
from napari_smlm.core.tiling import activation_bytes

GiB = 2**30


def _choose(device_type, batch_size, free=139 * GiB, model="decode", u=1, hw=64, share=1, auto=True):
    return choose_batch(model, u, hw, hw, device_type=device_type, batch_size=batch_size, auto_batch=auto,
                        free_bytes=free if device_type == "cuda" else None, max_activation_mb=4608.0, gpu_share=share)


def test_default_batch_on_cuda_comes_from_free_memory():
    b, budget, how = _choose("cuda", None)
    assert (b, how) == (MAX_GPU_BATCH, "gpu")
    assert budget == pytest.approx(139 * 1024 * GPU_MEMORY_FRACTION)


@pytest.mark.parametrize("asked", [1, 4, 16, 300])
def test_a_given_batch_wins_over_the_gpu_plan(asked):
    b, budget, how = _choose("cuda", asked)
    assert (b, how) == (asked, "given")
    assert budget == pytest.approx(139 * 1024 * GPU_MEMORY_FRACTION)  # the budget still comes from the GPU (tiling)


def test_a_given_batch_on_cuda_is_not_given_the_cpu_cache_cap():
    # deep-storm at ×8 on 64×64 frames: the CPU path caps 64 frames to 16; a GPU keeps what was asked
    assert capped_batch_size(8, 64, 64, 64) < 64
    assert _choose("cuda", 64, model="deep-storm", u=8)[0] == 64
    assert _choose("cpu", 64, model="deep-storm", u=8)[0] == capped_batch_size(8, 64, 64, 64)


def test_cpu_default_and_given():
    assert _choose("cpu", None)[0::2] == (DEFAULT_BATCH, "default")
    assert _choose("cpu", 8)[0::2] == (8, "given")
    assert _choose("cuda", None, auto=False)[0::2] == (DEFAULT_BATCH, "default")  # auto_batch off: the CPU default
    assert InferenceConfig().batch_size is None
    with pytest.raises(ValueError, match="batch_size"):
        InferenceConfig(batch_size=0)


def test_workers_on_one_gpu_share_its_budget():
    """Three workers on one GPU: together they take one lone run's budget, not three."""
    free = 8 * GiB
    lone, lone_mb = gpu_batch_plan("decode", 1, 256, 256, free)
    each, each_mb = gpu_batch_plan("decode", 1, 256, 256, free, share=3)
    assert each_mb == pytest.approx(lone_mb / 3)
    frame = activation_bytes("decode", 1, 256, 256)
    assert 3 * each * frame <= lone_mb * 2**20 < 3 * lone * frame
    assert _choose("cuda", None, free=free, hw=256, share=3)[:2] == (each, pytest.approx(each_mb))
    with pytest.raises(ValueError, match="share"):
        gpu_batch_plan("decode", 1, 64, 64, free, share=0)
    with pytest.raises(ValueError, match="gpu_share"):
        InferenceConfig(gpu_share=0)


def test_workers_per_gpu():
    from napari_smlm.core.distributed import workers_per_gpu

    assert workers_per_gpu(1, 1) == 1
    assert workers_per_gpu(4, 1) == 4
    assert workers_per_gpu(4, 2) == 2
    assert workers_per_gpu(5, 2) == 3  # worker_device puts workers 0, 2, 4 on cuda:0
    assert workers_per_gpu(1, 8) == 1


def test_localize_chunk_on_a_gpu_shares_it_and_keeps_the_automatic_batch(monkeypatch):
    """A worker on a (faked) one-GPU machine with 3 workers: gpu_share 3, batch left to the GPU plan."""
    from napari_smlm.core import distributed, inference

    seen = {}

    def fake_predict(movie, ckpt, **kw):
        seen.update(kw)
        raise RuntimeError("stop here")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(distributed, "_cached_movie", lambda paths, px: np.zeros((4, 8, 8), np.uint16))
    monkeypatch.setattr(distributed, "_cached_checkpoint", lambda m: m)
    monkeypatch.setattr(inference, "predict", fake_predict)
    with pytest.raises(RuntimeError, match="stop here"):
        distributed.localize_chunk("m.tif", 0, 4, "decode", workers_on_host=3, device="cuda")
    assert seen["gpu_share"] == 3 and seen["batch_size"] is None
    seen.clear()
    with pytest.raises(RuntimeError, match="stop here"):
        distributed.localize_chunk("m.tif", 0, 4, "decode", workers_on_host=3, device="cuda", batch_size=8)
    assert seen["batch_size"] == 8  # given: it wins


def test_chunk_batch_off_cuda_is_the_stream_grid():
    from napari_smlm.core.runner import STREAM_BATCH, stream_batch

    kw = {"device": "cpu"}
    assert stream_batch(kw) == STREAM_BATCH and kw["batch_size"] == STREAM_BATCH
    kw = {"device": "cpu", "batch_size": 8}
    assert stream_batch(kw) == 8 and kw["batch_size"] == 8


def test_cli_constants_match_the_core():
    from napari_smlm import cli
    from napari_smlm.core.runner import STREAM_BATCH

    assert (cli.LOCALIZE_BATCH, cli.STREAM_BATCH) == (DEFAULT_BATCH, STREAM_BATCH)


def test_cli_help_documents_the_automatic_default(capsys):
    from napari_smlm.cli import main

    with pytest.raises(SystemExit):
        main(["localize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size" in text
    assert "default: automatic: on CUDA the most frames whose activations fit half the GPU's free memory" in text


def test_cli_given_batch_size_reaches_the_run(tmp_path):
    """CPU: the record says the batch that ran; given 4 -> 4, none -> the default 32 (capped by nothing here)."""
    from napari_smlm.cli import main
    from napari_smlm.core.io.tiff import write_movie

    movie = tmp_path / "m.tif"
    write_movie(movie, np.full((6, 24, 24), 100, np.uint16), 100.0)
    for asked, expect in ((["--batch-size", "4"], 4), ([], DEFAULT_BATCH)):
        out = tmp_path / f"out{expect}.csv"
        assert main(["localize", str(movie), "-o", str(out), "--device", "cpu", *asked]) == 0
        rec = json.loads(out.with_name(out.stem + "_localize.json").read_text())
        assert rec["batch_size"] == expect
