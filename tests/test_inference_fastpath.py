"""The CPU fast path of inference (bf16 autocast, folded BatchNorm, meta-device build) keeps results.

Nothing here is timed: speed is measured by benchmarks/speed.py, accuracy over the whole
benchmark grid by benchmarks/precision_guard.py.
"""

import numpy as np
import pytest
import torch

from napari_smlm.core import device as device_mod
from napari_smlm.core import inference
from napari_smlm.core.checkpoint import resolve_checkpoint, shipped_models
from napari_smlm.core.config import SimulationConfig
from napari_smlm.core.inference import InferenceConfig, predict
from napari_smlm.core.metrics import LocalizationMetrics, match_localizations
from napari_smlm.core.simulate import simulate

SHIPPED = set(shipped_models())


def _metrics(gt, locs) -> LocalizationMetrics:
    return LocalizationMetrics.from_matching(match_localizations(gt, locs))


@pytest.fixture(scope="module")
def movie():
    cfg = SimulationConfig(n_frames=16, height=64, width=64, density=2.0, psf_sigma_nm=120.0, photons_mean=2000,
                           photons_std=500, bg_photons=50, seed=1020)
    frames, gt = simulate(cfg)
    return frames, gt


@pytest.mark.parametrize("model", ["decode", "fid-storm"])
def test_bf16_agrees_with_fp32_within_the_bounds(movie, model):
    if model not in SHIPPED:
        pytest.skip(f"{model} weights not shipped")
    frames, gt = movie
    r32 = predict(frames, model, device="cpu", batch_size=8, precision="fp32")
    r16 = predict(frames, model, device="cpu", batch_size=8, precision="bf16")
    assert r32.meta["precision"] == "fp32" and r16.meta["precision"] == "bf16"
    m32, m16 = _metrics(gt, r32.localizations), _metrics(gt, r16.localizations)
    assert m32.tp > 500  # enough emitters for a 0.5-point bound to mean something
    assert m32.jaccard > 0.5  # the model works at all on this movie
    assert abs(100 * (m16.jaccard - m32.jaccard)) <= 0.5
    assert abs(m16.rmse_lateral_nm - m32.rmse_lateral_nm) <= 0.5
    # the two paths really differ (bf16 was used), but by little: same count within 1 %
    assert abs(len(r16.localizations) - len(r32.localizations)) <= 0.01 * len(r32.localizations)


@pytest.mark.parametrize("model", ["deep-storm", "drl-storm", "fid-storm"])
def test_fast_network_equals_the_checkpoint_network_in_fp32(model):
    """Meta-device build + BatchNorm folding + channels-last: same numbers as ``ckpt.build()``."""
    if model not in SHIPPED:
        pytest.skip(f"{model} weights not shipped")
    ckpt = resolve_checkpoint(model)
    ref = ckpt.build("cpu")
    fast = inference._inference_network(ckpt, torch.device("cpu"))
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in ref.modules())
    n_bn_fast = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert n_bn > 0 and n_bn_fast < n_bn  # folding happened
    x = torch.randn(2, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a = ref(x)
        b = fast(x.contiguous(memory_format=torch.channels_last))
    assert a.shape == b.shape
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    # the checkpoint's own network is untouched (still has its BatchNorm layers)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in ckpt.build("cpu").modules()) == n_bn


def test_fp32_path_reproduces_the_reference_network_localizations(movie):
    """fp32 inference gives the localizations of a plain ``ckpt.build()`` network (no fast path)."""
    if "deep-storm" not in SHIPPED:
        pytest.skip("deep-storm weights not shipped")
    frames, _ = movie
    res = predict(frames[:6], "deep-storm", device="cpu", batch_size=3, precision="fp32")
    ckpt = resolve_checkpoint("deep-storm")
    fam, net = ckpt.family(), ckpt.build("cpu")
    from napari_smlm.core.checkpoint import checkpoint_camera

    photons = checkpoint_camera(ckpt).adu_to_photons(torch.from_numpy(frames[:6].astype(np.float32)))
    with torch.inference_mode():
        pp = fam.postprocess(net(fam.preprocess(photons[:, None])), torch.arange(6), res.meta["pixel_size_nm"])
    ref = pp.localizations
    assert len(ref) == len(res.localizations) > 0
    np.testing.assert_allclose(res.localizations["x_nm"], ref["x_nm"], atol=0.01)
    np.testing.assert_allclose(res.localizations["y_nm"], ref["y_nm"], atol=0.01)


def test_auto_precision_follows_the_cpu(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(inference, "cpu_has_fast_bf16", lambda: True)
    assert inference._autocast_dtype("auto", True, cpu) is torch.bfloat16
    monkeypatch.setattr(inference, "cpu_has_fast_bf16", lambda: False)
    assert inference._autocast_dtype("auto", True, cpu) is None
    assert inference._autocast_dtype("fp32", True, cpu) is None
    assert inference._autocast_dtype("bf16", True, cpu) is torch.bfloat16
    assert inference._autocast_dtype("auto", True, torch.device("cuda")) is torch.float16
    assert inference._autocast_dtype("auto", False, torch.device("cuda")) is None
    monkeypatch.setattr(inference, "cpu_has_fast_bf16", lambda: True)
    # a model the guard puts outside the bounds stays float32 under auto (none since session 12)
    monkeypatch.setattr(inference, "BF16_AUTO_EXCLUDED", frozenset({"some-model"}))
    assert inference._autocast_dtype("auto", True, cpu, "some-model") is None
    assert inference._autocast_dtype("bf16", True, cpu, "some-model") is torch.bfloat16
    assert inference._autocast_dtype("auto", True, cpu, "decode") is torch.bfloat16
    monkeypatch.undo()
    monkeypatch.setattr(inference, "cpu_has_fast_bf16", lambda: True)
    assert inference._autocast_dtype("auto", True, cpu, "srcnn") is torch.bfloat16  # session 12: within the guard


def test_cpu_bf16_detection_reads_the_flags(monkeypatch):
    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert not device_mod.cpu_has_fast_bf16()
    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert device_mod.cpu_has_fast_bf16()
    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: {"amx_bf16", "amx_tile"})
    assert device_mod.cpu_has_fast_bf16()
    assert "amx_bf16" in device_mod.cpu_flags_summary()


def test_default_threads_is_bounded_by_affinity_and_quota(monkeypatch):
    import os

    n = device_mod.default_threads()
    assert n >= 1 and n <= len(os.sched_getaffinity(0))
    monkeypatch.setattr(device_mod, "_cgroup_cpu_limit", lambda: 1)
    assert device_mod.default_threads() == 1


def test_config_validation_and_threads_restored(movie):
    with pytest.raises(ValueError, match="precision"):
        InferenceConfig(precision="fp8")
    with pytest.raises(ValueError, match="threads"):
        InferenceConfig(threads=0)
    if "decode" not in SHIPPED:
        pytest.skip("decode weights not shipped")
    before = torch.get_num_threads()
    res = predict(movie[0][:4], "decode", device="cpu", threads=1, precision="fp32")
    assert res.meta["threads"] == 1
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_speed_and_guard_scripts_run(tmp_path):
    """benchmarks/speed.py (CLI + in process) and precision_guard.py run end to end (nothing timed)."""
    import subprocess
    import sys
    from pathlib import Path

    if "fid-storm" not in SHIPPED:
        pytest.skip("fid-storm weights not shipped")
    root = Path(__file__).resolve().parents[1]
    md = tmp_path / "b.md"
    md.write_text("# B\n\n## CPU speed\n\nkept\n\n<!-- speed.py: begin -->\nold\n<!-- speed.py: end -->\n\n## Next\n")
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "speed.py"), "--models", "fid-storm", "--precisions", "fp32",
         "--frames", "6", "--runs", "1", "--threads", "1", "--no-picasso", "--md", str(md)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = md.read_text()
    assert "| fid-storm | fp32 |" in text and "kept" in text and "old" not in text and "## Next" in text
    assert "load average" in out.stdout.lower() and "avx" in out.stdout.lower() or "unknown" in out.stdout
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "precision_guard.py"), "--models", "fid-storm", "--densities", "1",
         "--cameras", "smlm2016_emccd", "--structures", "uniform", "--frames", "4"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode in (0, 1), out.stderr[-3000:]
    assert "verdict: bf16" in out.stdout


@pytest.mark.parametrize("model", ["decode", "fid-storm"])
def test_batch_parallel_gives_the_same_localizations(movie, model):
    """Two threads on two batches at once (parallel="batches") = both threads on each batch in turn.

    The frame and the arithmetic of each batch do not depend on how the threads share the work, so
    the tables are identical, in the same order, and so is the running super-resolved image.
    """
    if model not in SHIPPED:
        pytest.skip(f"{model} weights not shipped")
    frames, _ = movie
    before = torch.get_num_threads()
    kw = dict(device="cpu", batch_size=3, threads=2)  # 6 batches of the 16 frames, the last one short
    ops = predict(frames, model, parallel="ops", **kw)
    par = predict(frames, model, parallel="batches", **kw)
    auto = predict(frames, model, **kw)
    assert ops.meta["parallel"] == "ops" and par.meta["parallel"] == "batches" == auto.meta["parallel"]
    assert len(ops.localizations) > 50
    for res in (par, auto):
        assert list(res.localizations.columns) == list(ops.localizations.columns)
        for col in ops.localizations.columns:
            np.testing.assert_array_equal(np.asarray(res.localizations[col]), np.asarray(ops.localizations[col]), err_msg=col)
        np.testing.assert_array_equal(res.sr_image, ops.sr_image)
    assert torch.get_num_threads() == before
    # one thread, a single batch, or activations of two batches over the budget: one batch at a time
    assert predict(frames, model, device="cpu", threads=1, batch_size=3).meta["parallel"] == "ops"
    assert predict(frames[:8], model, device="cpu", threads=2, batch_size=16).meta["parallel"] == "ops"  # one batch (density cap: 8)
    from napari_smlm.core.tiling import activation_bytes

    one_batch_mb = activation_bytes(model, resolve_checkpoint(model).family().upsampling, 64, 64) * 3 / 2**20
    tight = predict(frames, model, parallel="auto", max_activation_mb=1.5 * one_batch_mb, **kw)
    assert tight.meta["parallel"] == "ops"
    with pytest.raises(ValueError, match="parallel"):
        InferenceConfig(parallel="threads")


def test_batch_parallel_stop_keeps_what_was_yielded(movie):
    """Closing the generator with batches in flight: the yielded batches stay valid, threads are joined."""
    from napari_smlm.core.inference import collect_predictions, iter_predict

    if "decode" not in SHIPPED:
        pytest.skip("decode weights not shipped")
    frames, _ = movie
    before = torch.get_num_threads()
    gen = iter_predict(frames, "decode", device="cpu", batch_size=2, threads=2, parallel="batches")
    seen = []
    col = collect_predictions(gen, on_update=seen.append, should_stop=lambda: len(seen) >= 2)
    assert col.interrupted and col.n_done == 4 and gen.gi_frame is None
    assert len(col.localizations()) == sum(len(u.localizations) for u in seen)
    assert col.localizations().frames.max() < 4
    assert torch.get_num_threads() == before
    import threading

    assert not [t for t in threading.enumerate() if t.name.startswith("napari-smlm-batch")]
