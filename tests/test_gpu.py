"""GPU path (issue 12, part 3): what can be checked without CUDA runs here; the rest is marked ``gpu``.

Tests marked ``gpu`` are skipped cleanly where ``torch.cuda.is_available()`` is False (conftest);
they run the real CUDA path (auto batch from free memory, pinned read-ahead, AMP) where a GPU is
present. The numbers behind the batch sizing are checked on CPU from given free-memory figures.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_smlm.core.device import GPU_MEMORY_FRACTION, MAX_GPU_BATCH, free_memory_bytes, gpu_activation_budget_mb
from napari_smlm.core.inference import _read_photons, _to_device, gpu_batch_plan, predict
from napari_smlm.core.tiling import activation_bytes, plan_inference

ROOT = Path(__file__).resolve().parents[1]
GiB = 2**30


def test_activation_budget_is_a_share_of_free_memory():
    assert gpu_activation_budget_mb(80 * GiB) == pytest.approx(80 * 1024 * GPU_MEMORY_FRACTION)
    assert gpu_activation_budget_mb(80 * GiB, fraction=0.25) == pytest.approx(20 * 1024)
    assert gpu_activation_budget_mb(10 * 2**20) == 64.0  # a nearly full GPU still gets a usable floor
    with pytest.raises(ValueError, match="fraction"):
        gpu_activation_budget_mb(GiB, fraction=0.0)


@pytest.mark.parametrize("free_gib", [0.5, 2, 8, 139])
def test_gpu_batch_grows_with_free_memory_and_fits_it(free_gib):
    """decode on 256×256 frames: the batch is the most frames whose activations fit half the free memory."""
    free = int(free_gib * GiB)
    batch, budget_mb = gpu_batch_plan("decode", 1, 256, 256, free)
    frame = activation_bytes("decode", 1, 256, 256)
    assert budget_mb == pytest.approx(free * GPU_MEMORY_FRACTION / 2**20)
    assert 1 <= batch <= MAX_GPU_BATCH
    assert batch * frame <= budget_mb * 2**20  # fits
    assert batch == MAX_GPU_BATCH or (batch + 1) * frame > budget_mb * 2**20  # and is the largest that does


def test_gpu_batch_plan_figures():
    # 64×64 decode frames: ~5.3 MB of activations each; an H200's ~139 GiB free hits the cap,
    # a 4 GiB card still gets a few hundred frames per batch
    assert gpu_batch_plan("decode", 1, 64, 64, 139 * GiB)[0] == MAX_GPU_BATCH
    assert gpu_batch_plan("decode", 1, 64, 64, 4 * GiB)[0] == int(2048 * 2**20 // activation_bytes("decode", 1, 64, 64)) == 403
    # deep-storm's ×8 grid costs 64× the pixels: far fewer frames for the same memory
    assert gpu_batch_plan("deep-storm", 8, 64, 64, 4 * GiB)[0] < gpu_batch_plan("decode", 1, 64, 64, 4 * GiB)[0]


def test_a_frame_too_big_for_free_memory_is_tiled():
    batch, budget_mb = gpu_batch_plan("decode", 1, 4096, 4096, 1 * GiB)
    plan = plan_inference("decode", 1, 4096, 4096, batch, budget_mb)
    assert batch == 1 and plan.tiles is not None and len(plan.tiles) > 1


def test_cpu_runs_ignore_auto_batch():
    frames = np.full((6, 24, 24), 100, np.uint16)
    done = predict(frames, "decode", device="cpu", batch_size=4)
    assert done.meta["batch_size"] == 4
    assert free_memory_bytes("cpu") is None


def test_read_ahead_block_reaches_the_device_unchanged_on_cpu():
    movie = np.arange(5 * 8 * 8, dtype=np.uint16).reshape(5, 8, 8) + 200
    block = _read_photons(movie, 1, 3, 1, _default_camera())
    t = _to_device(block, torch.device("cpu"))
    assert isinstance(t, torch.Tensor) and not t.is_pinned()
    np.testing.assert_array_equal(t.numpy(), block)


def _default_camera():
    from napari_smlm.core.checkpoint import checkpoint_camera, resolve_checkpoint

    return checkpoint_camera(resolve_checkpoint("decode"))


def test_gpu_benchmark_fails_clearly_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the refusal is not reachable")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "CUDA is not available" in r.stderr and "--device cpu" in r.stderr
    assert r.stdout == ""


@pytest.mark.slow
def test_gpu_benchmark_smoke_run_on_cpu():
    """The script's own code paths (tables, end-to-end subprocess) on CPU, tiny: not GPU figures."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--models", "decode",
                        "--sizes", "64", "--frames", "8", "--runs", "1", "--precisions", "fp32", "--e2e-frames", "32"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "NOT GPU figures" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith("| decode | 64×64 | fp32 |"))
    assert float(row.split("|")[7]) > 0.5  # JI of the shipped decode on its own simulator
    e2e = r.stdout.strip().splitlines()[-1].split("|")
    assert int(e2e[1]) == 32 and int(e2e[3]) > 0


# ---------------------------------------------------------------------------------------------- CUDA only


@pytest.fixture(scope="module")
def sim64():
    from napari_smlm.core.config import SimulationConfig
    from napari_smlm.core.simulate import simulate

    return simulate(SimulationConfig(n_frames=64, height=64, width=64, density=1.0, seed=3))


@pytest.mark.gpu
def test_cuda_batch_comes_from_free_memory(sim64):
    frames, _ = sim64
    done = predict(frames, "decode", device="cuda")
    free = free_memory_bytes("cuda")
    assert done.meta["device"].startswith("cuda")
    assert done.meta["batch_size"] > 32  # no batch_size given: what fits, not the CPU default
    assert done.meta["batch_size"] <= gpu_batch_plan("decode", 1, 64, 64, free + 4 * GiB)[0]
    assert predict(frames, "decode", device="cuda", batch_size=4).meta["batch_size"] == 4  # a given one wins


@pytest.mark.gpu
def test_a_second_cuda_run_gets_the_same_batch(sim64):
    """Memory cached by torch's allocator from the first run counts as free for the second.

    256×256 frames (~85 MB of activations each): the batch is below the 1,024 cap even on a
    139 GiB GPU, so memory held back by the first run would show as a smaller second batch.
    """
    frames = np.tile(sim64[0], (1, 4, 4))[:16]
    first = predict(frames, "decode", device="cuda", precision="fp32").meta["batch_size"]
    second = predict(frames, "decode", device="cuda", precision="fp32").meta["batch_size"]
    assert first < 1024
    assert abs(second - first) <= 1


@pytest.mark.gpu
def test_cuda_fp32_matches_cpu(sim64):
    frames, _ = sim64
    cpu = predict(frames, "decode", device="cpu", precision="fp32").localizations
    gpu = predict(frames, "decode", device="cuda", precision="fp32").localizations
    assert abs(len(gpu) - len(cpu)) <= max(2, len(cpu) // 100)
    from napari_smlm.core.metrics.matching import evaluate

    m = evaluate(cpu, gpu, tol_lateral_nm=5.0)
    assert m.jaccard > 0.98 and m.rmse_lateral_nm < 1.0


@pytest.mark.gpu
def test_cuda_test_time_views_match_cpu(sim64):
    """``tta=4`` (flipped views, core/tta.py) gives the CPU's localizations on CUDA too (float32 both)."""
    frames, _ = sim64
    cpu = predict(frames, "decode", device="cpu", precision="fp32", tta=4).localizations
    gpu = predict(frames, "decode", device="cuda", precision="fp32", tta=4)
    assert gpu.meta["tta"] == 4 and gpu.meta["tta_views_added"] == 3
    from napari_smlm.core.metrics.matching import evaluate

    m = evaluate(cpu, gpu.localizations, tol_lateral_nm=5.0)
    assert m.jaccard > 0.98 and m.rmse_lateral_nm < 1.0


@pytest.mark.gpu
def test_amp_keeps_accuracy(sim64):
    """float16 autocast (the CUDA default) against float32, both scored against the ground truth."""
    from napari_smlm.core.metrics.matching import evaluate

    frames, gt = sim64
    f32 = evaluate(gt, predict(frames, "decode", device="cuda", precision="fp32").localizations)
    amp = predict(frames, "decode", device="cuda")
    assert amp.meta["precision"] == "fp16"
    f16 = evaluate(gt, amp.localizations)
    assert abs(f16.jaccard - f32.jaccard) < 0.02
    assert abs(f16.rmse_lateral_nm - f32.rmse_lateral_nm) < 2.0


@pytest.mark.gpu
def test_pinned_read_ahead_copies_exactly(sim64):
    from napari_smlm.core.inference import _read_photons_pinned

    frames, _ = sim64
    cam = _default_camera()
    block = _read_photons_pinned(frames, 2, 10, 1, cam)
    assert block.is_pinned()
    on_gpu = _to_device(block, torch.device("cuda"))
    assert on_gpu.is_cuda
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), _read_photons(frames, 2, 10, 1, cam))


@pytest.mark.gpu
def test_streamed_cuda_run_equals_in_memory_cuda_run(sim64, tmp_path):
    from napari_smlm.core.io.locs import read_localizations
    from napari_smlm.core.runner import iter_localize_stream

    frames, _ = sim64
    ref = predict(frames, "decode", device="cuda", precision="fp32", batch_size=16).localizations
    out = tmp_path / "gpu_locs.hdf5"
    list(iter_localize_stream(frames, "decode", out, chunk_frames=32, device="cuda", precision="fp32", batch_size=16))
    assert abs(len(read_localizations(out)) - len(ref)) <= max(2, len(ref) // 100)


@pytest.mark.gpu
def test_gpu_benchmark_runs_on_cuda(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--models", "decode", "--sizes", "64",
                        "--frames", "256", "--runs", "1", "--e2e-frames", "512", "--workdir", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "GPU: " in r.stdout and "| decode | 64×64 | fp16 |" in r.stdout


def test_one_dask_worker_per_gpu():
    from napari_smlm.core.runner import worker_device

    assert [worker_device("auto", k, 4) for k in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert worker_device("cuda", 1, 2) == "cuda:1" and worker_device(None, 3, 2) == "cuda:1"
    assert worker_device("auto", 5, 1) == "auto"  # one GPU (or a dask-cuda worker pinned to one): unchanged
    assert worker_device("cuda:1", 0, 4) == "cuda:1" and worker_device("cpu", 2, 4) == "cpu"  # explicit choices kept
    assert worker_device("auto", "tcp-worker-a", 2) == worker_device("auto", "tcp-worker-a", 2) in ("cuda:0", "cuda:1")
