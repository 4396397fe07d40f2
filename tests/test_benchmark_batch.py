"""The model benchmark (CLI ``benchmark``, the Evaluation widget's 'Compare models') on CUDA leaves the
batch to the automatic GPU plan: since a given ``batch_size`` wins over the plan (``choose_batch``), its
old fixed default of 16 would have run, and timed, 16-frame batches on a GPU. Off CUDA: 16, as before."""

import numpy as np
import pytest
import torch

from napari_smlm.core import benchmark, device, inference
from napari_smlm.core.localizations import Localizations


class _Stop(Exception):
    pass


@pytest.fixture
def seen(monkeypatch):
    got = {}

    def fake_iter_predict(movie, ckpt, **kw):
        got.update(kw)
        raise _Stop

    monkeypatch.setattr(inference, "iter_predict", fake_iter_predict)
    return got


def _run(**kw):
    gt = Localizations({"frame": np.zeros(1, int), "x_nm": [100.0], "y_nm": [100.0]}, {"pixel_size_nm": 100.0})
    with pytest.raises(_Stop):
        list(benchmark.iter_benchmark(np.zeros((2, 16, 16), np.uint16), gt, "decode", baseline=None, **kw))


def test_benchmark_on_cuda_leaves_the_batch_to_the_gpu_plan(seen, monkeypatch):
    monkeypatch.setattr(device, "resolve_device", lambda d="auto": torch.device("cuda", 0))
    _run(device="cuda")
    assert seen["batch_size"] is None


def test_benchmark_off_cuda_and_given(seen, monkeypatch):
    _run(device="cpu")
    assert seen["batch_size"] == benchmark.BENCHMARK_CPU_BATCH == 16
    monkeypatch.setattr(device, "resolve_device", lambda d="auto": torch.device("cuda", 0))
    _run(device="cuda", batch_size=8)
    assert seen["batch_size"] == 8  # given: it wins


def test_cli_benchmark_gives_no_batch_unless_asked():
    from napari_smlm.cli import build_parser

    p = build_parser()
    assert p.parse_args(["benchmark", "m.tif", "gt.csv"]).batch_size is None
    assert p.parse_args(["benchmark", "m.tif", "gt.csv", "--batch-size", "4"]).batch_size == 4
